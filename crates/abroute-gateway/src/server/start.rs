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
//! | [`listen`] | the bound listener, served within the client limits (`limits`) |
//! | [`background::spawn`] | the watcher, the refresh timer, the metrics upkeep |
//!
//! A step that fails stops the start with a [`StartError`] naming what is wrong; the first
//! steps (the store, the keys, the routers) fail before anything listens.

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abroute::{Change, Engine, EngineConfig, RouterConfig, ValidationOptions};
use abroute_http::{AbrouteLayer, ApiKeys, LayerOptions, Prepared, RouterOptions};
use tokio::sync::oneshot;
use tower::Layer;

use super::background;
use super::keys::keys;
use super::limits;
use super::management::management_api;
use super::providers::providers;
use super::routes::{AppState, ChatService, app};
use super::{Gateway, SEED_ROUTER, StartError, StartOptions, TokioTimer, start_error};
use crate::config::GatewayConfig;
use crate::fleet::Fleet;
use crate::host::{FleetSlot, GatewayHost};
use crate::store::postgres::{PostgresStore, jittered};
use crate::store::{FileStore, MemoryStore, RouterStore, WatchItem};
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
    let shared = shared_store(&config, validation).await?;
    let store = match &shared {
        Some(_) => Arc::new(MemoryStore::new()),
        None => open_store(&config, validation).await?,
    };
    let keys = keys(&config.auth)?;
    let (writer, writer_task) = EngineWriter::spawn(Arc::clone(&engine), Arc::clone(&store));
    if shared.is_none() {
        load_routers(&writer, store.as_ref()).await?;
    }
    let watched = watched_directory(&config, &writer, validation).await?;
    let fleet_slot: FleetSlot = Arc::default();
    let mut replica = None;
    let mut ready = true;
    if let Some(shared) = shared {
        let (snapshot, follower) =
            replica_start(shared, &writer, &watched.names, &fleet_slot).await?;
        ready = snapshot;
        replica = Some(follower);
    } else {
        seed_router(&config, &writer).await?;
    }
    let upstreams = providers(&config, options.mock_control.unwrap_or_default()).await?;
    let chat = chat_layer(&config, &engine, keys.chat.as_ref(), upstreams.service);
    let watch_dir = config.watch.as_ref().map(|w| w.dir.clone());
    let mut host = GatewayHost::new(
        writer.clone(),
        Arc::clone(&watched.names),
        watch_dir.clone(),
    );
    if replica.is_some() {
        host = host.with_fleet(Arc::clone(&fleet_slot));
    }
    let host = Arc::new(host);
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
    limits::describe();
    let listening = listen(config.listen, &config.limits, app(Arc::clone(&state))).await?;
    let mut background = background::spawn(writer_task, watched.watcher, writer);
    if let Some(follower) = replica {
        let state = Arc::clone(&state);
        background.push(tokio::spawn(async move {
            let on_ready = move || state.ready.store(true, Ordering::SeqCst);
            follower.run(on_ready).await;
        }));
    }
    state.ready.store(ready, Ordering::SeqCst);
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
            .lazy_sticky_tables(config.routing.lazy_sticky_tables)
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

/// The shared store of `[store] url` with the local copy of `[store] path`.
struct Shared {
    /// The store, when it was reached at start.
    store: Option<Arc<PostgresStore>>,
    /// The URL and CA file, to connect later when it was not.
    url: String,
    ca_file: Option<std::path::PathBuf>,
    /// The local copy of the last snapshot applied.
    local: Option<Arc<FileStore>>,
    /// `[store] tombstone_retention`.
    retention: Duration,
}

/// The shared store of `[store] url`, if any: connected now, or (unreachable) to be connected
/// in the background while the local copy serves.
///
/// # Errors
///
/// A malformed URL, a refused password, a missing database or missing permissions, a schema
/// too new, a TLS failure (every message names the store without its password), or a local
/// copy that cannot be read.
async fn shared_store(
    config: &GatewayConfig,
    validation: ValidationOptions,
) -> Result<Option<Shared>, StartError> {
    let Some(url) = &config.store.url else {
        return Ok(None);
    };
    let local = match &config.store.path {
        Some(path) => Some(Arc::new(FileStore::open(path, &validation).await.map_err(
            |e| {
                start_error(format!(
                    "cannot load the local copy of the router store:\n{e}"
                ))
            },
        )?)),
        None => None,
    };
    let ca_file = config.store.ca_file.clone();
    let store = match PostgresStore::connect(url, ca_file.as_deref()).await {
        Ok(s) => Some(Arc::new(s)),
        Err(e) if e.is_unavailable() => {
            tracing::warn!(error = %e, "the router store is unreachable: serving from the local copy, connecting in the background");
            None
        }
        Err(e) => return Err(start_error(format!("cannot use the router store: {e}"))),
    };
    Ok(Some(Shared {
        store,
        url: url.clone(),
        ca_file,
        local,
        retention: config.store.tombstone_retention(),
    }))
}

