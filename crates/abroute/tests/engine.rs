//! Behaviour of the engine and compiled routers: decisions, versions, rejected changes,
//! all-or-nothing replacement, and readers racing a writer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use abroute::{
    Assignment, Change, ConfigErrorKind, Engine, RequestContext, RouteError, RouterConfig,
};

const SEED: &str = r#"{ "name": "compare-frontier-models", "defaultRoute": { "route_id": "default", "variants": [ { "variant": { "variant_id": "openai/gpt-4o-mini-a", "model_id": "openai/gpt-4o-mini" }, "weight": 33 }, { "variant": { "variant_id": "openai/gpt-3.5-turbo-b", "model_id": "openai/gpt-3.5-turbo" }, "weight": 33 }, { "variant": { "variant_id": "openai/gpt-4.1-c", "model_id": "openai/gpt-4.1" }, "weight": 34 } ] } }"#;

fn router(name: &str, route_id: &str, variants: &[(&str, &str, u32)]) -> RouterConfig {
    let variants: Vec<String> = variants
        .iter()
        .map(|(id, model, w)| {
            format!(
                r#"{{ "variant": {{ "variant_id": "{id}", "model_id": "{model}" }}, "weight": {w} }}"#
            )
        })
        .collect();
    RouterConfig::from_json(&format!(
        r#"{{ "name": "{name}", "defaultRoute": {{ "route_id": "{route_id}", "variants": [{}] }} }}"#,
        variants.join(",")
    ))
    .expect("test config parses")
}

#[test]
fn seed_router_routes_with_every_field() {
    let engine = Engine::new();
    let v = engine
        .upsert(RouterConfig::from_json(SEED).unwrap())
        .unwrap();
    assert_eq!(v, 1);
    let snap = engine.load();
    // u64::MAX lands in the last bucket; 0 in the first.
    let d = snap
        .route(
            "compare-frontier-models",
            &RequestContext::new().with_random(0),
        )
        .unwrap();
    assert_eq!(d.router(), "compare-frontier-models");
    assert_eq!(d.route_id(), "default");
    assert_eq!(d.variant_index(), 0);
    assert_eq!(d.variant_id(), "openai/gpt-4o-mini-a");
    assert_eq!(d.model_id(), "openai/gpt-4o-mini");
    assert_eq!(d.version(), 1);
    let d = snap
        .route(
            "compare-frontier-models",
            &RequestContext::new().with_random(u64::MAX),
        )
        .unwrap();
    assert_eq!(d.variant_id(), "openai/gpt-4.1-c");
}

#[test]
fn realized_split_follows_weights() {
    let engine = Engine::new();
    engine
        .upsert(RouterConfig::from_json(SEED).unwrap())
        .unwrap();
    let snap = engine.load();
    let mut counts = [0u32; 3];
    // A deterministic equidistributed sequence of draws (Weyl sequence).
    let mut x = 0u64;
    for _ in 0..100_000 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let d = snap
            .route(
                "compare-frontier-models",
                &RequestContext::new().with_random(x),
            )
            .unwrap();
        counts[d.variant_index()] += 1;
    }
    for (c, w) in counts.iter().zip([33.0, 33.0, 34.0]) {
        let share = f64::from(*c) / 1000.0;
        assert!((share - w).abs() < 0.1, "share {share} for weight {w}");
    }
}

#[test]
fn unknown_router_and_no_route_matched() {
    let engine = Engine::new();
    let snap = engine.load();
    let err = snap.route("nope", &RequestContext::new()).unwrap_err();
    assert_eq!(err, RouteError::UnknownRouter("nope".into()));
    assert_eq!(err.to_string(), "unknown router \"nope\"");

    // Only a conditional route: a request it does not match has nowhere to go.
    let only_conditional = RouterConfig::from_json(
        r#"{ "name": "c", "routes": [ { "route": { "route_id": "premium", "variants": [
            { "variant": { "variant_id": "big", "model_id": "openai/gpt-4.1" }, "weight": 100 } ] },
            "condition": { "cel_expression": "tier == \"premium\"" } } ] }"#,
    )
    .unwrap();
    engine.upsert(only_conditional).unwrap();
    let snap = engine.load();
    let d = snap
        .route("c", &RequestContext::new().with_metadata("tier", "premium"))
        .unwrap();
    assert_eq!(d.route_id(), "premium");
    let err = snap
        .route("c", &RequestContext::new().with_metadata("tier", "free"))
        .unwrap_err();
    assert_eq!(err, RouteError::NoRouteMatched);
    assert_eq!(
        err.to_string(),
        "No route matched. Configure a default route or adjust conditions."
    );
}

