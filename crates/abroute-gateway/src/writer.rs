//! The engine writer: the one task that writes the engine.
//!
//! The engine is changed from several places: the start (the store's routers), the watched
//! directory, the seed router, the timer that re-sorts routers by observed latency, and the
//! management API. Each of them sends its change as one job, through a bounded channel, to the
//! task [`EngineWriter::spawn`] starts, and awaits the job's reply. The task holds the only
//! handle that writes the engine and runs the jobs one at a time, so writes never interleave:
//! a commit of the API checks its expectation, writes the store and applies to the engine as
//! one step, and a batch from the watched directory is one snapshot version. Compiling
//! (validation, sticky tables) runs on tokio's blocking pool, never on the async threads.
//! Reads (routing, the management API's list and get) go to the engine directly and never wait
//! for the writer.
//!
//! | job | from | does |
//! |---|---|---|
//! | [`replace_all`](EngineWriter::replace_all) | the start | `Engine::replace_all` with the stored routers, compiled on every core ([`parallel_load`](crate::parallel_load)) |
//! | [`apply`](EngineWriter::apply) | the watched directory, the seed | one `Engine::apply` batch |
//! | [`refresh`](EngineWriter::refresh) | the refresh timer | `Engine::refresh` |
//! | [`remove`](EngineWriter::remove) | any host | `Engine::remove` |
//! | [`commit`](EngineWriter::commit) | the management API ([`GatewayHost`](crate::host::GatewayHost)) | check, store, engine |

use std::collections::BTreeSet;
use std::sync::Arc;

use abroute::{Change, ConfigErrors, Engine, RouterConfig, Snapshot};
use abroute_http::{CommitError, Committed, RouterChange};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::store::{Event, Expect as StoreExpect, Revision, RouterStore, StoreError, WatchItem};

/// How many jobs may wait for the writer before a source waits to send its own.
pub const QUEUE_CAPACITY: usize = 64;

/// Why a write did not happen.
#[derive(Debug, Clone)]
pub enum WriteError {
    /// The engine refused the change (every problem); nothing changed.
    Invalid(ConfigErrors),
    /// The writer is gone (the gateway is stopping), or the write failed inside it; no change
    /// is known to have been made.
    Stopped,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Invalid(e) => write!(f, "{e}"),
            WriteError::Stopped => f.write_str("the engine writer has stopped"),
        }
    }
}

impl std::error::Error for WriteError {}

/// One job, with the channel its result goes back on.
enum Job {
    ReplaceAll {
        routers: Vec<RouterConfig>,
        reply: oneshot::Sender<Result<u64, ConfigErrors>>,
    },
    Apply {
        changes: Vec<Change>,
        reply: oneshot::Sender<Result<u64, ConfigErrors>>,
    },
    Refresh {
        reply: oneshot::Sender<u64>,
    },
    Remove {
        name: String,
        reply: oneshot::Sender<bool>,
    },
    Commit {
        change: RouterChange,
        reply: oneshot::Sender<Result<Committed, CommitError>>,
    },
    Follow {
        item: WatchItem,
        keep: BTreeSet<String>,
        reply: oneshot::Sender<Result<Followed, ConfigErrors>>,
    },
}

/// What [`EngineWriter::follow`] did with one item of a shared store's watch.
#[derive(Debug, Clone, Default)]
pub struct Followed {
    /// The snapshot version published (the store's revision, unless a local write had taken
    /// the engine past it).
    pub version: u64,
    /// The routers applied (put or deleted).
    pub applied: usize,
    /// The routers refused, each with every problem (paths from the router's root); the
    /// router they would have replaced keeps serving.
    pub rejected: Vec<(String, ConfigErrors)>,
    /// The valid routers of the item, as configs with their mod_revisions (deleted: `None`),
    /// for the local copy.
    pub routers: Vec<(String, Option<(RouterConfig, Revision)>)>,
}

/// The handle every source writes the engine through. Cheap to clone; the task stops when the
/// last handle is dropped (or when it is aborted).
#[derive(Debug, Clone)]
pub struct EngineWriter {
    jobs: mpsc::Sender<Job>,
    engine: Arc<Engine>,
}

