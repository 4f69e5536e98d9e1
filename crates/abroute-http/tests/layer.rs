//! The tower layer end to end, against a scripted upstream: routing, rewriting, failover,
//! outcome reports, headers, errors, pass-through, timeouts, metadata merge, auth.
// Helpers outside `#[test]` functions unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use abroute::{DecisionRecord, FailureClass, Outcome};
use abroute_http::{
    AbrouteLayer, ApiKeys, Full, LayerOptions, Permissions, RouterOptions, TimedOut,
    UpstreamAttempt,
};
use common::*;
use http::{Request, Response};
use tower::{Layer, Service};

type Out = Response<abroute_http::AbrouteBody<TestBody>>;

fn call<S>(svc: &mut S, req: Request<Full>) -> Out
where
    S: Service<Request<Full>, Response = Out, Error = std::convert::Infallible>,
{
    block_on(svc.call(req)).unwrap_or_else(|e| match e {})
}

const CHAT: &str = r#"{"model":"inworld/fo","messages":[{"role":"user","content":"hi"}],"extra_body":{"metadata":{"tier":"gold"},"models":["r/extra"]}}"#;

#[test]
fn routes_rewrites_and_sets_headers() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[]);
    let mut svc = AbrouteLayer::new(Arc::clone(&engine))
        .layer_options(LayerOptions::new().record_extension(true))
        .layer(up.clone());
    let r = call(&mut svc, post("/v1/chat/completions", CHAT));
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-abroute-router"), "fo");
    assert_eq!(header(&r, "x-abroute-route"), "default");
    assert_eq!(header(&r, "x-abroute-variant"), "main");
    assert_eq!(header(&r, "x-abroute-assigned-variant"), "main");
    assert_eq!(header(&r, "x-abroute-model"), "p/primary");
    assert_eq!(
        header(&r, "x-abroute-version"),
        engine.version().to_string()
    );
    let record = r.extensions().get::<DecisionRecord>().cloned().unwrap();
    assert_eq!(record.served_model_id.as_deref(), Some("p/primary"));
    assert_eq!(record.attempts.len(), 1);
    assert_eq!(body_bytes(r.into_body()), r#"{"id":"ok"}"#);

    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    // The variant's config replaces the router default as a whole: no max_tokens.
    assert_eq!(
        seen[0].body,
        r#"{"model":"p/primary","temperature":0.5,"messages":[{"role":"user","content":"hi"}]}"#
    );
    assert_eq!(
        seen[0].headers["content-length"],
        seen[0].body.len().to_string()
    );
    let attempt = seen[0].attempt.clone().unwrap();
    assert_eq!(
        attempt,
        UpstreamAttempt {
            router: "fo".into(),
            route_id: "default".into(),
            variant_id: "main".into(),
            model_id: "p/primary".into(),
            attempt: 0,
            assigned_variant: true,
            ttft_timeout: None,
            stream: false,
        }
    );
}

