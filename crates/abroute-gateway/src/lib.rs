//! # abroute-gateway: the `abroute` binary as a library
//!
//! A real LLM gateway built on the abroute core and the `abroute-http` adapter, with axum and
//! tokio, and the command-line tools that check router configs in pipelines. `docs/gateway.md`
//! is the guide; this is the map.
//!
//! - [`server`]: `abroute serve`. [`Gateway::start`](server::Gateway::start) loads the routers
//!   (the store, watched directory, the seed's router in the demo mode), serves chat
//!   completions through the adapter's layer to the providers, the management API, and
//!   `/healthz`, `/readyz`, `/metrics`; [`Gateway::shutdown`](server::Gateway::shutdown) drains
//!   gracefully.
//! - [`writer`]: the one task that writes the engine; every change (the store's routers at
//!   start, the watched directory, the seed, the refresh timer, the management API) is a job
//!   sent to it. [`host`]: the gateway as the management API's host (which routers may change,
//!   commits through the writer). [`store`]: the router store behind one async interface shaped
//!   like etcd's: the state file (written atomically), memory, or PostgreSQL for a fleet.
//!   [`fleet`]: a replica following a shared store. [`watch`]: a directory of router files,
//!   hot-swapped.
//! - [`config`]: the TOML config file. [`upstream`]: providers by model prefix, the pooled HTTP
//!   client that streams responses through. [`telemetry`]: metrics and logs. [`mock`]: the
//!   built-in mock upstream (each API in its own shape, SSE, scriptable failures).
//! - [`check`], [`simulate`], [`explain`]: `abroute check | simulate | explain`, over router
//!   files read by [`routerfile`].

pub mod check;
pub mod config;
pub mod experiment;
pub mod explain;
pub mod fleet;
pub mod host;
pub mod mock;
pub mod parallel_load;
pub mod report;
pub mod routerfile;
pub mod server;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod token_metrics;
pub mod upstream;
pub mod watch;
pub mod writer;

pub use config::GatewayConfig;
pub use server::{Gateway, StartOptions};
