//! The engine's options ([`EngineConfig`]) and its publish-time preparer ([`Prepare`]): the
//! preparer runs once for every router the engine publishes (upsert, apply, replace_all,
//! refresh), never for a rejected change and never on the request path, and its value is what
//! `LoadedRouter::prepared` and `LoadedRouter::extension` give.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abroute::{
    Catalog, Change, Engine, EngineConfig, HealthConfig, LoadedRouter, Prepare, RequestContext,
    RouterConfig, ValidationOptions,
};
use serde_json::json;

fn config(v: serde_json::Value) -> RouterConfig {
    RouterConfig::from_value(&v).expect("test config reads")
}

fn plain(name: &str, model: &str) -> RouterConfig {
    config(
        json!({ "name": name, "defaultRoute": { "route_id": "d", "variants": [
        { "variant": { "variant_id": "a", "model_id": model }, "weight": 1 } ] } }),
    )
}

/// A router whose variant's attempt order follows observed latency (so `refresh` recompiles it).
fn latency_sorted(name: &str) -> RouterConfig {
    config(
        json!({ "name": name, "defaultRoute": { "route_id": "d", "variants": [
        { "variant": { "variant_id": "v", "model_id": "auto", "model_selection": {
            "models": ["openai/gpt-4.1", "openai/gpt-4o-mini"],
            "sort": [{ "metric": "SORT_METRIC_LATENCY", "direction": "SORT_DIRECTION_ASCENDING" }] } },
          "weight": 1 } ] } }),
    )
}

/// What the test preparer keeps: which call made it, and the compiled order it saw.
#[derive(Debug, PartialEq)]
struct Prepared {
    call: usize,
    router: String,
    first_targets: Vec<String>,
}

/// Counts its calls and records the routers it prepared, in order.
#[derive(Default)]
struct Recorder {
    calls: AtomicUsize,
    routers: Mutex<Vec<String>>,
}

impl Prepare for Recorder {
    fn prepare(&self, router: &LoadedRouter) -> Box<dyn Any + Send + Sync> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let name = router.config().name.clone();
        self.routers
            .lock()
            .expect("not poisoned")
            .push(name.clone());
        let first_targets = router
            .compiled()
            .routes()
            .next()
            .and_then(|r| r.variants().first())
            .map(|v| v.targets().iter().map(|t| t.id().to_owned()).collect())
            .unwrap_or_default();
        Box::new(Prepared {
            call,
            router: name,
            first_targets,
        })
    }
}

fn engine_with(recorder: &Arc<Recorder>) -> Engine {
    EngineConfig::new()
        .prepare(Arc::clone(recorder) as Arc<dyn Prepare>)
        .build()
}

fn prepared_call(engine: &Engine, name: &str) -> Option<usize> {
    let snap = engine.load();
    snap.router(name)?.prepared::<Prepared>().map(|p| p.call)
}

#[test]
fn the_preparer_runs_once_per_published_router_and_never_on_route() {
    let recorder = Arc::new(Recorder::default());
    let engine = engine_with(&recorder);
    let calls = || recorder.calls.load(Ordering::SeqCst);

    engine.upsert(plain("one", "openai/gpt-4.1")).unwrap();
    assert_eq!(calls(), 1, "upsert prepares its router");
    assert_eq!(prepared_call(&engine, "one"), Some(1));

    for _ in 0..100 {
        let snap = engine.load();
        let d = snap.route("one", &RequestContext::new()).unwrap();
        let _ = d.plan(&RequestContext::new(), Duration::ZERO).count();
        assert!(snap.router("one").unwrap().prepared::<Prepared>().is_some());
    }
    assert_eq!(calls(), 1, "routing never prepares");

    // A rejected change prepares nothing and publishes nothing.
    let bad = config(json!({ "name": "one", "defaultRoute": { "route_id": "d", "variants": [] } }));
    assert!(engine.upsert(bad.clone()).is_err());
    assert!(
        engine
            .apply(vec![
                Change::Upsert(plain("two", "openai/gpt-4.1")),
                Change::Upsert(bad.clone()),
            ])
            .is_err()
    );
    assert!(engine.replace_all(vec![bad]).is_err());
    assert_eq!(calls(), 1, "nothing rejected is prepared");

    // A batch prepares each upserted router once; a removal prepares nothing.
    engine
        .apply(vec![
            Change::Upsert(plain("two", "openai/gpt-4.1")),
            Change::Upsert(plain("three", "openai/gpt-4o-mini")),
            Change::Remove("one".into()),
        ])
        .unwrap();
    assert_eq!(calls(), 3);
    assert_eq!(prepared_call(&engine, "two"), Some(2));
    assert_eq!(prepared_call(&engine, "three"), Some(3));
    assert!(engine.load().router("one").is_none());

    // Replacing everything prepares every new router, and only those.
    engine
        .replace_all(vec![
            plain("four", "openai/gpt-4.1"),
            plain("five", "openai/gpt-4.1"),
        ])
        .unwrap();
    assert_eq!(calls(), 5);
    assert_eq!(
        recorder.routers.lock().unwrap().as_slice(),
        ["one", "two", "three", "four", "five"]
    );

    // Refresh publishes nothing when no router reads metrics: nothing is prepared.
    engine.refresh();
    assert_eq!(calls(), 5);
}