impl EngineWriter {
    /// Starts the writer of `engine`, recording the API's changes in `store`. Must run inside a
    /// tokio runtime. Returns the handle and the task.
    pub fn spawn(
        engine: Arc<Engine>,
        store: Arc<dyn RouterStore>,
    ) -> (EngineWriter, JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(QUEUE_CAPACITY);
        let task = tokio::spawn(run(Arc::clone(&engine), store, queue));
        (EngineWriter { jobs, engine }, task)
    }

    /// The engine, for reading (snapshots, versions, metrics). Write through the writer.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Sends a job made with `make` and waits for its reply.
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Job) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(make(reply)).await.ok()?;
        answer.await.ok()
    }

    /// Replaces every router with `routers`, as one snapshot (the start's load of the store).
    /// Returns the new version.
    ///
    /// # Errors
    ///
    /// Every problem of every router ([`WriteError::Invalid`]), or [`WriteError::Stopped`].
    pub async fn replace_all(&self, routers: Vec<RouterConfig>) -> Result<u64, WriteError> {
        self.ask(|reply| Job::ReplaceAll { routers, reply })
            .await
            .ok_or(WriteError::Stopped)?
            .map_err(WriteError::Invalid)
    }

    /// Applies `changes` as one batch, one snapshot version (`Engine::apply`). Returns the new
    /// version (the current one for an empty batch).
    ///
    /// # Errors
    ///
    /// Every problem of every change ([`WriteError::Invalid`]), or [`WriteError::Stopped`].
    pub async fn apply(&self, changes: Vec<Change>) -> Result<u64, WriteError> {
        self.ask(|reply| Job::Apply { changes, reply })
            .await
            .ok_or(WriteError::Stopped)?
            .map_err(WriteError::Invalid)
    }

    /// Recompiles the routers sorted by observed metrics (`Engine::refresh`). Returns the
    /// snapshot version.
    ///
    /// # Errors
    ///
    /// [`WriteError::Stopped`].
    pub async fn refresh(&self) -> Result<u64, WriteError> {
        self.ask(|reply| Job::Refresh { reply })
            .await
            .ok_or(WriteError::Stopped)
    }

    /// Removes the router `name` from the engine only (not from the store). True if it was
    /// loaded.
    ///
    /// # Errors
    ///
    /// [`WriteError::Stopped`].
    pub async fn remove(&self, name: &str) -> Result<bool, WriteError> {
        let name = name.to_owned();
        self.ask(|reply| Job::Remove { name, reply })
            .await
            .ok_or(WriteError::Stopped)
    }

    /// Applies one item of a shared store's watch as one snapshot: a batch of changes with
    /// [`Engine::apply_carrying`] at its revision, a reset with [`Engine::replace_all_carrying`]
    /// (the routers carry the revision, and so does the snapshot unless a local change took the
    /// engine past it). An invalid
    /// router is left out (and reported in [`Followed::rejected`]) and the rest applies; the
    /// routers named in `keep` (the watched directory's, which take precedence) are never
    /// touched, and a reset keeps them.
    ///
    /// # Errors
    ///
    /// [`WriteError::Invalid`] only if the engine refuses the valid rest (not expected), or
    /// [`WriteError::Stopped`].
    pub async fn follow(
        &self,
        item: WatchItem,
        keep: BTreeSet<String>,
    ) -> Result<Followed, WriteError> {
        self.ask(|reply| Job::Follow { item, keep, reply })
            .await
            .ok_or(WriteError::Stopped)?
            .map_err(WriteError::Invalid)
    }

    /// Makes a change of the management API durable and live, as one step: checks its
    /// expectation against the engine, records it in the store, then applies it to the engine;
    /// if the engine refuses it, puts the store back as it was.
    ///
    /// # Errors
    ///
    /// [`CommitError::Conflict`] when the expectation fails, [`CommitError::Unavailable`] when
    /// the store fails or the writer is gone, [`CommitError::Invalid`] when the engine refuses
    /// the config. Nothing changed in any case.
    pub async fn commit(&self, change: RouterChange) -> Result<Committed, CommitError> {
        self.ask(|reply| Job::Commit { change, reply })
            .await
            .unwrap_or_else(|| {
                Err(CommitError::Unavailable(
                    "the engine writer has stopped".into(),
                ))
            })
    }
}

