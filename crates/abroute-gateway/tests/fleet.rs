//! Two replicas sharing their routers through one real PostgreSQL (a throwaway cluster, skipped
//! without PostgreSQL unless `ABROUTE_REQUIRE_POSTGRES=1`). The replicas are two gateways
//! started in this process (`Gateway::start` twice, each with its own listener, engine, store
//! connection and watch): everything between them goes through the database.
//!
//! A router created on A is served by B and a PATCH on B by A (propagation over 200 changes,
//! p50 and p99 printed); both replicas give 1,000 sticky users the same variant; concurrent
//! PATCHes of different fields from both replicas lose none; with the server stopped
//! (`pg_ctl stop -m immediate`) chats keep being served, writes answer 503 and `/readyz` stays
//! 200, a replica started during the outage serves from its local copy, and once the server is
//! back both converge; a row made invalid with `psql` is refused and the old router serves.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use abroute_gateway::config::GatewayConfig;
use common::fleet::{default_route, model_of, percentile, propagation_summary, router};
use common::postgres::{DATABASE, PgCluster, cluster};
use common::{ADMIN, Harness, Response, chat_body, temp_dir, test_config};
use http::{Method, StatusCode};
use serde_json::Value;

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn replica(pg: &PgCluster, name: &str) -> GatewayConfig {
    let mut c = test_config();
    c.store.url = Some(pg.url());
    c.store.path = Some(temp_dir(&format!("fleet-{name}")).join("copy.json"));
    c
}

async fn get(h: &Harness, name: &str) -> Response {
    h.request(
        Method::GET,
        &format!("/router/v1/routers/{name}"),
        "",
        Some(ADMIN),
    )
    .await
}

