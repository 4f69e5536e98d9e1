//! The management API as the gateway serves it, and the one function that builds it.
//!
//! [`management_api`] builds the adapter's API over the engine and the gateway's
//! [`GatewayHost`]: every change goes through the host, which refuses routers the watched
//! directory owns (`may_change`) and commits the others through the engine writer (the store
//! first, then the engine, as one step). The API answers an unchanged re-create as done
//! (`idempotent_create`), so the seed's Step 1 works on the preloaded router.
//!
//! [`management`] serves `/router/...` with it and adds what is the gateway's own: the body
//! limit, auth off in the demo mode (the internal key put on the request), and the
//! `abroute_config_changes_total{source="api"}` counts and change logs.

use std::sync::Arc;

use abroute::{Engine, ValidationOptions};
use abroute_http::{ApiKeys, ManagementApi, RouterHost};
use axum::body::Body;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Method, Request, Response, StatusCode};

use super::routes::{AppState, google_error};
use crate::host::GatewayHost;

/// The management API of a gateway: over `engine`, committing changes through `host` (the
/// engine writer and the router store), authorizing with `keys`, validating with `validation`,
/// reading bodies up to `max_body_bytes`, and answering an unchanged re-create as done.
pub(super) fn management_api(
    engine: &Arc<Engine>,
    host: &Arc<GatewayHost>,
    keys: &ApiKeys,
    validation: ValidationOptions,
    max_body_bytes: usize,
) -> Arc<ManagementApi> {
    let host: Arc<dyn RouterHost> = Arc::clone(host) as Arc<dyn RouterHost>;
    Arc::new(
        ManagementApi::new(Arc::clone(engine), host, keys.clone())
            .validation(validation)
            .max_body_bytes(max_body_bytes)
            .idempotent_create(true),
    )
}

/// The management API, with the gateway's additions: the body limit, auth off in the demo
/// mode, and the change counts and logs.
pub(super) async fn management(state: &Arc<AppState>, req: Request<Body>) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, state.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return google_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RESOURCE_EXHAUSTED",
                &format!(
                    "the body is larger than the limit of {} bytes",
                    state.max_body_bytes
                ),
            );
        }
    };
    if let Some(internal) = &state.internal_key {
        abroute_http::strip_credentials(&mut parts.headers);
        parts.headers.insert(AUTHORIZATION, internal.clone());
    }
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let response = state
        .api
        .handle(Request::from_parts(parts, Bytes::clone(&bytes)))
        .await;
    if let Some(operation) = operation(&method) {
        log_change(state, operation, &path, &bytes, &response);
    }
    response.map(Body::from)
}

/// The kind of change a method makes, or `None` for a read.
fn operation(method: &Method) -> Option<&'static str> {
    match *method {
        Method::POST => Some("create"),
        Method::PATCH => Some("update"),
        Method::DELETE => Some("delete"),
        _ => None,
    }
}

/// Counts a change in `abroute_config_changes_total{source="api"}` (`applied`, `refused` for a
/// router the watched directory owns, `rejected` otherwise) and logs it.
fn log_change(
    state: &AppState,
    operation: &str,
    path: &str,
    body: &[u8],
    response: &Response<Bytes>,
) {
    let status = response.status();
    let result = if status.is_success() {
        "applied"
    } else if status == StatusCode::CONFLICT
        && grpc_status(response.body()) == "FAILED_PRECONDITION"
    {
        "refused"
    } else {
        "rejected"
    };
    metrics::counter!("abroute_config_changes_total", "source" => "api", "result" => result)
        .increment(1);
    let router = logged_router(path, body).unwrap_or_default();
    let status = status.as_u16();
    if result == "applied" {
        tracing::info!(
            router,
            operation,
            status,
            version = state.engine.version(),
            source = "api",
            "router changed"
        );
    } else {
        tracing::info!(
            router,
            operation,
            status,
            source = "api",
            "router change refused"
        );
    }
}

/// The `error.status` of a Google-shaped error answer (empty when there is none).
fn grpc_status(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["status"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The router a change names, for the change log only (the API itself decides what the request
/// is about): the path's name, or for a create the body's `name`.
fn logged_router(path: &str, body: &[u8]) -> Option<String> {
    let rest = path.strip_prefix("/router/v1/routers")?.trim_matches('/');
    let name = if rest.is_empty() {
        #[derive(serde::Deserialize)]
        struct Named {
            name: Option<String>,
        }
        serde_json::from_slice::<Named>(body).ok()?.name?
    } else {
        rest.to_owned()
    };
    Some(name.strip_prefix("routers/").unwrap_or(&name).to_owned())
}
