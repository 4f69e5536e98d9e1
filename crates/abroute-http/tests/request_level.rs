//! Request-level routing in the layer: requests that name no router but route themselves
//! (`extra_body.models`, `"model": "auto"` with sort, pool and ignore), on the three APIs;
//! bad input is a 400 naming the field; anything else passes through byte for byte.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use abroute::catalog::{ModelInfo, Price, Pricing};
use abroute::{Catalog, DecisionRecord, Engine, FailureClass, Outcome};
use abroute_http::request_level::REQUEST_ROUTER;
use abroute_http::{AbrouteLayer, Clock, LayerOptions, MonotonicClock};
use common::*;
use http::{Request, Response};
use tower::{Layer, Service};

type Out = Response<abroute_http::AbrouteBody<TestBody>>;

fn call<S>(svc: &mut S, req: Request<abroute_http::Full>) -> Out
where
    S: Service<Request<abroute_http::Full>, Response = Out, Error = std::convert::Infallible>,
{
    block_on(svc.call(req)).unwrap_or_else(|e| match e {})
}

fn layer(engine: Arc<Engine>) -> AbrouteLayer {
    AbrouteLayer::new(engine).layer_options(
        LayerOptions::new()
            .record_extension(true)
            .merge_metadata(true),
    )
}

const DIRECT: &str = r#"{"model":"openai/primary","messages":[{"role":"user","content":"hi"}],"extra_body":{"models":["openai/second","anthropic/third"],"fallback":{"ttft_timeout":"1.5s"}}}"#;

#[test]
fn a_direct_call_fails_over_through_extra_body_models() {
    let up = Upstream::new(&[
        ("openai/primary", Behavior::Status(429, "{}")),
        ("openai/second", Behavior::Status(503, "{}")),
        (
            "anthropic/third",
            Behavior::Status(200, r#"{"id":"x","model":"third"}"#),
        ),
    ]);
    let mut svc = layer(engine_with(&[])).layer(up.clone());
    let r = call(&mut svc, post("/v1/chat/completions", DIRECT));
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-abroute-router"), REQUEST_ROUTER);
    assert_eq!(header(&r, "x-abroute-route"), "direct");
    assert_eq!(header(&r, "x-abroute-model"), "anthropic/third");
    assert_eq!(header(&r, "x-abroute-assigned-variant"), "openai/primary");
    let record = r.extensions().get::<DecisionRecord>().cloned().unwrap();
    let outcomes: Vec<Outcome> = record.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Failure(FailureClass::RateLimited),
            Outcome::Failure(FailureClass::ServerError),
            Outcome::Success
        ]
    );
    let v = json(&body_bytes(r.into_body()));
    assert_eq!(v["model"], "third");
    assert_eq!(v["metadata"]["attempts"][2]["model"], "anthropic/third");
    assert_eq!(v["metadata"]["attempts"][2]["success"], true);
    assert_eq!(v["metadata"]["router"], REQUEST_ROUTER);
    assert_eq!(
        up.models(),
        ["openai/primary", "openai/second", "anthropic/third"]
    );
    // The upstream never sees extra_body; the TTFT limit is passed to the inner service.
    for seen in up.seen() {
        let body = std::str::from_utf8(&seen.body).unwrap();
        assert!(!body.contains("extra_body"), "{body}");
        let attempt = seen.attempt.unwrap();
        assert_eq!(
            attempt.ttft_timeout,
            Some(std::time::Duration::from_millis(1500))
        );
    }
    assert_eq!(
        up.seen()[0].body,
        r#"{"model":"openai/primary","messages":[{"role":"user","content":"hi"}]}"#
    );
}

#[test]
fn a_failing_direct_model_is_ejected_and_skipped_next_time() {
    let up = Upstream::new(&[("openai/primary", Behavior::Status(503, "{}"))]);
    let engine = engine_with(&[]);
    let mut svc = layer(Arc::clone(&engine)).layer(up.clone());
    for _ in 0..20 {
        let r = call(&mut svc, post("/v1/chat/completions", DIRECT));
        assert_eq!(r.status(), 200);
    }
    let hits = up
        .models()
        .iter()
        .filter(|m| *m == "openai/primary")
        .count();
    assert!(
        hits < 20,
        "the primary is ejected after failures: {hits} hits"
    );
    // The state is the engine's: a router naming the model sees it ejected too.
    let now = MonotonicClock.now();
    assert!(
        engine
            .health()
            .get_model("openai/primary")
            .unwrap()
            .is_ejected(now)
    );
}