#[test]
fn fails_over_on_429_and_5xx_and_reports() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[
        (
            "p/primary",
            Behavior::Status(429, r#"{"error":"slow down"}"#),
        ),
        ("q/backup", Behavior::Status(503, r#"{"error":"down"}"#)),
    ]);
    let mut svc = AbrouteLayer::new(Arc::clone(&engine))
        .layer_options(LayerOptions::new().record_extension(true))
        .layer(up.clone());
    let r = call(&mut svc, post("/v1/chat/completions", CHAT));
    // The request's own model (extra_body.models) served it.
    assert_eq!(r.status(), 200);
    assert_eq!(up.models(), ["p/primary", "q/backup", "r/extra"]);
    assert_eq!(header(&r, "x-abroute-model"), "r/extra");
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
    assert_eq!(up.seen()[2].attempt.as_ref().unwrap().attempt, 2);
}

#[test]
fn every_attempt_failing_passes_the_last_response_on() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[("*", Behavior::Status(503, r#"{"error":"down"}"#))]);
    let mut svc = AbrouteLayer::new(engine).layer(up.clone());
    let r = call(&mut svc, post("/v1/chat/completions", CHAT));
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "x-abroute-model"), "r/extra");
    assert_eq!(body_bytes(r.into_body()), r#"{"error":"down"}"#);
    assert_eq!(up.models().len(), 3);
}

#[test]
fn client_errors_are_not_retried() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[("p/primary", Behavior::Status(400, r#"{"error":"bad"}"#))]);
    let mut svc = AbrouteLayer::new(engine).layer(up.clone());
    let r = call(&mut svc, post("/v1/chat/completions", CHAT));
    assert_eq!(r.status(), 400);
    assert_eq!(up.models(), ["p/primary"]);
    assert_eq!(header(&r, "x-abroute-model"), "p/primary");
}

#[test]
fn inner_errors_fail_over_and_are_classified() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[
        ("p/primary", Behavior::Fail(|| Box::new(TimedOut))),
        ("q/backup", Behavior::Fail(|| "connection refused".into())),
        ("r/extra", Behavior::Fail(|| Box::new(TimedOut))),
    ]);
    let mut svc = AbrouteLayer::new(Arc::clone(&engine))
        .layer_options(LayerOptions::new().record_extension(true))
        .layer(up.clone());
    let r = call(&mut svc, post("/v1/chat/completions", CHAT));
    assert_eq!(r.status(), 502, "not every attempt timed out");
    let v = json(&body_bytes(r.into_body()));
    assert_eq!(v["error"]["code"], "upstream_unavailable");

    let up = Upstream::new(&[(
        "*",
        Behavior::Fail(|| {
            Box::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "read timed out",
            ))
        }),
    )]);
    let mut svc = AbrouteLayer::new(engine)
        .layer_options(LayerOptions::new().record_extension(true))
        .layer(up.clone());
    let r = call(&mut svc, post("/v1/chat/completions", CHAT));
    assert_eq!(r.status(), 504);
    let record = r.extensions().get::<DecisionRecord>().cloned().unwrap();
    assert!(
        record
            .attempts
            .iter()
            .all(|a| a.outcome == Outcome::Failure(FailureClass::Timeout))
    );
}

#[test]
fn slow_first_token_fails_over_for_streams() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[("p/primary", Behavior::StallBody)]);
    let mut svc = AbrouteLayer::new(engine)
        .layer_options(LayerOptions::new().record_extension(true))
        .timer(ImmediateTimer)
        .layer(up.clone());
    let body = r#"{"model":"inworld/fo","stream":true,"messages":[],"extra_body":{"fallback":{"ttft_timeout":"300ms"}}}"#;
    let r = call(&mut svc, post("/v1/chat/completions", body));
    assert_eq!(r.status(), 200);
    assert_eq!(up.models(), ["p/primary", "q/backup"]);
    let record = r.extensions().get::<DecisionRecord>().cloned().unwrap();
    assert_eq!(
        record.attempts[0].outcome,
        Outcome::Failure(FailureClass::SlowFirstToken)
    );
    assert!(record.attempts[1].time_to_first_token_ms.is_some());
    let attempt = up.seen()[0].attempt.clone().unwrap();
    assert_eq!(attempt.ttft_timeout, Some(Duration::from_millis(300)));
    assert!(attempt.stream);
}

#[test]
fn attempt_timeout_and_body_errors_fail_over() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[
        ("p/primary", Behavior::Hang),
        ("q/backup", Behavior::BodyError),
    ]);
    let mut svc = AbrouteLayer::new(engine)
        .layer_options(
            LayerOptions::new()
                .record_extension(true)
                .attempt_timeout(Duration::from_secs(30)),
        )
        .timer(ImmediateTimer)
        .layer(up.clone());
    let r = call(&mut svc, post("/v1/chat/completions", CHAT));
    assert_eq!(r.status(), 200);
    assert_eq!(up.models(), ["p/primary", "q/backup", "r/extra"]);
    let record = r.extensions().get::<DecisionRecord>().cloned().unwrap();
    let outcomes: Vec<Outcome> = record.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Failure(FailureClass::Timeout),
            Outcome::Failure(FailureClass::ServerError),
            Outcome::Success
        ]
    );
}

