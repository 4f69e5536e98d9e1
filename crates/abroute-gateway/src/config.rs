//! The gateway's configuration file (TOML): listen address, keys, providers, limits, the router
//! store, the watched directory, health thresholds and logging.
//!
//! Every field has a default, so an empty file is a valid config; unknown fields are refused
//! (a typo must never be ignored). `docs/gateway.md` has a commented example. Durations are
//! strings such as `"300ms"`, `"30s"`, `"5m"` or `"1h"`. Relative paths are read from the
//! directory of the config file.
//!
//! Providers are reached over `http://` or `https://`. TLS trusts Mozilla's root certificates,
//! built into the binary; a provider's `ca_file` (a PEM file) adds roots for that provider's
//! host, such as a private CA or a self-signed development certificate. The file is read and
//! checked when the config file is read and again at start; an error names the provider
//! (`providers[1].ca_file: ...`) and the file.
//!
//! ```
//! use abroute_gateway::config::GatewayConfig;
//!
//! let config = GatewayConfig::from_toml_str(r#"
//! listen = "127.0.0.1:9000"
//!
//! [[providers]]
//! name = "openai"
//! base_url = "https://api.openai.com/v1"
//! api_key_env = "OPENAI_API_KEY"
//!
//! [[providers]]
//! name = "vllm"
//! base_url = "http://127.0.0.1:8000/v1"
//! api_key_env = "VLLM_API_KEY"
//!
//! [limits]
//! attempt_timeout = "20s"
//! "#)?;
//! assert_eq!(config.listen.port(), 9000);
//! assert_eq!(config.limits.attempt_timeout, std::time::Duration::from_secs(20));
//! # Ok::<(), abroute_gateway::config::ConfigFileError>(())
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use abroute::HealthConfig;
use serde::{Deserialize, Deserializer};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The whole gateway configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the gateway listens. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// API keys and who may do what.
    pub auth: AuthConfig,
    /// Upstream providers, chosen by the provider part of a model id (`openai` in
    /// `openai/gpt-4.1`).
    pub providers: Vec<ProviderConfig>,
    /// Body size, timeouts, shutdown.
    pub limits: Limits,
    /// How requests name routers and how bodies are rewritten.
    pub routing: RoutingConfig,
    /// Where routers created through the API are kept.
    pub store: StoreConfig,
    /// A directory of router files to load and watch (Kubernetes ConfigMap style).
    pub watch: Option<WatchConfig>,
    /// The built-in mock upstream (used by providers with `mock = true`).
    pub mock: MockConfig,
    /// Passive health thresholds (durations in milliseconds), as in `abroute::HealthConfig`.
    pub health: HealthConfig,
    /// Logging.
    pub log: LogConfig,
    /// Load the seed's `compare-frontier-models` router at start when no stored or watched
    /// router has that name (the demo mode does).
    pub seed_router: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
            auth: AuthConfig::default(),
            providers: Vec::new(),
            limits: Limits::default(),
            routing: RoutingConfig::default(),
            store: StoreConfig::default(),
            watch: None,
            mock: MockConfig::default(),
            health: HealthConfig::default(),
            log: LogConfig::default(),
            seed_router: false,
        }
    }
}

/// API keys. With `enabled = true` (the default) and no key configured, the gateway makes one
/// at start and prints it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether keys are checked at all. `false` opens everything (the demo mode).
    pub enabled: bool,
    /// Let chat requests through without a key (management still needs one).
    pub chat_open: bool,
    /// The keys.
    pub keys: Vec<KeyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            chat_open: false,
            keys: Vec::new(),
        }
    }
}

/// One API key: given inline or read from an environment variable, with its permissions.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyConfig {
    /// The key itself (prefer `key_env`: config files end up in repositories).
    pub key: Option<String>,
    /// The environment variable holding the key.
    pub key_env: Option<String>,
    /// Any of `read`, `write`, `chat`, or `admin` (read and write) and `all`. Default `all`.
    pub permissions: Vec<String>,
}

impl Default for KeyConfig {
    fn default() -> Self {
        KeyConfig {
            key: None,
            key_env: None,
            permissions: vec!["all".to_owned()],
        }
    }
}

impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyConfig")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("key_env", &self.key_env)
            .field("permissions", &self.permissions)
            .finish()
    }
}