/// The replica's follower: connects (if it has not yet) and follows the store.
struct Follower {
    shared: Shared,
    writer: EngineWriter,
    watched: WatchedNames,
    slot: FleetSlot,
    /// Ready to follow (the store was loaded at start).
    started: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Follower {
    /// Connects with backoff and jitter (100 ms to 10 s) when the store was not reached at
    /// start, loads it (`on_ready` then), and follows it until the gateway stops.
    async fn run(mut self, on_ready: impl FnOnce() + Send) {
        if let Some(follow) = self.started.take() {
            return follow.await;
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::time::sleep(jittered(backoff)).await;
            match PostgresStore::connect(&self.shared.url, self.shared.ca_file.as_deref()).await {
                Ok(store) => {
                    let started = Fleet::start(
                        Arc::new(store),
                        self.writer.clone(),
                        Arc::clone(&self.watched),
                        self.shared.local.clone(),
                        self.shared.retention,
                    )
                    .await;
                    match started {
                        Ok((fleet, follow)) => {
                            tracing::info!(
                                revision = fleet.revision().get(),
                                "the router store is reachable again: loaded"
                            );
                            let _ = self.slot.set(fleet);
                            on_ready();
                            return follow.await;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot load the router store"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the router store is still unreachable"),
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

/// Loads the replica: the shared store when it was reached (then follows it), else the local
/// copy; whether a snapshot was loaded (`/readyz`), and the follower to run in the background.
///
/// # Errors
///
/// When the store cannot be read now that it was reached, or the local copy is refused.
async fn replica_start(
    shared: Shared,
    writer: &EngineWriter,
    watched: &WatchedNames,
    slot: &FleetSlot,
) -> Result<(bool, Follower), StartError> {
    let mut follower = Follower {
        writer: writer.clone(),
        watched: Arc::clone(watched),
        slot: Arc::clone(slot),
        started: None,
        shared,
    };
    if let Some(store) = follower.shared.store.clone() {
        let (fleet, follow) = Fleet::start(
            store,
            writer.clone(),
            Arc::clone(watched),
            follower.shared.local.clone(),
            follower.shared.retention,
        )
        .await
        .map_err(|e| start_error(format!("cannot load the router store: {e}")))?;
        tracing::info!(
            revision = fleet.revision().get(),
            routers = writer.engine().load().len(),
            "router store loaded"
        );
        let _ = slot.set(fleet);
        follower.started = Some(Box::pin(follow));
        return Ok((true, follower));
    }
    // The store is away: the local copy, if there is one.
    let Some(local) = &follower.shared.local else {
        return Ok((false, follower));
    };
    if !local.path().exists() {
        return Ok((false, follower));
    }
    let stored = local
        .load_all()
        .await
        .map_err(|e| start_error(format!("cannot load the local copy: {e}")))?;
    let keep = watched
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let item = WatchItem::Reset {
        revision: stored.revision,
        routers: stored.routers,
    };
    let followed = writer
        .follow(item, keep)
        .await
        .map_err(|e| start_error(format!("cannot load the local copy: {e}")))?;
    tracing::info!(
        revision = stored.revision.get(),
        routers = followed.applied,
        "serving the local copy of the router store"
    );
    Ok((true, follower))
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
    let names: Vec<String> = routers.iter().map(|r| r.name.clone()).collect();
    writer.replace_all(routers).await.map_err(|e| match e {
        WriteError::Invalid(e) => start_error(format!(
            "cannot load the router store: stored routers are invalid:\n{}",
            name_stored_routers(&e, &names)
        )),
        WriteError::Stopped => start_error(format!("cannot load the router store: {e}")),
    })
}

/// The errors of loading the stored routers, each line's leading `[i]` replaced by the
/// router's name (`routers["tenant-7"].defaultRoute...`): the index is the position in the
/// store's listing, which means nothing to an operator.
fn name_stored_routers(errors: &abroute::ConfigErrors, names: &[String]) -> String {
    errors
        .to_string()
        .lines()
        .map(|line| {
            let named = line.strip_prefix('[').and_then(|rest| {
                let (index, tail) = rest.split_once(']')?;
                let name = names.get(index.parse::<usize>().ok()?)?;
                Some(format!("routers[{name:?}]{tail}"))
            });
            named.unwrap_or_else(|| line.to_owned())
        })
        .collect::<Vec<_>>()
        .join("\n")
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
        .attempt_timeout(config.limits.attempt_timeout)
        .stream_observer(Arc::new(crate::experiment::StreamMetrics::new(Arc::clone(
            engine,
        ))));
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
    Observe::new(layer.layer(upstream), config.log.requests).experiment(Arc::clone(engine))
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

/// Binds `listen` and serves `app` on it within `[limits]` (see `limits`) until stopped.
///
/// # Errors
///
/// When the address cannot be bound.
async fn listen(
    listen: SocketAddr,
    config: &crate::config::Limits,
    app: axum::Router,
) -> Result<Listening, StartError> {
    let cannot = |e: std::io::Error| start_error(format!("cannot listen on {listen}: {e}"));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(cannot)?;
    let addr = listener.local_addr().map_err(cannot)?;
    let nofile = limits::raise_file_limit();
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let resolved = limits::ServerLimits::resolve(config, nofile, cpus);
    tracing::info!(
        max_connections = resolved.max_connections,
        max_in_flight = resolved.max_in_flight,
        file_limit = nofile,
        "client limits"
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(limits::serve(listener, app, resolved, stopped));
    Ok(Listening { addr, stop, server })
}