#[test]
fn reports_reach_the_engine_health() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[("p/primary", Behavior::Status(500, "{}"))]);
    let mut svc = AbrouteLayer::new(Arc::clone(&engine)).layer(up.clone());
    // Five consecutive failures eject the model (the default health config)...
    for _ in 0..5 {
        assert_eq!(
            call(&mut svc, post("/v1/chat/completions", CHAT)).status(),
            200
        );
    }
    let before = up.seen().len();
    // ...so the next request skips it and starts with the backup.
    let r = call(&mut svc, post("/v1/chat/completions", CHAT));
    assert_eq!(r.status(), 200);
    assert_eq!(up.models()[before..], ["q/backup"]);
}

#[test]
fn request_errors_in_openai_shape() {
    let engine = engine_with(&[FAILOVER, NO_DEFAULT]);
    let up = Upstream::new(&[]);
    let mut svc = AbrouteLayer::new(engine)
        .options(RouterOptions::new().max_body_bytes(200))
        .layer(up.clone());
    let cases: [(&str, u16, &str, Option<&str>); 6] = [
        (
            r#"{"model":"inworld/nope"}"#,
            404,
            "router_not_found",
            Some("model"),
        ),
        (
            r#"{"model":"inworld/nd"}"#,
            422,
            "no_route_matched",
            Some("model"),
        ),
        ("{\"model\":\n\"inworld/fo\",,}", 400, "invalid_json", None),
        ("[1, 2]", 400, "invalid_json", None),
        (
            r#"{"model":"inworld/fo","extra_body":{"models":"x"}}"#,
            400,
            "invalid_parameter",
            Some("extra_body.models"),
        ),
        (
            r#"{"model":"inworld/fo","extra_body":{"fallback":{"ttft_timeout":"100ms"}}}"#,
            400,
            "invalid_parameter",
            Some("extra_body.fallback.ttft_timeout"),
        ),
    ];
    for (body, status, code, param) in cases {
        let r = call(&mut svc, post("/v1/chat/completions", body));
        assert_eq!(r.status(), status, "{body}");
        assert_eq!(r.headers()["content-type"], "application/json");
        let v = json(&body_bytes(r.into_body()));
        assert_eq!(v["error"]["code"], code, "{body}");
        assert_eq!(v["error"]["param"].as_str(), param, "{body}");
        assert!(v["error"]["type"].is_string());
        assert!(v["error"]["message"].is_string());
    }
    let r = call(
        &mut svc,
        post("/v1/chat/completions", "{\"model\":\n\"inworld/fo\",,}"),
    );
    let v = json(&body_bytes(r.into_body()));
    assert_eq!(
        v["error"]["message"],
        "the request body is not valid JSON: expected a string key at line 2 column 14 (byte 23)"
    );
    // Too large, by declared length and by actual length.
    let big = format!(r#"{{"model":"inworld/fo","pad":"{}"}}"#, "x".repeat(300));
    let r = call(&mut svc, post("/v1/chat/completions", &big));
    assert_eq!(r.status(), 413);
    let mut undeclared = post("/v1/chat/completions", &big);
    undeclared.headers_mut().remove("content-length");
    assert_eq!(call(&mut svc, undeclared).status(), 413);
    let mut gz = post("/v1/chat/completions", CHAT);
    gz.headers_mut()
        .insert("content-encoding", "gzip".parse().unwrap());
    assert_eq!(call(&mut svc, gz).status(), 415);
    assert!(up.seen().is_empty(), "no error reached the upstream");
}

#[test]
fn other_models_and_paths_pass_through_untouched() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[]);
    let mut svc = AbrouteLayer::new(engine).layer(up.clone());
    // No router and none of the router's keys in extra_body (request-level routing takes
    // those: tests/request_level.rs): byte for byte.
    let body = r#"{ "model" : "openai/gpt-4.1", "extra_body": {"seed": 1e400} }"#;
    let r = call(&mut svc, post("/v1/chat/completions", body));
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-abroute-router").is_none());
    let r = call(&mut svc, post("/v1/embeddings", "not json at all"));
    assert_eq!(r.status(), 200);
    let get = Request::get("/v1/models").body(Full::default()).unwrap();
    assert_eq!(call(&mut svc, get).status(), 200);
    let seen = up.seen();
    assert_eq!(seen[0].body, body);
    assert!(seen[0].attempt.is_none());
    assert_eq!(seen[1].body, "not json at all");
    assert_eq!(seen[2].path, "/v1/models");
}

