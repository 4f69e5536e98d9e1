//! [`Gateway::start`], step by step.
//!
//! Each step is a function with what it needs as arguments and what it makes as its result, in
//! the order they run:
//!
//! | step | makes |
//! |---|---|
//! | [`engine`] | the engine, validating as `routing.strict` says |
//! | [`open_store`] | the router store: the state file, or memory |
//! | [`keys`] | the keys checked by the API and chat |
//! | `EngineWriter::spawn` | the engine writer, the only task that writes the engine |
//! | [`load_routers`] | the stored routers, loaded through the writer |
//! | [`watched_directory`] | the watched directory's routers loaded, and its watcher |
//! | [`seed_router`] | the seed's router, in the demo mode |
//! | [`providers`] | the upstream service (and the mock's server) |
//! | [`chat_layer`] | the adapter's layer over the upstream: the chat path |
//! | [`management_api`] | the management API over its host |
//! | [`app`] | the routes over the shared state |
//! | [`listen`] | the bound listener, served |
//! | [`background::spawn`] | the watcher, the refresh timer, the metrics upkeep |
//!
//! A step that fails stops the start with a [`StartError`] naming what is wrong; the first
//! steps (the store, the keys, the routers) fail before anything listens.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use abroute::{Change, Engine, EngineConfig, RouterConfig, ValidationOptions};
use abroute_http::{AbrouteLayer, ApiKeys, LayerOptions, Prepared, RouterOptions};
use tokio::sync::oneshot;
use tower::Layer;

use super::background;
use super::keys::keys;
use super::management::management_api;
use super::providers::providers;
use super::routes::{AppState, ChatService, app};
use super::{Gateway, SEED_ROUTER, StartError, StartOptions, TokioTimer, start_error};
use crate::config::GatewayConfig;
use crate::host::GatewayHost;
use crate::store::{FileStore, MemoryStore, RouterStore};
use crate::telemetry::{self, Observe};
use crate::upstream::UpstreamService;
use crate::watch::{DirWatcher, WatchedNames};
use crate::writer::{EngineWriter, WriteError};

/// Starts the gateway: every step in order (see the module doc).
pub(super) async fn start(
    config: GatewayConfig,
    options: StartOptions,
) -> Result<Gateway, StartError> {
    let engine = engine(&config);
    let validation = *engine.options();
    let store = open_store(&config, validation).await?;
    let keys = keys(&config.auth)?;
    let (writer, writer_task) = EngineWriter::spawn(Arc::clone(&engine), Arc::clone(&store));
    load_routers(&writer, store.as_ref()).await?;
    let watched = watched_directory(&config, &writer, validation).await?;
    seed_router(&config, &writer).await?;
    let upstreams = providers(&config, options.mock_control.unwrap_or_default()).await?;
    let chat = chat_layer(&config, &engine, keys.chat.as_ref(), upstreams.service);
    let watch_dir = config.watch.as_ref().map(|w| w.dir.clone());
    let host = Arc::new(GatewayHost::new(
        writer.clone(),
        Arc::clone(&watched.names),
        watch_dir.clone(),
    ));
    let api = management_api(
        &engine,
        &host,
        &keys.api,
        validation,
        config.limits.max_body_bytes,
    );
    let state = Arc::new(AppState {
        engine: Arc::clone(&engine),
        api,
        internal_key: keys.internal,
        chat_keys: keys.chat,
        chat,
        ready: AtomicBool::new(false),
        max_body_bytes: config.limits.max_body_bytes,
        model_prefix: config.routing.model_prefix.clone(),
    });
    telemetry::prometheus();
    let listening = listen(config.listen, app(Arc::clone(&state))).await?;
    let background = background::spawn(writer_task, watched.watcher, writer);
    state.ready.store(true, Ordering::SeqCst);
    tracing::info!(
        addr = %listening.addr,
        routers = engine.load().len(),
        version = engine.version(),
        "abroute gateway ready"
    );
    Ok(Gateway {
        addr: listening.addr,
        state,
        mock: upstreams.mock,
        auth: keys.mode,
        providers: upstreams.banner,
        store_path: config.store.path.clone(),
        stop: Some(listening.stop),
        server: listening.server,
        background,
        shutdown_timeout: config.limits.shutdown_timeout,
        config_watch: watch_dir,
    })
}

/// The engine: validating with `routing.strict`'s options, with the configured health
/// thresholds.
fn engine(config: &GatewayConfig) -> Arc<Engine> {
    let validation = if config.routing.strict {
        ValidationOptions::strict()
    } else {
        ValidationOptions::default()
    };
    // The adapter's per-router data (rendered generation parameters, template bytes) is built
    // when a router is published, never by a request.
    Arc::new(
        EngineConfig::new()
            .validation(validation)
            .health(config.health)
            .prepare(Prepared::preparer())
            .build(),
    )
}

/// The router store: the state file of `[store] path` (read and validated now), or memory.
///
/// # Errors
///
/// A state file that cannot be read or is invalid, naming the file and the position.
async fn open_store(
    config: &GatewayConfig,
    validation: ValidationOptions,
) -> Result<Arc<dyn RouterStore>, StartError> {
    Ok(match &config.store.path {
        Some(path) => Arc::new(
            FileStore::open(path, &validation)
                .await
                .map_err(|e| start_error(format!("cannot load the router store:\n{e}")))?,
        ),
        None => Arc::new(MemoryStore::new()),
    })
}

