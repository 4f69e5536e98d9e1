//! The management API: Inworld's routerAPI, for any host.
//!
//! | operation | call | permission |
//! |---|---|---|
//! | create | `POST /router/v1/routers` (body: the router) | write |
//! | list | `GET /router/v1/routers?page_size=N&page_token=T` | read |
//! | get | `GET /router/v1/routers/{name}` | read |
//! | update | `PATCH /router/v1/routers/{name}?update_mask=displayName,routes,defaultRoute,defaults` | write |
//! | delete | `DELETE /router/v1/routers/{name}` | write |
//!
//! Each handler is a plain method `http::Request<Bytes> -> http::Response<Bytes>` on
//! [`ManagementApi`]; [`ManagementApi::handle`] dispatches by method and path, and
//! [`ManagementService`] is a tower service over it that reads the body with a limit. Names
//! are accepted bare (`my-router`) or as `routers/my-router`, in the body and in the path.
//!
//! **Every change is checked in full before anything happens**: the body is read with
//! [`RouterConfig::from_json`] (every structural problem at once) and compiled with the
//! configured [`ValidationOptions`] (every semantic problem). A 400 lists every problem with its
//! JSON path. Then the [`RouterStore`] saves the change, and only then does the engine swap, so
//! a change that was answered 200 survives a restart. A store that fails gets 503 and the
//! engine is left as it was. Writes are serialized by a mutex of the API (reads and routing
//! never take it).
//!
//! Create and update answer with a long-running operation that is already done:
//! `{"name": "operations/...", "metadata": {"router", "version", "operation"}, "done": true,
//! "response": <router>}`. Delete answers `{}`. Errors use the Google API shape that Inworld's
//! routerAPI (a gRPC gateway) uses: `{"error": {"code", "message", "status", "details":
//! [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field",
//! "description"}]}]}}`.
//!
//! `update_mask` may name `displayName`, `routes`, `defaultRoute` and `defaults` (either
//! protobuf spelling) or `*` for all four; any other path, `name` included, is refused. A field
//! in the mask and absent from the body is cleared. Without a mask, the fields present in the
//! body are updated (AIP-134).

pub mod host;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use abroute::{ConfigErrors, Engine, RouterConfig, ValidationOptions};
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use serde_json::{Map, Value, json};
use tower::Service;

use crate::auth::{ApiKeys, AuthError, Permission};
use crate::body::{Full, ReadError, content_length, read_limited};
use crate::options::DEFAULT_MAX_BODY_BYTES;

/// The default path prefix of the API.
pub const DEFAULT_BASE_PATH: &str = "/router/v1";
/// The default page size of `list`.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// The largest page size of `list`; larger requests are clamped.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Persistence for routers, implemented by the host.
///
/// The API calls it *before* the engine swaps, so what it saved is what a restart loads
/// ([`ManagementApi::load_from_store`]). Calls are made one at a time (writes are serialized)
/// and synchronously: a host whose storage is asynchronous blocks in place (the API runs on
/// whatever thread the host calls it from).
pub trait RouterStore: Send + Sync {
    /// Saves a router (created or updated), replacing any with the same name.
    ///
    /// # Errors
    ///
    /// When the router could not be saved; the change is then refused (503).
    fn save(&self, router: &RouterConfig) -> Result<(), StoreError>;

    /// Deletes the router `name` (bare). Deleting a router that is not stored is not an error.
    ///
    /// # Errors
    ///
    /// When the deletion could not be recorded; it is then refused (503).
    fn delete(&self, name: &str) -> Result<(), StoreError>;

    /// Every stored router, for startup.
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    fn load(&self) -> Result<Vec<RouterConfig>, StoreError>;
}

/// A store failure. Its message is for the host's logs; clients get a generic 503.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(String);

