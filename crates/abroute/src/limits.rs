//! The documented size limits of a router config.
//!
//! Validation ([`validate`](crate::validate)) enforces them, and the CEL compiler
//! ([`Condition::compile`](crate::Condition::compile)) refuses a source past
//! [`MAX_CONDITION_BYTES`] on its own: the numbers live here, below both, so that neither module
//! imports the other for a constant. `docs/config.md` lists them with their error messages.

/// The most conditional routes a router may have.
pub const MAX_ROUTES: usize = 1_000;
/// The most variants a route may have.
pub const MAX_VARIANTS: usize = 1_000_000;
/// The longest router name, `route_id`, `variant_id`, `model_id` or route `salt`, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// The largest sum of a route's weights (`u32::MAX`).
pub const MAX_WEIGHT_SUM: u64 = u32::MAX as u64;
/// The longest `cel_expression`, in bytes.
pub const MAX_CONDITION_BYTES: usize = 16 * 1024;