fn priced(id: &str, input: f64, output: f64) -> ModelInfo {
    let mut m = ModelInfo::new(id);
    m.price = Some(Pricing {
        input: Price::from_usd(input).unwrap(),
        output: Price::from_usd(output).unwrap(),
        cached_input: None,
    });
    m
}

fn catalog_engine() -> Arc<Engine> {
    let mut catalog = Catalog::new();
    for m in [
        priced("openai/dear", 10.0, 30.0),
        priced("openai/cheap", 0.1, 0.4),
        priced("anthropic/cheapest", 0.05, 0.1),
        priced("groq/mid", 1.0, 2.0),
    ] {
        catalog.insert(m).unwrap();
    }
    Arc::new(Engine::new().with_catalog(catalog))
}

#[test]
fn auto_by_price_picks_the_cheapest_and_says_why() {
    let up = Upstream::new(&[]);
    let mut svc = layer(catalog_engine()).layer(up.clone());
    let body = r#"{"model":"auto","messages":[],"extra_body":{"sort":["price"],"models":["openai/dear","openai/cheap","groq/mid"]}}"#;
    let r = call(&mut svc, post("/v1/chat/completions", body));
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-abroute-route"), "auto");
    assert_eq!(header(&r, "x-abroute-model"), "openai/cheap");
    let v = json(&body_bytes(r.into_body()));
    let why = v["metadata"]["reasoning"].as_str().unwrap();
    assert!(
        why.starts_with("auto chose openai/cheap of 3 candidate(s), ranked by price"),
        "{why}"
    );
    assert_eq!(
        up.seen()[0].body,
        r#"{"model":"openai/cheap","messages":[]}"#
    );
    // Without a pool, the catalog; ignore drops a whole provider.
    let body = r#"{"model":"auto","extra_body":{"sort":"price","ignore":["anthropic"]}}"#;
    let r = call(&mut svc, post("/v1/chat/completions", body));
    assert_eq!(header(&r, "x-abroute-model"), "openai/cheap");
    let body = r#"{"model":"auto","extra_body":{"sort":"price"}}"#;
    let r = call(&mut svc, post("/v1/chat/completions", body));
    assert_eq!(header(&r, "x-abroute-model"), "anthropic/cheapest");
}

#[test]
fn auto_fails_over_down_its_ranking() {
    let up = Upstream::new(&[("openai/cheap", Behavior::Status(500, "{}"))]);
    let mut svc = layer(catalog_engine()).layer(up.clone());
    let body = r#"{"model":"auto","extra_body":{"sort":["price"],"models":["openai/dear","openai/cheap","groq/mid"]}}"#;
    let r = call(&mut svc, post("/v1/chat/completions", body));
    assert_eq!(header(&r, "x-abroute-model"), "groq/mid");
    assert_eq!(up.models(), ["openai/cheap", "groq/mid"]);
}

#[test]
fn auto_by_latency_follows_the_observed_averages() {
    let engine = catalog_engine();
    let now = std::time::Duration::from_secs(1);
    engine
        .metrics()
        .record("openai/dear", std::time::Duration::from_millis(900), 0, now);
    engine
        .metrics()
        .record("groq/mid", std::time::Duration::from_millis(100), 0, now);
    let up = Upstream::new(&[]);
    let mut svc = layer(Arc::clone(&engine)).layer(up.clone());
    let body =
        r#"{"model":"auto","extra_body":{"sort":["latency"],"models":["openai/dear","groq/mid"]}}"#;
    let r = call(&mut svc, post("/v1/chat/completions", body));
    assert_eq!(header(&r, "x-abroute-model"), "groq/mid");
    for _ in 0..5 {
        engine
            .metrics()
            .record("groq/mid", std::time::Duration::from_millis(5_000), 0, now);
    }
    let r = call(&mut svc, post("/v1/chat/completions", body));
    assert_eq!(header(&r, "x-abroute-model"), "openai/dear");
}

