//! # abroute: weighted A/B routing of LLM requests
//!
//! abroute is the routing core an LLM gateway links to do what the hosted Inworld Router does:
//! a *router* names routes, each route splits traffic across model *variants* by weight, and a
//! request that names the router as its model is sent to one variant. This crate does no I/O: it
//! reads router configs, validates them, compiles them into exact O(1) alias tables, and answers
//! routing decisions from an immutable snapshot that is swapped atomically while requests flow.
//!
//! The flow is one way: **config → validate → compile → snapshot → decide → plan → record**.
//! Each module below imports only modules above it in this list (no import cycles):
//!
//! - [`error`]: [`ConfigErrors`] (each [`ConfigError`] with its [`JsonPath`]) and [`RouteError`].
//! - [`limits`]: the documented size limits of a config, shared by validation and conditions.
//! - [`table`]: [`AliasTable`], an exact weighted pick from one 64-bit draw.
//! - [`sticky`]: [`StickyTable`], a stateless, minimal-disruption assignment of sticky keys.
//! - [`model`]: [`ModelId`], the one `provider/model` split.
//! - [`catalog`]: [`Catalog`], model facts (limits, prices, capabilities).
//! - [`context`]: [`RequestContext`], what a decision may look at (its draw comes from the
//!   private `random`, a leaf).
//! - [`condition`]: CEL conditions ([`Condition`]), compiled once, evaluated per request.
//! - [`config`]: the serde model of the Inworld router JSON ([`RouterConfig`]), both spellings,
//!   and the one reading of its message templates ([`MessageTemplate`]).
//! - [`validate`]: every problem at once, each with its JSON path ([`ConfigErrors`]).
//! - [`health`], [`stats`]: passive health per model and provider, counters per variant.
//! - [`select`]: `auto`, sorted and provider selection ([`order_models`]).
//! - [`compiled`]: the compiled types ([`CompiledRouter`], [`CompiledRoute`],
//!   [`CompiledVariant`], [`ModelTarget`]) and what they say about themselves.
//! - [`compile`]: [`RouterConfig::compile`], config → compiled, against the engine's shared
//!   registries.
//! - [`sampling`]: weighted sampling without replacement over a route ([`RandomFallbacks`]).
//! - [`decision`]: [`CompiledRouter::decide`] and the [`Decision`] it gives ([`Assignment`]).
//! - [`fallback`]: [`Decision::fallbacks`], the order of the route's other variants.
//! - [`record`]: [`DecisionRecord`], an owned, serializable account of one request.
//! - [`plan`]: [`Decision::plan`] and the [`AttemptPlan`] it gives.
//! - [`engine`]: [`Engine`], every router in an `arc-swap` snapshot, built from an
//!   [`EngineConfig`], with a publish-time [`Prepare`] hook.
//!
//! Building can fail with rich errors; routing cannot fail on a valid snapshot except for an
//! unknown router or no matching route ([`RouteError`]).
//!
//! ```
//! use abroute::{Engine, RequestContext, RouterConfig};
//!
//! // The seed's router, as sent to Inworld's `POST /router/v1/routers`.
//! let config = RouterConfig::from_json(r#"{ "name": "compare-frontier-models", "defaultRoute": {
//!   "route_id": "default", "variants": [
//!     { "variant": { "variant_id": "openai/gpt-4o-mini-a", "model_id": "openai/gpt-4o-mini" }, "weight": 33 },
//!     { "variant": { "variant_id": "openai/gpt-3.5-turbo-b", "model_id": "openai/gpt-3.5-turbo" }, "weight": 33 },
//!     { "variant": { "variant_id": "openai/gpt-4.1-c", "model_id": "openai/gpt-4.1" }, "weight": 34 } ] } }"#)?;
//! let engine = Engine::new();
//! engine.upsert(config)?;
//!
//! let snapshot = engine.load();
//! let decision = snapshot.route("compare-frontier-models", &RequestContext::new())?;
//! println!("{} via {}", decision.model_id(), decision.variant_id());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod catalog;
pub mod compile;
pub mod compiled;
pub mod condition;
pub mod config;
pub mod context;
pub mod cost;
pub mod decision;
pub mod engine;
pub mod error;
pub mod fallback;
pub mod health;
pub mod limits;
pub mod model;
pub mod plan;
mod random;
pub mod record;
pub mod sampling;
pub mod select;
pub mod srm;
pub mod stats;
pub mod sticky;
pub mod table;
pub mod validate;

pub use catalog::{Capability, Catalog, ModelInfo, Needs, Unsuitable};
pub use compiled::{CompiledRoute, CompiledRouter, CompiledVariant, ModelTarget};
pub use condition::{Condition, ConditionError, ConditionOutcome, EvalError, Variables};
pub use config::{DerivedId, MessageTemplate, RouterConfig, name_from_display};
pub use context::{MetadataValue, RequestContext};
pub use decision::{Assignment, ConditionExplanation, Decision, Explanation};
pub use engine::{
    Change, Engine, EngineConfig, LoadedRouter, Prepare, Snapshot, SnapshotGuard, StagedRouter,
};
pub use error::{ConfigError, ConfigErrorKind, ConfigErrors, JsonPath, RouteError};
pub use fallback::{Fallbacks, RandomFallbacks};
pub use health::{FailureClass, Health, HealthConfig, Outcome};
pub use model::ModelId;
pub use plan::{Attempt, AttemptPlan};
pub use record::DecisionRecord;
pub use select::{ModelMetrics, SelectionError, order_models, validate_selection};
pub use sticky::{StickyAssignment, StickyError, StickyFallbacks, StickyTable};
pub use table::{AliasTable, WeightError};
pub use validate::ValidationOptions;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
