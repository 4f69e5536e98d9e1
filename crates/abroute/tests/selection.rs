//! Issue-5 behaviour through the router: `auto` and sorted selection from the catalog,
//! capability routing, and conditions that cannot change decisions when false.

use abroute::catalog::Needs;
use abroute::{ConfigErrorKind, Engine, RequestContext, RouterConfig};
use proptest::prelude::*;
use serde_json::json;

fn config(v: serde_json::Value) -> RouterConfig {
    RouterConfig::from_value(&v).expect("test config reads")
}

#[test]
fn auto_sorts_its_pool_by_blended_price() {
    let c = config(
        json!({ "name": "r", "defaultRoute": { "route_id": "d", "variants": [
        { "variant": { "variant_id": "cheap-first", "model_id": "auto", "model_selection": {
            "models": ["openai/gpt-4.1", "openai/gpt-3.5-turbo", "openai/gpt-4o-mini"],
            "sort": [{ "metric": "SORT_METRIC_PRICE", "direction": "SORT_DIRECTION_ASCENDING" }] } },
          "weight": 1 } ] } }),
    );
    let router = c.compile().expect("compiles");
    let targets: Vec<&str> = router.default_route().unwrap().variants()[0]
        .targets()
        .iter()
        .map(|t| t.id())
        .collect();
    // Blended (3·in + out)/4: 0.2625, 0.75, 3.5 dollars per million tokens.
    assert_eq!(
        targets,
        vec![
            "openai/gpt-4o-mini",
            "openai/gpt-3.5-turbo",
            "openai/gpt-4.1"
        ]
    );
    let ctx = RequestContext::new();
    let d = router.decide(&ctx).unwrap();
    let plan: Vec<&str> = d
        .plan(&ctx, std::time::Duration::ZERO)
        .map(|a| a.model_id())
        .collect();
    assert_eq!(plan, targets, "the order is the variant's attempt plan");
}

/// `Engine::refresh` recompiles the routers sorted by observed latency, so a model that became
/// slow moves back in the attempt order; routers that read no metrics are never recompiled.
#[test]
fn refresh_reorders_latency_sorted_variants_and_leaves_others_alone() {
    let engine = Engine::new();
    engine
        .upsert(config(
            json!({ "name": "plain", "defaultRoute": { "route_id": "d", "variants": [
            { "variant": { "variant_id": "a", "model_id": "openai/gpt-4.1" }, "weight": 1 } ] } }),
        ))
        .unwrap();
    assert_eq!(
        engine.refresh(),
        1,
        "nothing reads metrics: nothing published"
    );

    engine
        .upsert(config(json!({ "name": "fast", "defaultRoute": { "route_id": "d", "variants": [
            { "variant": { "variant_id": "v", "model_id": "auto", "model_selection": {
                "models": ["openai/gpt-4.1", "openai/gpt-4o-mini"],
                "sort": [{ "metric": "SORT_METRIC_LATENCY", "direction": "SORT_DIRECTION_ASCENDING" }] } },
              "weight": 1 } ] } })))
        .unwrap();
    let order = |engine: &Engine| -> Vec<String> {
        let snap = engine.load();
        let ctx = RequestContext::new();
        let d = snap.route("fast", &ctx).unwrap();
        d.plan(&ctx, std::time::Duration::ZERO)
            .map(|a| a.model_id().to_owned())
            .collect()
    };
    let before = order(&engine);
    assert_eq!(before.len(), 2);
    // The first model becomes very slow, the second fast.
    let now = std::time::Duration::from_secs(10);
    for _ in 0..50 {
        engine
            .metrics()
            .record(&before[0], std::time::Duration::from_secs(20), 10, now);
        engine
            .metrics()
            .record(&before[1], std::time::Duration::from_millis(5), 10, now);
    }
    assert_eq!(order(&engine), before, "compiled orders wait for a refresh");
    let plain_before = engine.load_full();
    let v = engine.refresh();
    assert_eq!(v, 3, "one new snapshot");
    assert_eq!(order(&engine), vec![before[1].clone(), before[0].clone()]);
    let snap = engine.load();
    assert_eq!(
        snap.router("fast").unwrap().compiled().version(),
        2,
        "router version kept"
    );
    assert!(
        std::ptr::eq(
            snap.router("plain").unwrap(),
            plain_before.router("plain").unwrap()
        ),
        "a router that reads no metrics is not recompiled"
    );
}

#[test]
fn auto_with_an_empty_pool_is_a_config_error_with_its_path() {
    let c = config(
        json!({ "name": "r", "defaultRoute": { "route_id": "d", "variants": [
        { "variant": { "variant_id": "a", "model_id": "auto" }, "weight": 1 } ] } }),
    );
    let errors = c.compile().unwrap_err();
    let e = &errors.errors()[0];
    assert!(matches!(e.kind, ConfigErrorKind::Selection { .. }), "{e}");
    assert_eq!(
        e.path.to_string(),
        "defaultRoute.variants[0].variant.model_selection.models"
    );
}

