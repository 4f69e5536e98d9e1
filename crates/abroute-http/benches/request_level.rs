//! `request_level`: whole requests through the layer (extract, plan, one attempt over an
//! upstream that answers at once, metadata merged), by kind, in one run:
//!
//! - `routed`: `inworld/compare-frontier-models`, what request-level routing must not slow;
//! - `pass-through`: a model that is not a router and no router keys: forwarded as it came;
//! - `direct`: `openai/gpt-4o-mini` with `extra_body.models` (request-level failover plan);
//! - `auto`: `"model": "auto"` by price over three catalog models.
//!
//! Instruction counts before and after request-level routing come from the `layer_loop`
//! example under callgrind (docs/benchmarks.md, "Request-level routing").
//!
//! Run: `cargo bench -p abroute-http --bench request_level`.

#[path = "layer_shared/mod.rs"]
mod layer_shared;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use layer_shared::{KINDS, body, one, service};

fn layer(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_level");
    for kind in KINDS {
        let body = body(kind);
        let mut svc = service();
        assert_eq!(one(&mut svc, &body), 200, "{kind}");
        group.bench_with_input(BenchmarkId::new("layer", kind), &body, |b, body| {
            b.iter(|| one(&mut svc, body));
        });
    }
    group.finish();
}

criterion_group!(benches, layer);
criterion_main!(benches);