/// The writer task: one job at a time, until every handle is gone.
async fn run(engine: Arc<Engine>, store: Arc<dyn RouterStore>, mut queue: mpsc::Receiver<Job>) {
    while let Some(job) = queue.recv().await {
        // A reply nobody waits for any more (the source went away) is dropped; the write stands.
        match job {
            Job::ReplaceAll { routers, reply } => {
                let load = move |e: &Engine| crate::parallel_load::replace_all(e, routers);
                if let Some(r) = compiling(&engine, load).await {
                    let _ = reply.send(r);
                }
            }
            Job::Apply { changes, reply } => {
                if let Some(r) = compiling(&engine, move |e| e.apply(changes)).await {
                    let _ = reply.send(r);
                }
            }
            Job::Refresh { reply } => {
                if let Some(v) = compiling(&engine, Engine::refresh).await {
                    let _ = reply.send(v);
                }
            }
            Job::Remove { name, reply } => {
                if let Some(removed) = compiling(&engine, move |e| e.remove(&name)).await {
                    let _ = reply.send(removed);
                }
            }
            Job::Commit { change, reply } => {
                let _ = reply.send(commit(&engine, store.as_ref(), change).await);
            }
            Job::Follow { item, keep, reply } => {
                if let Some(r) = compiling(&engine, move |e| follow(e, item, &keep)).await {
                    let _ = reply.send(r);
                }
            }
        }
    }
}

/// Runs `write` on the blocking pool (it compiles, or copies the snapshot's map). `None` when
/// it panicked: the source then hears [`WriteError::Stopped`].
async fn compiling<T: Send + 'static>(
    engine: &Arc<Engine>,
    write: impl FnOnce(&Engine) -> T + Send + 'static,
) -> Option<T> {
    let engine = Arc::clone(engine);
    tokio::task::spawn_blocking(move || write(&engine))
        .await
        .ok()
}

/// One item of a shared store's watch, applied (see [`EngineWriter::follow`]). Blocking: it
/// compiles.
fn follow(
    engine: &Engine,
    item: WatchItem,
    keep: &BTreeSet<String>,
) -> Result<Followed, ConfigErrors> {
    let mut followed = Followed::default();
    let valid = |name: &str, config: &serde_json::Value, out: &mut Followed| {
        match RouterConfig::from_value(config).and_then(|c| {
            c.compile_with(engine.options())?;
            Ok(c)
        }) {
            Ok(c) if c.name == name => Some(c),
            Ok(c) => {
                let kind = abroute::ConfigErrorKind::InvalidName {
                    name: c.name.clone(),
                };
                let path = abroute::JsonPath::root().key("name");
                out.rejected.push((
                    name.to_owned(),
                    abroute::ConfigError::new(path, kind).into(),
                ));
                None
            }
            Err(e) => {
                out.rejected.push((name.to_owned(), e));
                None
            }
        }
    };
    let revision = item.revision().get();
    let version = match item {
        WatchItem::Changes { events, .. } => {
            let mut changes = Vec::new();
            for event in events.iter().filter(|e| !keep.contains(e.name())) {
                match event {
                    Event::Put {
                        name,
                        config,
                        mod_revision,
                    } => {
                        if let Some(c) = valid(name, config, &mut followed) {
                            followed
                                .routers
                                .push((name.clone(), Some((c.clone(), *mod_revision))));
                            changes.push(Change::Upsert(c));
                        }
                    }
                    Event::Delete { name, .. } => {
                        followed.routers.push((name.clone(), None));
                        changes.push(Change::Remove(name.clone()));
                    }
                }
            }
            followed.applied = changes.len();
            if changes.is_empty() && revision <= engine.version() {
                // Nothing valid to apply, and a local change took the engine past the revision.
                engine.version()
            } else {
                // The routers carry the revision; the snapshot too unless a local change took
                // the engine past it (docs/fleet.md, "Local changes in a fleet").
                engine.apply_carrying(changes, revision)?
            }
        }
        WatchItem::Reset { routers, .. } => {
            let before = engine.load_full();
            let mut configs: Vec<RouterConfig> = keep
                .iter()
                .filter_map(|n| before.router(n).map(|r| r.config().clone()))
                .collect();
            for r in routers.iter().filter(|r| !keep.contains(&r.name)) {
                if let Some(c) = valid(&r.name, &r.config, &mut followed) {
                    followed
                        .routers
                        .push((r.name.clone(), Some((c.clone(), r.mod_revision))));
                    configs.push(c);
                }
            }
            followed.applied = configs.len();
            let unchanged = configs.len() == before.len()
                && configs
                    .iter()
                    .all(|c| before.router(&c.name).is_some_and(|r| *r.config() == *c));
            if unchanged && revision <= engine.version() {
                // The routers served already (an empty store on an empty engine at a first
                // start; a replica that served its local copy of this revision and reached
                // the store): nothing to publish, so the version stays the store's.
                engine.version()
            } else {
                engine.replace_all_carrying(configs, revision)?
            }
        }
    };
    followed.version = version;
    Ok(followed)
}