impl StoreError {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError(message.into())
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "router store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// An in-memory [`RouterStore`], **for tests only**: nothing survives the process. It can be
/// told to fail, to test the failure path.
#[derive(Debug, Default)]
pub struct MemoryStore {
    routers: Mutex<BTreeMap<String, RouterConfig>>,
    failing: AtomicBool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Makes every later call fail (or succeed again).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// The stored names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// The stored router `name`.
    pub fn get(&self, name: &str) -> Option<RouterConfig> {
        self.lock().get(name).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RouterConfig>> {
        self.routers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::new("the memory store was told to fail"))
        } else {
            Ok(())
        }
    }
}

impl RouterStore for MemoryStore {
    fn save(&self, router: &RouterConfig) -> Result<(), StoreError> {
        self.check()?;
        self.lock().insert(router.name.clone(), router.clone());
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.check()?;
        self.lock().remove(name);
        Ok(())
    }

    fn load(&self) -> Result<Vec<RouterConfig>, StoreError> {
        self.check()?;
        Ok(self.lock().values().cloned().collect())
    }
}

/// Why [`ManagementApi::load_from_store`] failed.
#[derive(Debug)]
pub enum LoadError {
    /// The store could not be read.
    Store(StoreError),
    /// A stored router is invalid (with every problem; paths start with its index).
    Config(ConfigErrors),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Store(e) => write!(f, "{e}"),
            LoadError::Config(e) => write!(f, "stored routers are invalid:\n{e}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// The management API over an engine and a store.
pub struct ManagementApi {
    engine: Arc<Engine>,
    store: Arc<dyn RouterStore>,
    keys: ApiKeys,
    validation: ValidationOptions,
    base: String,
    max_body_bytes: usize,
    writer: Mutex<()>,
}

impl std::fmt::Debug for ManagementApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementApi")
            .field("keys", &self.keys)
            .field("validation", &self.validation)
            .field("base", &self.base)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

/// A management error: status, gRPC status name, message, field violations.
struct MgmtError {
    status: StatusCode,
    grpc: &'static str,
    message: String,
    violations: Vec<(String, String)>,
}

impl MgmtError {
    fn new(status: StatusCode, grpc: &'static str, message: impl Into<String>) -> MgmtError {
        MgmtError {
            status,
            grpc,
            message: message.into(),
            violations: Vec::new(),
        }
    }

    fn invalid(message: impl Into<String>, violations: Vec<(String, String)>) -> MgmtError {
        MgmtError {
            violations,
            ..MgmtError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
        }
    }

    fn from_config(e: &ConfigErrors) -> MgmtError {
        let violations = e
            .errors()
            .iter()
            .map(|e| {
                let field = if e.path.is_root() {
                    String::new()
                } else {
                    e.path.to_string()
                };
                (field, e.kind.to_string())
            })
            .collect();
        let n = e.len();
        MgmtError::invalid(
            format!(
                "the router has {n} problem{}:\n{e}",
                if n == 1 { "" } else { "s" }
            ),
            violations,
        )
    }

    fn auth(e: AuthError) -> MgmtError {
        match e {
            AuthError::Unauthorized => MgmtError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "a valid API key is required: `Authorization: Basic <key>` or `Bearer <key>`",
            ),
            AuthError::Forbidden(p) => MgmtError::new(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                format!("this API key does not have the {} permission", p.as_str()),
            ),
        }
    }

    fn not_found(name: &str) -> MgmtError {
        MgmtError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("router {name:?} does not exist"),
        )
    }

    fn store(e: &StoreError) -> MgmtError {
        // The store's message may hold paths or hosts: it is for the host, not the client.
        let _ = e;
        MgmtError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the router store failed; nothing was changed",
        )
    }

    fn response(&self) -> Response<Bytes> {
        let mut error = json!({
            "code": self.status.as_u16(),
            "message": self.message,
            "status": self.grpc,
        });
        if !self.violations.is_empty() {
            let violations: Vec<Value> = self
                .violations
                .iter()
                .map(|(field, description)| json!({"field": field, "description": description}))
                .collect();
            error["details"] = json!([{
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": violations,
            }]);
        }
        let mut r = json_response(self.status, &json!({ "error": error }));
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"abroute\", Bearer realm=\"abroute\""),
            );
        }
        r
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn answer(result: Result<Response<Bytes>, MgmtError>) -> Response<Bytes> {
    result.unwrap_or_else(|e| e.response())
}

