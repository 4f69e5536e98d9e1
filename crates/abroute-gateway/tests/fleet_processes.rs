//! Two `abroute serve` processes (the built binary) sharing their routers through one real
//! PostgreSQL (a throwaway cluster from `common::postgres`, skipped without PostgreSQL unless
//! `ABROUTE_REQUIRE_POSTGRES=1`). Nothing passes between the replicas but the database.
//!
//! - a router created on A is served by B; PATCHes on B are served by A (propagation over 200
//!   changes, p50 and p99 printed, and A's `abroute_store_propagation_seconds` counts them);
//!   1,000 sticky users get the same variant from both; a storm of concurrent PATCHes of
//!   different fields from both loses none; a stale etag is refused with 409 ABORTED;
//! - `pg_ctl stop -m immediate` under chat load fails no chat, writes get 503 UNAVAILABLE
//!   saying the store is unreachable, `/readyz` stays 200; a replica restarted during the
//!   outage serves from its local copy; the store back, both converge;
//! - a replica stopped (SIGSTOP) while routers are changed and deleted and the tombstones
//!   compacted takes the reset when it resumes; an invalid row written with `psql` is refused
//!   (its name and JSON path in the log, counted as rejected) and the old router serves;
//! - bad store settings (a malformed URL, a wrong password, a user without privileges) stop
//!   the start with a message naming the problem and never the password; an unreachable
//!   store does not (the replica waits for it: `/readyz` 503, writes 503, `/healthz` 200).
//!
//! Every child is killed when its handle drops (a failing assertion included); every wait is
//! bounded in time.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fleet::{default_route, model_of, percentile, propagation_summary, router};
use common::postgres::{DATABASE, NOPERM_PASSWORD, NOPERM_USER, PgCluster, cluster};
use common::{ADMIN, Response, chat_body, client, request, temp_dir};
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;

fn say(line: &str) {
    // Straight to the stderr handle: the harness captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The `abroute` binary: `ABROUTE_BIN` when set (the figures' release build), else the one
/// cargo built for these tests.
fn abroute() -> Command {
    Command::new(std::env::var_os("ABROUTE_BIN").unwrap_or(env!("CARGO_BIN_EXE_abroute").into()))
}

/// A gateway config for a replica on `store_url`, its local copy in `dir`.
fn write_config(dir: &Path, store_url: &str, store_extra: &str) -> PathBuf {
    let auth = format!(r#"keys = [{{ key = "{ADMIN}", permissions = ["all"] }}]"#);
    let store = format!(
        "url = \"{store_url}\"\npath = \"{}\"\n{store_extra}",
        dir.join("copy.json").display()
    );
    write_config_with(dir, &auth, &store)
}

/// A gateway config in `dir` with these `[auth]` and `[store]` sections.
fn write_config_with(dir: &Path, auth: &str, store: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    let text = format!(
        r#"listen = "127.0.0.1:0"

[auth]
{auth}

[[providers]]
name = "*"
mock = true

[store]
{store}
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `abroute serve`, killed on drop.
struct Replica {
    name: String,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

/// Starts `abroute serve --config <config>`, its log appended to `log`; the banner's address,
/// or what the process said when it stopped (or did not listen within 30 s).
fn spawn(config: &Path, log: &Path) -> Result<(Child, String), String> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = abroute()
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env_remove("ABROUTE_STORE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(addr) = line.strip_prefix("abroute gateway listening on http://") {
                    // The rest of the banner goes nowhere: the thread drains it.
                    std::thread::spawn(move || rx.iter().for_each(drop));
                    return Ok((child, format!("http://{}", addr.trim())));
                }
            }
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().ok();
                let log = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("{e:?}; exit {status:?}; log:\n{log}"));
            }
        }
    }
}

impl Replica {
    fn start(name: &str, config: &Path) -> Replica {
        let log = config.with_file_name(format!("{name}.log"));
        let (child, base) =
            spawn(config, &log).unwrap_or_else(|e| panic!("replica {name} does not start: {e}"));
        Replica {
            name: name.to_owned(),
            config: config.to_owned(),
            log,
            child: Some(child),
            base,
            http: client(),
        }
    }

