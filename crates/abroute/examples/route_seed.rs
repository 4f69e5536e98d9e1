//! Routes 1,000,000 requests through the seed's router and prints the realized split.
//!
//! `cargo run --release -p abroute --example route_seed`

use std::time::Instant;

use abroute::{Engine, RequestContext, RouterConfig};

/// Step 1 of the seed page: the body of `POST /router/v1/routers`, verbatim.
const SEED_ROUTER: &str = r#"{ "name": "compare-frontier-models", "defaultRoute": { "route_id": "default", "variants": [ { "variant": { "variant_id": "openai/gpt-4o-mini-a", "model_id": "openai/gpt-4o-mini" }, "weight": 33 }, { "variant": { "variant_id": "openai/gpt-3.5-turbo-b", "model_id": "openai/gpt-3.5-turbo" }, "weight": 33 }, { "variant": { "variant_id": "openai/gpt-4.1-c", "model_id": "openai/gpt-4.1" }, "weight": 34 } ] } }"#;

const REQUESTS: u64 = 1_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::new();
    let version = engine.upsert(RouterConfig::from_json(SEED_ROUTER)?)?;
    let snapshot = engine.load();
    let router = snapshot
        .router("compare-frontier-models")
        .ok_or("router not loaded")?
        .compiled();
    let route = router.default_route().ok_or("no default route")?;
    let mut counts = vec![0u64; route.variants().len()];

    let start = Instant::now();
    let ctx = RequestContext::new();
    for _ in 0..REQUESTS {
        let d = snapshot.route("compare-frontier-models", &ctx)?;
        counts[d.variant_index()] += 1;
    }
    let elapsed = start.elapsed();

    println!("router compare-frontier-models, config version {version}, {REQUESTS} requests");
    println!(
        "{:<24} {:<22} {:>7} {:>9} {:>9}",
        "variant", "model", "weight", "expected", "realized"
    );
    for (i, v) in route.variants().iter().enumerate() {
        println!(
            "{:<24} {:<22} {:>7} {:>8.3}% {:>8.3}%",
            v.id(),
            v.model_id(),
            v.weight(),
            100.0 * route.share(i),
            100.0 * counts[i] as f64 / REQUESTS as f64
        );
    }
    println!(
        "{:.1} ns per routing decision (load snapshot, look up router, pick)",
        elapsed.as_nanos() as f64 / REQUESTS as f64
    );
    Ok(())
}
