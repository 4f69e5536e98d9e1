//! Routers without ids (config/derive.rs): the product page's router as pasted, the derived
//! names and ids table by table, and the property that a router read without ids and written
//! back is read unchanged and routes identically.

use abroute::{RequestContext, RouterConfig, name_from_display};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Inworld's router product page, as printed (no name, no route_id, no variant_id, `modelId`).
const USER_AWARE: &str = include_str!("data/user_aware.json");

fn derived(text: &str) -> (RouterConfig, Vec<String>) {
    let (config, derived) = match RouterConfig::from_json_derived(text) {
        Ok(x) => x,
        Err(e) => panic!("expected a router, got:\n{e}\nfor {text}"),
    };
    let list = derived
        .iter()
        .map(|d| format!("{}={}", d.path, d.value))
        .collect();
    (config, list)
}

#[test]
fn the_product_pages_router_is_accepted_as_pasted() {
    let (config, list) = derived(USER_AWARE);
    assert_eq!(config.name, "user-aware");
    assert_eq!(
        list,
        [
            "name=user-aware",
            "routes[0].route.route_id=route-1",
            "routes[0].route.variants[0].variant.variant_id=openai/gpt-5.2",
            "routes[1].route.route_id=route-2",
            "routes[1].route.variants[0].variant.variant_id=anthropic/claude-haiku-4-5",
            "defaultRoute.route_id=default",
            "defaultRoute.variants[0].variant.variant_id=anthropic/claude-sonnet-4-6",
        ]
    );
    let compiled = config.compile().expect("valid, also strictly");
    config
        .compile_with(&abroute::ValidationOptions::strict())
        .expect("weights are 100");
    let es = RequestContext::new().with_metadata("language", "es");
    assert_eq!(compiled.decide(&es).unwrap().model_id(), "openai/gpt-5.2");
    let free = RequestContext::new().with_metadata("plan", "free");
    assert_eq!(
        compiled.decide(&free).unwrap().model_id(),
        "anthropic/claude-haiku-4-5"
    );
    let other = RequestContext::new();
    assert_eq!(
        compiled.decide(&other).unwrap().model_id(),
        "anthropic/claude-sonnet-4-6"
    );
}

#[test]
fn repeats_get_suffixes_and_explicit_ids_are_kept() {
    let text = json!({
        "name": "r",
        "routes": [
            // An explicit id equal to what the second route would derive: the derived one moves on.
            { "condition": { "cel_expression": "true" }, "route": { "variants": [
                { "variant": { "model_id": "openai/a" }, "weight": 1 },
                { "variant": { "model_id": "openai/a" }, "weight": 1 },
                { "variant": { "variant_id": "openai/a-3", "model_id": "openai/b" }, "weight": 1 },
                { "variant": { "model_id": "openai/a" }, "weight": 1 } ] } },
            { "condition": { "cel_expression": "true" }, "route": { "variants": [
                { "variant": { "model_id": "openai/a" }, "weight": 1 } ] } },
            { "condition": { "cel_expression": "true" }, "route": { "route_id": "route-2", "variants": [
                { "variant": { "variant_id": "x", "model_id": "openai/a" }, "weight": 1 } ] } },
        ],
        "default_route": { "variants": [ { "variant": { "variantId": "v" , "modelId": "m"}, "weight": 1 },
            { "variant": {}, "weight": 1 } ] }
    })
    .to_string();
    let errors = RouterConfig::from_json(&text).unwrap_err().to_string();
    // The one variant without a model: its id is derived, its model is reported.
    assert_eq!(
        errors,
        "default_route.variants[1].variant: missing field `model_id`"
    );
    let text = text.replace("{ }", "").replace(
        r#"{"variant":{},"weight":1}"#,
        r#"{"variant":{"model_id":"m"},"weight":1}"#,
    );
    let (config, list) = derived(&text);
    assert_eq!(
        list,
        [
            "routes[0].route.route_id=route-1",
            "routes[0].route.variants[0].variant.variant_id=openai/a",
            "routes[0].route.variants[1].variant.variant_id=openai/a-2",
            "routes[0].route.variants[3].variant.variant_id=openai/a-4",
            "routes[1].route.route_id=route-2-2",
            "routes[1].route.variants[0].variant.variant_id=openai/a",
            "default_route.route_id=default",
            "default_route.variants[1].variant.variant_id=m",
        ]
    );
    config
        .compile()
        .expect("every derived id is unique in its scope");
    // Written back, every id is explicit, in the canonical spelling.
    let written: Value = serde_json::from_str(&config.to_json()).unwrap();
    assert_eq!(written["defaultRoute"]["route_id"], "default");
    assert_eq!(written["routes"][1]["route"]["route_id"], "route-2-2");
}

