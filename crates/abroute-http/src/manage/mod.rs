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
//! Each handler is an async method `http::Request<Bytes> -> http::Response<Bytes>` on
//! [`ManagementApi`]; [`ManagementApi::handle`] dispatches by method and path, and
//! [`ManagementService`] is a tower service over it that reads the body with a limit. Names
//! are accepted bare (`my-router`) or as `routers/my-router`, in the body and in the path.
//!
//! **Every change is checked in full before anything happens**: the body is read with
//! [`RouterConfig::from_json`] (every structural problem at once) and compiled with the
//! configured [`ValidationOptions`] (every semantic problem). A 400 lists every problem with its
//! JSON path. Then the change goes to the API's [`RouterHost`] ([`host`]) as one
//! [`RouterChange`] with a compare-and-set [`Expect`]ation: a create expects the router absent,
//! an update and a delete the version they read. The host makes it durable and live (a store
//! first, then the engine; [`EngineHost`] straight into an engine), so a change that was
//! answered 200 survives a restart of a host that persists. The API reads routers from the
//! engine's snapshot and never writes the engine or a store itself. A host that cannot record
//! the change gets 503 and nothing changes; an update that lost a race with another writer is
//! merged again onto what is there now (a few times at most). Before an authorized write the
//! host is asked whether the router may change at all ([`RouterHost::may_change`]: 409
//! `FAILED_PRECONDITION` with its reason).
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
//!
//! With [`ManagementApi::idempotent_create`], creating a router that is loaded with exactly the
//! config given answers done, unchanged (`"unchanged": true` in the operation's metadata),
//! instead of 409: a setup script can run its create again.

pub mod host;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
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
#[cfg(doc)]
use host::EngineHost;
use host::{CommitError, Expect, RouterChange, RouterHost};

/// The default path prefix of the API.
pub const DEFAULT_BASE_PATH: &str = "/router/v1";
/// The default page size of `list`.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// The largest page size of `list`; larger requests are clamped.
pub const MAX_PAGE_SIZE: usize = 1000;

/// How many times an update is merged again onto a router that changed meanwhile (and a
/// delete retried on its new version) before the API gives up with 409 `ABORTED`. Each try
/// loses only to a write that landed meanwhile, so with two writers on one router a try fails
/// with a chance of about one half: four tries left one PATCH in about sixteen aborted in a
/// storm from two replicas, sixteen leave about one in sixty thousand.
const MAX_WRITE_TRIES: usize = 16;

/// The management API: reads routers from an engine, hands changes to a [`RouterHost`].
pub struct ManagementApi {
    engine: Arc<Engine>,
    host: Arc<dyn RouterHost>,
    keys: ApiKeys,
    validation: ValidationOptions,
    base: String,
    max_body_bytes: usize,
    idempotent_create: bool,
}

impl std::fmt::Debug for ManagementApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementApi")
            .field("keys", &self.keys)
            .field("validation", &self.validation)
            .field("base", &self.base)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("idempotent_create", &self.idempotent_create)
            .finish_non_exhaustive()
    }
}

/// 401 `UNAUTHENTICATED` (with the schemes to use) or 403 `PERMISSION_DENIED`: the one mapping
/// of [`AuthError`] to an answer in the management API's Google shape.
impl From<AuthError> for MgmtError {
    fn from(e: AuthError) -> MgmtError {
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

    fn not_found(name: &str) -> MgmtError {
        MgmtError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("router {name:?} does not exist"),
        )
    }

