//! The PostgreSQL router store against a real server: a throwaway cluster per test
//! (tests/common/postgres.rs), skipped without PostgreSQL unless `ABROUTE_REQUIRE_POSTGRES=1`.
//!
//! Compare-and-set, revision order under concurrent writers on two stores, watching from a
//! revision, the `NOTIFY` wake-up and its latency, the reset after compaction, the periodic
//! catch-up, reconnecting after a crash of the server, the schema migration, TLS modes, and bad
//! inputs whose errors name the problem and never the password.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abroute_gateway::store::postgres::{
    Conflict, Event, Expect, PostgresErrorKind, PostgresStore, PutError, Revision, StoredRouter,
    Watch, WatchItem, WatchOptions,
};
use common::postgres::{
    APP_PASSWORD, APP_USER, DATABASE, NOPERM_PASSWORD, NOPERM_USER, PgCluster, cluster,
};
use serde_json::{Value, json};

fn router(name: &str, n: u64) -> Value {
    json!({ "name": name, "n": n })
}

fn say(line: &str) {
    // Straight to the stderr handle: the harness captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "{line}");
}

async fn store(pg: &PgCluster) -> PostgresStore {
    PostgresStore::connect(&pg.url(), None)
        .await
        .unwrap_or_else(|e| panic!("connects: {e}"))
}

async fn next(watch: &mut Watch, within: Duration) -> WatchItem {
    tokio::time::timeout(within, watch.items.recv())
        .await
        .unwrap_or_else(|_| panic!("nothing from the watcher within {within:?}"))
        .expect("the watcher is running")
}

