//! The sharded snapshot against a model: random upserts, removals and batches give exactly the
//! routers a plain `HashMap` gives, every older snapshot stays as it was, and readers with
//! 100,000 routers loaded never see a change in part.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use abroute::{Change, Engine, EngineConfig, RequestContext, RouterConfig, Snapshot};
use proptest::prelude::*;

/// Router `name` whose one route is called `r{tag}`: the route id says which change loaded it.
fn tagged(name: &str, tag: u32) -> RouterConfig {
    RouterConfig::from_json(&format!(
        r#"{{"name":"{name}","defaultRoute":{{"route_id":"r{tag}","variants":[
            {{"variant":{{"variant_id":"v","model_id":"openai/gpt-4.1"}},"weight":1}}]}}}}"#
    ))
    .expect("the test router parses")
}

/// Every router of `snapshot` by name, with its route id.
fn contents(snapshot: &Snapshot) -> BTreeMap<String, String> {
    snapshot
        .names()
        .into_iter()
        .map(|name| {
            let router = snapshot.router(name).expect("a listed name is loaded");
            let route = router.compiled().routes().next().expect("one route");
            (name.to_owned(), route.id().to_owned())
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Upsert(u16, u32),
    Remove(u16),
    Batch(Vec<(u16, Option<u32>)>),
}

fn op() -> impl Strategy<Value = Op> {
    // 600 names: enough to fill every shard and to collide within some.
    prop_oneof![
        4 => (0..600u16, any::<u32>()).prop_map(|(n, t)| Op::Upsert(n, t)),
        2 => (0..600u16).prop_map(Op::Remove),
        1 => prop::collection::vec((0..600u16, prop::option::of(any::<u32>())), 0..40)
            .prop_map(Op::Batch),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn changes_give_the_snapshots_a_hash_map_gives(ops in prop::collection::vec(op(), 1..120)) {
        let engine = EngineConfig::new().lazy_sticky_tables(true).build();
        let mut model: HashMap<String, String> = HashMap::new();
        let mut history: Vec<(Arc<Snapshot>, BTreeMap<String, String>)> = Vec::new();
        for op in ops {
            let before = engine.version();
            let mut expect_change = true;
            match op {
                Op::Upsert(n, t) => {
                    let name = format!("n{n}");
                    engine.upsert(tagged(&name, t)).expect("loads");
                    model.insert(name, format!("r{t}"));
                }
                Op::Remove(n) => {
                    let name = format!("n{n}");
                    expect_change = model.remove(&name).is_some();
                    prop_assert_eq!(engine.remove(&name), expect_change);
                }
                Op::Batch(changes) => {
                    let mut seen = std::collections::HashSet::new();
                    let changes: Vec<_> = changes.into_iter().filter(|(n, _)| seen.insert(*n)).collect();
                    expect_change = !changes.is_empty();
                    let batch = changes
                        .iter()
                        .map(|(n, t)| match t {
                            Some(t) => Change::Upsert(tagged(&format!("n{n}"), *t)),
                            None => Change::Remove(format!("n{n}")),
                        })
                        .collect();
                    engine.apply(batch).expect("applies");
                    for (n, t) in changes {
                        match t {
                            Some(t) => model.insert(format!("n{n}"), format!("r{t}")),
                            None => model.remove(&format!("n{n}")),
                        };
                    }
                }
            }
            let snapshot = engine.load_full();
            prop_assert_eq!(snapshot.version(), before + u64::from(expect_change));
            prop_assert_eq!(snapshot.len(), model.len());
            let expected: BTreeMap<String, String> = model.clone().into_iter().collect();
            prop_assert_eq!(&contents(&snapshot), &expected);
            // Every name routes; a name not in the model does not.
            for name in model.keys() {
                prop_assert!(snapshot.route(name, &RequestContext::new()).is_ok());
            }
            prop_assert!(snapshot.route("n9999", &RequestContext::new()).is_err());
            // Pages: the names after any name, sorted, as a sort of every name gives.
            for after in ["", "n1", "n30", "n599", "n6", "z"] {
                let page: Vec<&str> = snapshot.names_after(Some(after)).collect();
                let want: Vec<&str> =
                    expected.keys().map(String::as_str).filter(|n| *n > after).collect();
                prop_assert_eq!(page, want);
            }
            history.push((snapshot, expected));
        }
        // Shards shared between snapshots were copied before any change: old snapshots are
        // exactly as they were published.
        for (snapshot, expected) in &history {
            prop_assert_eq!(&contents(snapshot), expected);
        }
    }
}

/// The engine's concurrency test, with 100,000 other routers loaded: readers of `r` see one
/// config or the other, whole, while a writer swaps it and batches change the others.
#[test]
fn readers_see_whole_changes_with_100_000_routers_loaded() {
    let engine = Arc::new(EngineConfig::new().lazy_sticky_tables(true).build());
    let others: Vec<RouterConfig> = (0..100_000).map(|i| tagged(&format!("t{i}"), 0)).collect();
    engine.replace_all(others).expect("loads");
    let a = |tag| tagged("r", tag);
    engine.upsert(a(0)).expect("loads");
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let engine = Arc::clone(&engine);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let snap = engine.load();
                    let d = snap
                        .route("r", &RequestContext::new())
                        .expect("never fails");
                    // A batch changes `r` and `t{k}` together: both or neither.
                    let tag: u32 = d.route_id()[1..].parse().expect("a tag");
                    let other = snap.router(&format!("t{}", tag % 100_000)).expect("loaded");
                    let other_tag = other.compiled().routes().next().expect("a route").id();
                    assert!(
                        other_tag == format!("r{tag}") || tag == 0 || tag % 2 == 1,
                        "r at {tag} but t{} at {other_tag}",
                        tag % 100_000
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for tag in 1..=1_000u32 {
        if tag % 2 == 1 {
            engine.upsert(a(tag)).expect("loads");
        } else {
            let other = format!("t{}", tag % 100_000);
            engine
                .apply(vec![
                    Change::Upsert(a(tag)),
                    Change::Upsert(tagged(&other, tag)),
                ])
                .expect("applies");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = readers
        .into_iter()
        .map(|r| r.join().expect("no reader panics"))
        .sum();
    assert!(reads > 0);
    assert_eq!(engine.load().len(), 100_001);
}

#[test]
fn an_engine_without_routers_has_every_shard_empty() {
    let engine = Engine::new();
    assert!(engine.load().is_empty());
    assert!(!engine.remove("nothing"));
    assert_eq!(engine.version(), 0);
}

/// The sorted names past one chunk: loads, splits and removals keep every page as a sort gives.
#[test]
fn pages_stay_sorted_across_chunk_splits() {
    let engine = EngineConfig::new().lazy_sticky_tables(true).build();
    let mut model = std::collections::BTreeSet::new();
    engine
        .replace_all((0..3_000).map(|i| tagged(&format!("a{i}"), 0)).collect())
        .expect("loads");
    model.extend((0..3_000).map(|i| format!("a{i}")));
    // Upserts one by one (chunks split), removals (chunks shrink and empty), in a fixed order.
    for k in 0..4_000u32 {
        let i = k.wrapping_mul(2_654_435_761) % 6_000;
        let name = format!("a{i}");
        if k % 3 == 0 {
            assert_eq!(engine.remove(&name), model.remove(&name));
        } else {
            engine.upsert(tagged(&name, k)).expect("loads");
            model.insert(name);
        }
    }
    let snapshot = engine.load();
    let all: Vec<&str> = model.iter().map(String::as_str).collect();
    assert_eq!(snapshot.names(), all);
    for after in ["a", "a1", "a2999", "a4", "a5999", "b"] {
        let page: Vec<&str> = snapshot.names_after(Some(after)).take(100).collect();
        let want: Vec<&str> = all
            .iter()
            .copied()
            .filter(|n| *n > after)
            .take(100)
            .collect();
        assert_eq!(page, want, "after {after}");
    }
}

/// Lazy sticky tables are the eager ones: for random routes (ids, weights, salts), the table a
/// lazy engine builds on the first sticky request equals the one an eager engine built before
/// publishing, and both engines assign every key alike.
#[test]
fn lazy_sticky_tables_equal_eager_ones() {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x0005_ca1e_0014);
    let configs: Vec<RouterConfig> = (0..60)
        .map(|i| {
            let n = rng.random_range(1..=6usize);
            let variants: Vec<String> = (0..n)
                .map(|k| {
                    let w = rng.random_range(0..=100u32) + u32::from(k == 0);
                    format!(
                        r#"{{"variant":{{"variant_id":"v{k}-{}","model_id":"openai/gpt-4.1"}},"weight":{w}}}"#,
                        rng.random_range(0..1000u32)
                    )
                })
                .collect();
            RouterConfig::from_json(&format!(
                r#"{{"name":"s{i}","defaultRoute":{{"route_id":"r{}","variants":[{}]}}}}"#,
                rng.random_range(0..1000u32),
                variants.join(",")
            ))
            .expect("the test router parses")
        })
        .collect();
    let eager = Engine::new();
    let lazy = EngineConfig::new().lazy_sticky_tables(true).build();
    eager.replace_all(configs.clone()).expect("loads");
    lazy.replace_all(configs.clone()).expect("loads");
    let (e, l) = (eager.load(), lazy.load());
    for config in &configs {
        for key in [
            "user-1",
            "user-42",
            "a much longer sticky key of some 40 bytes",
        ] {
            let ctx = RequestContext::new().with_user(key);
            let (de, dl) = (e.route(&config.name, &ctx), l.route(&config.name, &ctx));
            assert_eq!(
                de.map(|d| d.variant_id().to_owned()).ok(),
                dl.map(|d| d.variant_id().to_owned()).ok(),
                "{} {key}",
                config.name
            );
        }
        let route = |s: &Snapshot| {
            s.router(&config.name)
                .and_then(|r| r.compiled().routes().next())
                .and_then(|r| r.sticky_table().cloned())
        };
        assert_eq!(route(&e), route(&l), "{}", config.name);
    }
}

/// Routers staged on two threads and published as one batch are exactly what `replace_all`
/// loads: the same snapshot contents, one version; names given twice are refused with their
/// index and change nothing; a router staged by another engine is compiled again and loads.
#[test]
fn staged_routers_publish_as_replace_all_does() {
    let configs: Vec<RouterConfig> = (0..500).map(|i| tagged(&format!("r{i}"), i)).collect();
    let reference = Engine::new();
    reference.replace_all(configs.clone()).expect("loads");

    let engine = Engine::new();
    let (left, right) = configs.split_at(configs.len() / 2);
    let stage = |part: &[RouterConfig]| {
        part.iter()
            .map(|c| engine.stage(c.clone()).expect("compiles"))
            .collect::<Vec<_>>()
    };
    let staged = thread::scope(|s| {
        let a = s.spawn(|| stage(left));
        let b = s.spawn(|| stage(right));
        let mut all = a.join().expect("stages");
        all.extend(b.join().expect("stages"));
        all
    });
    let version = engine.replace_all_staged(staged).expect("publishes");
    assert_eq!(version, 1);
    assert_eq!(contents(&engine.load()), contents(&reference.load()));

    let twice = vec![
        engine.stage(tagged("same", 1)).expect("compiles"),
        engine.stage(tagged("same", 2)).expect("compiles"),
    ];
    let errors = engine
        .replace_all_staged(twice)
        .expect_err("a name given twice");
    assert!(errors.to_string().contains("[1].name"), "{errors}");
    assert_eq!(engine.version(), 1);
    assert_eq!(engine.load().len(), 500);

    let other = Engine::new();
    let foreign = vec![other.stage(tagged("from-elsewhere", 3)).expect("compiles")];
    engine
        .replace_all_staged_at(foreign, 7)
        .expect("compiled again here");
    assert_eq!(engine.version(), 7);
    assert_eq!(engine.load().names(), vec!["from-elsewhere"]);
}
