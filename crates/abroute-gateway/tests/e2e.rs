//! End to end over loopback: the gateway and a scriptable mock upstream, real sockets on
//! 127.0.0.1 port 0, started and stopped by each test.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use abroute_gateway::config::{GatewayConfig, ProviderConfig, StoreConfig, WatchConfig};
use abroute_gateway::mock::Behaviour;
use common::*;
use http::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_steps_work_in_the_demo_mode() {
    let mut config = GatewayConfig::demo();
    config.listen = "127.0.0.1:0".parse().unwrap();
    let h = Harness::start(config).await;
    // Step 1, as on the seed page (the router is preloaded; an unchanged create is done).
    let r = h
        .request(
            Method::POST,
            "/router/v1/routers",
            SEED,
            Some("<your-api-key>"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["done"], true);
    assert_eq!(r.json()["response"]["name"], "compare-frontier-models");
    // Step 2.
    let r = h
        .request(
            Method::POST,
            "/v1/chat/completions",
            r#"{ "model": "inworld/compare-frontier-models", "messages": [{"role": "user", "content": "Hello!"}] }"#,
            Some("<your-api-key>"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    let model = r.header("x-abroute-model").to_owned();
    assert!(
        [
            "openai/gpt-4o-mini",
            "openai/gpt-3.5-turbo",
            "openai/gpt-4.1"
        ]
        .contains(&model.as_str()),
        "{model}"
    );
    let bare = model.strip_prefix("openai/").unwrap();
    assert_eq!(body["model"], bare);
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains(bare)
    );
    assert_eq!(body["metadata"]["attempts"][0]["success"], true);
    assert_eq!(body["metadata"]["router"], "compare-frontier-models");
    // A different router under the same name is refused (409), not silently replaced.
    let changed = SEED.replace("\"weight\": 34", "\"weight\": 35");
    let r = h
        .request(Method::POST, "/router/v1/routers", &changed, None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    // Operations endpoints.
    let r = h.request(Method::GET, "/healthz", "", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h.request(Method::GET, "/readyz", "", None).await;
    assert_eq!(r.json()["status"], "ready");
    let r = h.request(Method::GET, "/metrics", "", None).await;
    let text = r.text();
    assert!(
        text.contains("abroute_requests_total{router=\"compare-frontier-models\""),
        "{text}"
    );
    assert!(
        text.contains("abroute_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("abroute_ejections_total"), "{text}");
    // The answer's usage, counted per variant.
    for name in ["abroute_input_tokens_total", "abroute_output_tokens_total"] {
        assert!(
            text.contains(&format!("{name}{{router=\"compare-frontier-models\"")),
            "{name}: {text}"
        );
    }
    let r = h.request(Method::GET, "/v1/models", "", None).await;
    assert_eq!(r.json()["data"][0]["id"], "inworld/compare-frontier-models");
    assert!(h.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_on_429_503_timeouts_and_connect_errors() {
    // A provider nobody listens on: bind a port, then free it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let mut config = test_config();
    config.providers.push(ProviderConfig {
        name: "dead".into(),
        base_url: Some(format!("http://{dead_addr}/v1")),
        mock: false,
        api_key: None,
        api_key_env: None,
        ca_file: None,
        http2: true,
    });
    let h = Harness::start(config).await;
    h.mock.set("limited", Behaviour::status(429));
    h.mock.set("broken", Behaviour::status(503));
    h.mock.set("slow", Behaviour::hang());
    for (name, primary, class) in [
        ("r429", "openai/limited", "rate_limited"),
        ("r503", "openai/broken", "server_error"),
        ("rslow", "openai/slow", "timeout"),
        ("rdead", "dead/model", "server_error"),
    ] {
        let body = h.fails_over_to_backup(name, primary, class).await;
        assert_eq!(body["metadata"]["served_model_id"], "openai/backup");
    }
    assert_eq!(h.mock.hits("limited"), 1);
    assert_eq!(h.mock.hits("backup"), 4);
    // Every attempt failing: the last upstream answer is passed on.
    h.mock.set("backup", Behaviour::status(503));
    let r = h.chat(&chat_body("r429", "")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    // A 4xx other than 429 is the request's fault: no failover.
    h.mock.set("limited", Behaviour::status(400));
    h.mock.set("backup", Behaviour::ok());
    let before = h.mock.hits("backup");
    let r = h.chat(&chat_body("r429", "")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(h.mock.hits("backup"), before);
    // The metrics saw the failovers.
    let text = h.request(Method::GET, "/metrics", "", None).await.text();
    assert!(
        text.contains("abroute_failovers_total{router=\"r503\""),
        "{text}"
    );
    assert!(text.contains("outcome=\"rate_limited\""), "{text}");
    h.stop().await;
}

/// The built-in mock called in process (the demo's default): the same scripted failures fail
/// over, a hanging model times out, streams pass through unbuffered, and the provider's key
/// reaches the mock as it would a real upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_mock_fails_over_times_out_and_streams() {
    let mut config = test_config();
    config.mock.in_process = true;
    let h = Harness::start(config).await;
    assert_eq!(h.gateway.mock_addr(), None, "no socket for the mock");
    h.mock.set("limited", Behaviour::status(429));
    h.mock.set("slow", Behaviour::hang());
    h.mock.capture(true);
    for (name, primary, class) in [
        ("p429", "openai/limited", "rate_limited"),
        ("pslow", "openai/slow", "timeout"),
    ] {
        h.fails_over_to_backup(name, primary, class).await;
    }
    let seen = h.mock.seen();
    assert!(!seen.is_empty());
    for req in &seen {
        assert_eq!(req.headers["authorization"], "Bearer sk-upstream-key");
        assert!(!req.headers.contains_key("host"));
    }
    h.mock.capture(false);
    h.mock.set(
        "quick",
        Behaviour::ok().with_token_interval(Duration::from_millis(40)),
    );
    h.create(&failover_router("ps", "openai/limited", "openai/quick"))
        .await;
    let (status, headers, frames) = h.stream(&chat_body("ps", r#", "stream": true"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-abroute-model"], "openai/quick");
    let text: String = frames
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(
        attempt_models(&sse_metadata(&text)),
        vec![
            (
                "openai/limited".to_owned(),
                "failure:rate_limited".to_owned()
            ),
            ("openai/quick".to_owned(), "success".to_owned())
        ]
    );
    let last = frames.last().unwrap().0;
    let first = frames.first().unwrap().0;
    assert!(frames.len() >= 5, "{} frames", frames.len());
    assert!(
        last - first >= Duration::from_millis(150),
        "unbuffered: {first:?} .. {last:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_feed_health_and_eject_a_failing_model() {
    let h = Harness::start(test_config()).await;
    h.mock.set("flaky", Behaviour::status(503));
    h.create(&failover_router("h", "openai/flaky", "openai/steady"))
        .await;
    for _ in 0..5 {
        let r = h.chat(&chat_body("h", "")).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // Five failures in a row eject the model: the next requests skip it.
    let hits = h.mock.hits("flaky");
    assert_eq!(hits, 5);
    for _ in 0..5 {
        let r = h.chat(&chat_body("h", "")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(attempt_models(&r.json()).len(), 1);
    }
    assert_eq!(h.mock.hits("flaky"), hits);
    let text = h.request(Method::GET, "/metrics", "", None).await.text();
    assert!(
        text.contains("abroute_ejections_total{router=\"h\",route=\"default\",variant=\"main\",model=\"openai/flaky\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("abroute_model_ejected{model=\"openai/flaky\"} 1"),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_users_keep_their_variant_until_the_weights_move_them() {
    let h = Harness::start(test_config()).await;
    let r = h.create(SEED).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["done"], true);
    let body = chat_body("compare-frontier-models", r#", "user": "alice""#);
    let first = h.chat(&body).await;
    let variant = first.header("x-abroute-variant").to_owned();
    assert!(!variant.is_empty());
    for _ in 0..99 {
        let r = h.chat(&body).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-abroute-variant"), variant);
        assert_eq!(r.json()["metadata"]["assignment"]["kind"], "sticky");
    }
    // Everyone to one variant other than alice's.
    let target = if variant == "openai/gpt-4.1-c" {
        ("openai/gpt-4o-mini-a", "openai/gpt-4o-mini")
    } else {
        ("openai/gpt-4.1-c", "openai/gpt-4.1")
    };
    let patch = format!(
        r#"{{ "defaultRoute": {{ "route_id": "default", "variants": [
        {{ "variant": {{ "variant_id": "{}", "model_id": "{}" }}, "weight": 100 }} ] }} }}"#,
        target.0, target.1
    );
    let r = h
        .request(
            Method::PATCH,
            "/router/v1/routers/compare-frontier-models?update_mask=defaultRoute",
            &patch,
            Some(ADMIN),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let version = r.json()["metadata"]["version"].as_u64().unwrap();
    for _ in 0..10 {
        let r = h.chat(&body).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-abroute-variant"), target.0);
        assert_eq!(r.header("x-abroute-version"), version.to_string());
    }
    // Without a key, management is refused.
    let r = h
        .request(
            Method::DELETE,
            "/router/v1/routers/compare-frontier-models",
            "",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_fail_over_before_the_first_byte_and_pass_through_unbuffered() {
    let h = Harness::start(test_config()).await;
    h.create(&failover_router("s", "openai/sluggish", "openai/quick"))
        .await;
    h.create(&failover_router("s5", "openai/down", "openai/quick"))
        .await;
    // The primary sends its head at once and its first token after 2 s; ttft_timeout is 300ms.
    h.mock.set(
        "sluggish",
        Behaviour::first_token_delay(Duration::from_secs(2)),
    );
    h.mock.set("down", Behaviour::status(503));
    h.mock.set(
        "quick",
        Behaviour::ok().with_token_interval(Duration::from_millis(40)),
    );
    let body = chat_body(
        "s",
        r#", "stream": true, "extra_body": {"fallback": {"ttft_timeout": "300ms"}}"#,
    );
    let (status, headers, frames) = h.stream(&body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-abroute-model"], "openai/quick");
    assert_eq!(headers["content-type"], "text/event-stream");
    let text: String = frames
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(sse_content(&text).contains("This is quick"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    // Inworld's metadata, as one more chunk just before [DONE], after the failover.
    let chunk = sse_metadata(&text);
    assert!(
        chunk["id"].as_str().unwrap().starts_with("chatcmpl-mock-"),
        "the stream's own id: {chunk}"
    );
    assert_eq!(chunk["model"], "quick", "the stream's own model");
    assert_eq!(
        attempt_models(&chunk),
        vec![
            (
                "openai/sluggish".to_owned(),
                "failure:slow_first_token".to_owned()
            ),
            ("openai/quick".to_owned(), "success".to_owned())
        ]
    );
    let meta = &chunk["metadata"];
    assert_eq!(meta["attempts"][1]["success"], true);
    assert!(meta["attempts"][1]["time_to_first_token_ms"].is_u64());
    assert_eq!(meta["served_variant_id"], "main");
    assert_eq!(meta["served_model_id"], "openai/quick");
    assert_eq!(meta["router"], "s");
    // Measured at the end of the stream: after the 300 ms TTFT limit and the tokens.
    assert!(meta["total_duration_ms"].as_u64().unwrap() >= 500, "{meta}");
    // Unbuffered: the frames arrived spread over the stream's life, not at once at the end.
    let first = frames.first().unwrap().0;
    let last = frames.last().unwrap().0;
    assert!(frames.len() >= 5, "{} frames", frames.len());
    assert!(
        last - first >= Duration::from_millis(200),
        "{first:?} .. {last:?}"
    );
    assert!(
        first < Duration::from_millis(300) + Duration::from_millis(500),
        "{first:?}"
    );
    // A 503 before the first byte fails over too.
    let (status, headers, frames) = h.stream(&chat_body("s5", r#", "stream": true"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-abroute-model"], "openai/quick");
    assert!(frames.len() > 3);
    let text = h.request(Method::GET, "/metrics", "", None).await.text();
    assert!(text.contains("outcome=\"slow_first_token\""), "{text}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_survive_a_restart() {
    let dir = temp_dir("restart");
    let state = dir.join("routers.json");
    let mut config = test_config();
    config.store = StoreConfig {
        path: Some(state.clone()),
        ..StoreConfig::default()
    };
    let h = Harness::start(config.clone()).await;
    for name in ["one", "two", "three"] {
        let r = h
            .create(&failover_router(name, "openai/a", "openai/b"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let r = h
        .request(
            Method::PATCH,
            "/router/v1/routers/two",
            r#"{"displayName": "Two, renamed"}"#,
            Some(ADMIN),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h
        .request(Method::DELETE, "/router/v1/routers/three", "", Some(ADMIN))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let listed = h
        .request(Method::GET, "/router/v1/routers", "", Some(ADMIN))
        .await
        .json();
    assert!(h.stop().await);
    assert!(!dir.join("routers.json.tmp").exists());

    let h = Harness::start(config).await;
    let again = h
        .request(Method::GET, "/router/v1/routers", "", Some(ADMIN))
        .await
        .json();
    assert_eq!(listed, again);
    assert_eq!(again["routers"].as_array().unwrap().len(), 2);
    assert_eq!(again["routers"][1]["displayName"], "Two, renamed");
    let r = h.chat(&chat_body("two", "")).await;
    assert_eq!(r.status, StatusCode::OK);
    h.stop().await;

    // A corrupt state file stops the start, naming the file and the position.
    std::fs::write(
        &state,
        "{\"abroute_state\": 1,\n  \"routers\": [ {\"name\": \"x\" ]\n}",
    )
    .unwrap();
    let mut config = test_config();
    config.store = StoreConfig {
        path: Some(state.clone()),
        ..StoreConfig::default()
    };
    let e = Harness::try_start(config).await.err().expect("refused");
    assert!(e.contains(&format!("{}:2:", state.display())), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_are_rejected_while_serving_continues() {
    let dir = temp_dir("invalid");
    let watched = dir.join("routers");
    std::fs::create_dir_all(&watched).unwrap();
    std::fs::write(
        watched.join("w.json"),
        failover_router("w", "openai/one", "openai/two"),
    )
    .unwrap();
    let mut config = test_config();
    config.watch = Some(WatchConfig {
        dir: watched.clone(),
        interval: Duration::from_millis(50),
    });
    let h = Arc::new(Harness::start(config).await);
    h.create(SEED).await;

    // Traffic all along.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for router in ["compare-frontier-models", "w"] {
        let (h, stop, failures, served) =
            (h.clone(), stop.clone(), failures.clone(), served.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = h.chat(&chat_body(router, "")).await;
                if r.status == StatusCode::OK {
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // Through the API: every problem, with its path; nothing changes.
    let bad = r#"{"defaultRoute": {"route_id": "default", "variants": [
        {"variant": {"variant_id": "a", "model_id": "openai/gpt-4.1"}, "weight": 50},
        {"variant": {"variant_id": "b", "model_id": "openai/gpt-4o"}, "weight": 50},
        {"variant": {"variant_id": "c", "model_id": "openai/gpt-4o"}, "wieght": 50}]}}"#;
    let r = h
        .request(
            Method::PATCH,
            "/router/v1/routers/compare-frontier-models",
            bad,
            Some(ADMIN),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        r.text().contains("defaultRoute.variants[2]"),
        "{}",
        r.text()
    );
    let r = h
        .create(&failover_router("Bad Name", "openai/a", "openai/b"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.gateway.engine().load().len(), 2);

    // Through the watched directory: an invalid file keeps the old router.
    let version = h.gateway.engine().version();
    std::fs::write(watched.join("w.json"), "{ \"name\": \"w\", ").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.gateway.engine().version(), version);
    assert!(h.gateway.engine().load().router("w").is_some());
    // A valid change is swapped in.
    std::fs::write(
        watched.join("w.json"),
        failover_router("w", "openai/three", "openai/two"),
    )
    .unwrap();
    let mut swapped = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let snapshot = h.gateway.engine().load();
        if snapshot
            .router("w")
            .is_some_and(|r| r.config().to_json().contains("openai/three"))
        {
            swapped = true;
            break;
        }
    }
    assert!(swapped, "the watched change was not applied");
    // Watched routers are not changed through the API.
    let r = h
        .request(Method::DELETE, "/router/v1/routers/w", "", Some(ADMIN))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(served.load(Ordering::Relaxed) > 10);
    // The file removed: the router goes.
    std::fs::remove_file(watched.join("w.json")).unwrap();
    let mut removed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if h.gateway.engine().load().router("w").is_none() {
            removed = true;
            break;
        }
    }
    assert!(removed);
    let h = Arc::into_inner(h).expect("no other holder");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_ten_times_a_second_fails_no_request() {
    let h = Arc::new(Harness::start(test_config()).await);
    h.create(SEED).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (h, stop, failures, served) =
            (h.clone(), stop.clone(), failures.clone(), served.clone());
        tasks.push(tokio::spawn(async move {
            let body = chat_body("compare-frontier-models", &format!(r#", "user": "u{i}""#));
            while !stop.load(Ordering::Relaxed) {
                let r = h.chat(&body).await;
                if r.status == StatusCode::OK {
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let start = h.gateway.engine().version();
    for i in 0..20u32 {
        let a = 10 + (i * 7) % 60;
        let patch = format!(
            r#"{{ "defaultRoute": {{ "route_id": "default", "variants": [
            {{ "variant": {{ "variant_id": "openai/gpt-4o-mini-a", "model_id": "openai/gpt-4o-mini" }}, "weight": {a} }},
            {{ "variant": {{ "variant_id": "openai/gpt-3.5-turbo-b", "model_id": "openai/gpt-3.5-turbo" }}, "weight": {} }},
            {{ "variant": {{ "variant_id": "openai/gpt-4.1-c", "model_id": "openai/gpt-4.1" }}, "weight": 10 }} ] }} }}"#,
            90 - a
        );
        let r = h
            .request(
                Method::PATCH,
                "/router/v1/routers/compare-frontier-models?update_mask=defaultRoute",
                &patch,
                Some(ADMIN),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(h.gateway.engine().version(), start + 20);
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(
        served.load(Ordering::Relaxed) > 100,
        "{}",
        served.load(Ordering::Relaxed)
    );
    let h = Arc::into_inner(h).expect("no other holder");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_streams() {
    let h = Harness::start(test_config()).await;
    h.create(&failover_router("g", "openai/talker", "openai/other"))
        .await;
    h.mock.set(
        "talker",
        Behaviour::ok().with_token_interval(Duration::from_millis(60)),
    );
    let client = client();
    let base = h.base.clone();
    let stream = tokio::spawn(async move {
        request(
            &client,
            &base,
            Method::POST,
            "/v1/chat/completions",
            &chat_body("g", r#", "stream": true"#),
            Some(ADMIN),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let addr = h.gateway.addr();
    assert!(h.stop().await, "in-flight requests finished in time");
    let r = stream.await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text().trim_end().ends_with("data: [DONE]"),
        "{}",
        r.text()
    );
    // And the gateway no longer accepts connections.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked_and_never_forwarded() {
    let h = Harness::start(test_config()).await;
    h.create(SEED).await;
    h.mock.capture(true);
    let body = chat_body("compare-frontier-models", "");
    let r = h
        .request(Method::POST, "/v1/chat/completions", &body, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = h
        .request(Method::POST, "/v1/chat/completions", &body, Some("wrong"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = h.chat(&body).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = h.mock.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["authorization"], "Bearer sk-upstream-key");
    assert_eq!(seen[0].path, "/v1/chat/completions");
    let sent: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert!(!sent["model"].as_str().unwrap().contains('/'), "{sent}");
    h.stop().await;
}

const TIERS: &str = r#"{ "name": "tiers", "routes": [
  { "route": { "route_id": "refunds", "variants": [
      { "variant": { "variant_id": "careful", "model_id": "openai/gpt-4.1" }, "weight": 100 } ] },
    "condition": { "cel_expression": "messages.last().content.matches(\"(?i).*refund.*\")" } },
  { "route": { "route_id": "premium", "variants": [
      { "variant": { "variant_id": "big", "model_id": "openai/gpt-4o" }, "weight": 100 } ] },
    "condition": { "cel_expression": "tier == \"premium\" && seats > 10" } } ],
  "defaultRoute": { "route_id": "default", "variants": [
      { "variant": { "variant_id": "small", "model_id": "openai/gpt-4o-mini" }, "weight": 100 } ] } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_see_metadata() {
    let h = Harness::start(test_config()).await;
    let r = h.create(TIERS).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h
        .chat(&chat_body(
            "tiers",
            r#", "extra_body": {"metadata": {"tier": "premium", "seats": 12}}"#,
        ))
        .await;
    assert_eq!(r.header("x-abroute-route"), "premium");
    assert_eq!(r.json()["model"], "gpt-4o");
    let r = h
        .chat(&chat_body(
            "tiers",
            r#", "extra_body": {"metadata": {"tier": "premium", "seats": 2}}"#,
        ))
        .await;
    assert_eq!(r.header("x-abroute-route"), "default");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_see_messages() {
    let h = Harness::start(test_config()).await;
    h.create(TIERS).await;
    let refund = r#"{"model": "inworld/tiers", "messages": [{"role": "user", "content": "I want a REFUND"}]}"#;
    let r = h.chat(refund).await;
    assert_eq!(r.header("x-abroute-route"), "refunds");
    h.stop().await;
}

/// A router's `message_templates`, filled from `extra_body.prompt_variables`, reach the
/// upstream in front of the request's messages; a failover to another variant sends that
/// variant's own templates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_templates_reach_the_upstream_filled_in() {
    let h = Harness::start(test_config()).await;
    h.mock.capture(true);
    let r = h
        .create(
            r#"{ "name": "agents",
  "defaults": { "message_templates": [
      { "role": "system", "content": "You are {{agent_name}}, who loves {{item}}." } ] },
  "defaultRoute": { "route_id": "default", "failover": { "across_variants": true }, "variants": [
      { "variant": { "variant_id": "main", "model_id": "openai/limited" }, "weight": 50 },
      { "variant": { "variant_id": "other", "model_id": "openai/gpt-4.1",
          "message_templates": [ { "role": "system", "content": "Other {{agent_name}}." } ] },
        "weight": 50 } ] } }"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    h.mock.set("limited", Behaviour::status(429));
    let mut failed_over = 0;
    for user in 0..8 {
        let r = h
            .chat(&chat_body(
                "agents",
                &format!(
                    r#", "user": "u-{user}", "extra_body": {{"prompt_variables": {{"agent_name": "Ava", "item": "tea"}}}}"#
                ),
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-abroute-variant"), "other");
        if r.header("x-abroute-assigned-variant") == "main" {
            failed_over += 1;
        }
    }
    assert!(
        failed_over > 0,
        "some sticky user is assigned `main` and fails over"
    );
    // Every attempt carried its variant's template, filled in, before the client's message;
    // the router's keys are gone.
    let seen = h.mock.seen();
    let to = |model: &str| {
        seen.iter()
            .filter(|s| {
                serde_json::from_slice::<serde_json::Value>(&s.body).unwrap()["model"] == model
            })
            .count()
    };
    assert_eq!(to("gpt-4.1"), 8);
    // (Passive health may eject `limited` after a few 429s: then it is skipped.)
    assert!((1..=failed_over).contains(&to("limited")));
    for s in &seen {
        let sent: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
        let messages = sent["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2, "{sent}");
        assert_eq!(messages[0]["role"], "system");
        let want = match sent["model"].as_str() {
            Some("limited") => "You are Ava, who loves tea.",
            Some("gpt-4.1") => "Other Ava.",
            other => panic!("unexpected model {other:?}"),
        };
        assert_eq!(messages[0]["content"], want, "{sent}");
        assert_eq!(messages[1]["content"], "Hello!");
        assert!(sent.get("extra_body").is_none(), "{sent}");
    }
    h.stop().await;
}