    /// 503: the host could not record the change. Its message may hold paths or hosts: it
    /// is for the host's logs, not the client.
    fn unavailable() -> MgmtError {
        MgmtError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the router store is unreachable or failed; nothing was changed",
        )
    }

    fn already_exists(name: &str) -> MgmtError {
        MgmtError::new(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("router {name:?} already exists; update it with PATCH"),
        )
    }

    /// 409 `ABORTED`: the router changed under every try of a write.
    fn aborted(name: &str) -> MgmtError {
        MgmtError::new(
            StatusCode::CONFLICT,
            "ABORTED",
            format!("router {name:?} kept changing while this change was made; try again"),
        )
    }

    /// What a failed commit answers (a conflict is each operation's own).
    fn commit(e: CommitError, name: &str) -> MgmtError {
        match e {
            CommitError::Conflict { current: None } => MgmtError::not_found(name),
            CommitError::Conflict { current: Some(_) } => MgmtError::aborted(name),
            CommitError::Unavailable(_) => MgmtError::unavailable(),
            CommitError::Invalid(e) => MgmtError::from_config(&e),
        }
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
    /// `/routers/{name}/experiment`: the host's experiment readout.
    Experiment(&'p str),
    Other,
}

impl ManagementApi {
    /// An API reading routers from `engine` and handing changes to `host`, authorizing with
    /// `keys`, validating with the engine's own [`ValidationOptions`] ([`Engine::options`]), so
    /// that a change the API accepts is one the engine accepts.
    pub fn new(engine: Arc<Engine>, host: Arc<dyn RouterHost>, keys: ApiKeys) -> ManagementApi {
        let validation = *engine.options();
        ManagementApi {
            engine,
            host,
            keys,
            validation,
            base: DEFAULT_BASE_PATH.to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            idempotent_create: false,
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

    /// Answers a create of a router that is loaded with exactly the config given as done,
    /// unchanged (`"unchanged": true` in the operation's metadata, the loaded version), instead
    /// of 409 (off by default).
    pub fn idempotent_create(mut self, on: bool) -> ManagementApi {
        self.idempotent_create = on;
        self
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
                if let Some(router) = name.strip_suffix("/experiment")
                    && !router.is_empty()
                    && !router.contains('/')
                {
                    return Target::Experiment(router);
                }
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
        Ok(self.keys.authorize(req.headers(), p)?)
    }

    /// Whether the host lets router `name` change (asked of authorized writes only).
    fn may_change(&self, name: &str) -> Result<(), MgmtError> {
        self.host
            .may_change(name)
            .map_err(|reason| MgmtError::new(StatusCode::CONFLICT, "FAILED_PRECONDITION", reason))
    }

    /// Dispatches by method and path: the five operations, 404 elsewhere, 405 for a method an
    /// endpoint does not have.
    pub async fn handle(&self, req: Request<Bytes>) -> Response<Bytes> {
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
                Method::POST => self.create(req).await,
                Method::GET => self.list(req).await,
                _ => method_not_allowed("GET, POST"),
            },
            Target::Router(_) => match *req.method() {
                Method::GET => self.get(req).await,
                Method::PATCH => self.update(req).await,
                Method::DELETE => self.delete(req).await,
                _ => method_not_allowed("GET, PATCH, DELETE"),
            },
            Target::Experiment(name) => match *req.method() {
                Method::GET => answer(self.try_experiment(&req, name)),
                _ => method_not_allowed("GET"),
            },
            Target::Other => {
                MgmtError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such resource").response()
            }
        }
    }

    /// `GET /router/v1/routers/{name}/experiment` (read permission): the host's experiment
    /// readout of the router ([`RouterHost::experiment`]); 404 for an unknown router, or a
    /// host that keeps none.
    fn try_experiment(
        &self,
        req: &Request<Bytes>,
        name: &str,
    ) -> Result<Response<Bytes>, MgmtError> {
        self.authorize(req, Permission::Read)?;
        if self.engine.load().router(name).is_none() {
            return Err(MgmtError::not_found(name));
        }
        let value = self.host.experiment(name).ok_or_else(|| {
            MgmtError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("no experiment readout of router {name:?} here: no request was booked yet, or the host keeps none"),
            )
        })?;
        Ok(json_response(StatusCode::OK, &value))
    }

    /// `POST /router/v1/routers`: creates the router in the body (409 if it exists).
    pub async fn create(&self, req: Request<Bytes>) -> Response<Bytes> {
        answer(self.try_create(&req).await)
    }

    async fn try_create(&self, req: &Request<Bytes>) -> Result<Response<Bytes>, MgmtError> {
        self.authorize(req, Permission::Write)?;
        // The name read leniently, so that a router the host protects is refused as such
        // whatever else is wrong with the body.
        if let Some(name) = lenient_name(req.body()) {
            self.may_change(&name)?;
        }
        let text = std::str::from_utf8(req.body())
            .map_err(|_| MgmtError::invalid("the body is not UTF-8", Vec::new()))?;
        let config = RouterConfig::from_json(text).map_err(|e| MgmtError::from_config(&e))?;
        if self.idempotent_create
            && let Some(response) = self.unchanged(&config)
        {
            return Ok(response);
        }
        config
            .compile_with(&self.validation)
            .map_err(|e| MgmtError::from_config(&e))?;
        if self.engine.load().router(&config.name).is_some() {
            return Err(MgmtError::already_exists(&config.name));
        }
        let name = config.name.clone();
        let response_router = serde_json::to_value(&config).unwrap_or(Value::Null);
        let change = RouterChange::Put {
            config,
            expect: Expect::Absent,
        };
        match self.host.commit(change).await {
            Ok(c) => Ok(operation(
                "create",
                &name,
                c.version,
                response_router,
                false,
            )),
            Err(CommitError::Conflict { .. }) => Err(MgmtError::already_exists(&name)),
            Err(e) => Err(MgmtError::commit(e, &name)),
        }
    }

    /// The answer to a create of a router loaded with exactly `config`, if it is.
    fn unchanged(&self, config: &RouterConfig) -> Option<Response<Bytes>> {
        let snapshot = self.engine.load();
        let loaded = snapshot.router(&config.name)?;
        if loaded.config() != config {
            return None;
        }
        let version = loaded.compiled().version();
        let router = serde_json::to_value(config).unwrap_or(Value::Null);
        Some(operation("create", &config.name, version, router, true))
    }

    /// `GET /router/v1/routers?page_size=N&page_token=T`: routers in name order.
    pub async fn list(&self, req: Request<Bytes>) -> Response<Bytes> {
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
        // One more than the page, to know whether there is a next one.
        let mut page: Vec<&str> = snapshot
            .names_after(after.as_deref())
            .take(page_size.saturating_add(1))
            .collect();
        let more = page.len() > page_size;
        page.truncate(page_size);
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
    pub async fn get(&self, req: Request<Bytes>) -> Response<Bytes> {
        answer(self.try_get(&req))
    }

    fn try_get(&self, req: &Request<Bytes>) -> Result<Response<Bytes>, MgmtError> {
        self.authorize(req, Permission::Read)?;
        let name = self.router_name(req)?;
        let snapshot = self.engine.load();
        let router = snapshot
            .router(name)
            .ok_or_else(|| MgmtError::not_found(name))?;
        let value = serde_json::to_value(router.config()).unwrap_or(Value::Null);
        Ok(json_response(
            StatusCode::OK,
            &with_etag(value, router.compiled().version()),
        ))
    }

    /// `PATCH /router/v1/routers/{name}?update_mask=...`.
    pub async fn update(&self, req: Request<Bytes>) -> Response<Bytes> {
        answer(self.try_update(&req).await)
    }

    async fn try_update(&self, req: &Request<Bytes>) -> Result<Response<Bytes>, MgmtError> {
        self.authorize(req, Permission::Write)?;
        let name = self.router_name(req)?;
        self.may_change(name)?;
        let update = update_request(req, name)?;
        let etag = match update.body.get("etag") {
            None | Some(Value::Null) => None,
            Some(Value::String(e)) => Some(etag_version(e)?),
            Some(other) => Some(etag_version(&other.to_string())?),
        };
        for _ in 0..MAX_WRITE_TRIES {
            // What the router is now; the merge is made again onto a newer version when the
            // router changed before the commit.
            let (existing, version) = {
                let snapshot = self.engine.load();
                let loaded = snapshot
                    .router(name)
                    .ok_or_else(|| MgmtError::not_found(name))?;
                (loaded.config().clone(), loaded.compiled().version())
            };
            if let Some(e) = etag.filter(|e| *e != version) {
                return Err(stale_etag(name, e, Some(version)));
            }
            let config = merge(&existing, &update)?;
            config
                .compile_with(&self.validation)
                .map_err(|e| MgmtError::from_config(&e))?;
            let response_router = serde_json::to_value(&config).unwrap_or(Value::Null);
            let change = RouterChange::Put {
                config,
                expect: Expect::Version(version),
            };
            match self.host.commit(change).await {
                Ok(c) => return Ok(operation("update", name, c.version, response_router, false)),
                // With an etag, the router had to be at exactly that version.
                Err(CommitError::Conflict { current }) if etag.is_some() => {
                    return Err(stale_etag(name, version, current));
                }
                Err(CommitError::Conflict { current: Some(_) }) => {}
                Err(e) => return Err(MgmtError::commit(e, name)),
            }
        }
        Err(MgmtError::aborted(name))
    }
}

/// The `name` of a create's body, read leniently (any JSON object with a string `name`;
/// other members are not looked at), bare.
fn lenient_name(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        name: Option<String>,
        #[serde(rename = "displayName", alias = "display_name")]
        display_name: Option<String>,
    }
    let named = serde_json::from_slice::<Named>(body).ok()?;
    match named.name {
        Some(name) => Some(name.strip_prefix("routers/").unwrap_or(&name).to_owned()),
        // The name reading derives (abroute::name_from_display).
        None => abroute::name_from_display(&named.display_name?),
    }
}