fn conflict(r: Result<Revision, PutError>) -> Conflict {
    match r {
        Err(PutError::Conflict(c)) => c,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn at(r: u64) -> Option<Revision> {
    Some(Revision(r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_names_the_current_revision() {
    let Some(pg) = cluster("cas") else { return };
    let s = store(&pg).await;
    assert_eq!(s.load_all().await.unwrap(), (Revision::ZERO, vec![]));
    assert_eq!(
        s.put("a", &router("a", 1), Expect::Absent).await.unwrap(),
        Revision(1)
    );
    assert_eq!(
        conflict(s.put("a", &router("a", 2), Expect::Absent).await).current,
        at(1)
    );
    assert_eq!(
        conflict(s.put("a", &router("a", 2), Expect::At(Revision(7))).await).current,
        at(1)
    );
    assert_eq!(
        conflict(s.put("b", &router("b", 1), Expect::At(Revision(1))).await).current,
        None
    );
    // Conflicts roll their revision back: the next write takes the next number.
    assert_eq!(
        s.put("a", &router("a", 2), Expect::At(Revision(1)))
            .await
            .unwrap(),
        Revision(2)
    );
    assert_eq!(
        s.put("a", &router("a", 3), Expect::Any).await.unwrap(),
        Revision(3)
    );
    assert_eq!(conflict(s.delete("b", Expect::Any).await).current, None);
    assert_eq!(
        conflict(s.delete("a", Expect::At(Revision(2))).await).current,
        at(3)
    );
    assert_eq!(conflict(s.delete("a", Expect::Absent).await).current, at(3));
    assert_eq!(
        s.delete("a", Expect::At(Revision(3))).await.unwrap(),
        Revision(4)
    );
    // A tombstone is absent.
    assert_eq!(
        conflict(s.put("a", &router("a", 4), Expect::At(Revision(4))).await).current,
        None
    );
    assert_eq!(conflict(s.delete("a", Expect::Any).await).current, None);
    assert_eq!(
        s.put("a", &router("a", 5), Expect::Absent).await.unwrap(),
        Revision(5)
    );
    assert_eq!(
        s.put("b", &router("b", 1), Expect::Any).await.unwrap(),
        Revision(6)
    );
    let (revision, routers) = s.load_all().await.unwrap();
    assert_eq!(revision, Revision(6));
    assert_eq!(
        routers,
        vec![
            StoredRouter {
                name: "a".into(),
                config: router("a", 5),
                mod_revision: Revision(5)
            },
            StoredRouter {
                name: "b".into(),
                config: router("b", 1),
                mod_revision: Revision(6)
            },
        ]
    );
}

/// Two stores on one database, eight writers each: the revisions handed out are 1..=N with
/// none skipped or repeated, and a watcher started before them sees each change exactly once,
/// in revision order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_commit_in_revision_order() {
    let Some(pg) = cluster("order") else { return };
    let stores = [Arc::new(store(&pg).await), Arc::new(store(&pg).await)];
    let mut watch = stores[0].watch_with(
        Revision::ZERO,
        WatchOptions {
            catch_up_every: Duration::from_millis(200),
            ..WatchOptions::default()
        },
    );
    const TASKS: usize = 8;
    const EACH: u64 = 25;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let s = stores[t % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..EACH {
                let name = format!("r{t}-{i}");
                got.push((
                    s.put(&name, &router(&name, i), Expect::Absent)
                        .await
                        .unwrap(),
                    name,
                ));
            }
            got
        }));
    }
    let mut written = Vec::new();
    for t in tasks {
        written.extend(t.await.unwrap());
    }
    let total = (TASKS as u64) * EACH;
    let revisions: BTreeSet<u64> = written.iter().map(|(r, _)| r.0).collect();
    assert_eq!(revisions.len() as u64, total, "a revision handed out twice");
    assert_eq!(revisions, (1..=total).collect(), "a revision skipped");
    let mut seen = Vec::new();
    let mut batches = 0;
    while seen.len() < written.len() {
        match next(&mut watch, Duration::from_secs(10)).await {
            WatchItem::Changes { revision, events } => {
                batches += 1;
                assert_eq!(events.last().unwrap().mod_revision(), revision);
                seen.extend(
                    events
                        .iter()
                        .map(|e| (e.mod_revision(), e.name().to_owned())),
                );
            }
            reset @ WatchItem::Reset { .. } => panic!("unexpected {reset:?}"),
        }
    }
    written.sort();
    assert_eq!(seen, written, "the watcher saw every change once, in order");
    say(&format!(
        "{total} writes from {TASKS} tasks on 2 stores; the watcher saw them in {batches} batches"
    ));
    // The status follows once the last batch is handed on.
    let start = Instant::now();
    while watch.status.revision() != Revision(total) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            watch.status
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(watch.status.up());
}

/// Read-modify-write from many tasks on two stores, each retrying on conflict: no increment
/// is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_modify_write_loses_no_update() {
    let Some(pg) = cluster("rmw") else { return };
    let stores = [Arc::new(store(&pg).await), Arc::new(store(&pg).await)];
    stores[0]
        .put("shared", &json!({ "n": 0 }), Expect::Absent)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..6 {
        let s = stores[t % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..10 {
                loop {
                    let (_, routers) = s.load_all().await.unwrap();
                    let current = &routers[0];
                    let n = current.config["n"].as_u64().unwrap();
                    match s
                        .put(
                            "shared",
                            &json!({ "n": n + 1 }),
                            Expect::At(current.mod_revision),
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(PutError::Conflict(c)) => {
                            assert!(c.current.unwrap() > current.mod_revision);
                            conflicts += 1;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let (revision, routers) = stores[1].load_all().await.unwrap();
    assert_eq!(routers[0].config["n"], 60, "an update was lost");
    assert_eq!(revision, Revision(61));
    say(&format!(
        "60 increments from 6 tasks on 2 stores, {conflicts} conflicts retried"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_revision() {
    let Some(pg) = cluster("watch-from") else {
        return;
    };
    let s = store(&pg).await;
    for name in ["a", "b", "c"] {
        s.put(name, &router(name, 1), Expect::Absent).await.unwrap();
    }
    let mut watch = s.watch(Revision(1));
    let put = |name: &str, r| Event::Put {
        name: name.into(),
        config: router(name, 1),
        mod_revision: Revision(r),
    };
    assert_eq!(
        next(&mut watch, Duration::from_secs(10)).await,
        WatchItem::Changes {
            revision: Revision(3),
            events: vec![put("b", 2), put("c", 3)]
        }
    );
    s.put("d", &router("d", 1), Expect::Absent).await.unwrap();
    assert_eq!(
        next(&mut watch, Duration::from_secs(10)).await,
        WatchItem::Changes {
            revision: Revision(4),
            events: vec![put("d", 4)]
        }
    );
    s.delete("a", Expect::Any).await.unwrap();
    assert_eq!(
        next(&mut watch, Duration::from_secs(10)).await,
        WatchItem::Changes {
            revision: Revision(5),
            events: vec![Event::Delete {
                name: "a".into(),
                mod_revision: Revision(5)
            }]
        }
    );
    // A batch holds each router's last change only, and says so by its revision.
    s.put("b", &router("b", 2), Expect::Any).await.unwrap();
    s.put("b", &router("b", 3), Expect::Any).await.unwrap();
    match s.changes_since(Revision(5)).await.unwrap() {
        WatchItem::Changes { revision, events } => {
            assert_eq!(revision, Revision(7));
            assert_eq!(
                events,
                vec![Event::Put {
                    name: "b".into(),
                    config: router("b", 3),
                    mod_revision: Revision(7)
                }]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.changes_since(Revision(7)).await.unwrap(),
        WatchItem::Changes {
            revision: Revision(7),
            events: vec![]
        }
    );
}

/// With the periodic catch-up an hour away, only `NOTIFY` can wake the watcher: each change
/// arrives within seconds, and the latency is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_the_watcher() {
    let Some(pg) = cluster("notify") else { return };
    let s = store(&pg).await;
    let mut watch = s.watch_with(
        Revision::ZERO,
        WatchOptions {
            catch_up_every: Duration::from_secs(3600),
            ..WatchOptions::default()
        },
    );
    // The watcher is up (listening and caught up) before the clock starts.
    let start = Instant::now();
    while !watch.status.up() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the watcher never came up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut latencies = Vec::new();
    for i in 0..50u64 {
        let name = format!("n{i}");
        s.put(&name, &router(&name, i), Expect::Absent)
            .await
            .unwrap();
        let committed = Instant::now();
        let item = next(&mut watch, Duration::from_secs(10)).await;
        latencies.push(committed.elapsed());
        assert_eq!(item.revision(), Revision(i + 1));
    }
    latencies.sort();
    say(&format!(
        "NOTIFY to watcher, 50 changes: p50 {:?}, p90 {:?}, max {:?}",
        latencies[25], latencies[45], latencies[49]
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_resets_readers_behind_it() {
    let Some(pg) = cluster("compact") else { return };
    let s = store(&pg).await;
    s.put("a", &router("a", 1), Expect::Absent).await.unwrap();
    s.put("b", &router("b", 1), Expect::Absent).await.unwrap();
    s.delete("a", Expect::Any).await.unwrap();
    // Not yet old enough: the tombstone stays, the horizon does not move.
    assert_eq!(
        s.compact(Duration::from_secs(3600)).await.unwrap(),
        Revision::ZERO
    );
    assert!(matches!(
        s.changes_since(Revision(1)).await.unwrap(),
        WatchItem::Changes { .. }
    ));
    assert_eq!(s.compact(Duration::ZERO).await.unwrap(), Revision(3));
    let b = StoredRouter {
        name: "b".into(),
        config: router("b", 1),
        mod_revision: Revision(2),
    };
    let reset = WatchItem::Reset {
        revision: Revision(3),
        routers: vec![b.clone()],
    };
    assert_eq!(s.changes_since(Revision(2)).await.unwrap(), reset);
    assert_eq!(
        s.changes_since(Revision(3)).await.unwrap(),
        WatchItem::Changes {
            revision: Revision(3),
            events: vec![]
        }
    );
    // A cursor ahead of the store (another database, a restored backup) resets too.
    assert_eq!(s.changes_since(Revision(99)).await.unwrap(), reset);
    let mut watch = s.watch(Revision(1));
    assert_eq!(next(&mut watch, Duration::from_secs(10)).await, reset);
    s.put("c", &router("c", 1), Expect::Absent).await.unwrap();
    assert_eq!(
        next(&mut watch, Duration::from_secs(10)).await,
        WatchItem::Changes {
            revision: Revision(4),
            events: vec![Event::Put {
                name: "c".into(),
                config: router("c", 1),
                mod_revision: Revision(4)
            }]
        }
    );
}

/// A row written by another tool without `NOTIFY` is found by the periodic catch-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_catch_up_finds_a_change_without_notify() {
    let Some(pg) = cluster("catch-up") else {
        return;
    };
    let s = store(&pg).await;
    let every = Duration::from_millis(500);
    let mut watch = s.watch_with(
        Revision::ZERO,
        WatchOptions {
            catch_up_every: every,
            ..WatchOptions::default()
        },
    );
    s.put("a", &router("a", 1), Expect::Absent).await.unwrap();
    assert_eq!(
        next(&mut watch, Duration::from_secs(10)).await.revision(),
        Revision(1)
    );
    pg.psql_in(
        DATABASE,
        "WITH r AS (UPDATE abroute_revision SET revision = revision + 1 RETURNING revision)
         INSERT INTO abroute_routers (name, config, mod_revision)
         SELECT 'quiet', '{\"name\": \"quiet\"}', revision FROM r",
    );
    let written = Instant::now();
    let item = next(&mut watch, Duration::from_secs(10)).await;
    let took = written.elapsed();
    assert_eq!(
        item,
        WatchItem::Changes {
            revision: Revision(2),
            events: vec![Event::Put {
                name: "quiet".into(),
                config: json!({ "name": "quiet" }),
                mod_revision: Revision(2)
            }]
        }
    );
    say(&format!(
        "a change without NOTIFY, catch-up every {every:?}: seen after {took:?}"
    ));
}

/// `pg_ctl stop -m immediate`: the watcher goes down, writes fail as unavailable; the server
/// back, the store reconnects on its next call and the watcher by itself, and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_server_crashes() {
    let Some(mut pg) = cluster("reconnect") else {
        return;
    };
    let s = store(&pg).await;
    let mut watch = s.watch(Revision::ZERO);
    s.put("a", &router("a", 1), Expect::Absent).await.unwrap();
    assert_eq!(
        next(&mut watch, Duration::from_secs(10)).await.revision(),
        Revision(1)
    );
    pg.stop_immediate();
    let stopped = Instant::now();
    while watch.status.up() {
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "the watcher still says up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = match s.put("b", &router("b", 1), Expect::Absent).await {
        Err(PutError::Store(e)) => e,
        other => panic!("a write with the server down: {other:?}"),
    };
    assert!(e.is_unavailable(), "{e}");
    let text = e.to_string();
    assert!(text.contains(&format!("127.0.0.1:{}", pg.port())), "{text}");
    assert!(!text.contains(APP_PASSWORD), "{text}");
    say(&format!("with the server down: {text}"));
    assert!(s.load_all().await.is_err());
    pg.start();
    let back = Instant::now();
    assert_eq!(
        s.put("b", &router("b", 1), Expect::Absent).await.unwrap(),
        Revision(2)
    );
    let item = next(&mut watch, Duration::from_secs(15)).await;
    assert_eq!(item.revision(), Revision(2));
    say(&format!(
        "server back: the watcher caught up {:?} after the restart (backoff 100 ms doubling)",
        back.elapsed()
    ));
    assert!(watch.status.up());
    assert_eq!(s.load_all().await.unwrap().0, Revision(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_migration_is_idempotent_and_safe_to_race() {
    let Some(pg) = cluster("migrate") else { return };
    let url = pg.url();
    let (a, b, c) = tokio::join!(
        PostgresStore::connect(&url, None),
        PostgresStore::connect(&url, None),
        PostgresStore::connect(&url, None)
    );
    let (a, _b, _c) = (a.unwrap(), b.unwrap(), c.unwrap());
    a.put("a", &router("a", 1), Expect::Absent).await.unwrap();
    let again = store(&pg).await;
    assert_eq!(again.load_all().await.unwrap().0, Revision(1));
    assert_eq!(
        pg.psql_in(DATABASE, "SELECT version FROM abroute_schema"),
        "1"
    );
    assert_eq!(
        pg.psql_in(DATABASE, "SELECT count(*) FROM abroute_revision"),
        "1"
    );
    pg.psql_in(DATABASE, "UPDATE abroute_schema SET version = 99");
    let e = PostgresStore::connect(&url, None).await.unwrap_err();
    assert_eq!(e.kind(), PostgresErrorKind::Schema, "{e}");
    assert!(e.to_string().contains("version 99"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes() {
    let Some(pg) = cluster("tls") else { return };
    let base = pg.url().replace("?sslmode=disable", "");
    let encrypted = || {
        pg.psql(&format!(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
             WHERE ssl AND usename = '{APP_USER}'"
        ))
        .parse::<u32>()
        .unwrap()
    };
    let plain = PostgresStore::connect(&format!("{base}?sslmode=disable"), None)
        .await
        .unwrap();
    assert_eq!(encrypted(), 0);
    drop(plain);
    // `require` encrypts and checks nothing (a self-signed certificate passes).
    let required = PostgresStore::connect(&format!("{base}?sslmode=require"), None)
        .await
        .unwrap();
    required
        .put("a", &router("a", 1), Expect::Absent)
        .await
        .unwrap();
    assert_eq!(encrypted(), 1);
    drop(required);
    let ca = pg.ca_file();
    let verified = PostgresStore::connect(&format!("{base}?sslmode=verify-full"), Some(&ca))
        .await
        .unwrap();
    assert_eq!(verified.load_all().await.unwrap().0, Revision(1));
    drop(verified);
    let by_param = format!("{base}?sslmode=verify-full&sslrootcert={}", ca.display());
    PostgresStore::connect(&by_param, None).await.unwrap();
    // Without the CA file the self-signed certificate is refused.
    let e = PostgresStore::connect(&format!("{base}?sslmode=verify-full"), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), PostgresErrorKind::Tls, "{e}");
    assert!(!e.to_string().contains(APP_PASSWORD), "{e}");
    say(&format!("verify-full without the CA: {e}"));
    // The default (`prefer`) encrypts when the server can.
    let preferred = PostgresStore::connect(&base, None).await.unwrap();
    preferred.load_all().await.unwrap();
    assert!(encrypted() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_name_the_problem_and_never_the_password() {
    let Some(pg) = cluster("bad-input") else {
        return;
    };
    store(&pg).await; // the schema exists, owned by the app's user
    let port = pg.port();
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unused_address = format!("127.0.0.1:{unused}");
    pg.psql("CREATE DATABASE fresh");
    let cases: Vec<(&str, String, &str, PostgresErrorKind, &str)> = vec![
        (
            "malformed URL",
            format!("postgresql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:notaport/{DATABASE}"),
            APP_PASSWORD,
            PostgresErrorKind::MalformedUrl,
            "port",
        ),
        (
            "not a URL",
            format!("host=127.0.0.1 user={APP_USER} password={APP_PASSWORD}"),
            APP_PASSWORD,
            PostgresErrorKind::MalformedUrl,
            "postgresql://",
        ),
        (
            "wrong password",
            pg.url_for(APP_USER, "wrong-password-Qm8", DATABASE),
            "wrong-password-Qm8",
            PostgresErrorKind::AuthenticationFailed,
            "password authentication failed",
        ),
        (
            "unreachable port",
            format!(
                "postgresql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{unused}/{DATABASE}?sslmode=disable"
            ),
            APP_PASSWORD,
            PostgresErrorKind::Unreachable,
            &unused_address,
        ),
        (
            "no such database",
            pg.url_for(APP_USER, APP_PASSWORD, "nonesuch"),
            APP_PASSWORD,
            PostgresErrorKind::NoSuchDatabase,
            "nonesuch",
        ),
        (
            "no privilege on the tables",
            pg.url_for(NOPERM_USER, NOPERM_PASSWORD, DATABASE),
            NOPERM_PASSWORD,
            PostgresErrorKind::PermissionDenied,
            "permission denied for table abroute_schema",
        ),
        (
            "no CREATE on the schema",
            pg.url_for(NOPERM_USER, NOPERM_PASSWORD, "fresh"),
            NOPERM_PASSWORD,
            PostgresErrorKind::PermissionDenied,
            "permission denied for schema public",
        ),
        (
            "password in a parameter",
            format!(
                "postgresql://{APP_USER}@127.0.0.1:{port}/{DATABASE}?sslmode=disable&password=wrong-param-Zt5"
            ),
            "wrong-param-Zt5",
            PostgresErrorKind::AuthenticationFailed,
            "***",
        ),
    ];
    for (what, url, password, kind, names) in cases {
        let e = PostgresStore::connect(&url, None).await.unwrap_err();
        let text = e.to_string();
        say(&format!("{what}: {text}"));
        assert_eq!(e.kind(), kind, "{what}: {text}");
        assert!(
            text.contains(names),
            "{what}: {text:?} does not say {names:?}"
        );
        assert!(
            !text.contains(password),
            "{what}: the password is in {text:?}"
        );
        assert!(
            !format!("{e:?}").contains(password),
            "{what}: the password is in {e:?}"
        );
    }
    // Nor in the store's Debug or its URL for logs.
    let s = store(&pg).await;
    assert!(!format!("{s:?}").contains(APP_PASSWORD) && !s.url().contains(APP_PASSWORD));
    assert!(s.url().contains(":***@"), "{}", s.url());
}