const CONDITIONAL: &str = r#"{ "name": "c", "routes": [
    { "route": { "route_id": "premium", "variants": [
        { "variant": { "variant_id": "big", "model_id": "openai/gpt-4.1" }, "weight": 100 } ] },
      "condition": { "cel_expression": "tier == \"premium\" && seats > 10" } },
    { "route": { "route_id": "support", "variants": [
        { "variant": { "variant_id": "care", "model_id": "openai/gpt-4o" }, "weight": 1 } ] },
      "condition": { "cel_expression": "messages.last().content.matches(\"(?i).*(refund|chargeback).*\")" } } ],
  "defaultRoute": { "route_id": "default", "variants": [
    { "variant": { "variant_id": "small", "model_id": "openai/gpt-4o-mini" }, "weight": 1 } ] } }"#;

#[test]
fn conditions_pick_the_first_true_route_in_order() {
    let router = RouterConfig::from_json(CONDITIONAL)
        .unwrap()
        .compile()
        .unwrap();
    let route = |ctx: &RequestContext<'_>| router.decide(ctx).unwrap().route_id().to_owned();
    let premium = RequestContext::new()
        .with_metadata("tier", "premium")
        .with_metadata("seats", 12);
    assert_eq!(route(&premium), "premium");
    let few_seats = RequestContext::new()
        .with_metadata("tier", "premium")
        .with_metadata("seats", 3);
    assert_eq!(route(&few_seats), "default");
    let messages = serde_json::json!([
        { "role": "user", "content": "hello" },
        { "role": "user", "content": "I want a REFUND now" }
    ]);
    let angry = RequestContext::new().with_messages(&messages);
    assert_eq!(route(&angry), "support");
    // A missing key or a type error is false, and counted.
    let wrong_type = RequestContext::new()
        .with_metadata("tier", "premium")
        .with_metadata("seats", "many");
    assert_eq!(route(&wrong_type), "default");
    assert!(router.conditional_routes()[0].condition_errors() >= 1);

    let explanation = router.explain(&few_seats);
    assert_eq!(explanation.conditions.len(), 2);
    assert_eq!(explanation.conditions[0].outcome, "false");
    assert!(
        explanation.conditions[1].outcome.starts_with("error"),
        "{explanation}"
    );
    assert_eq!(
        explanation.decision.as_ref().map(|d| d.route_id()).ok(),
        Some("default")
    );
    let text = explanation.to_string();
    assert!(text.contains("route \"premium\""), "{text}");
    assert!(text.contains("decision: route \"default\""), "{text}");
}