/// The value of query parameter `name` (or its camelCase spelling), percent-decoded.
fn query_param(req: &Request<Bytes>, names: &[&str]) -> Option<String> {
    let query = req.uri().query()?;
    let mut found = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if names.contains(&k) {
            found = Some(percent_decode(v));
        }
    }
    found
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_encode(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The mutable fields of a router, with their two spellings.
const FIELDS: [(&str, &str); 4] = [
    ("displayName", "display_name"),
    ("routes", "routes"),
    ("defaultRoute", "default_route"),
    ("defaults", "defaults"),
];

/// Where the request path points.
enum Target<'p> {
    Collection,
    Router(&'p str),
    Other,
}

impl ManagementApi {
    /// An API over `engine` and `store`, authorizing with `keys`, validating with the engine's
    /// own [`ValidationOptions`] ([`Engine::options`]), so that a change the API accepts is one
    /// the engine accepts.
    pub fn new(engine: Arc<Engine>, store: Arc<dyn RouterStore>, keys: ApiKeys) -> ManagementApi {
        let validation = *engine.options();
        ManagementApi {
            engine,
            store,
            keys,
            validation,
            base: DEFAULT_BASE_PATH.to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            writer: Mutex::new(()),
        }
    }

    /// Validates with `options` instead of the engine's (stricter options make the API refuse
    /// more than the engine would).
    pub fn validation(mut self, options: ValidationOptions) -> ManagementApi {
        self.validation = options;
        self
    }

    /// Serves under `base` instead of `/router/v1`.
    pub fn base_path(mut self, base: impl Into<String>) -> ManagementApi {
        let base = base.into();
        self.base = base.strip_suffix('/').unwrap_or(&base).to_owned();
        self
    }

    /// The largest body [`ManagementService`] reads (32 MiB by default).
    pub fn max_body_bytes(mut self, limit: usize) -> ManagementApi {
        self.max_body_bytes = limit;
        self
    }

    /// Loads every stored router into the engine, all or nothing (for startup).
    ///
    /// # Errors
    ///
    /// When the store cannot be read or a stored router is invalid; the engine is then
    /// unchanged.
    pub fn load_from_store(&self) -> Result<u64, LoadError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let routers = self.store.load().map_err(LoadError::Store)?;
        self.engine.replace_all(routers).map_err(LoadError::Config)
    }

    fn target<'p>(&self, path: &'p str) -> Target<'p> {
        let Some(rest) = path
            .strip_prefix(self.base.as_str())
            .and_then(|r| r.strip_prefix("/routers"))
        else {
            return Target::Other;
        };
        if rest.is_empty() || rest == "/" {
            return Target::Collection;
        }
        match rest.strip_prefix('/') {
            Some(name) => {
                let name = name.strip_suffix('/').unwrap_or(name);
                let name = name.strip_prefix("routers/").unwrap_or(name);
                if name.is_empty() || name.contains('/') {
                    Target::Other
                } else {
                    Target::Router(name)
                }
            }
            None => Target::Other,
        }
    }

    fn router_name<'r>(&self, req: &'r Request<Bytes>) -> Result<&'r str, MgmtError> {
        match self.target(req.uri().path()) {
            Target::Router(name) => Ok(name),
            _ => Err(MgmtError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "no such resource",
            )),
        }
    }

    fn authorize(&self, req: &Request<Bytes>, p: Permission) -> Result<(), MgmtError> {
        self.keys
            .authorize(req.headers(), p)
            .map_err(MgmtError::auth)
    }

    /// Dispatches by method and path: the five operations, 404 elsewhere, 405 for a method an
    /// endpoint does not have.
    pub fn handle(&self, req: Request<Bytes>) -> Response<Bytes> {
        let method_not_allowed = |allow: &'static str| {
            let mut r = MgmtError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNIMPLEMENTED",
                format!("method not allowed here; allowed: {allow}"),
            )
            .response();
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            r
        };
        match self.target(req.uri().path()) {
            Target::Collection => match *req.method() {
                Method::POST => self.create(req),
                Method::GET => self.list(req),
                _ => method_not_allowed("GET, POST"),
            },
            Target::Router(_) => match *req.method() {
                Method::GET => self.get(req),
                Method::PATCH => self.update(req),
                Method::DELETE => self.delete(req),
                _ => method_not_allowed("GET, PATCH, DELETE"),
            },
            Target::Other => {
                MgmtError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such resource").response()
            }
        }
    }

    /// `POST /router/v1/routers`: creates the router in the body (409 if it exists).
    pub fn create(&self, req: Request<Bytes>) -> Response<Bytes> {
        answer(self.try_create(&req))
    }

    fn try_create(&self, req: &Request<Bytes>) -> Result<Response<Bytes>, MgmtError> {
        self.authorize(req, Permission::Write)?;
        let text = std::str::from_utf8(req.body())
            .map_err(|_| MgmtError::invalid("the body is not UTF-8", Vec::new()))?;
        let config = RouterConfig::from_json(text).map_err(|e| MgmtError::from_config(&e))?;
        config
            .compile_with(&self.validation)
            .map_err(|e| MgmtError::from_config(&e))?;
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if self.engine.load().router(&config.name).is_some() {
            return Err(MgmtError::new(
                StatusCode::CONFLICT,
                "ALREADY_EXISTS",
                format!(
                    "router {:?} already exists; update it with PATCH",
                    config.name
                ),
            ));
        }
        self.commit(config, "create", None)
    }

    /// Saves, then swaps; on a (never expected) engine refusal, puts the store back.
    fn commit(
        &self,
        config: RouterConfig,
        operation: &str,
        previous: Option<RouterConfig>,
    ) -> Result<Response<Bytes>, MgmtError> {
        self.store.save(&config).map_err(|e| MgmtError::store(&e))?;
        let response_router = serde_json::to_value(&config).unwrap_or(Value::Null);
        let name = config.name.clone();
        match self.engine.upsert(config) {
            Ok(version) => Ok(json_response(
                StatusCode::OK,
                &json!({
                    "name": format!("operations/{operation}-{name}-v{version}"),
                    "metadata": {
                        "router": format!("routers/{name}"),
                        "version": version,
                        "operation": operation,
                    },
                    "done": true,
                    "response": response_router,
                }),
            )),
            Err(e) => {
                // The engine validates with its own options; put the store back as it was.
                let _ = match previous {
                    Some(p) => self.store.save(&p),
                    None => self.store.delete(&name),
                };
                Err(MgmtError::from_config(&e))
            }
        }
    }

    /// `GET /router/v1/routers?page_size=N&page_token=T`: routers in name order.
    pub fn list(&self, req: Request<Bytes>) -> Response<Bytes> {
        answer(self.try_list(&req))
    }

    fn try_list(&self, req: &Request<Bytes>) -> Result<Response<Bytes>, MgmtError> {
        self.authorize(req, Permission::Read)?;
        let page_size = match query_param(req, &["page_size", "pageSize"]) {
            None => DEFAULT_PAGE_SIZE,
            Some(s) => match s.parse::<i64>() {
                Ok(0) => DEFAULT_PAGE_SIZE,
                Ok(n) if n > 0 => usize::try_from(n)
                    .unwrap_or(MAX_PAGE_SIZE)
                    .min(MAX_PAGE_SIZE),
                _ => {
                    return Err(MgmtError::invalid(
                        "page_size must be a non-negative integer",
                        vec![("page_size".into(), format!("invalid value {s:?}"))],
                    ));
                }
            },
        };
        let after = match query_param(req, &["page_token", "pageToken"]) {
            None => None,
            Some(t) if t.is_empty() => None,
            Some(t) => Some(hex_decode(&t).ok_or_else(|| {
                MgmtError::invalid(
                    "page_token is not a token this API gave",
                    vec![("page_token".into(), "invalid page token".into())],
                )
            })?),
        };
        let snapshot = self.engine.load();
        let names = snapshot.names();
        let start = match &after {
            Some(a) => names.partition_point(|n| *n <= a.as_str()),
            None => 0,
        };
        let page: Vec<&str> = names.iter().skip(start).take(page_size).copied().collect();
        let more = start + page.len() < names.len();
        let routers: Vec<Value> = page
            .iter()
            .filter_map(|n| snapshot.router(n))
            .map(|r| serde_json::to_value(r.config()).unwrap_or(Value::Null))
            .collect();
        let next = match (more, page.last()) {
            (true, Some(last)) => hex_encode(last),
            _ => String::new(),
        };
        Ok(json_response(
            StatusCode::OK,
            &json!({ "routers": routers, "next_page_token": next }),
        ))
    }

    /// `GET /router/v1/routers/{name}`.
    pub fn get(&self, req: Request<Bytes>) -> Response<Bytes> {
        answer(self.try_get(&req))
    }

    fn try_get(&self, req: &Request<Bytes>) -> Result<Response<Bytes>, MgmtError> {
        self.authorize(req, Permission::Read)?;
        let name = self.router_name(req)?;
        let snapshot = self.engine.load();
        let router = snapshot
            .router(name)
            .ok_or_else(|| MgmtError::not_found(name))?;
        Ok(json_response(
            StatusCode::OK,
            &serde_json::to_value(router.config()).unwrap_or(Value::Null),
        ))
    }

    /// `PATCH /router/v1/routers/{name}?update_mask=...`.
    pub fn update(&self, req: Request<Bytes>) -> Response<Bytes> {
        answer(self.try_update(&req))
    }

    fn try_update(&self, req: &Request<Bytes>) -> Result<Response<Bytes>, MgmtError> {
        self.authorize(req, Permission::Write)?;
        let name = self.router_name(req)?;
        let body: Value = serde_json::from_slice(req.body()).map_err(|e| {
            MgmtError::invalid(
                format!("the body is not valid JSON: {e}"),
                vec![(String::new(), e.to_string())],
            )
        })?;
        let Value::Object(body) = body else {
            return Err(MgmtError::invalid(
                "the body must be a router object",
                vec![(String::new(), "expected an object".into())],
            ));
        };
        let mut violations = Vec::new();
        for key in body.keys() {
            let known = key == "name" || FIELDS.iter().any(|(a, b)| key == a || key == b);
            if !known {
                violations.push((
                    key.clone(),
                    format!(
                        "unknown field `{key}`, expected one of `name`, `displayName`, `routes`, \
                         `defaultRoute`, `defaults`"
                    ),
                ));
            }
        }
        for (a, b) in FIELDS {
            if a != b && body.contains_key(a) && body.contains_key(b) {
                violations.push((
                    a.to_owned(),
                    format!("`{a}` and `{b}` are two spellings of the same field; give only one"),
                ));
            }
        }
        match body.get("name") {
            None | Some(Value::Null) => {}
            Some(Value::String(n)) if n.strip_prefix("routers/").unwrap_or(n) == name => {}
            Some(_) => violations.push((
                "name".into(),
                format!("the name cannot change; it must be {name:?} as in the path, or absent"),
            )),
        }
        let mask: Vec<(&str, &str)> = match query_param(req, &["update_mask", "updateMask"]) {
            Some(m) => {
                let mut fields = Vec::new();
                for path in m.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    if path == "*" {
                        fields.extend(FIELDS);
                    } else if let Some(f) = FIELDS.iter().find(|(a, b)| path == *a || path == *b) {
                        fields.push(*f);
                    } else {
                        violations.push((
                            "update_mask".into(),
                            format!(
                                "`{path}` cannot be updated; the mask may name displayName, \
                                 routes, defaultRoute and defaults"
                            ),
                        ));
                    }
                }
                fields
            }
            None => FIELDS
                .into_iter()
                .filter(|(a, b)| body.contains_key(*a) || body.contains_key(*b))
                .collect(),
        };
        if !violations.is_empty() {
            let n = violations.len();
            return Err(MgmtError::invalid(
                format!(
                    "the update has {n} problem{}",
                    if n == 1 { "" } else { "s" }
                ),
                violations,
            ));
        }
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = self.engine.load();
        let existing = snapshot
            .router(name)
            .ok_or_else(|| MgmtError::not_found(name))?
            .config()
            .clone();
        drop(snapshot);
        let mut merged: Map<String, Value> = match serde_json::to_value(&existing) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        for (a, b) in mask {
            merged.remove(a);
            merged.remove(b);
            if let Some((k, v)) = body.get_key_value(a).or_else(|| body.get_key_value(b)) {
                merged.insert(k.clone(), v.clone());
            }
        }
        let config = RouterConfig::from_value(&Value::Object(merged))
            .map_err(|e| MgmtError::from_config(&e))?;
        config
            .compile_with(&self.validation)
            .map_err(|e| MgmtError::from_config(&e))?;
        self.commit(config, "update", Some(existing))
    }

    /// `DELETE /router/v1/routers/{name}`: answers `{}`.
    pub fn delete(&self, req: Request<Bytes>) -> Response<Bytes> {
        answer(self.try_delete(&req))
    }

    fn try_delete(&self, req: &Request<Bytes>) -> Result<Response<Bytes>, MgmtError> {
        self.authorize(req, Permission::Write)?;
        let name = self.router_name(req)?;
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if self.engine.load().router(name).is_none() {
            return Err(MgmtError::not_found(name));
        }
        self.store.delete(name).map_err(|e| MgmtError::store(&e))?;
        self.engine.remove(name);
        Ok(json_response(StatusCode::OK, &json!({})))
    }
}