/// One upstream provider.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The provider part of model ids it serves (`openai` for `openai/gpt-4.1`), or `*` for
    /// every model no other provider claims.
    pub name: String,
    /// An OpenAI-compatible base URL, such as `https://api.openai.com/v1` or
    /// `http://127.0.0.1:8000/v1` (vLLM) or `http://127.0.0.1:11434/v1` (Ollama). A request
    /// for `/v1/chat/completions` goes to `<base_url>/chat/completions`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Serve this provider's models from the built-in mock upstream instead of a base URL.
    #[serde(default)]
    pub mock: bool,
    /// The provider's key, sent as `Authorization: Bearer <key>` (prefer `api_key_env`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// The environment variable holding the provider's key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// A PEM file of root certificates to trust for this provider's host besides Mozilla's
    /// (a private CA, a self-signed development certificate). Only with an `https://`
    /// `base_url`; relative to the config file's directory.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Offer HTTP/2 to an `https://` upstream (ALPN `h2`, then `http/1.1`): one connection
    /// carries every concurrent request. Default `true`; `false` keeps HTTP/1.1. Plain
    /// `http://` upstreams always get HTTP/1.1.
    #[serde(default = "default_http2")]
    pub http2: bool,
}

fn default_http2() -> bool {
    true
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("mock", &self.mock)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("ca_file", &self.ca_file)
            .field("http2", &self.http2)
            .finish()
    }
}

/// Limits and timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The largest request body, in bytes (413 beyond). Default 32 MiB.
    pub max_body_bytes: usize,
    /// Give up on an upstream attempt after this long without a response head and first body
    /// bytes (then fail over). Default `60s`.
    #[serde(deserialize_with = "de_duration")]
    pub attempt_timeout: Duration,
    /// Give up connecting to an upstream (TCP connect and TLS handshake together) after this
    /// long. Default `5s`.
    #[serde(deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// On SIGTERM, wait at most this long for in-flight requests. Default `30s`.
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_timeout: Duration,
    /// Time for a client to send a request's head, counted from when the connection is ready
    /// for it (accepted, or the previous response written): also the keep-alive idle timeout.
    /// The connection is closed past it. Default `10s`.
    #[serde(deserialize_with = "de_duration")]
    pub header_timeout: Duration,
    /// Time for a client to send a request's body, counted from its head (408 past it, and the
    /// connection closed). Default `60s`.
    #[serde(deserialize_with = "de_duration")]
    pub body_timeout: Duration,
    /// The most open client connections; past it (and `reserved_connections`), new ones are
    /// closed at once. Default: from the file limit (`RLIMIT_NOFILE`, half of it, leaving the
    /// other half to upstream connections and the store).
    pub max_connections: Option<usize>,
    /// Connections past `max_connections` that still serve `/healthz`, `/readyz` and
    /// `/metrics` (anything else: 503 `overloaded`). Default 32.
    pub reserved_connections: usize,
    /// The most chat requests in flight (streams until their end); past it, 503 `overloaded`
    /// with `Retry-After` at once. Default: 1,024 per CPU, at most `max_connections`.
    pub max_in_flight: Option<usize>,
    /// The largest upstream response head, in bytes (at least 8 KiB). Default 64 KiB.
    pub max_upstream_head_bytes: usize,
    /// The largest upstream answer that is not an event stream, in bytes. Default 32 MiB.
    pub max_upstream_body_bytes: u64,
    /// The longest an upstream body may stay silent (before its first frame and between two).
    /// Default `120s`.
    #[serde(deserialize_with = "de_duration")]
    pub upstream_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: abroute_http::DEFAULT_MAX_BODY_BYTES,
            attempt_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_connections: None,
            reserved_connections: 32,
            max_in_flight: None,
            max_upstream_head_bytes: 64 * 1024,
            max_upstream_body_bytes: 32 * 1024 * 1024,
            upstream_idle_timeout: Duration::from_secs(120),
        }
    }
}

impl Limits {
    /// What is wrong with these limits: a zero that would refuse everything.
    fn problems(&self) -> Vec<String> {
        let zero_durations = [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("upstream_idle_timeout", self.upstream_idle_timeout),
        ];
        let zero_counts = [
            ("max_connections", self.max_connections),
            ("max_in_flight", self.max_in_flight),
        ];
        let mut out: Vec<String> = zero_durations
            .iter()
            .filter(|(_, d)| d.is_zero())
            .map(|(name, _)| format!("limits.{name}: must be longer than 0"))
            .collect();
        out.extend(
            zero_counts
                .iter()
                .filter(|(_, n)| *n == Some(0))
                .map(|(name, _)| format!("limits.{name}: must be at least 1")),
        );
        out
    }
}

