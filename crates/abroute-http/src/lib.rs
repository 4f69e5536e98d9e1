//! # abroute-http: the HTTP adapter for abroute
//!
//! Routes OpenAI- and Anthropic-style LLM requests with an [`abroute::Engine`], for any server
//! built on the `http` and `tower` crates (hyper, axum, ...). It depends on `http`,
//! `http-body`, `bytes`, `tower` (the traits only) and `serde_json`: no server framework, no
//! runtime. `docs/http.md` is the guide; this is the map.
//!
//! - [`AbrouteLayer`]: a `tower::Layer` around the service that makes the upstream call. It
//!   authorizes, reads the body with a limit, routes, rewrites, walks the attempt plan on 429,
//!   5xx and timeouts, reports every outcome to the engine, and sets the `x-abroute-*` headers.
//! - The hot path in pieces, for hosts that drive it themselves: [`extract()`] (one validating
//!   pass over the body, borrowing from it), [`Extracted::context`] (the
//!   [`RequestContext`](abroute::RequestContext)), [`AttemptSettings::of`] (the attempt's
//!   generation parameters and message templates, prepared once per loaded router;
//!   [`generation_for`] and [`templates_for`] give each alone, [`generation_config`] the raw
//!   value) and
//!   [`rewrite()`] (one allocation of exact size; every byte not owned by the router copied as
//!   it was), or
//!   [`RouterOptions::route`] for all of it in one call.
//! - [`ApiError`]: errors in the OpenAI shape with the right status.
//! - [`ManagementApi`] and [`ManagementService`]: Inworld's routerAPI (create, list, get,
//!   update, delete), validated in full, persisted through a host's [`RouterStore`] before the
//!   engine swaps, behind [`ApiKeys`].
//!
//! ```
//! use std::sync::Arc;
//!
//! use abroute::{Engine, RouterConfig, Snapshot};
//! use abroute_http::{Api, Routing, RouterOptions};
//! use http::HeaderMap;
//!
//! let engine = Engine::new();
//! engine.upsert(RouterConfig::from_json(r#"{ "name": "demo", "defaultRoute": {
//!     "route_id": "default", "variants": [
//!     { "variant": { "variant_id": "a", "model_id": "openai/gpt-4.1",
//!                    "text_generation_config": { "temperature": 0.2 } }, "weight": 100 } ] } }"#)?)?;
//!
//! let body = br#"{"model": "inworld/demo", "messages": [{"role": "user", "content": "hi"}],
//!   "extra_body": {"metadata": {"tier": "gold"}}}"#;
//! let routed = RouterOptions::new().route(
//!     &engine.load(), Api::ChatCompletions, &HeaderMap::new(), body, std::time::Duration::ZERO)?;
//! let Routing::Routed(routed) = routed else { unreachable!() };
//! assert_eq!(routed.model_id, "openai/gpt-4.1");
//! assert_eq!(
//!     std::str::from_utf8(&routed.body)?,
//!     r#"{"model": "openai/gpt-4.1","temperature":0.2, "messages": [{"role": "user", "content": "hi"}]}"#
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod auth;
pub mod body;
pub mod error;
pub mod extract;
pub mod json;
pub mod layer;
mod list;
pub mod manage;
pub mod response;
pub mod rewrite;
pub mod route;
pub mod stream;
pub mod template;

pub use auth::{ApiKeys, AuthError, Permission, Permissions, strip_credentials};
pub use body::{AbrouteBody, BoxError, Full};
pub use error::ApiError;
pub use extract::{
    Api, Extracted, MAX_METADATA_KEYS, MAX_REQUEST_MODELS, MIN_TTFT_TIMEOUT, extract,
    parse_duration,
};
pub use layer::{
    AbrouteLayer, AbrouteService, Clock, MonotonicClock, NoTimer, TimedOut, Timer, UpstreamAttempt,
};
pub use manage::host::{
    CommitError, CommitFuture, Committed, EngineHost, Expect, RouterChange, RouterHost,
};
pub use manage::{
    DEFAULT_BASE_PATH, DEFAULT_PAGE_SIZE, LoadError, MAX_PAGE_SIZE, ManagementApi,
    ManagementService, MemoryStore, RouterStore, StoreError,
};
pub use response::{
    ASSIGNED_VARIANT_HEADER, DecisionHeaders, MODEL_HEADER, RESPONSES_METADATA_MEMBER,
    ROUTE_HEADER, ROUTER_HEADER, Usage, VARIANT_HEADER, VERSION_HEADER, merge_metadata,
    merge_metadata_and_usage, merge_metadata_as, metadata_member, metadata_value, usage_of,
};
pub use rewrite::{GenerationParams, Precedence, RenderedGeneration, Rewrite, rewrite};
pub use route::{
    AttemptSettings, DEFAULT_MAX_BODY_BYTES, DEFAULT_MODEL_PREFIX, Routed, RouterOptions, Routing,
    generation_config, generation_for, route_error, strip_provider, templates_for,
};
pub use stream::{Finish, METADATA_EVENT, Scan, SseScanner};
pub use template::{MessageTemplates, TemplateError};

/// The HTTP guide's examples (`docs/http.md`), compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/http.md")]
pub struct HttpGuideDoctests;
