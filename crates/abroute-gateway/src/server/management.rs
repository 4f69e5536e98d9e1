//! The management API as the gateway serves it, and the one function that builds it.
//!
//! [`management_api`] builds the adapter's API over the engine, the router store and the keys;
//! [`management`] serves `/router/...` with it, adding what the gateway does around it: auth off
//! in the demo mode (the internal key put on the request), routers of the watched directory
//! refused ([`GatewayHost`]'s `may_change`), an unchanged re-create answered as done (so the
//! seed's Step 1 works on the preloaded router), writes off the async threads, and the
//! `abroute_config_changes_total{source="api"}` counts and change logs.
//!
//! TRANSITIONAL (issue 12): the adapter on this branch still has the synchronous
//! `ManagementApi::new(engine, Arc<dyn abroute_http::RouterStore>, keys)` that writes a store and
//! the engine itself. Until the adapter's host-based API is merged, [`management_api`] hands it
//! the gateway's async store through [`BlockingStore`], and [`management`] still finds the target
//! router by re-parsing the path ([`management_target`]) and answers unchanged creates itself
//! ([`unchanged_create`]). At the merge, [`management_api`] becomes
//! `ManagementApi::new(engine, host, keys).validation(..).max_body_bytes(..).idempotent_create(true)`,
//! which sends every change through [`GatewayHost`] and the engine writer, and those three pieces
//! go.

use std::sync::Arc;

use abroute::{Engine, RouterConfig, ValidationOptions};
use abroute_http::{ApiKeys, ManagementApi, Permission, RouterHost};
use axum::body::Body;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::routes::{AppState, google_error, json_response};
use crate::host::GatewayHost;
use crate::store::{RouterStore, StoreError};

/// The management API of a gateway: over `engine`, recording changes through `host` (the
/// engine writer and the router store), authorizing with `keys`, validating with `validation`,
/// reading bodies up to `max_body_bytes`.
///
/// TRANSITIONAL (see the module doc): until the adapter's host-based API is merged, the API
/// writes `store` (through [`BlockingStore`]) and then the engine itself, and `host` is asked
/// only `may_change`, by [`management`].
pub(super) fn management_api(
    engine: &Arc<Engine>,
    host: &Arc<GatewayHost>,
    store: &Arc<dyn RouterStore>,
    keys: &ApiKeys,
    validation: ValidationOptions,
    max_body_bytes: usize,
) -> Arc<ManagementApi> {
    let _ = host;
    let store = Arc::new(BlockingStore::new(Arc::clone(store)));
    Arc::new(
        ManagementApi::new(Arc::clone(engine), store, keys.clone())
            .validation(validation)
            .max_body_bytes(max_body_bytes),
    )
}

/// TRANSITIONAL (removed at the merge with the adapter's host-based `ManagementApi`): the
/// adapter's synchronous `abroute_http::RouterStore` over the gateway's async [`RouterStore`].
/// Each call blocks its thread on the store, so it must come from a blocking thread:
/// [`management`] runs every write of the API on tokio's blocking pool, and reads never touch
/// the store.
struct BlockingStore {
    store: Arc<dyn RouterStore>,
    runtime: tokio::runtime::Handle,
}

impl BlockingStore {
    /// Over `store`, on the current runtime.
    fn new(store: Arc<dyn RouterStore>) -> BlockingStore {
        BlockingStore {
            store,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

fn adapter_error(e: StoreError) -> abroute_http::StoreError {
    match e {
        StoreError::Unavailable(m) => abroute_http::StoreError::new(m),
    }
}

impl abroute_http::RouterStore for BlockingStore {
    fn save(&self, router: &RouterConfig) -> Result<(), abroute_http::StoreError> {
        self.runtime
            .block_on(self.store.put(router))
            .map_err(adapter_error)
    }

    fn delete(&self, name: &str) -> Result<(), abroute_http::StoreError> {
        self.runtime
            .block_on(self.store.delete(name))
            .map_err(adapter_error)
    }

    fn load(&self) -> Result<Vec<RouterConfig>, abroute_http::StoreError> {
        self.runtime
            .block_on(self.store.load_all())
            .map(|stored| stored.routers)
            .map_err(adapter_error)
    }
}

/// The management API, with the gateway's additions: auth off in the demo mode, an unchanged
/// re-create answered as done (so the seed's Step 1 works on the preloaded router), routers of
/// the watched directory protected, and the store's disk writes off the async threads.
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
    let target = management_target(&method, parts.uri.path(), &bytes);
    let operation = match method {
        Method::POST => "create",
        Method::PATCH => "update",
        Method::DELETE => "delete",
        _ => "read",
    };
    if let Some(name) = &target {
        let authorized = state
            .keys
            .authorize(&parts.headers, Permission::Write)
            .is_ok();
        if authorized && let Err(reason) = state.host.may_change(name) {
            return google_error(StatusCode::CONFLICT, "FAILED_PRECONDITION", &reason);
        }
        if authorized
            && method == Method::POST
            && let Some(response) = unchanged_create(state, &bytes)
        {
            return response;
        }
    }
    let req = Request::from_parts(parts, Bytes::clone(&bytes));
    let api = Arc::clone(&state.api);
    let response = if method == Method::GET {
        api.handle(req)
    } else {
        match tokio::task::spawn_blocking(move || api.handle(req)).await {
            Ok(r) => r,
            Err(_) => {
                return google_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "the change could not be applied",
                );
            }
        }
    };
    if operation != "read" {
        let ok = response.status().is_success();
        metrics::counter!(
            "abroute_config_changes_total",
            "source" => "api",
            "result" => if ok { "applied" } else { "rejected" }
        )
        .increment(1);
        let status = response.status().as_u16();
        let router = target.as_deref().unwrap_or("");
        if ok {
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
    response.map(Body::from)
}

/// TRANSITIONAL (replaced by the adapter's `idempotent_create(true)` at the merge): a create of
/// a router that is loaded with exactly this config, answered as done, unchanged.
fn unchanged_create(state: &AppState, body: &[u8]) -> Option<Response<Body>> {
    let text = std::str::from_utf8(body).ok()?;
    let config = RouterConfig::from_json(text).ok()?;
    let snapshot = state.engine.load();
    let loaded = snapshot.router(&config.name)?;
    if *loaded.config() != config {
        return None;
    }
    let version = loaded.compiled().version();
    let name = &config.name;
    Some(json_response(
        StatusCode::OK,
        &json!({
            "name": format!("operations/create-{name}-v{version}"),
            "metadata": {
                "router": format!("routers/{name}"),
                "version": version,
                "operation": "create",
                "unchanged": true,
            },
            "done": true,
            "response": serde_json::to_value(&config).unwrap_or_default(),
        }),
    ))
}

/// TRANSITIONAL (replaced by the adapter asking [`RouterHost::may_change`] at the merge): the
/// router name a management request is about, if it names one.
fn management_target(method: &Method, path: &str, body: &[u8]) -> Option<String> {
    let rest = path.strip_prefix("/router/v1/routers")?;
    let rest = rest.trim_matches('/');
    if rest.is_empty() {
        if *method != Method::POST {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct Named {
            name: Option<String>,
        }
        let named: Named = serde_json::from_slice(body).ok()?;
        let name = named.name?;
        return Some(name.strip_prefix("routers/").unwrap_or(&name).to_owned());
    }
    if *method == Method::GET {
        return None;
    }
    Some(rest.strip_prefix("routers/").unwrap_or(rest).to_owned())
}