#[test]
fn an_invalid_condition_is_a_config_error_with_its_path() {
    let bad = CONDITIONAL.replace("seats > 10", "seats >");
    let errors = RouterConfig::from_json(&bad)
        .unwrap()
        .compile()
        .unwrap_err();
    let e = &errors.errors()[0];
    assert_eq!(e.path.to_string(), "routes[0].condition.cel_expression");
    assert!(
        matches!(e.kind, ConfigErrorKind::InvalidCondition { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("line 1 column"), "{e}");
}

#[test]
fn sticky_users_keep_their_variant_and_the_record_says_so() {
    let engine = Engine::new();
    engine
        .upsert(RouterConfig::from_json(SEED).unwrap())
        .unwrap();
    let snap = engine.load();
    let ctx = RequestContext::new().with_user("user-42");
    let first = snap.route("compare-frontier-models", &ctx).unwrap();
    for _ in 0..100 {
        let again = snap.route("compare-frontier-models", &ctx).unwrap();
        assert_eq!(again.variant_id(), first.variant_id());
        assert_eq!(again.assignment(), first.assignment());
    }
    let Assignment::Sticky { key_hash, bucket } = first.assignment() else {
        panic!("a user gives a sticky assignment: {:?}", first.assignment());
    };
    assert_eq!(bucket, (key_hash >> 48) as u32);
    // The fallback order is the user's own: every other variant once, the same each time.
    let order: Vec<usize> = first.fallbacks().map(|(i, _)| i).collect();
    assert_eq!(order.len(), 2);
    assert!(!order.contains(&first.variant_index()));
    let again: Vec<usize> = first.fallbacks().map(|(i, _)| i).collect();
    assert_eq!(order, again);
    // Reordering the variants and changing a model moves nobody.
    let mut moved_config = RouterConfig::from_json(SEED).unwrap();
    let route = moved_config.default_route.as_mut().unwrap();
    route.variants.reverse();
    route.variants[0].variant.model_id = "openai/gpt-4.1-2025".into();
    engine.upsert(moved_config).unwrap();
    let snap2 = engine.load();
    for user in ["user-1", "user-2", "user-3", "😀", ""] {
        let ctx = RequestContext::new().with_user(user);
        let a = snap.route("compare-frontier-models", &ctx).unwrap();
        let b = snap2.route("compare-frontier-models", &ctx).unwrap();
        assert_eq!(a.variant_id(), b.variant_id(), "user {user:?} moved");
    }
}

#[test]
fn versions_grow_and_rejected_configs_change_nothing() {
    let engine = Engine::new();
    assert_eq!(engine.version(), 0);
    let v1 = engine
        .upsert(router("r", "default", &[("a", "m1", 1)]))
        .unwrap();
    let v2 = engine
        .upsert(router("s", "default", &[("a", "m1", 1)]))
        .unwrap();
    assert!(v2 > v1);
    let before = engine.load_full();

    // Invalid: all weights zero and a duplicate variant id. Both reported, nothing swapped.
    let bad = router("r", "default", &[("a", "m2", 0), ("a", "m3", 0)]);
    let errors = engine.upsert(bad).unwrap_err();
    let kinds: Vec<_> = errors.errors().iter().map(|e| &e.kind).collect();
    assert!(matches!(
        kinds[0],
        ConfigErrorKind::DuplicateVariantId { .. }
    ));
    assert!(matches!(kinds[1], ConfigErrorKind::AllWeightsZero));
    assert_eq!(
        errors.errors()[0].path.to_string(),
        "defaultRoute.variants[1].variant.variant_id"
    );
    let after = engine.load_full();
    assert!(
        Arc::ptr_eq(&before, &after),
        "the old snapshot keeps serving"
    );
    let snap = engine.load();
    let d = snap.route("r", &RequestContext::new()).unwrap();
    assert_eq!((d.model_id(), d.version()), ("m1", v1));

    assert!(engine.remove("routers/s"));
    assert!(!engine.remove("s"));
    assert_eq!(engine.version(), v2 + 1);
    assert!(engine.load().router("s").is_none());
}

#[test]
fn replace_all_is_all_or_nothing() {
    let engine = Engine::new();
    engine
        .upsert(router("keep", "default", &[("a", "m", 1)]))
        .unwrap();
    let good = router("x", "default", &[("a", "m", 1)]);
    let bad = router("Bad_Name", "", &[("a", "m", 1)]);
    let errors = engine
        .replace_all(vec![good.clone(), bad, good.clone()])
        .unwrap_err();
    let text = errors.to_string();
    assert!(
        text.contains("[1].name: invalid router name \"Bad_Name\""),
        "{text}"
    );
    assert!(
        text.contains("[1].defaultRoute.route_id: route_id must not be empty"),
        "{text}"
    );
    assert!(
        text.contains("[2].name: router name \"x\" appears more than once"),
        "{text}"
    );
    assert!(engine.load().router("keep").is_some(), "nothing replaced");

    let v = engine.replace_all(vec![good]).unwrap();
    let snap = engine.load();
    assert_eq!(snap.names(), vec!["x"]);
    assert_eq!(snap.version(), v);
}

#[test]
fn apply_publishes_a_batch_as_one_version_or_nothing() {
    let engine = Engine::new();
    engine
        .upsert(router("keep", "default", &[("a", "m", 1)]))
        .unwrap();
    engine
        .upsert(router("old", "default", &[("a", "m", 1)]))
        .unwrap();
    assert_eq!(engine.version(), 2);

    // One bad change refuses the whole batch, with every problem at its index.
    let errors = engine
        .apply(vec![
            Change::Upsert(router("x", "default", &[("a", "m", 1)])),
            Change::Remove("old".into()),
            Change::Upsert(router("Bad_Name", "", &[("a", "m", 1)])),
            Change::Remove("routers/x".into()),
        ])
        .unwrap_err();
    let text = errors.to_string();
    assert!(
        text.contains("[2].name: invalid router name \"Bad_Name\""),
        "{text}"
    );
    assert!(
        text.contains("[3].name: router name \"x\" appears more than once"),
        "{text}"
    );
    assert_eq!(engine.version(), 2, "nothing published");
    assert_eq!(engine.load().names(), vec!["keep", "old"]);

    // A good batch: one version for all of it; removing an unknown name is a no-op.
    let v = engine
        .apply(vec![
            Change::Upsert(router("x", "default", &[("a", "m", 1)])),
            Change::Upsert(router("y", "default", &[("b", "m", 1)])),
            Change::Remove("routers/old".into()),
            Change::Remove("never-loaded".into()),
        ])
        .unwrap();
    assert_eq!(v, 3);
    let snap = engine.load();
    assert_eq!(snap.version(), 3);
    assert_eq!(snap.names(), vec!["keep", "x", "y"]);
    let d = snap.route("y", &RequestContext::new()).unwrap();
    assert_eq!(d.version(), 3);
    assert_eq!(snap.router("keep").unwrap().compiled().version(), 1);

    // An empty batch publishes nothing.
    assert_eq!(engine.apply(Vec::new()).unwrap(), 3);
    assert_eq!(engine.version(), 3);

    // A strict engine says so, and refuses what its options refuse.
    let strict = Engine::with_options(abroute::ValidationOptions::strict());
    assert!(strict.options().require_sum_100);
    assert!(!engine.options().require_sum_100);
    assert!(
        strict
            .apply(vec![Change::Upsert(router("s", "d", &[("a", "m", 1)]))])
            .is_err()
    );
}

#[test]
fn a_loaded_routers_extension_is_built_once_per_config() {
    let engine = Engine::new();
    engine
        .upsert(router("r", "default", &[("a", "m", 1)]))
        .unwrap();
    let builds = std::sync::atomic::AtomicUsize::new(0);
    let build = |c: &RouterConfig| {
        builds.fetch_add(1, Ordering::SeqCst);
        c.name.len()
    };
    let snap = engine.load();
    let r = snap.router("r").unwrap();
    assert_eq!(r.extension(build), Some(&1));
    assert_eq!(r.extension(build), Some(&1));
    assert_eq!(builds.load(Ordering::SeqCst), 1, "built once, then shared");
    // One type per router: another type finds the slot taken.
    assert_eq!(r.extension(|_| "other"), None);
    // A changed router is a new `LoadedRouter`: its extension is built anew.
    engine
        .upsert(router("r", "default", &[("b", "m", 1)]))
        .unwrap();
    assert_eq!(
        engine.load().router("r").unwrap().extension(build),
        Some(&1)
    );
    assert_eq!(builds.load(Ordering::SeqCst), 2);
}

/// Readers route while a writer alternates between two configs (and throws in invalid ones).
/// Every decision must belong wholly to the config of its version: never a mix.
#[test]
fn readers_never_see_a_mix_while_a_writer_swaps() {
    let engine = Arc::new(Engine::new());
    let a = router(
        "r",
        "route-a",
        &[("a1", "model-a1", 1), ("a2", "model-a2", 3)],
    );
    let b = router(
        "r",
        "route-b",
        &[
            ("b1", "model-b1", 1),
            ("b2", "model-b2", 1),
            ("b3", "model-b3", 1),
        ],
    );
    let first = engine.upsert(a.clone()).unwrap();
    let versions: Arc<Mutex<HashMap<u64, char>>> =
        Arc::new(Mutex::new(HashMap::from([(first, 'a')])));
    let stop = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..3)
        .map(|_| {
            let engine = Arc::clone(&engine);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let snap = engine.load();
                    let d = snap
                        .route("r", &RequestContext::new())
                        .expect("never fails");
                    seen.push((
                        d.version(),
                        d.route_id().to_owned(),
                        d.variant_id().to_owned(),
                        d.model_id().to_owned(),
                    ));
                }
                seen
            })
        })
        .collect();

    for i in 0..2_000 {
        let (config, tag) = if i % 2 == 0 { (&b, 'b') } else { (&a, 'a') };
        let mut versions_guard = versions.lock().unwrap();
        let v = engine.upsert(config.clone()).unwrap();
        versions_guard.insert(v, tag);
        drop(versions_guard);
        if i % 100 == 0 {
            let bad = router("r", "route-x", &[("x", "", 1)]);
            assert!(engine.upsert(bad).is_err());
        }
    }
    stop.store(true, Ordering::Relaxed);

    let versions = versions.lock().unwrap();
    let mut total = 0;
    for reader in readers {
        for (version, route, variant, model) in reader.join().expect("reader never panics") {
            total += 1;
            let tag = versions[&version];
            let expected_route = format!("route-{tag}");
            assert_eq!(route, expected_route, "version {version}");
            assert!(variant.starts_with(tag), "{variant} in config {tag}");
            assert_eq!(model, format!("model-{variant}"));
        }
    }
    assert!(total > 0);
}