#[test]
fn custom_prefix() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[]);
    let mut svc = AbrouteLayer::new(engine)
        .options(RouterOptions::new().model_prefix("abroute/"))
        .layer(up.clone());
    let r = call(
        &mut svc,
        post("/v1/chat/completions", r#"{"model":"abroute/fo"}"#),
    );
    assert_eq!(header(&r, "x-abroute-router"), "fo");
    let r = call(
        &mut svc,
        post("/v1/chat/completions", r#"{"model":"inworld/fo"}"#),
    );
    assert!(r.headers().get("x-abroute-router").is_none());
}

#[test]
fn merges_metadata_into_json_responses() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[
        ("p/primary", Behavior::Status(429, "{}")),
        (
            "q/backup",
            Behavior::Status(200, r#"{"id":"c1","usage":{"total_tokens":3}}"#),
        ),
    ]);
    let mut svc = AbrouteLayer::new(engine)
        .layer_options(LayerOptions::new().merge_metadata(true))
        .layer(up.clone());
    let r = call(&mut svc, post("/v1/chat/completions", CHAT));
    assert_eq!(r.status(), 200);
    let len: usize = header(&r, "content-length").parse().unwrap();
    let body = body_bytes(r.into_body());
    assert_eq!(body.len(), len);
    assert!(body.starts_with(br#"{"id":"c1","usage":{"total_tokens":3},"metadata":{"#));
    let v = json(&body);
    let meta = &v["metadata"];
    assert_eq!(meta["attempts"][0]["model"], "p/primary");
    assert_eq!(meta["attempts"][0]["success"], false);
    assert_eq!(meta["attempts"][0]["class"], "rate_limited");
    assert_eq!(meta["attempts"][1]["model"], "q/backup");
    assert_eq!(meta["attempts"][1]["success"], true);
    assert_eq!(meta["router"], "fo");
    assert_eq!(meta["route_id"], "default");
    assert_eq!(meta["assigned_variant_id"], "main");
    assert_eq!(meta["served_model_id"], "q/backup");
    assert!(meta["total_duration_ms"].is_u64());
    assert!(meta["version"].is_u64());

    // A responses answer keeps its own `metadata` (the caller's strings, echoed back): the
    // record goes into `abroute_metadata`.
    let up = Upstream::new(&[
        ("p/primary", Behavior::Status(429, "{}")),
        (
            "q/backup",
            Behavior::Status(200, r#"{"object":"response","metadata":{"k":"v"}}"#),
        ),
    ]);
    let mut svc = AbrouteLayer::new(engine_with(&[FAILOVER]))
        .layer_options(LayerOptions::new().merge_metadata(true))
        .layer(up.clone());
    let r = call(
        &mut svc,
        post("/v1/responses", r#"{"model":"inworld/fo","input":"hi"}"#),
    );
    let v = json(&body_bytes(r.into_body()));
    assert_eq!(v["metadata"], serde_json::json!({"k": "v"}));
    assert_eq!(v["abroute_metadata"]["served_model_id"], "q/backup");
    assert_eq!(v["abroute_metadata"]["attempts"][0]["success"], false);
}

#[test]
fn usage_feeds_throughput_and_the_response_extensions() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[(
        "p/primary",
        Behavior::Status(
            200,
            r#"{"id":"c1","usage":{"prompt_tokens":10,"completion_tokens":40}}"#,
        ),
    )]);
    let mut svc = AbrouteLayer::new(Arc::clone(&engine))
        .layer_options(LayerOptions::new().merge_metadata(true))
        .layer(up.clone());
    let r = call(&mut svc, post("/v1/chat/completions", CHAT));
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.extensions().get::<abroute_http::Usage>(),
        Some(&abroute_http::Usage {
            input_tokens: Some(10),
            output_tokens: Some(40)
        })
    );
    // 40 tokens over the attempt's latency: a throughput of its own, not the prior.
    let after = engine.metrics().get("p/primary");
    assert!(
        !after.throughput_is_prior && after.throughput > 0.0,
        "{after:?}"
    );

    // Without merge_metadata the answer streams through unread: no usage.
    let mut plain = AbrouteLayer::new(engine).layer(up.clone());
    let r = call(&mut plain, post("/v1/chat/completions", CHAT));
    assert!(r.extensions().get::<abroute_http::Usage>().is_none());
}

#[test]
fn chat_keys_are_checked_and_not_forwarded() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[]);
    let keys = ApiKeys::new()
        .with_key("chat-key", Permissions::CHAT)
        .with_key("read-key", Permissions::READ);
    let mut svc = AbrouteLayer::new(Arc::clone(&engine))
        .keys(keys.clone())
        .layer(up.clone());
    let with = |auth: Option<&str>| {
        let mut r = post("/v1/chat/completions", CHAT);
        if let Some(a) = auth {
            r.headers_mut().insert("authorization", a.parse().unwrap());
        }
        r
    };
    assert_eq!(call(&mut svc, with(None)).status(), 401);
    assert_eq!(call(&mut svc, with(Some("Bearer wrong"))).status(), 401);
    assert_eq!(call(&mut svc, with(Some("Bearer read-key"))).status(), 403);
    assert_eq!(call(&mut svc, with(Some("Bearer chat-key"))).status(), 200);
    assert_eq!(call(&mut svc, with(Some("Basic chat-key"))).status(), 200);
    assert!(
        up.seen()
            .iter()
            .all(|s| s.headers.get("authorization").is_none())
    );
    let mut open = AbrouteLayer::new(engine)
        .keys(keys.open_chat())
        .layer(up.clone());
    assert_eq!(call(&mut open, with(None)).status(), 200);
}