#[test]
fn explicit_duplicates_stay_an_error() {
    let text = json!({ "name": "r", "defaultRoute": { "variants": [
        { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 },
        { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 } ] } })
    .to_string();
    let config = RouterConfig::from_json(&text).unwrap();
    let err = config.compile().unwrap_err().to_string();
    assert!(
        err.contains("defaultRoute.variants[1].variant.variant_id"),
        "{err}"
    );
}

#[test]
fn names_come_from_display_names() {
    for (display, name) in [
        ("User-Aware", Some("user-aware")),
        ("Support: Tier 1 / EU", Some("support-tier-1-eu")),
        ("Crème brûlée", Some("creme-brulee")),
        ("Ωmega ✨ router", Some("mega-router")),
        ("__init__", Some("init")),
        ("😀", None),
    ] {
        assert_eq!(name_from_display(display).as_deref(), name, "{display:?}");
        let text = json!({ "displayName": display, "defaultRoute": { "variants": [
            { "variant": { "modelId": "m" }, "weight": 1 } ] } })
        .to_string();
        match (RouterConfig::from_json(&text), name) {
            (Ok(c), Some(name)) => {
                assert_eq!(c.name, name);
                c.compile().expect("a derived name follows the name rule");
            }
            (Err(e), None) => assert!(e.to_string().contains("no letter or digit"), "{e}"),
            (got, want) => panic!("{display:?}: {got:?}, wanted {want:?}"),
        }
    }
    // An explicit name wins over the display name.
    let text = json!({ "name": "mine", "displayName": "Other", "defaultRoute": { "variants": [
        { "variant": { "modelId": "m" }, "weight": 1 } ] } })
    .to_string();
    assert_eq!(RouterConfig::from_json(&text).unwrap().name, "mine");
}

fn model() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "openai/gpt-5.2",
        "anthropic/claude-haiku-4-5",
        "anthropic/claude-sonnet-4-6",
        "gpt-4o",
    ])
    .prop_map(str::to_owned)
}

/// A route without ids: 1 to 5 variants with repeating models and weights 1 to 100; some ids
/// given explicitly.
fn route() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (
            model(),
            1u32..=100,
            prop::option::weighted(0.2, "[a-z]{1,3}"),
        ),
        1..=5,
    )
    .prop_map(|vs| {
        let variants: Vec<Value> = vs
            .into_iter()
            .map(|(m, w, id)| match id {
                Some(id) => json!({ "variant": { "variantId": id, "modelId": m }, "weight": w }),
                None => json!({ "variant": { "modelId": m }, "weight": w }),
            })
            .collect();
        json!({ "variants": variants })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_seed: proptest::test_runner::RngSeed::Fixed(15), failure_persistence: None, ..ProptestConfig::default() })]

    /// Read without ids, written back, read again: nothing more is derived, the config is the
    /// same, and every user lands on the same variant and model.
    #[test]
    fn written_back_ids_are_read_unchanged_and_route_identically(
        display in "[A-Za-z][A-Za-z0-9 ,.!é-]{0,20}",
        routes in prop::collection::vec(route(), 0..=3),
        default in route(),
        users in prop::collection::vec("[a-z0-9]{1,8}", 1..=20),
    ) {
        let routes: Vec<Value> = routes
            .into_iter()
            .enumerate()
            .map(|(i, r)| json!({ "condition": { "cel_expression": format!("k == {i}") }, "route": r }))
            .collect();
        let text = json!({ "displayName": display, "routes": routes, "defaultRoute": default })
            .to_string();
        let Ok((first, derived)) = RouterConfig::from_json_derived(&text) else {
            // Two equal explicit variant ids are a validation matter, not reading's.
            return Err(TestCaseError::fail(format!("not read: {text}")));
        };
        prop_assert!(!derived.is_empty());
        let stored = first.to_json();
        let (again, derived_again) = RouterConfig::from_json_derived(&stored).unwrap();
        prop_assert!(derived_again.is_empty(), "{derived_again:?}");
        prop_assert_eq!(&again, &first);
        match (first.compile(), again.compile()) {
            (Ok(a), Ok(b)) => {
                for user in &users {
                    for k in 0..4i64 {
                        let ctx = RequestContext::new().with_user(user).with_metadata("k", k);
                        let (da, db) = (a.decide(&ctx).unwrap(), b.decide(&ctx).unwrap());
                        prop_assert_eq!(da.route().id(), db.route().id());
                        prop_assert_eq!(da.variant_id(), db.variant_id());
                        prop_assert_eq!(da.model_id(), db.model_id());
                    }
                }
            }
            (Err(a), Err(b)) => {
                // Only explicit ids can clash.
                prop_assert_eq!(a.to_string(), b.to_string());
                prop_assert!(a.to_string().contains("variant_id"), "{a}");
            }
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a.err(), b.err()),
        }
    }
}