#[test]
fn a_vision_request_skips_the_variant_that_cannot_see_and_the_record_says_why() {
    let engine = Engine::new().with_capability_routing(true);
    engine
        .upsert(config(json!({ "name": "r", "defaultRoute": { "route_id": "d", "variants": [
            { "variant": { "variant_id": "blind", "model_id": "openai/gpt-3.5-turbo" }, "weight": 99 },
            { "variant": { "variant_id": "sees", "model_id": "openai/gpt-4o-mini" }, "weight": 1 } ] } })))
        .unwrap();
    let snap = engine.load();
    let needs = Needs {
        vision: true,
        ..Needs::default()
    };
    for x in [0u64, 1 << 40, 1 << 63, u64::MAX] {
        let ctx = RequestContext::new().with_random(x).with_needs(needs);
        let d = snap.route("r", &ctx).unwrap();
        assert_eq!(d.variant_id(), "sees");
        let record = d.plan(&ctx, std::time::Duration::ZERO).record();
        assert_eq!(record.skipped.len(), 1);
        assert_eq!(record.skipped[0].variant_id, "blind");
    }
    // Without needs (or with capability routing off) the split is the configured one.
    let plain = snap
        .route("r", &RequestContext::new().with_random(0))
        .unwrap();
    assert_eq!(plain.variant_id(), "blind");
}

fn two_routes(extra_false_at: Option<usize>) -> RouterConfig {
    let mut routes = vec![
        json!({ "route": { "route_id": "gold", "variants": [
            { "variant": { "variant_id": "g1", "model_id": "p/g1" }, "weight": 3 },
            { "variant": { "variant_id": "g2", "model_id": "p/g2" }, "weight": 1 } ] },
            "condition": { "cel_expression": "tier == 'gold'" } }),
        json!({ "route": { "route_id": "big", "variants": [
            { "variant": { "variant_id": "b1", "model_id": "p/b1" }, "weight": 1 } ] },
            "condition": { "cel_expression": "seats > 10" } }),
    ];
    if let Some(at) = extra_false_at {
        routes.insert(
            at.min(routes.len()),
            json!({ "route": { "route_id": "never", "variants": [
                { "variant": { "variant_id": "n", "model_id": "p/n" }, "weight": 1 } ] },
                "condition": { "cel_expression": "false" } }),
        );
    }
    config(
        json!({ "name": "r", "routes": routes, "defaultRoute": { "route_id": "d", "variants": [
        { "variant": { "variant_id": "d1", "model_id": "p/d1" }, "weight": 1 },
        { "variant": { "variant_id": "d2", "model_id": "p/d2" }, "weight": 2 } ] } }),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Adding a route whose condition is `false`, anywhere, changes no decision.
    #[test]
    fn a_false_route_changes_no_decision(
        at in 0usize..3,
        tier in prop::sample::select(vec!["gold", "free", ""]),
        seats in -5i64..30,
        user in prop::option::of("[a-z0-9]{0,12}"),
        draw in any::<u64>(),
    ) {
        let before = two_routes(None).compile().unwrap();
        let after = two_routes(Some(at)).compile().unwrap();
        let mut ctx = RequestContext::new()
            .with_metadata("tier", tier)
            .with_metadata("seats", seats)
            .with_random(draw);
        if let Some(u) = &user {
            ctx = ctx.with_user(u);
        }
        let a = before.decide(&ctx).unwrap();
        let b = after.decide(&ctx).unwrap();
        prop_assert_eq!((a.route_id(), a.variant_id()), (b.route_id(), b.variant_id()));
    }

    /// A vision request never goes to a model without vision while another variant can serve it.
    #[test]
    fn vision_requests_only_reach_vision_models(
        weights in prop::collection::vec(0u32..50, 3),
        draw in any::<u64>(),
        user in prop::option::of("[a-z0-9]{1,12}"),
    ) {
        prop_assume!(weights.iter().any(|&w| w > 0));
        let models = ["openai/gpt-3.5-turbo", "openai/gpt-4o-mini", "openai/gpt-4.1"];
        let variants: Vec<_> = weights.iter().zip(models).enumerate().map(|(i, (w, m))| json!({
            "variant": { "variant_id": format!("v{i}"), "model_id": m }, "weight": w })).collect();
        let engine = Engine::new().with_capability_routing(true);
        engine.upsert(config(json!({ "name": "r", "defaultRoute": {
            "route_id": "d", "variants": variants } }))).unwrap();
        let snap = engine.load();
        let needs = Needs { vision: true, ..Needs::default() };
        let mut ctx = RequestContext::new().with_random(draw).with_needs(needs);
        if let Some(u) = &user {
            ctx = ctx.with_user(u);
        }
        let d = snap.route("r", &ctx).unwrap();
        // Only gpt-4o-mini is known to have vision in the shipped catalog.
        if weights[1] > 0 {
            prop_assert_eq!(d.model_id(), "openai/gpt-4o-mini");
        }
    }
}