    fn pid(&self) -> String {
        self.child.as_ref().map(Child::id).unwrap_or(0).to_string()
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {}", self.name);
    }

    /// SIGTERM, then waits (at most 15 s, then SIGKILL) for the process to drain and exit.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("replica {} did not stop within 15 s", self.name);
    }

    /// Stops the process and starts it again with the same config (and local copy).
    fn restart(&mut self) {
        self.stop();
        let (child, base) = spawn(&self.config, &self.log)
            .unwrap_or_else(|e| panic!("replica {} does not start again: {e}", self.name));
        self.child = Some(child);
        self.base = base;
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn call(&self, method: Method, path: &str, body: &str) -> Response {
        request(&self.http, &self.base, method, path, body, Some(ADMIN)).await
    }

    async fn get(&self, name: &str) -> Response {
        self.call(Method::GET, &format!("/router/v1/routers/{name}"), "")
            .await
    }

    async fn create(&self, router: &str) -> Response {
        self.call(Method::POST, "/router/v1/routers", router).await
    }

    async fn patch(&self, name: &str, mask: &str, body: &str) -> Response {
        self.call(
            Method::PATCH,
            &format!("/router/v1/routers/{name}?update_mask={mask}"),
            body,
        )
        .await
    }

    async fn chat(&self, body: &str) -> Response {
        self.call(Method::POST, "/v1/chat/completions", body).await
    }

    async fn readyz(&self) -> (StatusCode, Value) {
        let r = self.call(Method::GET, "/readyz", "").await;
        (r.status, r.json())
    }

    async fn metrics(&self) -> String {
        self.call(Method::GET, "/metrics", "").await.text()
    }

    /// Waits (at most 10 s) until `check` holds on the GET of `name`; how long it took.
    async fn until(&self, name: &str, check: impl Fn(&Response) -> bool) -> Duration {
        let start = Instant::now();
        loop {
            let r = self.get(name).await;
            if check(&r) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{}: {name} not as expected within 10 s: {} {}",
                self.name,
                r.status,
                r.text()
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Two replicas' configs on `pg`, in fresh directories.
fn two_configs(pg: &PgCluster, test: &str, store_extra: &str) -> (PathBuf, PathBuf) {
    let a = write_config(&temp_dir(&format!("{test}-a")), &pg.url(), store_extra);
    let b = write_config(&temp_dir(&format!("{test}-b")), &pg.url(), store_extra);
    (a, b)
}

/// The value of the first sample line of `metrics` that starts with `name` and holds every
/// one of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// PATCHes `name` until it lands: a 409 ABORTED (the API's own retries spent under heavy
/// contention) is sent again, as AIP-193 advises, at most 20 times. How many times it was
/// aborted. Anything else fails the test.
async fn landed(r: &Replica, name: &str, mask: &str, body: &str) -> usize {
    for aborted in 0..20 {
        let w = r.patch(name, mask, body).await;
        match w.status {
            StatusCode::OK => return aborted,
            StatusCode::CONFLICT if w.json()["error"]["status"] == "ABORTED" => {}
            _ => panic!("{}: {} {}", r.name, w.status, w.text()),
        }
    }
    panic!("{}: 20 times aborted", r.name);
}

/// `count` PATCHes of `field` of router `name` through `r` (`displayName` becomes `name <i>`,
/// `defaultRoute` routes to `openai/s<i>`), each until it lands; how many were aborted.
async fn storm(r: &Replica, name: &str, field: &str, count: usize) -> usize {
    let mut aborted = 0;
    for i in 0..count {
        let body = match field {
            "displayName" => format!(r#"{{ "displayName": "name {i}" }}"#),
            _ => default_route(&format!("openai/s{i}")),
        };
        aborted += landed(r, name, field, &body).await;
    }
    aborted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_every_change() {
    let Some(pg) = cluster("procs-share") else {
        return;
    };
    let (ca, cb) = two_configs(&pg, "procs-share", "");
    let a = Replica::start("a", &ca);
    let b = Replica::start("b", &cb);
    // Created on A, served by B, at the same version (the store's revision).
    let r = a.create(&router("shared", "openai/m0")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    b.until("shared", |r| r.status == StatusCode::OK).await;
    let chat = b.chat(&chat_body("shared", "")).await;
    assert_eq!(chat.status, StatusCode::OK, "{}", chat.text());
    let (ra, rb) = (a.readyz().await, b.readyz().await);
    assert_eq!((ra.0, rb.0), (StatusCode::OK, StatusCode::OK));
    assert_eq!(ra.1["version"], rb.1["version"]);
    assert_eq!(
        chat.header("x-abroute-version"),
        ra.1["version"].to_string()
    );

    // 200 PATCHes on B, each served by A: from B's answer to A's serving it.
    let mut lags = Vec::new();
    let mut writes = Vec::new();
    for i in 1..=200 {
        let model = format!("openai/m{i}");
        let started = Instant::now();
        let w = b
            .patch("shared", "defaultRoute", &default_route(&model))
            .await;
        writes.push(started.elapsed());
        assert_eq!(w.status, StatusCode::OK, "{}", w.text());
        // B reads its own write at once.
        assert_eq!(model_of(&b.get("shared").await.json()), model);
        lags.push(a.until("shared", |r| model_of(&r.json()) == model).await);
    }
    say(&propagation_summary(
        "B -> A (two processes)",
        &mut lags,
        &mut writes,
    ));
    assert!(percentile(&lags, 0.99) < Duration::from_secs(1));
    // A measured each change from its commit to its serving it.
    let metrics = a.metrics().await;
    let count = sample(&metrics, "abroute_store_propagation_seconds_count", &[]);
    assert!(count.is_some_and(|c| c >= 200.0), "{metrics}");
    let sum = sample(&metrics, "abroute_store_propagation_seconds_sum", &[]).unwrap();
    say(&format!(
        "A's abroute_store_propagation_seconds: {} changes, mean {:.2} ms",
        count.unwrap_or(0.0),
        sum / count.unwrap_or(1.0) * 1e3
    ));
    assert!(
        sample(
            &metrics,
            "abroute_store_propagation_seconds_bucket",
            &["le=\"1\""]
        )
        .is_some_and(|c| c >= 200.0),
        "{metrics}"
    );

    // 1,000 sticky users get the same variant from both replicas, at the same version.
    let mut variants = std::collections::BTreeMap::<String, usize>::new();
    for u in 0..1000 {
        let body = chat_body("shared", &format!(r#", "user": "user-{u}""#));
        let (va, vb) = tokio::join!(a.chat(&body), b.chat(&body));
        assert_eq!((va.status, vb.status), (StatusCode::OK, StatusCode::OK));
        let variant = va.header("x-abroute-variant");
        assert_eq!(variant, vb.header("x-abroute-variant"), "user-{u}");
        assert_eq!(
            va.header("x-abroute-version"),
            vb.header("x-abroute-version")
        );
        *variants.entry(variant.to_owned()).or_default() += 1;
    }
    assert_eq!(variants.len(), 2, "both variants assigned: {variants:?}");

    // A storm: a writer on each replica, each PATCHing its own field, at once.
    let started = Instant::now();
    let (x, y) = tokio::join!(
        storm(&a, "shared", "displayName", 25),
        storm(&b, "shared", "defaultRoute", 25)
    );
    say(&format!(
        "storm: 50 PATCHes of two fields from both replicas at once in {:?}; {} were answered 409 ABORTED after the API's own retries and sent again",
        started.elapsed(),
        x + y
    ));
    for r in [&a, &b] {
        r.until("shared", |r| {
            let v = r.json();
            v["displayName"] == "name 24" && model_of(&v) == "openai/s24"
        })
        .await;
    }
    // Four writers of four routers, two on each replica, none losing a change.
    for r in ["s1", "s2"] {
        assert_eq!(
            a.create(&router(r, "openai/x")).await.status,
            StatusCode::OK
        );
        b.until(r, |r| r.status == StatusCode::OK).await;
    }
    tokio::join!(
        storm(&a, "s1", "displayName", 15),
        storm(&b, "s1", "defaultRoute", 15),
        storm(&b, "s2", "displayName", 15),
        storm(&a, "s2", "defaultRoute", 15),
    );
    for r in [&a, &b] {
        for name in ["s1", "s2"] {
            r.until(name, |r| {
                let v = r.json();
                v["displayName"] == "name 14" && model_of(&v) == "openai/s14"
            })
            .await;
        }
    }

    // An etag read on A, made stale by a PATCH on B, is refused on A with 409 ABORTED.
    let etag = a.get("shared").await.json()["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    let w = b
        .patch("shared", "displayName", r#"{ "displayName": "from b" }"#)
        .await;
    assert_eq!(w.status, StatusCode::OK, "{}", w.text());
    a.until("shared", |r| r.json()["displayName"] == "from b")
        .await;
    let stale = format!(r#"{{ "displayName": "from a", "etag": "{etag}" }}"#);
    let w = a.patch("shared", "displayName", &stale).await;
    assert_eq!(w.status, StatusCode::CONFLICT, "{}", w.text());
    assert_eq!(w.json()["error"]["status"], "ABORTED", "{}", w.text());
    assert_eq!(b.get("shared").await.json()["displayName"], "from b");
}

/// Chats through `replica` until `stop` (at most 4,000, at most 60 s): (answered, failed).
async fn chat_load(replica: Arc<Replica>, stop: Arc<AtomicBool>, failed: Arc<AtomicU64>) -> u64 {
    let body = chat_body("r", "");
    let started = Instant::now();
    let mut answered = 0;
    for _ in 0..4000 {
        if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let r = replica.chat(&body).await;
        if r.status == StatusCode::OK {
            answered += 1;
        } else {
            failed.fetch_add(1, Ordering::Relaxed);
            say(&format!(
                "{}: chat failed: {} {}",
                replica.name,
                r.status,
                r.text()
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_under_load_fails_no_chat_and_both_converge() {
    let Some(mut pg) = cluster("procs-outage") else {
        return;
    };
    let (ca, cb) = two_configs(&pg, "procs-outage", "");
    let a = Arc::new(Replica::start("a", &ca));
    let mut b = Replica::start("b", &cb);
    assert_eq!(
        a.create(&router("r", "openai/before")).await.status,
        StatusCode::OK
    );
    b.until("r", |r| r.status == StatusCode::OK).await;

    // Chat load on A all through the outage.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn(chat_load(
        Arc::clone(&a),
        Arc::clone(&stop),
        Arc::clone(&failed),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.stop_immediate();
    let body = chat_body("r", "");
    for _ in 0..50 {
        assert_eq!(b.chat(&body).await.status, StatusCode::OK);
    }
    // Writes answer 503 saying the store is unreachable; reads and /readyz from the snapshot.
    for r in [&*a, &b] {
        let w = r
            .patch("r", "defaultRoute", &default_route("openai/during"))
            .await;
        assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{}", w.text());
        assert_eq!(w.json()["error"]["status"], "UNAVAILABLE");
        assert!(w.text().contains("unreachable"), "{}", w.text());
        let w = r.create(&router("new", "openai/x")).await;
        assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{}", w.text());
        assert_eq!(r.readyz().await.0, StatusCode::OK);
        assert_eq!(model_of(&r.get("r").await.json()), "openai/before");
    }
    // B restarted during the outage serves from its local copy.
    b.restart();
    let (status, ready) = b.readyz().await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(b.chat(&body).await.status, StatusCode::OK);
    assert_eq!(model_of(&b.get("r").await.json()), "openai/before");
    assert!(
        b.log_text()
            .contains("serving the local copy of the router store"),
        "{}",
        b.log_text()
    );
    // The store back: writes land again (through either replica) and both converge.
    pg.start();
    let started = Instant::now();
    loop {
        let w = a
            .patch("r", "defaultRoute", &default_route("openai/after"))
            .await;
        if w.status == StatusCode::OK {
            break;
        }
        assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{}", w.text());
        assert!(started.elapsed() < Duration::from_secs(30), "{}", w.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = started.elapsed();
    for r in [&*a, &b] {
        r.until("r", |r| model_of(&r.json()) == "openai/after")
            .await;
    }
    // B, which started without the store, connected in the background and writes again.
    let started = Instant::now();
    loop {
        let w = b.create(&router("from-b", "openai/x")).await;
        if w.status == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{}", w.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.until("from-b", |r| r.status == StatusCode::OK).await;
    let (va, vb) = (a.readyz().await.1, b.readyz().await.1);
    assert_eq!(va["version"], vb["version"], "converged");
    stop.store(true, Ordering::Relaxed);
    let answered = load.await.unwrap();
    let failed = failed.load(Ordering::Relaxed);
    say(&format!(
        "outage: {answered} chats answered on A through the outage, {failed} failed; writes accepted again {back:?} after pg_ctl start"
    ));
    assert_eq!(failed, 0);
    assert!(answered > 50, "{answered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_behind_a_compaction_resets_and_an_invalid_row_is_refused() {
    let Some(pg) = cluster("procs-reset") else {
        return;
    };
    // Tombstones kept 1 s, compacted every 250 ms; A also watches a directory of its own.
    let (_, cb) = two_configs(&pg, "procs-reset", r#"tombstone_retention = "1s""#);
    let dir_a = temp_dir("procs-reset-a");
    let routers_a = dir_a.join("routers");
    std::fs::create_dir_all(&routers_a).unwrap();
    let ca = write_config(
        &dir_a,
        &pg.url(),
        &format!(
            "tombstone_retention = \"1s\"\n\n[watch]\ndir = \"{}\"\ninterval = \"100ms\"",
            routers_a.display()
        ),
    );
    let a = Replica::start("a", &ca);
    let b = Replica::start("b", &cb);
    for name in ["gone", "kept"] {
        assert_eq!(
            a.create(&router(name, "openai/v1")).await.status,
            StatusCode::OK
        );
    }
    b.until("kept", |r| r.status == StatusCode::OK).await;
    b.until("gone", |r| r.status == StatusCode::OK).await;

    // B stopped; on A a delete, a change and a create; the tombstone compacted away.
    b.signal("-STOP");
    let w = a.call(Method::DELETE, "/router/v1/routers/gone", "").await;
    assert_eq!(w.status, StatusCode::OK, "{}", w.text());
    let w = a
        .patch("kept", "defaultRoute", &default_route("openai/v2"))
        .await;
    assert_eq!(w.status, StatusCode::OK, "{}", w.text());
    assert_eq!(
        a.create(&router("new", "openai/v1")).await.status,
        StatusCode::OK
    );
    let started = Instant::now();
    while pg.psql_in(
        DATABASE,
        "SELECT count(*) FROM abroute_routers WHERE tombstone",
    ) != "0"
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the tombstone was not compacted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let horizon = pg.psql_in(DATABASE, "SELECT compacted FROM abroute_revision");
    say(&format!(
        "compacted to {horizon} after {:?}",
        started.elapsed()
    ));
    // B resumes: its cursor is below the horizon, so it reloads the whole store.
    b.signal("-CONT");
    b.until("gone", |r| r.status == StatusCode::NOT_FOUND).await;
    b.until("kept", |r| model_of(&r.json()) == "openai/v2")
        .await;
    b.until("new", |r| r.status == StatusCode::OK).await;
    assert_eq!(
        sample(&b.metrics().await, "abroute_store_resets_total", &[]),
        Some(1.0)
    );
    assert!(
        b.log_text().contains("reset=true"),
        "no reset in B's log:\n{}",
        b.log_text()
    );
    assert_eq!(a.readyz().await.1["version"], b.readyz().await.1["version"]);

    // A router file appears in A's directory: a local change, which takes A's snapshot past
    // the store's revision. A store change made afterwards still carries its revision on A.
    std::fs::write(routers_a.join("local.json"), router("local", "openai/l")).unwrap();
    a.until("local", |r| r.status == StatusCode::OK).await;
    let w = b
        .patch("new", "defaultRoute", &default_route("openai/v3"))
        .await;
    assert_eq!(w.status, StatusCode::OK, "{}", w.text());
    a.until("new", |r| model_of(&r.json()) == "openai/v3").await;
    let (ga, gb) = (a.get("new").await.json(), b.get("new").await.json());
    assert_eq!(ga["etag"], gb["etag"], "the same etag on both replicas");
    let body = chat_body("new", r#", "user": "u1""#);
    let (va, vb) = (a.chat(&body).await, b.chat(&body).await);
    assert_eq!(
        va.header("x-abroute-version"),
        vb.header("x-abroute-version")
    );
    let (ra, rb) = (a.readyz().await.1, b.readyz().await.1);
    say(&format!(
        "after a local change on A: router version {} on both; snapshot versions A {} and B {}",
        va.header("x-abroute-version"),
        ra["version"],
        rb["version"]
    ));
    assert!(ra["version"].as_u64() > rb["version"].as_u64(), "{ra} {rb}");

    // Another tool writes an invalid router over "kept" (no variants) and NOTIFYs.
    let revision = |metrics: &str| sample(metrics, "abroute_store_revision", &[]).unwrap_or(0.0);
    let before = revision(&a.metrics().await);
    pg.psql_in(
        DATABASE,
        "WITH r AS (UPDATE abroute_revision SET revision = revision + 1 RETURNING revision)
         UPDATE abroute_routers SET config = '{\"name\": \"kept\", \"defaultRoute\": {\"route_id\": \"d\", \"variants\": []}}',
                mod_revision = (SELECT revision FROM r), updated_at = clock_timestamp()
         WHERE name = 'kept';
         NOTIFY abroute_routers;",
    );
    for r in [&a, &b] {
        let started = Instant::now();
        while revision(&r.metrics().await) <= before {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{}: the change was not seen",
                r.name
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(model_of(&r.get("kept").await.json()), "openai/v2");
        assert_eq!(r.chat(&chat_body("kept", "")).await.status, StatusCode::OK);
        let metrics = r.metrics().await;
        assert_eq!(
            sample(
                &metrics,
                "abroute_config_changes_total",
                &["source=\"store\"", "result=\"rejected\""]
            ),
            Some(1.0),
            "{metrics}"
        );
        let log = r.log_text();
        let refused = log
            .lines()
            .find(|l| l.contains("store: router refused"))
            .unwrap_or_else(|| panic!("{}: no refusal in the log:\n{log}", r.name));
        assert!(
            refused.contains("router=kept") && refused.contains("path=defaultRoute.variants"),
            "{refused}"
        );
        say(&format!("{}: {refused}", r.name));
    }
}

/// Runs `abroute serve --config <config>` expecting it to stop at start: its exit code and
/// what it printed (stdout, then stderr), within 30 s.
fn refused_start(config: &Path) -> (Option<i32>, String) {
    let mut child = abroute()
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("ABROUTE_STORE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("abroute serve with {} did not stop", config.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_store_settings_stop_the_start_and_never_print_the_password() {
    let Some(pg) = cluster("procs-bad") else {
        return;
    };
    let dir = temp_dir("procs-bad");
    // The schema made first, so the user without privileges meets the tables.
    let made = write_config(&temp_dir("procs-bad-owner"), &pg.url(), "");
    drop(Replica::start("owner", &made));
    let port = pg.port();
    let cases = [
        (
            "malformed URL",
            format!("postgresql://abroute_app:pw-malformed-1x@127.0.0.1:notaport/{DATABASE}"),
            "pw-malformed-1x",
            "is malformed",
        ),
        (
            "wrong password",
            format!(
                "postgresql://abroute_app:pw-wrong-2y@127.0.0.1:{port}/{DATABASE}?sslmode=disable"
            ),
            "pw-wrong-2y",
            "authentication failed",
        ),
        (
            "no privileges",
            pg.url_for(NOPERM_USER, NOPERM_PASSWORD, DATABASE),
            NOPERM_PASSWORD,
            "permission denied for table abroute_schema",
        ),
        (
            "no such database",
            pg.url_for(NOPERM_USER, NOPERM_PASSWORD, "nonesuch"),
            NOPERM_PASSWORD,
            "database \"nonesuch\" does not exist",
        ),
    ];
    for (what, url, password, names) in cases {
        let case_dir = dir.join(what.replace(' ', "-"));
        std::fs::create_dir_all(&case_dir).unwrap();
        let config = write_config(&case_dir, &url, "");
        let (code, text) = refused_start(&config);
        say(&format!("{what}: exit {code:?}: {}", text.trim()));
        assert_eq!(code, Some(1), "{what}: {text}");
        assert!(
            text.contains("abroute: cannot start: cannot use the router store"),
            "{what}: {text}"
        );
        assert!(
            text.contains(names),
            "{what}: {text:?} does not say {names:?}"
        );
        assert!(
            text.contains("***"),
            "{what}: the store is not named: {text}"
        );
        assert!(
            !text.contains(password),
            "{what}: the password is in {text}"
        );
        assert!(!text.contains("panicked"), "{what}: {text}");
    }

    // Privileges revoked at run time: the start passed, the writes then fail with 503 and the
    // log names the refusal; routing and reads go on.
    for sql in [
        "CREATE ROLE abroute_rw LOGIN PASSWORD 'pw-rw-4w'",
        "GRANT SELECT ON abroute_schema TO abroute_rw",
        "GRANT SELECT, UPDATE ON abroute_revision TO abroute_rw",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON abroute_routers TO abroute_rw",
    ] {
        pg.psql_in(DATABASE, sql);
    }
    let config = write_config(
        &temp_dir("procs-bad-revoked"),
        &pg.url_for("abroute_rw", "pw-rw-4w", DATABASE),
        "",
    );
    let r = Replica::start("revoked", &config);
    assert_eq!(
        r.create(&router("ok", "openai/x")).await.status,
        StatusCode::OK
    );
    pg.psql_in(
        DATABASE,
        "REVOKE UPDATE ON abroute_revision FROM abroute_rw",
    );
    let w = r.create(&router("refused", "openai/x")).await;
    assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{}", w.text());
    assert_eq!(w.json()["error"]["status"], "UNAVAILABLE");
    let log = r.log_text();
    let refused = log
        .lines()
        .find(|l| l.contains("management write refused"))
        .unwrap_or_else(|| panic!("no refusal in the log:\n{log}"));
    assert!(
        refused.contains("permission denied for table abroute_revision")
            && !refused.contains("pw-rw-4w"),
        "{refused}"
    );
    say(&format!("revoked: {refused}"));
    assert_eq!(r.chat(&chat_body("ok", "")).await.status, StatusCode::OK);
    assert_eq!(r.readyz().await.0, StatusCode::OK);
    drop(r);

    // Unreachable (nothing listens on the port): the replica starts and waits for the store,
    // not ready, refusing writes; the log names the address, never the password.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!(
        "postgresql://abroute_app:pw-unreach-3z@127.0.0.1:{closed}/{DATABASE}?sslmode=disable&connect_timeout=2"
    );
    let config = write_config(&temp_dir("procs-bad-unreachable"), &url, "");
    let r = Replica::start("unreachable", &config);
    assert_eq!(r.readyz().await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.call(Method::GET, "/healthz", "").await.status,
        StatusCode::OK
    );
    let w = r.create(&router("x", "openai/x")).await;
    assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{}", w.text());
    assert!(w.text().contains("unreachable"), "{}", w.text());
    let log = r.log_text();
    assert!(
        log.contains("the router store is unreachable")
            && log.contains(&format!("127.0.0.1:{closed}")),
        "{log}"
    );
    assert!(
        !log.contains("pw-unreach-3z") && !w.text().contains("pw-unreach-3z"),
        "{log}"
    );
    say(&format!(
        "unreachable: {}",
        log.lines()
            .find(|l| l.contains("unreachable"))
            .unwrap_or_default()
    ));
}

/// One wrk run of `secs` seconds at 64 connections against `base`'s chat: (requests a
/// second, p50, p99, non-2xx), as wrk printed them.
fn wrk(base: &str, secs: u64) -> (f64, String, String, String) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest");
    let out = Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{secs}s"), "--latency", "-s"])
        .arg(here.join("post.lua"))
        .arg(format!("{base}/v1/chat/completions"))
        .env("BODY", here.join("body-router-1k.json"))
        .output()
        .expect("wrk runs (apt-get install -y wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_owned()))
            .unwrap_or_else(|| "0".to_owned())
    };
    let rps = field("Requests/sec:").parse().unwrap_or(0.0);
    (
        rps,
        field("50%"),
        field("99%"),
        field("Non-2xx or 3xx responses:"),
    )
}

/// Sequential POSTs (`count` new routers) then PATCHes (`count`) of one router through `r`:
/// the p50 and p99 of each.
async fn write_latency(r: &Replica, prefix: &str, count: usize) -> [Duration; 4] {
    let mut posts = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let w = r
            .create(&router(&format!("{prefix}-{i}"), "openai/x"))
            .await;
        posts.push(started.elapsed());
        assert_eq!(w.status, StatusCode::OK, "{}", w.text());
    }
    let mut patches = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let w = r
            .patch(
                &format!("{prefix}-0"),
                "defaultRoute",
                &default_route(&format!("openai/p{i}")),
            )
            .await;
        patches.push(started.elapsed());
        assert_eq!(w.status, StatusCode::OK, "{}", w.text());
    }
    posts.sort();
    patches.sort();
    [
        percentile(&posts, 0.5),
        percentile(&posts, 0.99),
        percentile(&patches, 0.5),
        percentile(&patches, 0.99),
    ]
}

/// The figures of docs/benchmarks.md ("fleet"), not a check: a replica on PostgreSQL and one
/// without a shared store, the same config otherwise (auth off, the built-in mock), measured in
/// turn in one run: sequential POST and PATCH latency, then chat throughput with wrk (two
/// rounds, alternating). Run on a release build:
///
/// ```text
/// cargo build --release -p abroute-gateway --bin abroute
/// ABROUTE_BIN=target/release/abroute ABROUTE_REQUIRE_POSTGRES=1 \
///   cargo test -p abroute-gateway --test fleet_processes -- --ignored --nocapture fleet_figures
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures for docs/benchmarks.md; run with --ignored on a release build"]
async fn fleet_figures() {
    let Some(pg) = cluster("procs-figures") else {
        return;
    };
    let auth = "enabled = false";
    let dir = temp_dir("procs-figures-store");
    let store = format!(
        "url = \"{}\"\npath = \"{}\"",
        pg.url(),
        dir.join("copy.json").display()
    );
    let with_store = Replica::start("store", &write_config_with(&dir, auth, &store));
    let dir = temp_dir("procs-figures-local");
    let local = Replica::start("local", &write_config_with(&dir, auth, ""));
    for (name, r) in [("PostgreSQL", &with_store), ("memory (no store)", &local)] {
        let [p50, p99, q50, q99] = write_latency(r, "lat", 300).await;
        say(&format!(
            "{name}: POST p50 {p50:?}, p99 {p99:?}; PATCH p50 {q50:?}, p99 {q99:?} (300 each, sequential)"
        ));
    }
    for r in [&with_store, &local] {
        assert_eq!(r.create(common::SEED).await.status, StatusCode::OK);
    }
    for round in 1..=2 {
        for (name, r) in [("store attached", &with_store), ("no store", &local)] {
            let (rps, p50, p99, errors) = wrk(&r.base, 10);
            say(&format!(
                "round {round}, {name}: {rps:.0} req/s, p50 {p50}, p99 {p99}, non-2xx {errors}"
            ));
            assert!(rps > 0.0);
        }
    }
}
