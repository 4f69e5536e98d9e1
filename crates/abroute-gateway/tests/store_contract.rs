//! One contract over the router store interface ([`RouterStore`]), run against every backend:
//! the memory store, the state file and PostgreSQL (a throwaway cluster, skipped without
//! PostgreSQL unless `ABROUTE_REQUIRE_POSTGRES=1`).
//!
//! Compare-and-set conflicts naming the current revision, revisions in commit order with none
//! skipped or repeated under concurrent writers, no lost update in a read-modify-write race,
//! watching from a revision (own changes included), and the reset of a watcher whose history
//! was compacted.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use abroute::{RouterConfig, ValidationOptions};
use abroute_gateway::store::postgres::PostgresStore;
use abroute_gateway::store::{
    Conflict, Event, Expect, FileStore, MemoryStore, Revision, RouterStore, StoreError, Watch,
    WatchItem,
};
use common::postgres::{PgCluster, cluster};

fn router(name: &str, weight: u32) -> RouterConfig {
    RouterConfig::from_json(&format!(
        r#"{{"name": "{name}", "defaultRoute": {{"route_id": "d", "variants": [
          {{"variant": {{"variant_id": "a", "model_id": "m/a"}}, "weight": {weight}}}]}}}}"#
    ))
    .unwrap()
}

fn weight(config: &serde_json::Value) -> u64 {
    config["defaultRoute"]["variants"][0]["weight"]
        .as_u64()
        .unwrap()
}

type Compact = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Revision> + Send>> + Send + Sync>;

/// A backend under test: the store, and how to compact its history (forget every change up to
/// now, tombstones included).
struct Backend {
    store: Arc<dyn RouterStore>,
    compact: Compact,
    /// Kept alive for the test.
    _cluster: Option<PgCluster>,
}

type Compacting<S> = fn(Arc<S>) -> Pin<Box<dyn Future<Output = Revision> + Send>>;

/// A backend of `store`, compacted by `compact`.
fn backend<S: RouterStore>(store: Arc<S>, compact: Compacting<S>) -> Backend {
    let s = Arc::clone(&store);
    Backend {
        store,
        compact: Box::new(move || compact(Arc::clone(&s))),
        _cluster: None,
    }
}

async fn memory() -> Option<Backend> {
    Some(backend(Arc::new(MemoryStore::new()), |s| {
        Box::pin(async move { s.compact().await })
    }))
}

async fn file() -> Option<Backend> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "abroute-contract-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = FileStore::open(&dir.join("state.json"), &ValidationOptions::default())
        .await
        .unwrap();
    Some(backend(Arc::new(store), |s| {
        Box::pin(async move { s.compact().await })
    }))
}

async fn postgres(name: &str) -> Option<Backend> {
    let pg = cluster(name)?;
    let store = Arc::new(PostgresStore::connect(&pg.url(), None).await.unwrap());
    let mut b = backend(store, |s| {
        Box::pin(async move { s.compact(Duration::ZERO).await.unwrap() })
    });
    b._cluster = Some(pg);
    Some(b)
}

async fn next(watch: &mut Watch) -> WatchItem {
    tokio::time::timeout(Duration::from_secs(10), watch.items.recv())
        .await
        .expect("an item from the watcher within 10 s")
        .expect("the watcher is running")
}

fn conflict(r: Result<Revision, StoreError>) -> Option<Revision> {
    match r {
        Err(StoreError::Conflict(Conflict { current })) => current,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn compare_and_set(b: Backend) {
    let s = &b.store;
    assert_eq!(s.load_all().await.unwrap().revision, Revision::ZERO);
    assert_eq!(
        s.put(&router("r", 1), Expect::Absent).await.unwrap(),
        Revision(1)
    );
    assert_eq!(
        conflict(s.put(&router("r", 2), Expect::Absent).await),
        Some(Revision(1))
    );
    assert_eq!(
        s.put(&router("r", 2), Expect::At(Revision(1)))
            .await
            .unwrap(),
        Revision(2)
    );
    assert_eq!(
        conflict(s.put(&router("r", 3), Expect::At(Revision(1))).await),
        Some(Revision(2))
    );
    assert_eq!(
        conflict(s.delete("r", Expect::At(Revision(1))).await),
        Some(Revision(2))
    );
    assert_eq!(
        conflict(s.put(&router("x", 1), Expect::At(Revision(2))).await),
        None
    );
    let stored = s.load_all().await.unwrap();
    assert_eq!(stored.revision, Revision(2));
    assert_eq!(stored.routers.len(), 1);
    assert_eq!(stored.routers[0].mod_revision, Revision(2));
    assert_eq!(weight(&stored.routers[0].config), 2);
    assert_eq!(stored.configs().unwrap(), vec![router("r", 2)]);
    assert_eq!(
        s.delete("r", Expect::At(Revision(2))).await.unwrap(),
        Revision(3)
    );
    assert_eq!(conflict(s.delete("r", Expect::Any).await), None);
    let stored = s.load_all().await.unwrap();
    assert_eq!((stored.revision, stored.routers.len()), (Revision(3), 0));
}

async fn concurrent_writers_take_every_revision_once(b: Backend) {
    let mut watch = b.store.watch(Revision::ZERO);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let s = Arc::clone(&b.store);
            tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..25 {
                    let name = format!("r{t}-{i}");
                    got.push(s.put(&router(&name, 1), Expect::Absent).await.unwrap());
                }
                got
            })
        })
        .collect();
    let mut revisions = BTreeSet::new();
    for t in tasks {
        for r in t.await.unwrap() {
            assert!(revisions.insert(r.get()), "revision {r} twice");
        }
    }
    assert_eq!(revisions, (1..=200).collect());
    // The watcher sees every change once, in revision order.
    let mut seen = Vec::new();
    while seen.len() < 200 {
        match next(&mut watch).await {
            WatchItem::Changes { events, revision } => {
                assert_eq!(events.last().unwrap().mod_revision(), revision);
                seen.extend(events.iter().map(|e| e.mod_revision().get()));
            }
            WatchItem::Reset { .. } => panic!("no reset expected"),
        }
    }
    assert_eq!(seen, (1..=200).collect::<Vec<_>>());
    assert_eq!(b.store.load_all().await.unwrap().revision, Revision(200));
}

