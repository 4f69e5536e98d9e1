//! Conditions and capability routing see what the body carries: `messages` for CEL conditions
//! (parsed only for routers that read them), and the needs (an image part) for capabilities.

use std::time::Duration;

use abroute::{Engine, RouterConfig};
use abroute_http::{Api, RouterOptions, Routing};
use http::HeaderMap;
use serde_json::json;

fn routed(engine: &Engine, body: serde_json::Value) -> (String, String) {
    let snapshot = engine.load();
    let bytes = serde_json::to_vec(&body).expect("serializes");
    match RouterOptions::new()
        .route(
            &snapshot,
            Api::ChatCompletions,
            &HeaderMap::new(),
            &bytes,
            Duration::ZERO,
        )
        .expect("routes")
    {
        Routing::Routed(r) => (r.route_id, r.model_id),
        Routing::PassThrough => panic!("not routed"),
    }
}

#[test]
fn a_messages_condition_routes_by_the_last_message() {
    let engine = Engine::new();
    engine
        .upsert(
            RouterConfig::from_value(&json!({ "name": "support", "routes": [
                { "route": { "route_id": "refunds", "variants": [
                    { "variant": { "variant_id": "care", "model_id": "openai/gpt-4.1" }, "weight": 1 } ] },
                  "condition": { "cel_expression":
                    "messages.last().content.matches(\"(?i).*refund.*\")" } } ],
              "defaultRoute": { "route_id": "default", "variants": [
                { "variant": { "variant_id": "base", "model_id": "openai/gpt-4o-mini" }, "weight": 1 } ] } }))
            .unwrap(),
        )
        .unwrap();
    let ask = |text: &str| {
        routed(
            &engine,
            json!({ "model": "inworld/support", "messages": [
                { "role": "system", "content": "be kind" },
                { "role": "user", "content": text } ] }),
        )
    };
    assert_eq!(ask("I want a REFUND").0, "refunds");
    assert_eq!(ask("hello").0, "default");
}

#[test]
fn an_image_part_skips_a_variant_without_vision() {
    let engine = Engine::new().with_capability_routing(true);
    engine
        .upsert(
            RouterConfig::from_value(&json!({ "name": "r", "defaultRoute": { "route_id": "d", "variants": [
                { "variant": { "variant_id": "blind", "model_id": "openai/gpt-3.5-turbo" }, "weight": 99 },
                { "variant": { "variant_id": "sees", "model_id": "openai/gpt-4o-mini" }, "weight": 1 } ] } }))
            .unwrap(),
        )
        .unwrap();
    for _ in 0..20 {
        let (_, model) = routed(
            &engine,
            json!({ "model": "inworld/r", "messages": [{ "role": "user", "content": [
                { "type": "text", "text": "what is this?" },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,AAAA" } } ] }] }),
        );
        assert!(model.ends_with("gpt-4o-mini"), "{model}");
    }
}
