//! `health`: routing throughput while outcomes are reported, to show that reporting does not
//! slow concurrent routing.
//!
//! Each routing operation is what a gateway does before its first upstream call: load the
//! snapshot, route by name, build the attempt plan and take its first attempt (which checks the
//! model's and the provider's health). Scenarios:
//!
//! - `2-threads`: two threads route in a loop (time per route per thread, as in `engine`).
//! - `2-threads+reports`: the same while a third thread reports outcomes for the seed router's
//!   three models at 10,000 a second (nine successes then one server error, per model, so the
//!   window and streak bookkeeping runs but no model is ejected).
//!
//! The ratio of the two medians is the slowdown; the target is at most 1.15.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abroute::{Engine, FailureClass, Outcome, RequestContext};
use abroute_benches::{SEED_ROUTER_NAME, Writer, run_parallel, seed_router};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const REPORTS_PER_SECOND: u32 = 10_000;
const MODELS: [&str; 3] = [
    "openai/gpt-4o-mini",
    "openai/gpt-3.5-turbo",
    "openai/gpt-4.1",
];

fn health(c: &mut Criterion) {
    let engine = Arc::new(Engine::new());
    engine.upsert(seed_router()).expect("the seed router loads");
    let now = Duration::from_secs(1);
    let route = || {
        let snapshot = engine.load();
        let ctx = RequestContext::new();
        let decision = snapshot
            .route(SEED_ROUTER_NAME, &ctx)
            .expect("the seed router routes");
        let mut plan = decision.plan(&ctx, now);
        plan.next().map_or(0, |a| a.model_id().len())
    };

    let mut group = c.benchmark_group("health");
    for reports in [false, true] {
        let reporter = reports.then(|| {
            let engine = Arc::clone(&engine);
            let start = Instant::now();
            Writer::start(REPORTS_PER_SECOND, move |i| {
                let model = MODELS[(i % 3) as usize];
                let outcome = if (i / 3) % 10 == 9 {
                    Outcome::Failure(FailureClass::ServerError)
                } else {
                    Outcome::Success
                };
                engine.report(model, outcome, start.elapsed());
            })
        });
        let label = if reports {
            "2-threads+reports"
        } else {
            "2-threads"
        };
        group.bench_function(BenchmarkId::new("route+plan", label), |b| {
            b.iter_custom(|iters| {
                run_parallel(2, iters, |_, iters| {
                    for _ in 0..iters {
                        black_box(route());
                    }
                })
            });
        });
        if let Some(w) = reporter {
            let stats = w.stop();
            eprintln!(
                "health/{label}: reporter did {} reports in {:.2?} ({:.0}/s)",
                stats.writes,
                stats.elapsed,
                stats.rate()
            );
        }
    }
    group.finish();
}

criterion_group!(benches, health);
criterion_main!(benches);