async fn read_modify_write_loses_no_update(b: Backend) {
    b.store.put(&router("c", 1), Expect::Absent).await.unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let s = Arc::clone(&b.store);
            tokio::spawn(async move {
                for _ in 0..10 {
                    loop {
                        let stored = s.load_all().await.unwrap();
                        let r = &stored.routers[0];
                        let next = router("c", weight(&r.config) as u32 + 1);
                        match s.put(&next, Expect::At(r.mod_revision)).await {
                            Ok(_) => break,
                            Err(StoreError::Conflict(_)) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stored = b.store.load_all().await.unwrap();
    assert_eq!(weight(&stored.routers[0].config), 61);
    assert_eq!(stored.revision, Revision(61));
}

async fn watch_from_a_revision(b: Backend) {
    let s = &b.store;
    s.put(&router("a", 1), Expect::Absent).await.unwrap();
    s.put(&router("b", 1), Expect::Absent).await.unwrap();
    s.put(&router("a", 2), Expect::Any).await.unwrap();
    s.delete("b", Expect::Any).await.unwrap();
    // From 1: only the last change of each router after 1, in revision order.
    let mut watch = s.watch(Revision(1));
    match next(&mut watch).await {
        WatchItem::Changes { revision, events } => {
            assert_eq!(revision, Revision(4));
            assert_eq!(events.len(), 2, "{events:?}");
            assert!(
                matches!(&events[0], Event::Put { name, mod_revision, config } if name == "a" && *mod_revision == Revision(3) && weight(config) == 2)
            );
            assert!(
                matches!(&events[1], Event::Delete { name, mod_revision } if name == "b" && *mod_revision == Revision(4))
            );
        }
        other => panic!("expected changes, got {other:?}"),
    }
    // A later change, its own included, comes as it is made.
    s.put(&router("c", 1), Expect::Absent).await.unwrap();
    match next(&mut watch).await {
        WatchItem::Changes { revision, events } => {
            assert_eq!(revision, Revision(5));
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].name(), "c");
        }
        other => panic!("expected changes, got {other:?}"),
    }
    assert!(watch.status.up());
    // From the current revision: nothing until the next change.
    let mut current = s.watch(Revision(5));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), current.items.recv())
            .await
            .is_err()
    );
}

async fn reset_after_compaction(b: Backend) {
    let s = &b.store;
    s.put(&router("a", 1), Expect::Absent).await.unwrap();
    s.put(&router("b", 1), Expect::Absent).await.unwrap();
    s.delete("a", Expect::Any).await.unwrap();
    let horizon = (b.compact)().await;
    assert_eq!(horizon, Revision(3));
    // A reader at 1 may have missed the delete: it gets the whole state.
    let mut watch = s.watch(Revision(1));
    match next(&mut watch).await {
        WatchItem::Reset { revision, routers } => {
            assert_eq!(revision, Revision(3));
            assert_eq!(routers.len(), 1);
            assert_eq!(
                (routers[0].name.as_str(), routers[0].mod_revision),
                ("b", Revision(2))
            );
        }
        other => panic!("expected a reset, got {other:?}"),
    }
    // A reader ahead of the store too (a store replaced under it).
    let mut ahead = s.watch(Revision(40));
    assert!(
        matches!(next(&mut ahead).await, WatchItem::Reset { revision, .. } if revision == Revision(3))
    );
    // Then changes again from the reset's revision.
    s.put(&router("c", 1), Expect::Absent).await.unwrap();
    assert!(
        matches!(next(&mut watch).await, WatchItem::Changes { revision, .. } if revision == Revision(4))
    );
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod memory_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::memory().await.unwrap()).await;
                }
            )*
        }
        mod file_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::file().await.unwrap()).await;
                }
            )*
        }
        mod postgres_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(b) = super::postgres(concat!("contract-", stringify!($test))).await else { return };
                    super::$test(b).await;
                }
            )*
        }
    };
}

contract!(
    compare_and_set,
    concurrent_writers_take_every_revision_once,
    read_modify_write_loses_no_update,
    watch_from_a_revision,
    reset_after_compaction,
);