#[test]
fn refresh_prepares_the_recompiled_routers_anew_and_keeps_the_others() {
    let recorder = Arc::new(Recorder::default());
    let engine = engine_with(&recorder);
    engine.upsert(plain("plain", "openai/gpt-4.1")).unwrap();
    engine.upsert(latency_sorted("fast")).unwrap();
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 2);
    let before = engine
        .load()
        .router("fast")
        .unwrap()
        .prepared::<Prepared>()
        .unwrap()
        .first_targets
        .clone();
    assert_eq!(before.len(), 2);

    // The first model becomes slow, the second fast: the refreshed order is reversed.
    let now = Duration::from_secs(10);
    for _ in 0..50 {
        engine
            .metrics()
            .record(&before[0], Duration::from_secs(20), 10, now);
        engine
            .metrics()
            .record(&before[1], Duration::from_millis(5), 10, now);
    }
    engine.refresh();
    assert_eq!(
        recorder.calls.load(Ordering::SeqCst),
        3,
        "only the recompiled router is prepared again"
    );
    let snap = engine.load();
    let fast = snap.router("fast").unwrap();
    assert_eq!(
        fast.prepared::<Prepared>(),
        Some(&Prepared {
            call: 3,
            router: "fast".into(),
            first_targets: vec![before[1].clone(), before[0].clone()],
        }),
        "the prepared value was built from the recompiled tables"
    );
    assert_eq!(fast.compiled().version(), 2, "the router keeps its version");
    assert_eq!(
        prepared_call(&engine, "plain"),
        Some(1),
        "untouched router keeps its value"
    );
}

#[test]
fn the_extension_slot_returns_the_prepared_value() {
    let engine = EngineConfig::new()
        .prepare(Arc::new(|r: &LoadedRouter| {
            Box::new(r.config().name.len()) as Box<dyn Any + Send + Sync>
        }))
        .build();
    engine.upsert(plain("abc", "openai/gpt-4.1")).unwrap();
    let snap = engine.load();
    let r = snap.router("abc").unwrap();
    assert_eq!(r.prepared::<usize>(), Some(&3));
    assert_eq!(r.prepared::<String>(), None, "another type is not there");
    let built = AtomicUsize::new(0);
    assert_eq!(
        r.extension(|_| {
            built.fetch_add(1, Ordering::SeqCst);
            99usize
        }),
        Some(&3),
        "the prepared value, not a new one"
    );
    assert_eq!(built.load(Ordering::SeqCst), 0);

    // Without a preparer the slot starts empty, and `extension` fills it lazily as before.
    let engine = Engine::new();
    engine.upsert(plain("abc", "openai/gpt-4.1")).unwrap();
    let snap = engine.load();
    let r = snap.router("abc").unwrap();
    assert_eq!(r.prepared::<usize>(), None);
    assert_eq!(r.extension(|c| c.name.len() + 1), Some(&4));
    assert_eq!(r.prepared::<usize>(), Some(&4));
}

#[test]
fn engine_config_sets_every_option_and_the_shorthands_agree() {
    let health = HealthConfig {
        consecutive_failures: 2,
        ..HealthConfig::default()
    };
    let engine = EngineConfig::new()
        .validation(ValidationOptions::strict())
        .health(health)
        .catalog(Catalog::default())
        .capability_routing(true)
        .build();
    assert_eq!(engine.options(), &ValidationOptions::strict());
    assert_eq!(engine.health().config(), &health);
    assert!(
        engine.catalog().get("openai/gpt-4.1").is_none(),
        "the empty catalog"
    );
    // Strict validation: weights must sum to 100.
    assert!(engine.upsert(plain("r", "openai/gpt-4.1")).is_err());
    engine
        .upsert(config(json!({ "name": "r", "defaultRoute": { "route_id": "d", "variants": [
            { "variant": { "variant_id": "a", "model_id": "openai/gpt-4.1" }, "weight": 100 } ] } })))
        .unwrap();
    let snap = engine.load();
    let compiled = snap.router("r").unwrap().compiled();
    assert!(
        compiled.capability_catalog().is_some(),
        "capability routing on"
    );

    let short = Engine::with_health(ValidationOptions::strict(), health);
    assert_eq!(short.options(), engine.options());
    assert_eq!(short.health().config(), engine.health().config());
    let default = Engine::new();
    assert_eq!(default.options(), &ValidationOptions::default());
    assert_eq!(default.health().config(), &HealthConfig::default());
    assert!(
        default.catalog().get("openai/gpt-4.1").is_some(),
        "the shipped catalog"
    );
    default.upsert(plain("r", "openai/gpt-4.1")).unwrap();
    let snap = default.load();
    let compiled = snap.router("r").unwrap().compiled();
    assert!(
        compiled.capability_catalog().is_none(),
        "capability routing off"
    );
}