/// A create's or an update's answer: a long-running operation that is already done.
fn operation(
    operation: &str,
    name: &str,
    version: u64,
    router: Value,
    unchanged: bool,
) -> Response<Bytes> {
    let mut metadata = json!({
        "router": format!("routers/{name}"),
        "version": version,
        "operation": operation,
    });
    if unchanged {
        metadata["unchanged"] = Value::Bool(true);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "name": format!("operations/{operation}-{name}-v{version}"),
            "metadata": metadata,
            "done": true,
            "response": with_etag(router, version),
        }),
    )
}

/// A router resource with its `etag` (AIP-154): the version it is served at, as a string. A
/// PATCH (in the body) or a DELETE (`?etag=`) that carries one is made only if the router is
/// still at that version, else refused with 409 `ABORTED`.
fn with_etag(mut router: Value, version: u64) -> Value {
    if let Value::Object(m) = &mut router {
        m.insert("etag".into(), Value::String(version.to_string()));
    }
    router
}

/// The version an `etag` names; `Err` (400) when it is not one this API gave.
fn etag_version(etag: &str) -> Result<u64, MgmtError> {
    etag.trim_matches('"').parse().map_err(|_| {
        MgmtError::invalid(
            format!("the etag {etag:?} is not one this API gave"),
            vec![("etag".into(), "expected the etag of a GET".into())],
        )
    })
}

