//! `abroute serve`: the gateway itself.
//!
//! [`Gateway::start`] loads the state file, the watched directory and (in the demo mode) the
//! seed's router, starts the built-in mock upstream when a provider uses it, binds the listener
//! and serves:
//!
//! | path | what |
//! |---|---|
//! | `POST /v1/chat/completions`, `/v1/responses`, `/v1/messages` | routed through the adapter's layer to the providers |
//! | `GET /v1/models` | the routers, as `inworld/<name>` models |
//! | `/router/v1/routers[/{name}]` | the management API (create, list, get, update, delete) |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 when ready for traffic, 503 while starting or draining |
//! | `GET /metrics` | Prometheus text |
//!
//! [`Gateway::shutdown`] stops accepting, lets in-flight requests (streams included) finish
//! within `limits.shutdown_timeout`, and returns.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use abroute::{Engine, RouterConfig, ValidationOptions};
use abroute_http::{
    AbrouteLayer, AbrouteService, ApiKeys, Clock, LayerOptions, ManagementApi, MonotonicClock,
    Permission, Permissions, RouterOptions, Timer,
};
use axum::body::Body;
use axum::extract::State;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::oneshot;
use tower::{Layer, Service};

use crate::config::{GatewayConfig, parse_permission};
use crate::mock::{MockControl, MockServer};
use crate::store::{FileStore, StoreHost};
use crate::telemetry::{self, Observe};
use crate::upstream::{
    BaseUrl, IN_PROCESS_BASE, Provider, Providers, UpstreamBody, UpstreamService,
};
use crate::watch::{DirWatcher, WatchedNames};

/// The seed's router (`compare-frontier-models`, 33/33/34), loaded in the demo mode.
pub const SEED_ROUTER: &str = r#"{
  "name": "compare-frontier-models",
  "defaultRoute": {
    "route_id": "default",
    "variants": [
      { "variant": { "variant_id": "openai/gpt-4o-mini-a", "model_id": "openai/gpt-4o-mini" }, "weight": 33 },
      { "variant": { "variant_id": "openai/gpt-3.5-turbo-b", "model_id": "openai/gpt-3.5-turbo" }, "weight": 33 },
      { "variant": { "variant_id": "openai/gpt-4.1-c", "model_id": "openai/gpt-4.1" }, "weight": 34 }
    ]
  }
}"#;

/// tokio's timer, for the layer's attempt and first-token timeouts.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

impl Timer for TokioTimer {
    type Sleep = tokio::time::Sleep;
    fn sleep(&self, duration: Duration) -> tokio::time::Sleep {
        tokio::time::sleep(duration)
    }
}

/// Why the gateway did not start.
#[derive(Debug)]
pub struct StartError(String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

fn start_error(message: impl Into<String>) -> StartError {
    StartError(message.into())
}

/// How the gateway authorizes, for the banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// No key is checked (the demo mode).
    Off,
    /// Keys from the config.
    Configured {
        /// How many.
        keys: usize,
        /// Whether chat needs none.
        chat_open: bool,
    },
    /// No key was configured: this one was made at start, with every permission.
    Generated(String),
}

/// Options that are not in the config file (tests use them).
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Script the built-in mock upstream through this control.
    pub mock_control: Option<MockControl>,
}

type ChatService = Observe<AbrouteService<UpstreamService, MonotonicClock, TokioTimer>>;

/// What the request handlers share.
struct AppState {
    engine: Arc<Engine>,
    api: Arc<ManagementApi>,
    /// The keys the management API checks (with the internal key when auth is off).
    keys: ApiKeys,
    /// With auth off: the internal key put on every management request.
    internal_key: Option<HeaderValue>,
    chat_keys: Option<ApiKeys>,
    chat: ChatService,
    watched: WatchedNames,
    watch_dir: Option<PathBuf>,
    ready: AtomicBool,
    max_body_bytes: usize,
    model_prefix: String,
}

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    state: Arc<AppState>,
    mock: Option<MockServer>,
    auth: AuthMode,
    providers: Vec<String>,
    store_path: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    shutdown_timeout: Duration,
    config_watch: Option<PathBuf>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("addr", &self.addr)
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