/// Whether a router reads `messages` is known from its conditions' sources when it compiles.
#[test]
fn a_router_says_whether_its_conditions_read_messages() {
    let with = |cel: &str| {
        RouterConfig::from_value(&serde_json::json!({ "name": "r",
            "routes": [{ "condition": { "cel_expression": cel },
                "route": { "route_id": "c", "variants": [
                    { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 } ] } }],
            "defaultRoute": { "route_id": "d", "variants": [
                { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 } ] } }))
        .unwrap()
        .compile()
        .unwrap()
    };
    assert!(with(r#"messages.last().content.matches("refund")"#).uses_messages());
    assert!(!with(r#"tier == "gold""#).uses_messages());
    assert!(
        !router("r", "d", &[("a", "m", 1)])
            .compile()
            .unwrap()
            .uses_messages()
    );
}

/// `CompiledRoute::index` is each route's position in `CompiledRouter::routes` order (the
/// conditional routes, then the default route), and a decision's route carries it: what hosts
/// index per-route data by.
#[test]
fn routes_know_their_position() {
    let config = RouterConfig::from_json(
        r#"{ "name": "r", "routes": [
          { "route": { "route_id": "x", "variants": [
            { "variant": { "variant_id": "a", "model_id": "p/a" }, "weight": 1 } ] },
            "condition": { "cel_expression": "false" } },
          { "route": { "route_id": "y", "variants": [
            { "variant": { "variant_id": "a", "model_id": "p/a" }, "weight": 1 } ] },
            "condition": { "cel_expression": "true" } } ],
          "defaultRoute": { "route_id": "d", "variants": [
          { "variant": { "variant_id": "c", "model_id": "p/c" }, "weight": 1 } ] } }"#,
    )
    .expect("parses");
    let compiled = config.compile().expect("compiles");
    let found: Vec<(&str, usize)> = compiled.routes().map(|r| (r.id(), r.index())).collect();
    assert_eq!(found, [("x", 0), ("y", 1), ("d", 2)]);
    let decision = compiled
        .decide(&RequestContext::new())
        .expect("a route matches");
    assert_eq!(decision.route_id(), "y");
    assert_eq!(decision.route().index(), 1);
}

#[test]
fn batches_published_at_a_callers_version() {
    let engine = Engine::new();
    let a = router("a", "d", &[("x", "m/x", 1)]);
    let b = router("b", "d", &[("y", "m/y", 1)]);
    // A reset at revision 7: every router carries it, and decisions report it.
    assert_eq!(engine.replace_all_at(vec![a.clone()], 7).unwrap(), 7);
    assert_eq!(engine.version(), 7);
    let ctx = RequestContext::new();
    assert_eq!(engine.load().route("a", &ctx).unwrap().version(), 7);
    // Batches skip ahead to the caller's version; an empty one still publishes it.
    assert_eq!(
        engine
            .apply_at(vec![Change::Upsert(b.clone())], 12)
            .unwrap(),
        12
    );
    assert_eq!(engine.load().router("b").unwrap().compiled().version(), 12);
    assert_eq!(engine.load().router("a").unwrap().compiled().version(), 7);
    assert_eq!(engine.apply_at(Vec::new(), 13).unwrap(), 13);
    assert_eq!(engine.load().names(), vec!["a", "b"]);
    // A version not ahead of the engine's is refused, and nothing changes.
    for stale in [13, 5] {
        let e = engine
            .apply_at(vec![Change::Remove("a".into())], stale)
            .unwrap_err();
        assert_eq!(
            e.errors()[0].kind,
            ConfigErrorKind::VersionNotAhead {
                version: stale,
                current: 13
            }
        );
        assert!(engine.replace_all_at(Vec::new(), stale).is_err());
    }
    assert_eq!(engine.version(), 13);
    assert_eq!(engine.load().names(), vec!["a", "b"]);
    // An invalid batch is refused as by apply; the plain writes go on from the caller's version.
    let bad = router("c", "d", &[("z", "m/z", 0)]);
    assert!(engine.apply_at(vec![Change::Upsert(bad)], 20).is_err());
    assert_eq!(engine.version(), 13);
    assert_eq!(engine.upsert(a).unwrap(), 14);
    assert_eq!(engine.replace_all(vec![b]).unwrap(), 15);
}

#[test]
fn batches_carrying_a_version_the_engine_went_past() {
    let engine = Engine::new();
    let a = router("a", "d", &[("x", "m/x", 1)]);
    let b = router("b", "d", &[("y", "m/y", 1)]);
    let local = router("local", "d", &[("z", "m/z", 1)]);
    assert_eq!(engine.replace_all_at(vec![a.clone()], 3).unwrap(), 3);
    // Two changes of the host's own take the engine to 5, past the store's next revision.
    engine.upsert(local.clone()).unwrap();
    assert_eq!(engine.upsert(local).unwrap(), 5);
    // The store's revision 4: its routers carry 4, the snapshot takes the next version.
    assert_eq!(
        engine
            .apply_carrying(vec![Change::Upsert(b.clone())], 4)
            .unwrap(),
        6
    );
    let ctx = RequestContext::new();
    assert_eq!(engine.load().route("b", &ctx).unwrap().version(), 4);
    assert_eq!(engine.load().router("a").unwrap().compiled().version(), 3);
    assert_eq!(
        engine.load().router("local").unwrap().compiled().version(),
        5
    );
    // Ahead of the engine, it is apply_at.
    assert_eq!(
        engine
            .apply_carrying(vec![Change::Upsert(a.clone())], 9)
            .unwrap(),
        9
    );
    assert_eq!(engine.load().router("a").unwrap().compiled().version(), 9);
    // A reset behind the engine: every router carries the revision, the snapshot grows.
    assert_eq!(engine.replace_all_carrying(vec![a, b], 8).unwrap(), 10);
    let snapshot = engine.load();
    assert_eq!(snapshot.names(), vec!["a", "b"]);
    assert_eq!(snapshot.router("a").unwrap().compiled().version(), 8);
    assert_eq!(snapshot.router("b").unwrap().compiled().version(), 8);
    // An invalid batch changes nothing.
    let bad = router("c", "d", &[("z", "m/z", 0)]);
    assert!(
        engine
            .apply_carrying(vec![Change::Upsert(bad)], 11)
            .is_err()
    );
    assert_eq!(engine.version(), 10);
}