/// How requests name routers and how bodies are rewritten.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// The model prefix that names a router. Default `inworld/`, as in the seed.
    pub model_prefix: String,
    /// Send `gpt-4.1` rather than `openai/gpt-4.1` to the upstream. Default true: the provider
    /// part chose the upstream, which knows its models by their bare names.
    pub strip_provider: bool,
    /// A header whose value is the sticky key (it wins over the body's `user`).
    pub user_header: Option<String>,
    /// Require weights to sum to 100 in every route, as Inworld does. Default false.
    pub strict: bool,
    /// Merge Inworld's `metadata` (`attempts`, route, variant, ...) into non-streaming JSON
    /// responses. Default true.
    pub merge_metadata: bool,
    /// Build each route's sticky table on its first sticky request rather than at load. Default
    /// false. With tens of thousands of routers most of the start is building tables (a few
    /// milliseconds each); lazily, the start is fast and the first sticky request of each
    /// route waits for its table once (docs/benchmarks.md, `scale`). The tables are the same.
    pub lazy_sticky_tables: bool,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            model_prefix: abroute_http::DEFAULT_MODEL_PREFIX.to_owned(),
            strip_provider: true,
            user_header: None,
            strict: false,
            merge_metadata: true,
            lazy_sticky_tables: false,
        }
    }
}

/// The router store.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The state file. Without it (and without `url`), routers created through the API live in
    /// memory only. With `url`, the local copy of the last snapshot applied from the shared
    /// store and its revision, served from when the store is unreachable at start.
    pub path: Option<PathBuf>,
    /// The fleet's shared store, `postgresql://user:password@host:port/db?sslmode=…` (also
    /// `--store-url` and `ABROUTE_STORE_URL`). Never logged with its password.
    pub url: Option<String>,
    /// More trusted roots (PEM) for `sslmode=verify-full`.
    pub ca_file: Option<PathBuf>,
    /// How long the shared store keeps the tombstone of a deleted router before compaction
    /// removes it (default [`DEFAULT_TOMBSTONE_RETENTION`]); a replica away longer reloads the
    /// whole store (a reset) when it returns. Every replica compacts, every quarter of it.
    #[serde(deserialize_with = "de_some_duration")]
    pub tombstone_retention: Option<Duration>,
}

/// The default of `[store] tombstone_retention`: one hour.
pub const DEFAULT_TOMBSTONE_RETENTION: Duration = Duration::from_secs(3600);

impl StoreConfig {
    /// `tombstone_retention`, or its default.
    pub fn tombstone_retention(&self) -> Duration {
        self.tombstone_retention
            .unwrap_or(DEFAULT_TOMBSTONE_RETENTION)
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("path", &self.path)
            .field(
                "url",
                &self.url.as_deref().map(crate::store::postgres::redact),
            )
            .field("ca_file", &self.ca_file)
            .field("tombstone_retention", &self.tombstone_retention)
            .finish()
    }
}

/// A watched directory of router files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// The directory: every `*.json` file in it (not hidden) holds one router.
    pub dir: PathBuf,
    /// How often to look for changes. Default `2s`.
    #[serde(default = "default_watch_interval", deserialize_with = "de_duration")]
    pub interval: Duration,
}

fn default_watch_interval() -> Duration {
    Duration::from_secs(2)
}

/// The built-in mock upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockConfig {
    /// Call the mock in process, with no socket in between (default true): the gateway hands
    /// each rewritten request to the mock's handler as it would send it upstream. `false`
    /// starts the mock as a server on `listen` and calls it over loopback HTTP, through the same
    /// pooled client as real upstreams.
    pub in_process: bool,
    /// Where the mock listens when `in_process` is false. Default `127.0.0.1:0` (any free
    /// port).
    pub listen: SocketAddr,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            in_process: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// The log format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging. Keys and message contents are never logged.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `abroute_gateway=debug`; `RUST_LOG` wins.
    pub level: String,
    /// Log every routed request at `info` (router, route, variant, model, status, latency,
    /// attempts); otherwise at `debug`.
    pub requests: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
            requests: false,
        }
    }
}

/// A config file that could not be read.
#[derive(Debug)]
pub struct ConfigFileError {
    /// The file, if read from one.
    pub file: Option<PathBuf>,
    /// What is wrong, with its position.
    pub message: String,
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}: {}", file.display(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigFileError {}