/// One commit: expectation, store, engine (and the store put back if the engine refuses).
async fn commit(
    engine: &Arc<Engine>,
    store: &dyn RouterStore,
    change: RouterChange,
) -> Result<Committed, CommitError> {
    let before = engine.load_full();
    change.check(&before)?;
    let unavailable = |e: StoreError| CommitError::Unavailable(e.to_string());
    match change {
        RouterChange::Put { config, .. } => {
            store
                .put(&config, StoreExpect::Any)
                .await
                .map_err(unavailable)?;
            let name = config.name.clone();
            match compiling(engine, move |e| e.upsert(config)).await {
                Some(Ok(version)) => Ok(Committed { version }),
                refused => {
                    // The engine validates with its own options (stricter than the API's, or a
                    // bug): put the store back as it was, so a restart loads what is served.
                    restore(store, &before, &name).await;
                    Err(match refused {
                        Some(Err(errors)) => CommitError::Invalid(errors),
                        _ => CommitError::Unavailable("the engine did not take the change".into()),
                    })
                }
            }
        }
        RouterChange::Delete { name, .. } => {
            // The engine's check passed: a router the store does not hold (the seed's) goes
            // from the engine only.
            match store.delete(&name, StoreExpect::Any).await {
                Ok(_) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(unavailable(e)),
            }
            let removed = compiling(engine, move |e| {
                e.remove(&name);
                e.version()
            })
            .await;
            removed.map(|version| Committed { version }).ok_or_else(|| {
                CommitError::Unavailable("the engine did not take the change".into())
            })
        }
    }
}

