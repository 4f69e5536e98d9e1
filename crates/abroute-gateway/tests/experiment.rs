//! End to end: the experiment's books. Streamed answers count their tokens, time to first
//! token and cost per arm; include_usage is honoured both ways; a mid-stream reset ends the
//! client's stream with one error event; a client that leaves closes the upstream; the SRM
//! gauge is published.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use abroute_gateway::mock::Behaviour;
use common::*;
use http::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn text_of(frames: &[(Duration, bytes::Bytes)]) -> String {
    frames
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect()
}

/// The data lines of a stream that are JSON.
fn data_json(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .collect()
}

fn metric(text: &str, name: &str, router: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("router=\"{router}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_usage_ttft_and_cost_per_arm_with_include_usage_both_ways() {
    let h = Harness::start(test_config()).await;
    h.create(&failover_router("st", "openai/gpt-4o-mini", "openai/quick"))
        .await;
    h.create(&failover_router(
        "free",
        "openai/no-price-here",
        "openai/quick",
    ))
    .await;
    h.mock.capture(true);
    // The client did not ask: the upstream is asked, the usage chunk is not forwarded.
    let (status, _, frames) = h.stream(&chat_body("st", r#", "stream": true"#)).await;
    assert_eq!(status, StatusCode::OK);
    let text = text_of(&frames);
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(
        data_json(&text).iter().all(|v| !v["usage"].is_object()),
        "no usage chunk for a client that did not ask: {text}"
    );
    let seen = h.mock.seen();
    let sent: Value = serde_json::from_slice(&seen.last().unwrap().body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true, "{sent}");
    // The client asked: its usage chunk comes through, untouched.
    let (_, _, frames) = h
        .stream(&chat_body(
            "st",
            r#", "stream": true, "stream_options": {"include_usage": true}"#,
        ))
        .await;
    let text = text_of(&frames);
    let usage: Vec<Value> = data_json(&text)
        .into_iter()
        .filter(|v| v["usage"].is_object())
        .collect();
    assert_eq!(usage.len(), 1, "{text}");
    assert_eq!(usage[0]["choices"], serde_json::json!([]));
    let input = usage[0]["usage"]["prompt_tokens"].as_u64().unwrap();
    let output = usage[0]["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(input > 0 && output > 0);
    // An unpriced model's tokens are counted apart.
    let (status, _, _) = h.stream(&chat_body("free", r#", "stream": true"#)).await;
    assert_eq!(status, StatusCode::OK);
    let m = h.request(Method::GET, "/metrics", "", None).await.text();
    // Both streams of `st` counted their tokens (the same reply twice; the mock counts the
    // prompt by its length, which the two bodies' spelling of `stream_options` changes).
    let input_total = metric(&m, "abroute_input_tokens_total", "st");
    assert!(
        input_total > input as f64 && input_total < 2.0 * input as f64 + 3.0,
        "{input_total} {m}"
    );
    assert_eq!(
        metric(&m, "abroute_output_tokens_total", "st"),
        2.0 * output as f64
    );
    assert_eq!(
        metric(&m, "abroute_time_to_first_token_seconds_count", "st"),
        2.0
    );
    assert_eq!(
        metric(&m, "abroute_stream_duration_seconds_count", "st"),
        2.0
    );
    // gpt-4o-mini: $0.15 in, $0.60 out per million.
    let want = (input_total * 0.15 + 2.0 * output as f64 * 0.60) / 1e6;
    let cost = metric(&m, "abroute_cost_usd_total", "st");
    assert!((cost - want).abs() < 1e-12, "{cost} vs {want}");
    assert!(
        metric(&m, "abroute_unpriced_tokens_total", "free") > 0.0,
        "{m}"
    );
    assert_eq!(metric(&m, "abroute_cost_usd_total", "free"), 0.0);
    // One arm of weight 100: nothing to test, but the assignments are counted.
    assert_eq!(metric(&m, "abroute_stream_errors_total", "st"), 0.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_stream_reset_ends_with_one_error_event_and_a_clean_end() {
    let h = Harness::start(test_config()).await;
    h.create(&failover_router("rs", "openai/flaky", "openai/quick"))
        .await;
    h.mock.set(
        "flaky",
        Behaviour::ok()
            .with_token_interval(Duration::from_millis(5))
            .with_reset_after(3),
    );
    // `stream` fails the test on a body error: the end must be clean.
    let (status, _, frames) = h.stream(&chat_body("rs", r#", "stream": true"#)).await;
    assert_eq!(status, StatusCode::OK);
    let text = text_of(&frames);
    assert!(
        text.ends_with(
            "data: {\"error\":{\"message\":\"the upstream stream broke before its end\",\"type\":\"server_error\",\"param\":null,\"code\":\"stream_broken\"}}\n\n"
        ),
        "{text:?}"
    );
    assert_eq!(text.matches("\"error\"").count(), 1);
    assert!(!text.contains("[DONE]"));
    // Every event before it is whole JSON.
    for l in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        assert!(serde_json::from_str::<Value>(l).is_ok(), "{l}");
    }
    let m = h.request(Method::GET, "/metrics", "", None).await.text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("abroute_stream_errors_total")
                && l.contains("router=\"rs\"")
                && l.contains("cause=\"upstream_reset\"")
                && l.ends_with(" 1")),
        "{m}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_closes_the_upstream_within_a_second() {
    let h = Harness::start(test_config()).await;
    h.create(&failover_router("cd", "openai/slow", "openai/quick"))
        .await;
    h.mock.set(
        "slow",
        Behaviour::ok().with_token_interval(Duration::from_millis(50)),
    );
    let addr = h.base.trim_start_matches("http://").to_owned();
    let body = chat_body("cd", r#", "stream": true"#);
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {ADMIN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(h.mock.cancelled(), 0);
    drop(s);
    let left = std::time::Instant::now();
    // Bounded: 100 polls of 10 ms.
    for _ in 0..100 {
        if h.mock.cancelled() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.mock.cancelled(), 1, "the upstream stream stopped");
    assert!(
        left.elapsed() < Duration::from_secs(1),
        "{:?}",
        left.elapsed()
    );
    let m = h.request(Method::GET, "/metrics", "", None).await.text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("abroute_stream_errors_total")
                && l.contains("router=\"cd\"")
                && l.contains("cause=\"client_closed\"")),
        "{m}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readout_and_the_srm_gauge_match_the_requests_sent() {
    let h = Harness::start(test_config()).await;
    let router = r#"{ "name": "ab", "defaultRoute": { "route_id": "default", "variants": [
        { "variant": { "variant_id": "a", "model_id": "openai/gpt-4o-mini" }, "weight": 50 },
        { "variant": { "variant_id": "b", "model_id": "openai/two" }, "weight": 50 } ] } }"#;
    h.create(router).await;
    let (mut a, mut b) = (0u64, 0u64);
    // Bounded: 2,000 requests.
    for i in 0..2_000 {
        // Half of them sticky, from 50 users.
        let extra = if i % 2 == 0 {
            format!(r#", "user": "u{}""#, i % 100)
        } else {
            String::new()
        };
        let r = h.chat(&chat_body("ab", &extra)).await;
        assert_eq!(r.status, StatusCode::OK);
        match r.header("x-abroute-assigned-variant") {
            "a" => a += 1,
            "b" => b += 1,
            other => panic!("{other}"),
        }
    }
    let r = h
        .request(
            Method::GET,
            "/router/v1/routers/ab/experiment",
            "",
            Some(ADMIN),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    let route = &v["routes"][0];
    assert_eq!(route["route"], "default");
    let arms = route["arms"].as_array().unwrap();
    assert_eq!(arms[0]["variant"], "a");
    assert_eq!(arms[0]["assigned"], a);
    assert_eq!(arms[1]["assigned"], b);
    assert_eq!(arms[0]["served"], a, "no failover here");
    assert_eq!(arms[0]["weight_share"], 0.5);
    let share = arms[0]["assigned_share"].as_f64().unwrap();
    assert!((share - a as f64 / 2_000.0).abs() < 1e-12);
    // Error rate 0 with its Wilson interval; tokens and cost per request (arm a is priced).
    assert_eq!(arms[0]["error_rate"][0], 0.0);
    assert!(arms[0]["error_rate"][2].as_f64().unwrap() > 0.0);
    assert!(arms[0]["tokens_per_request"][0].as_f64().unwrap() > 0.0);
    assert!(arms[0]["cost_usd_per_request"][0].as_f64().unwrap() > 0.0);
    assert!(arms[1]["cost_usd_per_request"].is_null());
    assert!(arms[0]["latency_ms"]["p50"].as_f64().is_some());
    // The SRM test reads the 1,000 random requests and the 50 sticky keys once each.
    let srm = &route["srm"];
    assert_eq!(srm["assignments"], 1_050, "{srm}");
    assert_eq!(srm["sticky_requests"], 1_000);
    let p = srm["p_value"].as_f64().unwrap();
    assert!(p > 0.0 && p <= 1.0);
    let m = h.request(Method::GET, "/metrics", "", None).await.text();
    let gauge = metric(&m, "abroute_srm_p_value", "ab");
    assert!(gauge > 0.0 && gauge <= 1.0, "{m}");
    // `abroute report` reads the same, as a table and as JSON.
    let base = h.base.clone();
    let (table, json) =
        tokio::task::spawn_blocking(move || (run_report(&base, false), run_report(&base, true)))
            .await
            .unwrap();
    assert!(table.contains("ab / default (version"), "{table}");
    assert!(table.contains("SRM p = "), "{table}");
    let parsed: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["routes"][0]["arms"][1]["assigned"], b);
    // An unknown router is 404.
    let r = h
        .request(
            Method::GET,
            "/router/v1/routers/nope/experiment",
            "",
            Some(ADMIN),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    h.stop().await;
}

fn run_report(base: &str, json: bool) -> String {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_abroute"));
    c.args(["report", "ab", "--url", base, "--key", ADMIN]);
    if json {
        c.arg("--json");
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Streamed Anthropic messages (usage in `message_start` and `message_delta`) and a streamed
/// Responses answer (usage in `response.completed`) count their tokens and TTFT per arm, and
/// their streams reach the client whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_messages_and_responses_count_their_tokens() {
    let h = Harness::start(test_config()).await;
    for name in ["sm", "sr"] {
        let r = h
            .create(&failover_router(name, "openai/gpt-4o-mini", "openai/quick"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let messages = r#"{ "model": "inworld/sm", "max_tokens": 64, "stream": true,
        "messages": [ { "role": "user", "content": "Hello there" } ] }"#;
    let r = h
        .request(Method::POST, "/v1/messages", messages, Some(ADMIN))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-abroute-router"), "sm");
    let text = r.text();
    assert!(text.contains("event: message_stop"), "{text}");
    let responses = r#"{ "model": "inworld/sr", "input": "Hello there", "stream": true }"#;
    let r = h
        .request(Method::POST, "/v1/responses", responses, Some(ADMIN))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let text = r.text();
    assert!(text.contains("event: response.completed"), "{text}");
    let completed = data_json(&text)
        .into_iter()
        .find(|v| v["type"] == "response.completed")
        .unwrap();
    let m = h.request(Method::GET, "/metrics", "", None).await.text();
    // The Responses stream's tokens are exactly its `response.completed` usage.
    assert_eq!(
        metric(&m, "abroute_input_tokens_total", "sr"),
        completed["response"]["usage"]["input_tokens"]
            .as_f64()
            .unwrap(),
        "{m}"
    );
    assert_eq!(
        metric(&m, "abroute_output_tokens_total", "sr"),
        completed["response"]["usage"]["output_tokens"]
            .as_f64()
            .unwrap(),
        "{m}"
    );
    // The messages stream's: input from `message_start`, output from `message_delta`.
    let events = data_json(
        &h.request(Method::POST, "/v1/messages", messages, Some(ADMIN))
            .await
            .text(),
    );
    let start = events
        .iter()
        .find(|v| v["type"] == "message_start")
        .unwrap();
    let delta = events
        .iter()
        .find(|v| v["type"] == "message_delta")
        .unwrap();
    let m = h.request(Method::GET, "/metrics", "", None).await.text();
    assert_eq!(
        metric(&m, "abroute_input_tokens_total", "sm"),
        2.0 * start["message"]["usage"]["input_tokens"].as_f64().unwrap(),
        "{m}"
    );
    assert_eq!(
        metric(&m, "abroute_output_tokens_total", "sm"),
        2.0 * delta["usage"]["output_tokens"].as_f64().unwrap(),
        "{m}"
    );
    for router in ["sm", "sr"] {
        assert!(
            metric(&m, "abroute_time_to_first_token_seconds_count", router) >= 1.0,
            "{router}: {m}"
        );
        assert_eq!(metric(&m, "abroute_stream_errors_total", router), 0.0);
    }
    h.stop().await;
}