/// Every stored router, loaded into the engine as one snapshot, all or nothing.
///
/// # Errors
///
/// When the store cannot be read or a stored router is invalid.
async fn load_routers(writer: &EngineWriter, store: &dyn RouterStore) -> Result<u64, StartError> {
    let stored = store
        .load_all()
        .await
        .map_err(|e| start_error(format!("cannot load the router store: {e}")))?;
    let routers = stored.configs().map_err(|(name, e)| {
        start_error(format!(
            "cannot load the router store: stored router {name:?} is invalid:\n{e}"
        ))
    })?;
    writer.replace_all(routers).await.map_err(|e| match e {
        WriteError::Invalid(e) => start_error(format!(
            "cannot load the router store: stored routers are invalid:\n{e}"
        )),
        WriteError::Stopped => start_error(format!("cannot load the router store: {e}")),
    })
}

/// The watched directory's routers and its watcher.
struct Watched {
    /// The names of the routers loaded from it (empty without a directory).
    names: WatchedNames,
    /// The watcher and the fingerprint it loaded, to run in the background.
    watcher: Option<(DirWatcher, u64)>,
}

/// Loads the watched directory of `[watch]`, if any.
///
/// # Errors
///
/// Every problem of every invalid file: they stop the start too.
async fn watched_directory(
    config: &GatewayConfig,
    writer: &EngineWriter,
    validation: ValidationOptions,
) -> Result<Watched, StartError> {
    let names: WatchedNames = Arc::new(Mutex::new(Default::default()));
    let Some(w) = &config.watch else {
        return Ok(Watched {
            names,
            watcher: None,
        });
    };
    let watcher = DirWatcher {
        dir: w.dir.clone(),
        interval: w.interval,
        writer: writer.clone(),
        watched: Arc::clone(&names),
        options: validation,
    };
    let (applied, print) = watcher.load_now().await.map_err(|problems| {
        let mut m = format!("the watched directory {} is invalid:", w.dir.display());
        for p in problems {
            let _ = write!(m, "\n{p}");
        }
        start_error(m)
    })?;
    tracing::info!(dir = %w.dir.display(), routers = applied.upserted + applied.unchanged, "watched directory loaded");
    Ok(Watched {
        names,
        watcher: Some((watcher, print)),
    })
}

/// The seed's router, with `seed_router` (the demo mode) and when no stored or watched router
/// has its name.
///
/// # Errors
///
/// Never in practice (the seed is a constant); an engine that refuses it.
async fn seed_router(config: &GatewayConfig, writer: &EngineWriter) -> Result<(), StartError> {
    if !config.seed_router
        || writer
            .engine()
            .load()
            .router("compare-frontier-models")
            .is_some()
    {
        return Ok(());
    }
    let seed = RouterConfig::from_json(SEED_ROUTER)
        .map_err(|e| start_error(format!("the seed router: {e}")))?;
    writer
        .apply(vec![Change::Upsert(seed)])
        .await
        .map_err(|e| start_error(format!("the seed router: {e}")))?;
    Ok(())
}

/// The chat path: the adapter's layer (routing options of `[routing]` and `[limits]`, chat keys,
/// tokio's timer) over `upstream`, observed for metrics and request logs.
fn chat_layer(
    config: &GatewayConfig,
    engine: &Arc<Engine>,
    chat_keys: Option<&ApiKeys>,
    upstream: UpstreamService,
) -> ChatService {
    let layer_options = LayerOptions::new()
        .merge_metadata(config.routing.merge_metadata)
        .record_extension(true)
        .attempt_timeout(config.limits.attempt_timeout);
    let mut router_options = RouterOptions::new()
        .model_prefix(config.routing.model_prefix.clone())
        .max_body_bytes(config.limits.max_body_bytes)
        .strip_provider(config.routing.strip_provider);
    if let Some(h) = &config.routing.user_header
        && let Ok(name) = http::HeaderName::from_bytes(h.as_bytes())
    {
        router_options = router_options.user_header(name);
    }
    let mut layer = AbrouteLayer::new(Arc::clone(engine))
        .options(router_options)
        .layer_options(layer_options);
    if let Some(k) = chat_keys {
        layer = layer.keys(k.clone());
    }
    let layer = layer.timer(TokioTimer);
    Observe::new(layer.layer(upstream), config.log.requests)
}

/// A listener bound and served.
struct Listening {
    /// Where it listens.
    addr: SocketAddr,
    /// Stops accepting (graceful shutdown).
    stop: oneshot::Sender<()>,
    /// The server, until it has drained.
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds `listen` and serves `app` on it until stopped.
///
/// # Errors
///
/// When the address cannot be bound.
async fn listen(listen: SocketAddr, app: axum::Router) -> Result<Listening, StartError> {
    use axum::serve::ListenerExt;
    let cannot = |e: std::io::Error| start_error(format!("cannot listen on {listen}: {e}"));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(cannot)?;
    let addr = listener.local_addr().map_err(cannot)?;
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
    Ok(Listening { addr, stop, server })
}
