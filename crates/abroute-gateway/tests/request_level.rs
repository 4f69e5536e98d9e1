//! Inworld parity end to end (issue 15), over loopback with the scriptable mock upstream:
//! the router product page's router and chat call as printed, and request-level routing
//! (direct calls failing over through `extra_body.models`, `auto` by price and by observed
//! latency, `ignore` of a provider), with the upstream seeing no `extra_body`.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use abroute_gateway::mock::Behaviour;
use common::*;
use http::{Method, StatusCode};

/// Inworld's router product page, as printed.
const USER_AWARE: &str = include_str!("../../abroute/tests/data/user_aware.json");

fn chat(model: &str, extra_body: &str) -> String {
    format!(
        r#"{{ "model": "{model}", "messages": [{{"role": "user", "content": "Hola!"}}], "extra_body": {extra_body} }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_product_pages_router_and_chat_call_work_as_printed() {
    let h = Harness::start(test_config()).await;
    let r = h.create(USER_AWARE).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let router = &r.json()["response"];
    assert_eq!(router["name"], "user-aware");
    assert_eq!(router["routes"][0]["route"]["route_id"], "route-1");
    for (metadata, model) in [
        (r#"{"language": "es"}"#, "openai/gpt-5.2"),
        (r#"{"plan": "free"}"#, "anthropic/claude-haiku-4-5"),
        (r#"{"language": "en"}"#, "anthropic/claude-sonnet-4-6"),
    ] {
        let body = chat(
            "inworld/user-aware",
            &format!(r#"{{"metadata": {metadata}}}"#),
        );
        let r = h.chat(&body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-abroute-model"), model, "{metadata}");
        assert_eq!(r.json()["metadata"]["router"], "user-aware");
    }
    // Read back, the ids are explicit: a GET shows what the create derived.
    let r = h
        .request(
            Method::GET,
            "/router/v1/routers/user-aware",
            "",
            Some(ADMIN),
        )
        .await;
    assert_eq!(
        r.json()["defaultRoute"]["variants"][0]["variant"]["variant_id"],
        "anthropic/claude-sonnet-4-6"
    );
    assert!(h.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_call_fails_over_through_extra_body_models() {
    let h = Harness::start(test_config()).await;
    h.mock.set("gpt-5.2", Behaviour::status(503));
    h.mock.set("claude-haiku-4-5", Behaviour::status(429));
    h.mock.capture(true);
    let body = chat(
        "openai/gpt-5.2",
        r#"{"models": ["anthropic/claude-haiku-4-5", "openai/gpt-4o-mini"], "fallback": {"ttft_timeout": "2s"}}"#,
    );
    let r = h.chat(&body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-abroute-router"), "_request");
    assert_eq!(r.header("x-abroute-route"), "direct");
    assert_eq!(r.header("x-abroute-model"), "openai/gpt-4o-mini");
    let v = r.json();
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(
        attempt_models(&v),
        [
            (
                "openai/gpt-5.2".to_owned(),
                "failure:server_error".to_owned()
            ),
            (
                "anthropic/claude-haiku-4-5".to_owned(),
                "failure:rate_limited".to_owned()
            ),
            ("openai/gpt-4o-mini".to_owned(), "success".to_owned()),
        ]
    );
    assert_eq!(v["metadata"]["attempts"][2]["success"], true);
    let seen = h.mock.seen();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        let body = std::str::from_utf8(&s.body).unwrap();
        assert!(!body.contains("extra_body"), "the upstream saw {body}");
    }
    // The same metrics as routed calls, under the request-level label.
    let r = h.request(Method::GET, "/metrics", "", None).await;
    let text = r.text();
    assert!(
        text.contains(r#"abroute_requests_total{router="_request",route="direct""#),
        "{text}"
    );
    assert!(
        text.contains(r#"abroute_attempts_total{router="_request""#),
        "{text}"
    );
    // Neither auto nor router keys: the body reaches the upstream as today, byte for byte
    // but for the gateway's provider prefix taken off the model (set_model).
    h.mock.reset();
    h.mock.capture(true);
    let plain = r#"{ "model" : "openai/gpt-4o-mini", "messages": [] , "seed": 7 }"#;
    let r = h.chat(plain).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-abroute-router"), "");
    assert_eq!(
        h.mock.seen()[0].body,
        plain
            .replace("openai/gpt-4o-mini", "gpt-4o-mini")
            .as_bytes()
    );
    assert!(h.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_by_price_picks_the_cheapest_of_the_pool_and_says_why() {
    let h = Harness::start(test_config()).await;
    let body = chat(
        "auto",
        r#"{"sort": ["price"], "models": ["openai/gpt-4.1", "openai/gpt-4o-mini", "openai/gpt-5-nano"]}"#,
    );
    let r = h.chat(&body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-abroute-model"), "openai/gpt-5-nano");
    let v = r.json();
    assert_eq!(v["model"], "gpt-5-nano");
    let why = v["metadata"]["reasoning"].as_str().unwrap();
    assert!(why.contains("auto chose openai/gpt-5-nano of 3"), "{why}");
    assert!(why.contains("blended price"), "{why}");
    // Ignoring that model picks the next cheapest.
    let body = chat(
        "auto",
        r#"{"sort": ["price"], "models": ["openai/gpt-4.1", "openai/gpt-4o-mini", "openai/gpt-5-nano"], "ignore": ["openai/gpt-5-nano"]}"#,
    );
    let r = h.chat(&body).await;
    assert_eq!(r.header("x-abroute-model"), "openai/gpt-4o-mini");
    // Bad input: 400 naming the field, nothing sent upstream.
    for (extra, param) in [
        (r#"{"sort": ["cheapness"]}"#, "extra_body.sort"),
        (r#"{"models": ["acme/unknown"]}"#, "extra_body.models"),
        (r#"{"ignore": ["openai"]}"#, "extra_body.ignore"),
    ] {
        let r = h.chat(&chat("auto", extra)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{extra}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], param, "{extra}");
    }
    let r = h
        .chat(&chat(
            "openai/gpt-4o",
            r#"{"fallback": {"ttft_timeout": "100ms"}}"#,
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["error"]["param"],
        "extra_body.fallback.ttft_timeout"
    );
    assert!(h.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_by_latency_follows_the_observed_averages() {
    let h = Harness::start(test_config()).await;
    let pool = r#"{"sort": ["latency"], "models": ["openai/gpt-4.1", "openai/gpt-4o-mini"]}"#;
    let direct = |model: &str| chat(model, r#"{"models": []}"#);
    // gpt-4.1 answers in 300 ms, gpt-4o-mini at once: observed by direct calls.
    h.mock
        .set("gpt-4.1", Behaviour::head_delay(Duration::from_millis(300)));
    for model in ["openai/gpt-4.1", "openai/gpt-4o-mini"] {
        let r = h.chat(&direct(model)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let r = h.chat(&chat("auto", pool)).await;
    assert_eq!(r.header("x-abroute-model"), "openai/gpt-4o-mini");
    // Then the other way round: the averages move, and so does the choice.
    h.mock.set("gpt-4.1", Behaviour::ok());
    h.mock.set(
        "gpt-4o-mini",
        Behaviour::head_delay(Duration::from_millis(400)),
    );
    for _ in 0..6 {
        for model in ["openai/gpt-4.1", "openai/gpt-4o-mini"] {
            let r = h.chat(&direct(model)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
    }
    let r = h.chat(&chat("auto", pool)).await;
    assert_eq!(r.header("x-abroute-model"), "openai/gpt-4.1");
    let why = r.json()["metadata"]["reasoning"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(why.contains("observed latency"), "{why}");
    assert!(h.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_drops_a_whole_provider_from_the_fallbacks() {
    let h = Harness::start(test_config()).await;
    h.mock.set("gpt-5.2", Behaviour::status(500));
    let body = chat(
        "openai/gpt-5.2",
        r#"{"models": ["anthropic/claude-haiku-4-5", "anthropic/claude-sonnet-4-6", "openai/gpt-4o-mini"], "ignore": ["anthropic"]}"#,
    );
    let r = h.chat(&body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-abroute-model"), "openai/gpt-4o-mini");
    assert_eq!(h.mock.hits("claude-haiku-4-5"), 0);
    assert_eq!(h.mock.hits("claude-sonnet-4-6"), 0);
    assert_eq!(attempt_models(&r.json()).len(), 2);
    assert!(h.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_routers_and_the_catalog() {
    let h = Harness::start(test_config()).await;
    assert_eq!(h.create(USER_AWARE).await.status, StatusCode::OK);
    let r = h.request(Method::GET, "/v1/models", "", Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], "inworld/user-aware");
    assert!(ids.contains(&"openai/gpt-4o-mini"), "{ids:?}");
    assert!(ids.contains(&"auto"), "{ids:?}");
    assert!(h.stop().await);
}