impl GatewayConfig {
    /// The demo mode of `abroute serve` without a config file: `127.0.0.1:8080`, auth off,
    /// every model served by the built-in mock upstream, and the seed's router loaded.
    pub fn demo() -> GatewayConfig {
        GatewayConfig {
            auth: AuthConfig {
                enabled: false,
                ..AuthConfig::default()
            },
            providers: vec![ProviderConfig {
                name: "*".to_owned(),
                base_url: None,
                mock: true,
                api_key: None,
                api_key_env: None,
                ca_file: None,
                http2: true,
            }],
            seed_router: true,
            ..GatewayConfig::default()
        }
    }

    /// Reads a config from TOML text.
    ///
    /// # Errors
    ///
    /// A syntax error, an unknown field or a wrong value, with its line and column.
    pub fn from_toml_str(text: &str) -> Result<GatewayConfig, ConfigFileError> {
        let config: GatewayConfig = toml::from_str(text).map_err(|e| ConfigFileError {
            file: None,
            message: toml_message(text, &e),
        })?;
        config.check().map_err(|message| ConfigFileError {
            file: None,
            message,
        })?;
        Ok(config)
    }

    /// Reads a config file; relative paths in it are taken from the file's directory. Every
    /// provider's `ca_file` is read and checked.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is invalid; the error names the file and the position
    /// (or the field, for a `ca_file` that cannot be used).
    pub fn from_file(path: &Path) -> Result<GatewayConfig, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
            file: Some(path.to_owned()),
            message: format!("cannot read: {e}"),
        })?;
        let mut config = GatewayConfig::from_toml_str(&text).map_err(|e| ConfigFileError {
            file: Some(path.to_owned()),
            message: e.message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(p) = &mut config.store.path {
            *p = base.join(&*p);
        }
        if let Some(p) = &mut config.store.ca_file {
            *p = base.join(&*p);
        }
        if let Some(w) = &mut config.watch {
            w.dir = base.join(&w.dir);
        }
        for p in &mut config.providers {
            if let Some(ca) = &mut p.ca_file {
                *ca = base.join(&*ca);
            }
        }
        config.read_ca_files().map_err(|message| ConfigFileError {
            file: Some(path.to_owned()),
            message,
        })?;
        Ok(config)
    }

    /// Reads every provider's `ca_file` and returns the certificates of provider `i` at
    /// position `i` (empty without a file); checked when a config file is read, used at start.
    ///
    /// # Errors
    ///
    /// Every file that cannot be used, as `providers[i].ca_file: <file>: <problem>`.
    pub fn read_ca_files(
        &self,
    ) -> Result<Vec<Vec<rustls::pki_types::CertificateDer<'static>>>, String> {
        let mut problems = Vec::new();
        let mut out = Vec::with_capacity(self.providers.len());
        for (i, p) in self.providers.iter().enumerate() {
            match p.ca_file.as_deref().map(crate::upstream::read_ca_file) {
                None => out.push(Vec::new()),
                Some(Ok(certs)) => out.push(certs),
                Some(Err(e)) => problems.push(format!("providers[{i}].ca_file: {e}")),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems.join("\n"))
        }
    }

    /// Checks what serde cannot: providers well formed and not repeated, keys readable.
    fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            if p.name.is_empty() || (p.name != "*" && p.name.contains('/')) {
                problems.push(format!(
                    "providers[{i}].name: {:?} must be a provider name without '/', or \"*\"",
                    p.name
                ));
            }
            if !names.insert(p.name.as_str()) {
                problems.push(format!(
                    "providers[{i}].name: provider {:?} is configured twice",
                    p.name
                ));
            }
            match (&p.base_url, p.mock) {
                (Some(_), true) => problems.push(format!(
                    "providers[{i}]: give either `base_url` or `mock = true`, not both"
                )),
                (None, false) => problems.push(format!(
                    "providers[{i}]: a provider needs `base_url` (or `mock = true`)"
                )),
                (Some(url), false) => match crate::upstream::BaseUrl::parse(url) {
                    Err(e) => problems.push(format!("providers[{i}].base_url: {e}")),
                    Ok(base) if p.ca_file.is_some() && !base.is_https() => problems.push(format!(
                        "providers[{i}].ca_file: only an https:// base_url uses a CA file"
                    )),
                    Ok(_) => {}
                },
                (None, true) => {
                    if p.ca_file.is_some() {
                        problems.push(format!(
                            "providers[{i}].ca_file: the built-in mock upstream speaks plain \
                             HTTP; a CA file needs an https:// base_url"
                        ));
                    }
                }
            }
        }
        for (i, k) in self.auth.keys.iter().enumerate() {
            if k.key.is_some() == k.key_env.is_some() {
                problems.push(format!(
                    "auth.keys[{i}]: give exactly one of `key` and `key_env`"
                ));
            }
            for p in &k.permissions {
                if parse_permission(p).is_none() {
                    problems.push(format!(
                        "auth.keys[{i}].permissions: unknown permission {p:?}; expected read, \
                         write, chat, admin or all"
                    ));
                }
            }
        }
        if let Some(h) = &self.routing.user_header
            && http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            problems.push(format!("routing.user_header: {h:?} is not a header name"));
        }
        problems.extend(self.limits.problems());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