/// Waits until `check` holds on `h`'s GET of `name`; how long it took.
async fn until(h: &Harness, name: &str, check: impl Fn(&Response) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let r = get(h, name).await;
        if check(&r) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{name} not as expected within 10 s: {} {}",
            r.status,
            r.text()
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn patch(h: &Harness, name: &str, mask: &str, body: &str) -> Response {
    h.request(
        Method::PATCH,
        &format!("/router/v1/routers/{name}?update_mask={mask}"),
        body,
        Some(ADMIN),
    )
    .await
}

/// PATCHes `shared` until it lands (a 409 ABORTED, the API's retries spent under contention,
/// is sent again, as AIP-193 advises); how many times it was aborted. Anything else fails.
async fn landed(h: &Harness, mask: &str, body: &str) -> usize {
    for aborted in 0..20 {
        let r = patch(h, "shared", mask, body).await;
        match r.status {
            StatusCode::OK => return aborted,
            StatusCode::CONFLICT if r.json()["error"]["status"] == "ABORTED" => {}
            _ => panic!("{} {}", r.status, r.text()),
        }
    }
    panic!("20 times aborted");
}

async fn readyz(h: &Harness) -> (StatusCode, Value) {
    let r = h.request(Method::GET, "/readyz", "", None).await;
    (r.status, r.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_every_change() {
    let Some(pg) = cluster("fleet-share") else {
        return;
    };
    let a = Harness::start(replica(&pg, "share-a")).await;
    let b = Harness::start(replica(&pg, "share-b")).await;
    // Created on A, served by B.
    let r = a.create(&router("shared", "openai/m0")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    until(&b, "shared", |r| r.status == StatusCode::OK).await;
    let chat = b.chat(&chat_body("shared", "")).await;
    assert_eq!(chat.status, StatusCode::OK, "{}", chat.text());
    // Both report the same version: the store's revision.
    let (sa, ra) = readyz(&a).await;
    let (sb, rb) = readyz(&b).await;
    assert_eq!((sa, sb), (StatusCode::OK, StatusCode::OK));
    assert_eq!(ra["version"], rb["version"]);
    assert_eq!(
        chat.header("x-abroute-version"),
        ra["version"].to_string(),
        "decisions report the store revision"
    );
    // PATCHes on B, each served by A: propagation from B's answer to A's serving it.
    let mut lags = Vec::new();
    let mut writes = Vec::new();
    for i in 1..=200 {
        let model = format!("openai/m{i}");
        let started = Instant::now();
        let r = patch(&b, "shared", "defaultRoute", &default_route(&model)).await;
        writes.push(started.elapsed());
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        // B reads its own write at once.
        assert_eq!(model_of(&get(&b, "shared").await.json()), model);
        lags.push(until(&a, "shared", |r| model_of(&r.json()) == model).await);
    }
    say(&propagation_summary(
        "B -> A (in process)",
        &mut lags,
        &mut writes,
    ));
    assert!(percentile(&lags, 0.99) < Duration::from_secs(1));
    // 1,000 sticky users get the same variant from both replicas.
    for u in 0..1000 {
        let body = chat_body("shared", &format!(r#", "user": "user-{u}""#));
        let va = a.chat(&body).await;
        let vb = b.chat(&body).await;
        assert_eq!(va.status, StatusCode::OK);
        assert_eq!(
            va.header("x-abroute-variant"),
            vb.header("x-abroute-variant"),
            "user-{u}"
        );
        assert_eq!(
            va.header("x-abroute-version"),
            vb.header("x-abroute-version")
        );
    }
    // Concurrent PATCHes of different fields from both replicas: none is lost.
    let (ra, rb) = tokio::join!(
        async {
            let mut aborted = 0;
            for i in 0..30 {
                let body = format!(r#"{{ "displayName": "name {i}" }}"#);
                aborted += landed(&a, "displayName", &body).await;
            }
            aborted
        },
        async {
            let mut aborted = 0;
            for i in 0..30 {
                let body = default_route(&format!("openai/s{i}"));
                aborted += landed(&b, "defaultRoute", &body).await;
            }
            aborted
        }
    );
    say(&format!(
        "60 concurrent PATCHes from both replicas: {} answered 409 ABORTED after the API's own retries and were sent again",
        ra + rb
    ));
    for h in [&a, &b] {
        until(h, "shared", |r| {
            let v = r.json();
            v["displayName"] == "name 29" && model_of(&v) == "openai/s29"
        })
        .await;
    }
    // An etag read on A, made stale by a PATCH on B, is refused on A once A serves B's change.
    let etag = get(&a, "shared").await.json()["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = patch(
        &b,
        "shared",
        "displayName",
        r#"{ "displayName": "from b" }"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    until(&a, "shared", |r| r.json()["displayName"] == "from b").await;
    let stale = format!(r#"{{ "displayName": "from a", "etag": "{etag}" }}"#);
    let r = patch(&a, "shared", "displayName", &stale).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(r.json()["error"]["status"], "ABORTED");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_fails_no_chat_and_both_converge_after_it() {
    let Some(mut pg) = cluster("fleet-outage") else {
        return;
    };
    let a = Harness::start(replica(&pg, "outage-a")).await;
    let b_config = replica(&pg, "outage-b");
    let b = Harness::start(b_config.clone()).await;
    assert_eq!(
        a.create(&router("r", "openai/before")).await.status,
        StatusCode::OK
    );
    until(&b, "r", |r| r.status == StatusCode::OK).await;
    pg.stop_immediate();
    // Chats keep being served; writes answer 503 saying why; /readyz stays 200.
    let body = chat_body("r", "");
    for _ in 0..50 {
        assert_eq!(a.chat(&body).await.status, StatusCode::OK);
        assert_eq!(b.chat(&body).await.status, StatusCode::OK);
    }
    let w = patch(&a, "r", "defaultRoute", &default_route("openai/during")).await;
    assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{}", w.text());
    assert_eq!(w.json()["error"]["status"], "UNAVAILABLE");
    assert!(w.text().contains("unreachable"), "{}", w.text());
    assert_eq!(readyz(&a).await.0, StatusCode::OK);
    assert_eq!(
        get(&a, "r").await.status,
        StatusCode::OK,
        "reads from the local snapshot"
    );
    // B restarted during the outage serves from its local copy.
    b.stop().await;
    let b = Harness::start(b_config).await;
    assert_eq!(readyz(&b).await.0, StatusCode::OK);
    assert_eq!(b.chat(&body).await.status, StatusCode::OK);
    // The store back: writes land again and both converge.
    pg.start();
    let started = Instant::now();
    loop {
        let w = patch(&a, "r", "defaultRoute", &default_route("openai/after")).await;
        if w.status == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{}", w.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for h in [&a, &b] {
        until(h, "r", |r| model_of(&r.json()) == "openai/after").await;
    }
    say(&format!(
        "writes accepted again {:?} after the restart",
        started.elapsed()
    ));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_row_is_refused_and_the_old_router_serves() {
    let Some(pg) = cluster("fleet-invalid") else {
        return;
    };
    let a = Harness::start(replica(&pg, "invalid-a")).await;
    assert_eq!(
        a.create(&router("r", "openai/good")).await.status,
        StatusCode::OK
    );
    let before = readyz(&a).await.1["version"].as_u64().unwrap();
    // Another tool writes a router with no variants, and NOTIFYs.
    pg.psql_in(
        DATABASE,
        "WITH r AS (UPDATE abroute_revision SET revision = revision + 1 RETURNING revision)
         UPDATE abroute_routers SET config = '{\"name\": \"r\", \"defaultRoute\": {\"route_id\": \"d\", \"variants\": []}}',
                mod_revision = (SELECT revision FROM r) WHERE name = 'r';
         NOTIFY abroute_routers;",
    );
    let started = Instant::now();
    while readyz(&a).await.1["version"].as_u64().unwrap() <= before {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the change was not seen"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(model_of(&get(&a, "r").await.json()), "openai/good");
    let chat = a.chat(&chat_body("r", "")).await;
    assert_eq!(chat.status, StatusCode::OK);
    let metrics = a.request(Method::GET, "/metrics", "", None).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("abroute_config_changes_total")
                && l.contains("source=\"store\"")
                && l.contains("result=\"rejected\"")
                && !l.ends_with(" 0")),
        "{metrics}"
    );
    a.stop().await;
}