/// Puts the router `name` in `store` back to what `before` served.
async fn restore(store: &dyn RouterStore, before: &Snapshot, name: &str) {
    let restored = match before.router(name) {
        Some(previous) => store.put(previous.config(), StoreExpect::Any).await,
        None => store.delete(name, StoreExpect::Any).await,
    }
    .map(|_| ());
    if let Err(e) = restored {
        tracing::error!(router = name, error = %e, "cannot put the router store back after the engine refused a change");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use abroute::ValidationOptions;
    use abroute_http::Expect;

    use super::*;
    use crate::store::{MemoryStore, Revision, StoreFuture, Stored, Watch};

    fn config(name: &str, weight: u32) -> RouterConfig {
        RouterConfig::from_json(&format!(
            r#"{{"name": "{name}", "defaultRoute": {{"route_id": "default", "variants": [
              {{"variant": {{"variant_id": "a", "model_id": "openai/gpt-4.1"}}, "weight": {weight}}}]}}}}"#
        ))
        .expect("valid router")
    }

    /// A memory store that can be told to fail.
    #[derive(Default)]
    struct FlakyStore {
        inner: MemoryStore,
        failing: AtomicBool,
    }

    impl FlakyStore {
        fn check(&self) -> Result<(), StoreError> {
            if self.failing.load(Ordering::SeqCst) {
                Err(StoreError::Unavailable("told to fail".into()))
            } else {
                Ok(())
            }
        }
    }

    impl RouterStore for FlakyStore {
        fn load_all(&self) -> StoreFuture<'_, Stored> {
            self.inner.load_all()
        }
        fn put<'a>(
            &'a self,
            router: &'a RouterConfig,
            expect: StoreExpect,
        ) -> StoreFuture<'a, Revision> {
            Box::pin(async move {
                self.check()?;
                self.inner.put(router, expect).await
            })
        }
        fn delete<'a>(&'a self, name: &'a str, expect: StoreExpect) -> StoreFuture<'a, Revision> {
            Box::pin(async move {
                self.check()?;
                self.inner.delete(name, expect).await
            })
        }
        fn watch(&self, from: Revision) -> Watch {
            self.inner.watch(from)
        }
    }

    fn put(config: RouterConfig, expect: Expect) -> RouterChange {
        RouterChange::Put { config, expect }
    }

    async fn stored(store: &dyn RouterStore) -> Vec<RouterConfig> {
        store.load_all().await.unwrap().configs().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_meet_their_expectations_one_at_a_time() {
        let engine = Arc::new(Engine::new());
        let store = Arc::new(MemoryStore::new());
        let (writer, _task) = EngineWriter::spawn(Arc::clone(&engine), store.clone());
        // Eight creates of one name at once: exactly one finds it absent.
        let creates: Vec<_> = (0..8)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(
                    async move { writer.commit(put(config("r", i + 1), Expect::Absent)).await },
                )
            })
            .collect();
        let mut created = Vec::new();
        let mut conflicts = 0;
        for t in creates {
            match t.await.unwrap() {
                Ok(c) => created.push(c.version),
                Err(CommitError::Conflict { current: Some(_) }) => conflicts += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((created.len(), conflicts), (1, 7));
        let v1 = created[0];
        // Eight updates of what they all read: exactly one lands, the others see its version.
        let updates: Vec<_> = (0..8)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .commit(put(config("r", 10 + i), Expect::Version(v1)))
                        .await
                })
            })
            .collect();
        let mut landed = Vec::new();
        let mut seen = Vec::new();
        for t in updates {
            match t.await.unwrap() {
                Ok(c) => landed.push(c.version),
                Err(CommitError::Conflict { current }) => seen.push(current),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(landed.len(), 1);
        let v2 = landed[0];
        assert!(seen.iter().all(|c| *c == Some(v2)), "{seen:?}");
        // The store holds what the engine serves.
        let served = engine.load().router("r").unwrap().config().clone();
        assert_eq!(stored(store.as_ref()).await, vec![served]);
        // A delete of a stale version conflicts; of the current one, it goes from both.
        let delete = |expect| RouterChange::Delete {
            name: "r".into(),
            expect,
        };
        assert!(matches!(
            writer.commit(delete(Expect::Version(v1))).await,
            Err(CommitError::Conflict { current: Some(v) }) if v == v2
        ));
        writer.commit(delete(Expect::Version(v2))).await.unwrap();
        assert!(engine.load().router("r").is_none());
        assert!(stored(store.as_ref()).await.is_empty());
        assert!(matches!(
            writer.commit(delete(Expect::Version(v2))).await,
            Err(CommitError::Conflict { current: None })
        ));
    }

    #[tokio::test]
    async fn a_failing_store_changes_nothing() {
        let engine = Arc::new(Engine::new());
        let store = Arc::new(FlakyStore::default());
        let (writer, _task) = EngineWriter::spawn(Arc::clone(&engine), store.clone());
        let v1 = writer
            .commit(put(config("r", 1), Expect::Absent))
            .await
            .unwrap()
            .version;
        store.failing.store(true, Ordering::SeqCst);
        let before = engine.version();
        assert!(matches!(
            writer.commit(put(config("r", 2), Expect::Version(v1))).await,
            Err(CommitError::Unavailable(m)) if m.contains("told to fail")
        ));
        assert!(matches!(
            writer
                .commit(RouterChange::Delete {
                    name: "r".into(),
                    expect: Expect::Any
                })
                .await,
            Err(CommitError::Unavailable(_))
        ));
        assert_eq!(engine.version(), before);
        assert_eq!(engine.load().router("r").unwrap().config(), &config("r", 1));
        assert_eq!(stored(store.as_ref()).await, vec![config("r", 1)]);
    }

    #[tokio::test]
    async fn an_engine_refusal_puts_the_store_back() {
        // The engine is stricter than the change (weights must sum to 100).
        let engine = Arc::new(Engine::with_options(ValidationOptions::strict()));
        let store = Arc::new(MemoryStore::new());
        let (writer, _task) = EngineWriter::spawn(Arc::clone(&engine), store.clone());
        let v1 = writer
            .commit(put(config("r", 100), Expect::Absent))
            .await
            .unwrap()
            .version;
        // An update the engine refuses: the store is back to the served router.
        assert!(matches!(
            writer
                .commit(put(config("r", 50), Expect::Version(v1)))
                .await,
            Err(CommitError::Invalid(_))
        ));
        assert_eq!(stored(store.as_ref()).await, vec![config("r", 100)]);
        // A create the engine refuses: the store no longer holds it.
        assert!(matches!(
            writer.commit(put(config("new", 50), Expect::Absent)).await,
            Err(CommitError::Invalid(_))
        ));
        assert_eq!(stored(store.as_ref()).await, vec![config("r", 100)]);
        assert_eq!(engine.version(), v1);
    }

    #[tokio::test]
    async fn batches_are_one_version_and_writes_outside_commit_leave_the_store_alone() {
        let engine = Arc::new(Engine::new());
        let store = Arc::new(MemoryStore::new());
        let (writer, task) = EngineWriter::spawn(Arc::clone(&engine), store.clone());
        let v0 = writer.replace_all(vec![config("a", 1)]).await.unwrap();
        let v1 = writer
            .apply(vec![
                Change::Upsert(config("b", 1)),
                Change::Upsert(config("c", 1)),
                Change::Remove("a".into()),
            ])
            .await
            .unwrap();
        assert_eq!(v1, v0 + 1);
        assert_eq!(engine.load().names(), vec!["b", "c"]);
        // An invalid batch changes nothing.
        let e = writer
            .apply(vec![
                Change::Upsert(config("d", 1)),
                Change::Upsert(config("d", 2)),
            ])
            .await
            .unwrap_err();
        assert!(matches!(e, WriteError::Invalid(_)), "{e}");
        assert_eq!(engine.version(), v1);
        assert!(writer.remove("b").await.unwrap());
        assert!(!writer.remove("b").await.unwrap());
        // No router reads metrics: nothing to refresh.
        assert_eq!(writer.refresh().await.unwrap(), v1 + 1);
        assert!(stored(store.as_ref()).await.is_empty());
        // Once the task is gone, writes say so.
        task.abort();
        let _ = task.await;
        assert!(matches!(
            writer.apply(Vec::new()).await,
            Err(WriteError::Stopped)
        ));
        assert!(matches!(
            writer.commit(put(config("x", 1), Expect::Any)).await,
            Err(CommitError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn followed_items_publish_at_their_revision_and_leave_invalid_and_kept_routers_alone() {
        use crate::store::{Event, StoredRouter};
        let engine = Arc::new(Engine::new());
        let (writer, _task) =
            EngineWriter::spawn(Arc::clone(&engine), Arc::new(MemoryStore::new()));
        let value = |c: &RouterConfig| serde_json::to_value(c).unwrap();
        let keep = BTreeSet::from(["w".to_owned()]);
        writer
            .apply(vec![Change::Upsert(config("w", 1))])
            .await
            .unwrap();
        // A reset at revision 5 keeps the watched router and publishes at 5.
        let reset = WatchItem::Reset {
            revision: Revision(5),
            routers: vec![StoredRouter {
                name: "a".into(),
                config: value(&config("a", 1)),
                mod_revision: Revision(5),
            }],
        };
        let f = writer.follow(reset, keep.clone()).await.unwrap();
        assert_eq!((f.version, f.applied), (5, 2));
        assert_eq!(engine.load().names(), vec!["a", "w"]);
        // A batch with an invalid router and one of the watched names: the rest applies at 8.
        let mut bad = value(&config("a", 1));
        bad["defaultRoute"]["variants"][0]["weight"] = 0.into();
        let put = |name: &str, config, r| Event::Put {
            name: name.into(),
            config,
            mod_revision: Revision(r),
        };
        let batch = WatchItem::Changes {
            revision: Revision(8),
            events: vec![
                put("a", bad, 6),
                put("w", value(&config("w", 9)), 7),
                put("b", value(&config("b", 1)), 8),
            ],
        };
        let f = writer.follow(batch, keep.clone()).await.unwrap();
        assert_eq!((f.version, f.applied), (8, 1));
        assert_eq!(f.rejected.len(), 1);
        assert_eq!(f.rejected[0].0, "a");
        assert!(
            f.rejected[0].1.errors()[0]
                .path
                .to_string()
                .starts_with("defaultRoute"),
            "{:?}",
            f.rejected[0].1
        );
        let snapshot = engine.load();
        assert_eq!(snapshot.names(), vec!["a", "b", "w"]);
        assert_eq!(snapshot.router("a").unwrap().compiled().version(), 5);
        assert_eq!(snapshot.router("w").unwrap().config(), &config("w", 1));
        assert_eq!(snapshot.version(), 8);
        // A delete, and a batch that only rejects still publishes its revision.
        let delete = WatchItem::Changes {
            revision: Revision(9),
            events: vec![Event::Delete {
                name: "b".into(),
                mod_revision: Revision(9),
            }],
        };
        assert_eq!(
            writer.follow(delete, keep.clone()).await.unwrap().version,
            9
        );
        assert!(engine.load().router("b").is_none());
        // A change of the watched directory takes the engine to 10, past the store's next
        // revision: the store's routers still carry their revisions, the snapshot grows.
        writer
            .apply(vec![Change::Upsert(config("w", 2))])
            .await
            .unwrap();
        assert_eq!(engine.version(), 10);
        let batch = WatchItem::Changes {
            revision: Revision(10),
            events: vec![put("b", value(&config("b", 2)), 10)],
        };
        assert_eq!(
            writer.follow(batch, keep.clone()).await.unwrap().version,
            11
        );
        assert_eq!(engine.load().router("b").unwrap().compiled().version(), 10);
        // A batch that only rejects publishes nothing then.
        let mut bad = value(&config("a", 1));
        bad["defaultRoute"]["variants"][0]["weight"] = 0.into();
        let batch = WatchItem::Changes {
            revision: Revision(11),
            events: vec![put("a", bad, 11)],
        };
        assert_eq!(
            writer.follow(batch, keep.clone()).await.unwrap().version,
            11
        );
        // A reset behind the engine that changes a router: every router carries the revision.
        let reset = WatchItem::Reset {
            revision: Revision(11),
            routers: vec![StoredRouter {
                name: "b".into(),
                config: value(&config("b", 3)),
                mod_revision: Revision(11),
            }],
        };
        assert_eq!(
            writer
                .follow(reset.clone(), keep.clone())
                .await
                .unwrap()
                .version,
            12
        );
        assert_eq!(engine.load().router("b").unwrap().compiled().version(), 11);
        assert_eq!(engine.load().names(), vec!["b", "w"]);
        // The same reset again changes nothing and publishes nothing.
        assert_eq!(writer.follow(reset, keep).await.unwrap().version, 12);
    }
}