/// 409 `ABORTED` for a write whose etag is not the router's now.
fn stale_etag(name: &str, etag: u64, current: Option<u64>) -> MgmtError {
    let now = current.map_or_else(|| "deleted".to_owned(), |v| format!("at etag \"{v}\""));
    MgmtError::new(
        StatusCode::CONFLICT,
        "ABORTED",
        format!("router {name:?} changed since etag \"{etag}\" (it is {now}); read it again"),
    )
}

/// What an update changes: the fields of its mask (or, without one, those in the body), to the
/// body's values.
struct Update {
    body: Map<String, Value>,
    /// Each field in both spellings.
    mask: Vec<(&'static str, &'static str)>,
}

/// The update a PATCH asks for, with everything wrong with it at once.
fn update_request(req: &Request<Bytes>, name: &str) -> Result<Update, MgmtError> {
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
        let known =
            key == "name" || key == "etag" || FIELDS.iter().any(|(a, b)| key == a || key == b);
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
    Ok(Update { body, mask })
}

/// `existing` with the masked fields taken from the update's body (a field absent from the body
/// is cleared), read back as a router.
fn merge(existing: &RouterConfig, update: &Update) -> Result<RouterConfig, MgmtError> {
    let Update { body, mask } = update;
    let mut merged: Map<String, Value> = match serde_json::to_value(existing) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for &(a, b) in mask {
        merged.remove(a);
        merged.remove(b);
        if let Some((k, v)) = body.get_key_value(a).or_else(|| body.get_key_value(b)) {
            merged.insert(k.clone(), v.clone());
        }
    }
    RouterConfig::from_value(&Value::Object(merged)).map_err(|e| MgmtError::from_config(&e))
}

impl ManagementApi {
    /// `DELETE /router/v1/routers/{name}`: answers `{}`.
    pub async fn delete(&self, req: Request<Bytes>) -> Response<Bytes> {
        answer(self.try_delete(&req).await)
    }

    async fn try_delete(&self, req: &Request<Bytes>) -> Result<Response<Bytes>, MgmtError> {
        self.authorize(req, Permission::Write)?;
        let name = self.router_name(req)?;
        self.may_change(name)?;
        let mut version = self
            .engine
            .load()
            .router(name)
            .map(|r| r.compiled().version())
            .ok_or_else(|| MgmtError::not_found(name))?;
        let etag = match query_param(req, &["etag"]) {
            Some(e) => Some(etag_version(&e)?),
            None => None,
        };
        if let Some(e) = etag.filter(|e| *e != version) {
            return Err(stale_etag(name, e, Some(version)));
        }
        for _ in 0..MAX_WRITE_TRIES {
            let change = RouterChange::Delete {
                name: name.to_owned(),
                expect: Expect::Version(version),
            };
            match self.host.commit(change).await {
                Ok(_) => return Ok(json_response(StatusCode::OK, &json!({}))),
                Err(CommitError::Conflict { current }) if etag.is_some() => {
                    return Err(stale_etag(name, version, current));
                }
                // Changed meanwhile: what is there now is deleted.
                Err(CommitError::Conflict { current: Some(v) }) => version = v,
                Err(e) => return Err(MgmtError::commit(e, name)),
            }
        }
        Err(MgmtError::aborted(name))
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
                return Ok(MgmtError::from(AuthError::Unauthorized)
                    .response()
                    .map(Full::new));
            }
            let limit = api.max_body_bytes;
            let declared = content_length(&parts.headers);
            let response = match read_limited(body, limit, declared).await {
                Ok(bytes) => api.handle(Request::from_parts(parts, bytes)).await,
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
