//! The app: the gateway's HTTP routes and the state their handlers share.
//!
//! `/healthz`, `/readyz` and `/metrics` are axum routes; everything else falls through to one
//! handler that sends `/router/...` to the management API ([`super::management`]), answers
//! `GET /v1/models` from the engine, and passes the rest to the chat layer (which answers what
//! it does not route).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use abroute::Engine;
use abroute_http::{AbrouteService, ApiKeys, Clock, ManagementApi, MonotonicClock, Permission};
use axum::body::Body;
use axum::extract::State;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::json;
use tower::Service;

use super::TokioTimer;
use super::management::management;
use crate::telemetry::{self, Observe};
use crate::upstream::{UpstreamBody, UpstreamService};

/// The chat path: the adapter's layer over the upstream, observed for metrics and logs.
pub(super) type ChatService = Observe<AbrouteService<UpstreamService, MonotonicClock, TokioTimer>>;

/// What the request handlers share.
pub(super) struct AppState {
    /// The engine, for reads (every write goes through the engine writer).
    pub(super) engine: Arc<Engine>,
    /// The management API.
    pub(super) api: Arc<ManagementApi>,
    /// With auth off: the internal key put on every management request.
    pub(super) internal_key: Option<HeaderValue>,
    /// What chat and `/v1/models` check; `None` with auth off.
    pub(super) chat_keys: Option<ApiKeys>,
    /// The chat path.
    pub(super) chat: ChatService,
    /// Whether `/readyz` says ready.
    pub(super) ready: AtomicBool,
    /// The largest body read.
    pub(super) max_body_bytes: usize,
    /// The prefix of router models (`inworld/`).
    pub(super) model_prefix: String,
}

/// The gateway's routes over `state`.
pub(super) fn app(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics_text))
        .fallback(fallback)
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response<Body> {
    let snapshot = state.engine.load();
    let ready = state.ready.load(Ordering::SeqCst);
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "routers": snapshot.len(),
        "version": snapshot.version(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body)
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response<Body> {
    let text = telemetry::render(&state.engine, MonotonicClock.now());
    let mut r = Response::new(Body::from(text));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// `v` as a JSON response with `status`.
pub(super) fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Everything that is not an operations endpoint: management, models, chat.
async fn fallback(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path();
    if path.starts_with("/router/") {
        return management(&state, req).await;
    }
    if req.method() == Method::GET && (path == "/v1/models" || path == "/models") {
        return models(&state, &req);
    }
    let mut chat = state.chat.clone();
    let Ok(response) = chat.call(req).await;
    response.map(Body::new::<abroute_http::AbrouteBody<UpstreamBody>>)
}

/// `GET /v1/models`: every router as a model, then the catalog's models
/// ([`abroute_http::models_list`]).
fn models(state: &AppState, req: &Request<Body>) -> Response<Body> {
    if let Some(keys) = &state.chat_keys
        && let Err(e) = keys.authorize(req.headers(), Permission::Chat)
    {
        return abroute_http::ApiError::from(e)
            .to_response()
            .map(Body::from);
    }
    let snapshot = state.engine.load();
    let list = abroute_http::models_list(&snapshot, state.engine.catalog(), &state.model_prefix);
    json_response(StatusCode::OK, &list)
}

/// An error in the Google API shape the management API answers with.
pub(super) fn google_error(status: StatusCode, grpc: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": {"code": status.as_u16(), "message": message, "status": grpc}}),
    )
}
