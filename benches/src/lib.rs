//! Shared fixtures for the benches and the disruption report.