#[test]
fn messages_and_responses_get_the_same() {
    for (path, body) in [
        (
            "/v1/messages",
            r#"{"model":"anthropic/a","max_tokens":5,"messages":[],"extra_body":{"models":["anthropic/b"]}}"#,
        ),
        (
            "/v1/responses",
            r#"{"model":"anthropic/a","input":"hi","extra_body":{"models":["anthropic/b"]}}"#,
        ),
    ] {
        let up = Upstream::new(&[("anthropic/a", Behavior::Status(529, "{}"))]);
        let mut svc = layer(engine_with(&[])).layer(up.clone());
        let r = call(&mut svc, post(path, body));
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "x-abroute-model"), "anthropic/b", "{path}");
        assert_eq!(up.models(), ["anthropic/a", "anthropic/b"], "{path}");
        for seen in up.seen() {
            assert!(
                !std::str::from_utf8(&seen.body)
                    .unwrap()
                    .contains("extra_body")
            );
        }
    }
}

#[test]
fn bad_input_is_a_400_naming_the_field() {
    let up = Upstream::new(&[]);
    let mut svc = layer(catalog_engine()).layer(up.clone());
    for (body, param) in [
        (
            r#"{"model":"auto","extra_body":{"sort":["speed"]}}"#,
            "extra_body.sort",
        ),
        (
            r#"{"model":"auto","extra_body":{"sort":5}}"#,
            "extra_body.sort",
        ),
        (
            r#"{"model":"auto","extra_body":{"models":["nobody/knows"]}}"#,
            "extra_body.models",
        ),
        (
            r#"{"model":"auto","extra_body":{"ignore":["openai","anthropic","groq"]}}"#,
            "extra_body.ignore",
        ),
        (
            r#"{"model":"auto","extra_body":{"models":["openai/cheap"],"ignore":["openai/cheap"]}}"#,
            "extra_body.ignore",
        ),
        (
            r#"{"model":"auto","extra_body":{"ignore":"openai"}}"#,
            "extra_body.ignore",
        ),
        (
            r#"{"model":"openai/x","extra_body":{"fallback":{"ttft_timeout":"299ms"}}}"#,
            "extra_body.fallback.ttft_timeout",
        ),
        (
            r#"{"model":"openai/x","extra_body":{"models":"openai/y"}}"#,
            "extra_body.models",
        ),
        (r#"{"extra_body":{"models":["openai/y"]}}"#, "model"),
    ] {
        let r = call(&mut svc, post("/v1/chat/completions", body));
        assert_eq!(r.status(), 400, "{body}");
        let v = json(&body_bytes(r.into_body()));
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
    }
    assert!(up.seen().is_empty(), "no bad request reached the upstream");
}

#[test]
fn without_auto_or_router_keys_the_body_passes_through_byte_for_byte() {
    let up = Upstream::new(&[]);
    let mut svc = layer(engine_with(&[])).layer(up.clone());
    let body = r#"{ "model" : "openai/gpt-4.1" , "extra_body" : { "seed" : 1 } }"#;
    let r = call(&mut svc, post("/v1/chat/completions", body));
    assert!(r.headers().get("x-abroute-router").is_none());
    assert_eq!(up.seen()[0].body, body);
    assert!(up.seen()[0].attempt.is_none());
}

#[test]
fn a_streamed_direct_call_fails_over_on_a_slow_first_token() {
    let up = Upstream::new(&[("openai/primary", Behavior::StallBody)]);
    let mut svc = AbrouteLayer::new(engine_with(&[]))
        .layer_options(LayerOptions::new().record_extension(true))
        .timer(ImmediateTimer)
        .layer(up.clone());
    let body = r#"{"model":"openai/primary","stream":true,"messages":[],"extra_body":{"models":["openai/second"],"fallback":{"ttft_timeout":"300ms"}}}"#;
    let r = call(&mut svc, post("/v1/chat/completions", body));
    assert_eq!(r.status(), 200);
    assert_eq!(up.models(), ["openai/primary", "openai/second"]);
    let record = r.extensions().get::<DecisionRecord>().cloned().unwrap();
    assert_eq!(
        record.attempts[0].outcome,
        Outcome::Failure(FailureClass::SlowFirstToken)
    );
    assert!(record.attempts[1].time_to_first_token_ms.is_some());
    assert_eq!(record.router, REQUEST_ROUTER);
    let attempt = up.seen()[1].attempt.clone().unwrap();
    assert!(attempt.stream);
    assert_eq!(attempt.attempt, 1);
    assert!(!attempt.assigned_variant);
}
