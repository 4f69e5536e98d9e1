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
//!   [`RouterOptions`] say how requests are read, routed and rewritten (the layer and
//!   [`RouterOptions::route`] alike), [`LayerOptions`] what the layer does around the upstream
//!   call; a [`Clock`] and a [`Timer`] give it time. Requests that name no router but route
//!   themselves (`"model": "auto"`, `extra_body.models`, ...) get the same through
//!   [`request_level`].
//! - The hot path in pieces, for hosts that drive it themselves: [`extract()`] (one validating
//!   pass over the body, borrowing from it), [`Extracted::context`] (the
//!   [`RequestContext`](abroute::RequestContext)), [`AttemptSettings::of`] (the attempt's
//!   generation parameters and message templates, [`Prepared`] once per loaded router) and
//!   [`rewrite()`] (one allocation of exact size; every byte not owned by the router copied as
//!   it was), or [`RouterOptions::route`] for all of it in one call. [`set_model`] is the same
//!   byte-preserving copy for a request that names no router.
//! - [`ApiError`]: errors in the OpenAI shape with the right status.
//! - [`ManagementApi`] and [`ManagementService`]: Inworld's routerAPI (create, list, get,
//!   update, delete), validated in full, then handed to the host's [`RouterHost`] as one
//!   [`RouterChange`] with a compare-and-set [`Expect`]ation ([`EngineHost`] applies it
//!   straight to an engine), behind [`ApiKeys`].
//!
//! Inside, a request goes through one module per phase, each imported only by those after
//! it: `intake` (authorize, read, extract, find the router once, build the context), `plan`
//! (what the attempt loop walks: [`UpstreamAttempt`], the router's plan), `attempts` (call,
//! race the timer, classify, report), `answer` (first frame replayed, metadata and usage, the
//! stream tap, decision headers, the record), with `layer` and `route` chaining them. Below
//! them: `prepared` (per-router data), [`rewrite`](mod@rewrite), [`extract`](mod@extract),
//! [`template`], [`response`], [`stream`], `body`, `error`, `auth`, `options`, and the leaves
//! `time` (clocks and timers), `json` (the scanner and writers) and `list`.
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

mod answer;
mod attempts;
pub mod auth;
mod body;
pub mod error;
pub mod extract;
pub mod include_usage;
mod intake;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod json;
#[cfg(not(feature = "fuzzing"))]
mod json;
pub mod layer;
mod list;
pub mod manage;
pub mod models;
mod options;
mod plan;
mod prepared;
pub mod request_level;
pub mod response;
pub mod rewrite;
mod route;
pub mod stream;
pub mod stream_tap;
pub mod stream_usage;
pub mod template;
mod time;

pub use auth::{ApiKeys, AuthError, Permission, Permissions, strip_credentials};
pub use body::{AbrouteBody, Full};
pub use error::{ApiError, BoxError};
pub use extract::{Api, Extracted, MAX_METADATA_KEYS, MAX_REQUEST_MODELS, extract};
pub use layer::{AbrouteLayer, AbrouteService};
pub use manage::host::{
    CommitError, CommitFuture, Committed, EngineHost, Expect, RouterChange, RouterHost,
};
pub use manage::{DEFAULT_BASE_PATH, ManagementApi, ManagementService};
pub use models::models_list;
pub use options::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MODEL_PREFIX, LayerOptions, RouterOptions};
pub use plan::UpstreamAttempt;
pub use prepared::{AttemptSettings, Prepared};
pub use response::{
    ASSIGNED_VARIANT_HEADER, DecisionHeaders, MODEL_HEADER, ROUTE_HEADER, ROUTER_HEADER, Usage,
    VARIANT_HEADER, VERSION_HEADER, metadata_value, usage_of,
};
pub use rewrite::{GenerationParams, Precedence, Rewrite, rewrite, set_model};
pub use route::{Routed, Routing};
pub use stream::{Finish, Scan, SseScanner};
pub use template::{MessageTemplates, TemplateError};
pub use time::{Clock, MonotonicClock, NoTimer, TimedOut, Timer};

/// The HTTP guide's examples (`docs/http.md`), compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/http.md")]
pub struct HttpGuideDoctests;