/// 16 random bytes as hex, from the OS.
fn random_hex() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !filled {
        use std::hash::{BuildHasher, Hasher};
        for chunk in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn env_secret(var: &str, what: &str) -> Result<String, StartError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(start_error(format!(
            "{what}: the environment variable {var} is not set (or empty)"
        ))),
    }
}

impl Gateway {
    /// Starts the gateway described by `config`. Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// A state file or watched directory that is invalid (naming the file and the position), a
    /// key or provider that cannot be set up, an address that cannot be bound.
    pub async fn start(
        config: GatewayConfig,
        options: StartOptions,
    ) -> Result<Gateway, StartError> {
        let validation = if config.routing.strict {
            ValidationOptions::strict()
        } else {
            ValidationOptions::default()
        };
        let engine = Arc::new(Engine::with_health(validation, config.health));

        // The store: a corrupt file stops the start, naming the file and the position.
        let store = match &config.store.path {
            Some(path) => FileStore::open(path, &validation)
                .map_err(|e| start_error(format!("cannot load the router store:\n{e}")))?,
            None => FileStore::memory(),
        };
        let store = Arc::new(store);

        // Keys.
        let (keys, auth, internal_key, chat_keys) = if config.auth.enabled {
            let mut keys = ApiKeys::new();
            for (i, k) in config.auth.keys.iter().enumerate() {
                let secret = match (&k.key, &k.key_env) {
                    (Some(key), _) => key.clone(),
                    (None, Some(var)) => env_secret(var, &format!("auth.keys[{i}]"))?,
                    (None, None) => return Err(start_error(format!("auth.keys[{i}]: no key"))),
                };
                let perms = k
                    .permissions
                    .iter()
                    .filter_map(|p| parse_permission(p))
                    .fold(Permissions::NONE, union);
                keys = keys.with_key(secret, perms);
            }
            let auth = if keys.is_empty() {
                let key = format!("abr-{}", random_hex());
                keys = keys.with_key(&key, Permissions::ALL);
                AuthMode::Generated(key)
            } else {
                AuthMode::Configured {
                    keys: keys.len(),
                    chat_open: config.auth.chat_open,
                }
            };
            if config.auth.chat_open {
                keys = keys.open_chat();
            }
            (keys.clone(), auth, None, Some(keys))
        } else {
            let internal = format!("internal-{}", random_hex());
            let keys = ApiKeys::new()
                .with_key(&internal, Permissions::ALL)
                .open_chat();
            let header = HeaderValue::from_str(&format!("Bearer {internal}"))
                .map_err(|_| start_error("internal key"))?;
            (keys, AuthMode::Off, Some(header), None)
        };
        let api = Arc::new(
            ManagementApi::new(
                Arc::clone(&engine),
                Arc::new(StoreHost::new(Arc::clone(&store), Arc::clone(&engine))),
                keys.clone(),
            )
            .validation(validation)
            .max_body_bytes(config.limits.max_body_bytes),
        );
        let stored = store
            .load()
            .map_err(|e| start_error(format!("cannot load the router store: {e}")))?;
        engine.replace_all(stored).map_err(|e| {
            start_error(format!(
                "cannot load the router store: stored routers are invalid:\n{e}"
            ))
        })?;

        // The watched directory: invalid files stop the start too.
        let watched: WatchedNames = Arc::new(Mutex::new(BTreeSet::new()));
        let mut background = Vec::new();
        let watcher = match &config.watch {
            Some(w) => {
                let watcher = DirWatcher {
                    dir: w.dir.clone(),
                    interval: w.interval,
                    engine: Arc::clone(&engine),
                    watched: Arc::clone(&watched),
                    options: validation,
                };
                let (applied, print) = watcher.load_now().map_err(|problems| {
                    let mut m = format!("the watched directory {} is invalid:", w.dir.display());
                    for p in problems {
                        let _ = write!(m, "\n{p}");
                    }
                    start_error(m)
                })?;
                tracing::info!(dir = %w.dir.display(), routers = applied.upserted + applied.unchanged, "watched directory loaded");
                Some((watcher, print))
            }
            None => None,
        };

        if config.seed_router && engine.load().router("compare-frontier-models").is_none() {
            let seed = RouterConfig::from_json(SEED_ROUTER)
                .map_err(|e| start_error(format!("the seed router: {e}")))?;
            engine
                .upsert(seed)
                .map_err(|e| start_error(format!("the seed router: {e}")))?;
        }

        // Providers, and the mock when one uses it.
        let mut mock = None;
        let mut list = Vec::new();
        let mut provider_names = Vec::new();
        let ca_roots = config.read_ca_files().map_err(start_error)?;
        let mock_control = options.mock_control.clone().unwrap_or_default();
        for (p, roots) in config.providers.iter().zip(ca_roots) {
            let in_process = p.mock && config.mock.in_process;
            let base = if in_process {
                BaseUrl::parse(IN_PROCESS_BASE).map_err(start_error)?
            } else if p.mock {
                if mock.is_none() {
                    let server = MockServer::start(config.mock.listen, mock_control.clone())
                        .await
                        .map_err(|e| {
                            start_error(format!(
                                "cannot start the mock upstream on {}: {e}",
                                config.mock.listen
                            ))
                        })?;
                    mock = Some(server);
                }
                let addr = mock
                    .as_ref()
                    .map(MockServer::addr)
                    .unwrap_or(config.mock.listen);
                BaseUrl::parse(&format!("http://{addr}/v1")).map_err(start_error)?
            } else {
                let url = p.base_url.as_deref().unwrap_or_default();
                BaseUrl::parse(url).map_err(start_error)?
            };
            let key = match (&p.api_key, &p.api_key_env) {
                (Some(k), _) => Some(k.clone()),
                (None, Some(var)) => Some(env_secret(var, &format!("provider {:?}", p.name))?),
                (None, None) => None,
            };
            provider_names.push(format!(
                "{} → {}{}",
                if p.name == "*" {
                    "* (any model)".to_owned()
                } else {
                    format!("{}/*", p.name)
                },
                if in_process {
                    "built-in mock upstream (in process)".to_owned()
                } else if p.mock {
                    format!("built-in mock upstream at {base}")
                } else {
                    base.to_string()
                },
                if key.is_some() { " (with key)" } else { "" }
            ));
            let mut provider = Provider::new(&p.name, base, key.as_deref())
                .map_err(start_error)?
                .trust(roots)
                .http2(p.http2);
            if in_process {
                provider = provider.served_in_process(crate::mock::router(mock_control.clone()));
            }
            list.push(provider);
        }
        let providers = Arc::new(Providers::new(list));
        let upstream = UpstreamService::new(
            providers,
            config.limits.connect_timeout,
            config.routing.strip_provider,
        )
        .map_err(start_error)?;

        let mut router_options = RouterOptions::new()
            .model_prefix(config.routing.model_prefix.clone())
            .max_body_bytes(config.limits.max_body_bytes)
            .strip_provider(config.routing.strip_provider);
        let layer_options = LayerOptions::new()
            .merge_metadata(config.routing.merge_metadata)
            .record_extension(true)
            .attempt_timeout(config.limits.attempt_timeout);
        if let Some(h) = &config.routing.user_header
            && let Ok(name) = http::HeaderName::from_bytes(h.as_bytes())
        {
            router_options = router_options.user_header(name);
        }
        let mut layer = AbrouteLayer::new(Arc::clone(&engine))
            .options(router_options)
            .layer_options(layer_options);
        if let Some(k) = &chat_keys {
            layer = layer.keys(k.clone());
        }
        let layer = layer.timer(TokioTimer);
        let chat = Observe::new(layer.layer(upstream), config.log.requests);

        let state = Arc::new(AppState {
            engine: Arc::clone(&engine),
            api,
            keys,
            internal_key,
            chat_keys,
            chat,
            watched: Arc::clone(&watched),
            watch_dir: config.watch.as_ref().map(|w| w.dir.clone()),
            ready: AtomicBool::new(false),
            max_body_bytes: config.limits.max_body_bytes,
            model_prefix: config.routing.model_prefix.clone(),
        });

        telemetry::prometheus();
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(healthz))
            .route("/readyz", axum::routing::get(readyz))
            .route("/metrics", axum::routing::get(metrics_text))
            .fallback(fallback)
            .with_state(Arc::clone(&state));