/// The permissions a name grants.
pub(crate) fn parse_permission(name: &str) -> Option<abroute_http::Permissions> {
    use abroute_http::Permissions;
    Some(match name {
        "read" => Permissions::READ,
        "write" => Permissions::WRITE,
        "chat" => Permissions::CHAT,
        "admin" => Permissions::ADMIN,
        "all" => Permissions::ALL,
        _ => return None,
    })
}

/// A toml error as `line L, column C: message`.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_owned(),
    }
}

/// The 1-based line and column of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

/// Parses `300ms`, `1.5s`, `30s`, `5m` or `1h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

fn de_some_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}; write it like \"300ms\", \"30s\", \"5m\" or \"1h\""
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn errors_have_positions() {
        let e = GatewayConfig::from_toml_str("listen = \"x\"\n").unwrap_err();
        assert!(e.message.starts_with("line 1, column 10:"), "{}", e.message);
        let e = GatewayConfig::from_toml_str("[limits]\nwat = 1\n").unwrap_err();
        assert!(e.message.starts_with("line 2, column 1:"), "{}", e.message);
        assert!(e.message.contains("wat"), "{}", e.message);
        let e = GatewayConfig::from_toml_str("[[providers]]\nname = \"a/b\"\n").unwrap_err();
        assert!(e.message.contains("providers[0]"), "{}", e.message);
    }

    #[test]
    fn empty_is_valid() {
        let c = GatewayConfig::from_toml_str("").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(c.auth.enabled);
        assert!(c.routing.strip_provider);
    }

    #[test]
    fn http2_is_offered_unless_turned_off() {
        let c = GatewayConfig::from_toml_str(
            "[[providers]]\nname = \"a\"\nbase_url = \"https://h/v1\"\n\
             [[providers]]\nname = \"b\"\nbase_url = \"https://h/v1\"\nhttp2 = false\n",
        )
        .unwrap();
        assert!(c.providers[0].http2);
        assert!(!c.providers[1].http2);
        let e = GatewayConfig::from_toml_str(
            "[[providers]]\nname = \"a\"\nbase_url = \"https://h/v1\"\nhttp2 = \"yes\"\n",
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("line 4, column 9: invalid type: string \"yes\", expected a boolean"),
            "{}",
            e.message
        );
    }

    #[test]
    fn ca_files_need_https_and_a_readable_file() {
        let e = GatewayConfig::from_toml_str(
            "[[providers]]\nname = \"a\"\nbase_url = \"http://h/v1\"\nca_file = \"ca.pem\"\n",
        )
        .unwrap_err();
        assert!(
            e.message.contains("providers[0].ca_file: only an https://"),
            "{}",
            e.message
        );
        let e = GatewayConfig::from_toml_str(
            "[[providers]]\nname = \"a\"\nmock = true\nca_file = \"ca.pem\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("providers[0].ca_file:"), "{}", e.message);
        // From a file: the path is taken from the config's directory and the file is read.
        let dir = std::env::temp_dir().join(format!("abroute-cfg-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("gateway.toml");
        std::fs::write(
            &file,
            "[[providers]]\nname = \"a\"\nbase_url = \"http://h/v1\"\n\
             [[providers]]\nname = \"b\"\nbase_url = \"https://h/v1\"\nca_file = \"nope.pem\"\n",
        )
        .unwrap();
        let e = GatewayConfig::from_file(&file).unwrap_err();
        let shown = e.to_string();
        let missing = dir.join("nope.pem").display().to_string();
        assert!(shown.contains("providers[1].ca_file: "), "{shown}");
        assert!(shown.contains(&missing), "{shown}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn debug_redacts_keys() {
        let c = GatewayConfig::from_toml_str(
            "[[auth.keys]]\nkey = \"sk-secret\"\n[[providers]]\nname = \"o\"\nbase_url = \"http://x/v1\"\napi_key = \"sk-up\"\n",
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-"), "{shown}");
    }
}