#[test]
fn user_header_is_accepted() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[]);
    let mut svc = AbrouteLayer::new(engine)
        .options(RouterOptions::new().user_header(http::HeaderName::from_static("x-user")))
        .layer(up.clone());
    let mut req = post("/v1/chat/completions", CHAT);
    req.headers_mut().insert("x-user", "u-1".parse().unwrap());
    assert_eq!(call(&mut svc, req).status(), 200);
}

#[test]
fn anthropic_and_responses_paths_are_routed() {
    let engine = engine_with(&[FAILOVER]);
    let up = Upstream::new(&[]);
    let mut svc = AbrouteLayer::new(engine).layer(up.clone());
    let r = call(
        &mut svc,
        post(
            "/v1/messages",
            r#"{"model":"inworld/fo","max_tokens":5,"messages":[]}"#,
        ),
    );
    assert_eq!(header(&r, "x-abroute-model"), "p/primary");
    let r = call(
        &mut svc,
        post("/v1/responses", r#"{"model":"inworld/fo","input":"hi"}"#),
    );
    assert_eq!(header(&r, "x-abroute-model"), "p/primary");
    let seen = up.seen();
    assert_eq!(
        seen[0].body,
        r#"{"model":"p/primary","temperature":0.5,"max_tokens":5,"messages":[]}"#
    );
    assert_eq!(
        seen[1].body,
        r#"{"model":"p/primary","temperature":0.5,"input":"hi"}"#
    );
}