        use axum::serve::ListenerExt;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| start_error(format!("cannot listen on {}: {e}", config.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| start_error(format!("cannot listen on {}: {e}", config.listen)))?;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        if let Some((watcher, print)) = watcher {
            background.push(tokio::spawn(watcher.run(print)));
        }
        background.push(tokio::spawn(async {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                telemetry::prometheus().run_upkeep();
            }
        }));
        background.push(tokio::spawn(refresh_metrics_sorted(Arc::clone(&engine))));
        state.ready.store(true, Ordering::SeqCst);
        tracing::info!(
            %addr,
            routers = engine.load().len(),
            version = engine.version(),
            "abroute gateway ready"
        );
        Ok(Gateway {
            addr,
            state,
            mock,
            auth,
            providers: provider_names,
            store_path: config.store.path.clone(),
            stop: Some(stop),
            server,
            background,
            shutdown_timeout: config.limits.shutdown_timeout,
            config_watch: config.watch.as_ref().map(|w| w.dir.clone()),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the built-in mock upstream listens, if it runs.
    pub fn mock_addr(&self) -> Option<SocketAddr> {
        self.mock.as_ref().map(MockServer::addr)
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.state.engine
    }

    /// How it authorizes.
    pub fn auth(&self) -> &AuthMode {
        &self.auth
    }

    /// What to print at start: the address, the key (or that auth is off), the providers, the
    /// store, and example curl lines.
    pub fn banner(&self) -> String {
        let base = format!("http://{}", self.addr);
        let mut b = String::new();
        let _ = writeln!(b, "abroute gateway listening on {base}");
        let auth_header = match &self.auth {
            AuthMode::Off => {
                let _ = writeln!(
                    b,
                    "auth: OFF (demo mode): any or no Authorization header is accepted; the \
                     seed's `Basic <your-api-key>` works as printed"
                );
                "Basic <your-api-key>".to_owned()
            }
            AuthMode::Generated(key) => {
                let _ = writeln!(
                    b,
                    "auth: no key was configured, so this one was made for this run (every \
                     permission):\n  {key}"
                );
                format!("Basic {key}")
            }
            AuthMode::Configured { keys, chat_open } => {
                let _ = writeln!(
                    b,
                    "auth: {keys} configured key(s){}; use one as `Authorization: Basic <key>` \
                     or `Bearer <key>`",
                    if *chat_open {
                        ", chat open without a key"
                    } else {
                        ""
                    }
                );
                "Basic <your-api-key>".to_owned()
            }
        };
        for p in &self.providers {
            let _ = writeln!(b, "provider: {p}");
        }
        match &self.store_path {
            Some(p) => {
                let _ = writeln!(b, "router store: {}", p.display());
            }
            None => {
                let _ = writeln!(
                    b,
                    "router store: memory only (set [store] path in a config file to keep routers)"
                );
            }
        }
        if let Some(d) = &self.config_watch {
            let _ = writeln!(b, "watching: {}", d.display());
        }
        let names = self.state.engine.load().names().join(", ");
        let _ = writeln!(
            b,
            "routers: {}",
            if names.is_empty() { "(none)" } else { &names }
        );
        let _ = writeln!(
            b,
            "operations: {base}/healthz  {base}/readyz  {base}/metrics"
        );
        let _ = writeln!(
            b,
            "\nTry it (Step 1 creates the router; it is already loaded in the demo, and creating it again unchanged succeeds):\n"
        );
        let compact: String = RouterConfig::from_json(SEED_ROUTER)
            .map(|c| c.to_json())
            .unwrap_or_default();
        let _ = writeln!(
            b,
            "curl --location '{base}/router/v1/routers' \\\n  --header 'Authorization: {auth_header}' \\\n  --header 'Content-Type: application/json' \\\n  --data '{compact}'\n"
        );
        let _ = writeln!(
            b,
            "curl --location '{base}/v1/chat/completions' \\\n  --header 'Authorization: {auth_header}' \\\n  --header 'Content-Type: application/json' \\\n  --data '{{ \"model\": \"inworld/compare-frontier-models\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}] }}'\n"
        );
        let _ = writeln!(
            b,
            "curl -N '{base}/v1/chat/completions' \\\n  --header 'Authorization: {auth_header}' \\\n  --data '{{ \"model\": \"inworld/compare-frontier-models\", \"user\": \"alice\", \"stream\": true, \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}] }}'"
        );
        b
    }

    /// Stops gracefully: not ready at once, no new connections, in-flight requests (streams
    /// included) finish within the shutdown timeout. True when everything finished in time.
    pub async fn shutdown(mut self) -> bool {
        self.state.ready.store(false, Ordering::SeqCst);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let finished = tokio::time::timeout(self.shutdown_timeout, &mut self.server)
            .await
            .is_ok();
        if !finished {
            tracing::warn!(
                timeout_ms = u64::try_from(self.shutdown_timeout.as_millis()).unwrap_or(u64::MAX),
                "in-flight requests did not finish in time; closing"
            );
            self.server.abort();
        }
        for t in &self.background {
            t.abort();
        }
        if let Some(m) = self.mock.take() {
            m.stop().await;
        }
        tracing::info!(finished, "abroute gateway stopped");
        finished
    }
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

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
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

/// `GET /v1/models`: every router as a model.
fn models(state: &AppState, req: &Request<Body>) -> Response<Body> {
    if let Some(keys) = &state.chat_keys
        && let Err(e) = keys.authorize(req.headers(), Permission::Chat)
    {
        return abroute_http::ApiError::from(e)
            .to_response()
            .map(Body::from);
    }
    let snapshot = state.engine.load();
    let data: Vec<serde_json::Value> = snapshot
        .names()
        .iter()
        .map(|n| json!({"id": format!("{}{n}", state.model_prefix), "object": "model", "owned_by": "abroute"}))
        .collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

fn google_error(status: StatusCode, grpc: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": {"code": status.as_u16(), "message": message, "status": grpc}}),
    )
}

/// The router name a management request is about, if it names one.
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

/// How often routers sorted by observed latency or throughput are recompiled with the latest
/// averages ([`Engine::refresh`]).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// How long a model may go without a report before its averages return to the priors, so that
/// a model that was slow once is tried again.
pub const METRICS_MAX_AGE: Duration = Duration::from_secs(600);

/// Keeps latency- and throughput-sorted attempt orders current: every [`REFRESH_INTERVAL`],
/// forgets averages older than [`METRICS_MAX_AGE`] and calls [`Engine::refresh`] (off the async
/// threads: it compiles). Routers that read no metrics are never recompiled, so this costs
/// nothing for them.
async fn refresh_metrics_sorted(engine: Arc<Engine>) {
    loop {
        tokio::time::sleep(REFRESH_INTERVAL).await;
        let engine = Arc::clone(&engine);
        let _ = tokio::task::spawn_blocking(move || {
            let forgotten = engine
                .metrics()
                .forget_older_than(MonotonicClock.now(), METRICS_MAX_AGE);
            let before = engine.version();
            let after = engine.refresh();
            if after != before || forgotten > 0 {
                tracing::debug!(
                    version = after,
                    forgotten,
                    "metric-sorted routers refreshed"
                );
            }
        })
        .await;
    }
}

/// The management API, with the gateway's additions: auth off in the demo mode, an unchanged
/// re-create answered as done (so the seed's Step 1 works on the preloaded router), routers of
/// the watched directory protected, and the store's disk writes off the async threads.
async fn management(state: &Arc<AppState>, req: Request<Body>) -> Response<Body> {
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
        let is_watched = state
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name);
        if authorized && is_watched {
            let dir = state
                .watch_dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            metrics::counter!("abroute_config_changes_total", "source" => "api", "result" => "refused").increment(1);
            return google_error(
                StatusCode::CONFLICT,
                "FAILED_PRECONDITION",
                &format!(
                    "router {name:?} is loaded from the watched directory {dir}; change its file \
                     there instead"
                ),
            );
        }
        if authorized
            && method == Method::POST
            && let Some(response) = unchanged_create(state, &bytes)
        {
            return response;
        }
    }
    let req = Request::from_parts(parts, Bytes::clone(&bytes));
    // The store's disk writes run off the async threads (`StoreHost`).
    let response = state.api.handle(req).await;
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

/// A create of a router that is loaded with exactly this config: answered as done, unchanged.
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

/// The union of two permission sets.
fn union(a: Permissions, b: Permissions) -> Permissions {
    [Permission::Read, Permission::Write, Permission::Chat]
        .into_iter()
        .filter(|p| a.contains(*p) || b.contains(*p))
        .fold(Permissions::NONE, Permissions::with)
}