/// The management API as a tower service: refuses a request without a valid key (401) before
/// reading its body, reads the body (413 past the limit), then [`ManagementApi::handle`].
/// Always ready; never fails.
#[derive(Debug, Clone)]
pub struct ManagementService {
    api: Arc<ManagementApi>,
}

impl ManagementService {
    /// A service over `api`.
    pub fn new(api: Arc<ManagementApi>) -> ManagementService {
        ManagementService { api }
    }
}

impl<B> Service<Request<B>> for ManagementService
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    type Response = Response<Full>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Full>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let api = Arc::clone(&self.api);
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            // Without a valid key, refuse before reading a body of up to the limit.
            if let Err(AuthError::Unauthorized) =
                api.keys.authorize(&parts.headers, Permission::Read)
            {
                return Ok(MgmtError::auth(AuthError::Unauthorized)
                    .response()
                    .map(Full::new));
            }
            let limit = api.max_body_bytes;
            let declared = content_length(&parts.headers);
            let response = match read_limited(body, limit, declared).await {
                Ok(bytes) => api.handle(Request::from_parts(parts, bytes)),
                Err(ReadError::TooLarge) => MgmtError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RESOURCE_EXHAUSTED",
                    format!("the body is larger than the limit of {limit} bytes"),
                )
                .response(),
                Err(ReadError::Failed) => {
                    MgmtError::invalid("the body could not be read", Vec::new()).response()
                }
            };
            Ok(response.map(Full::new))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for s in ["", "a", "my-router-2"] {
            assert_eq!(hex_decode(&hex_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode("abc"), None);
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode("a%2Cb+c%zz"), "a,b c%zz");
    }
}
