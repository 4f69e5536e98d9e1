//! `abroute serve`: the gateway itself.
//!
//! [`Gateway::start`] loads the state file, the watched directory and (in the demo mode) the
//! seed's router, starts the built-in mock upstream when a provider uses it, binds the listener
//! and serves:
//!
//! | path | what |
//! |---|---|
//! | `POST /v1/chat/completions`, `/v1/responses`, `/v1/messages` | routed through the adapter's layer to the providers |
//! | `GET /v1/models` | the routers, as `inworld/<name>` models, then the catalog's models and `auto` |
//! | `/router/v1/routers[/{name}]` | the management API (create, list, get, update, delete) |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 when ready for traffic, 503 while starting or draining |
//! | `GET /metrics` | Prometheus text |
//!
//! [`Gateway::shutdown`] stops accepting, lets in-flight requests (streams included) finish
//! within `limits.shutdown_timeout`, and returns.
//!
//! The start is a sequence of named steps (`start`: the engine, the store, the keys, the
//! engine writer, the routers, the watched directory, the seed, the providers, the chat layer,
//! the management API, the app, the listener, the background tasks), each in the module that
//! holds its kind of work:
//!
//! | module | holds |
//! |---|---|
//! | `start` | the steps of [`Gateway::start`], in order |
//! | `keys` | the API keys from `[auth]` (or the demo's internal key), secrets from the environment |
//! | `providers` | the upstream service over the providers, and the built-in mock's transport |
//! | `routes` | the app: the routes, their handlers and the state they share |
//! | `management` | the management API as the gateway serves it, and the function that builds it |
//! | `limits` | the accept loop and the client limits: timeouts, connection and in-flight counts |
//! | `background` | the tasks that run beside the server (the refresh timer among them) |

mod background;
mod keys;
mod limits;
mod management;
mod providers;
mod routes;
mod start;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use abroute::{Engine, RouterConfig};
use abroute_http::Timer;
use tokio::sync::oneshot;

use crate::config::GatewayConfig;
use crate::mock::{MockControl, MockServer};

pub use background::{METRICS_MAX_AGE, REFRESH_INTERVAL};
use routes::AppState;

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
        start::start(config, options).await
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
        let _ = writeln!(b, "routers: {}", banner_routers(&self.state.engine.load()));
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

/// How many router names the start banner lists before it says how many more there are.
const BANNER_ROUTER_NAMES: usize = 10;

/// The banner's list of routers: the first [`BANNER_ROUTER_NAMES`] names in order and the
/// count of the rest (a gateway may hold 100,000 routers; listing every name took 1.4 MB).
fn banner_routers(snapshot: &abroute::Snapshot) -> String {
    let shown: Vec<&str> = snapshot
        .names_after(None)
        .take(BANNER_ROUTER_NAMES)
        .collect();
    if shown.is_empty() {
        return "(none)".to_owned();
    }
    let rest = snapshot.len() - shown.len();
    let mut line = shown.join(", ");
    if rest > 0 {
        line.push_str(&format!(" and {rest} more"));
    }
    line
}
