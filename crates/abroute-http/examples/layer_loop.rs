//! `cargo run --release -p abroute-http --example layer_loop -- KIND N`: N requests of KIND
//! (`routed`, `pass-through`, `direct`, `auto`) through the layer, for instruction counts
//! under `valgrind --tool=callgrind` (per request: `(Ir(N) - Ir(0)) / N`). The shapes are the
//! `request_level` bench's.

#[path = "../benches/layer_shared/mod.rs"]
mod layer_shared;

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "routed".to_owned());
    if !layer_shared::KINDS.contains(&kind.as_str()) {
        eprintln!("KIND is one of {:?}", layer_shared::KINDS);
        std::process::exit(2);
    }
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let body = layer_shared::body(&kind);
    let mut svc = layer_shared::service();
    let mut ok = 0u64;
    for _ in 0..n.min(10_000_000) {
        if layer_shared::one(&mut svc, &body) == 200 {
            ok += 1;
        }
    }
    println!("{kind}: {ok} of {n} answered 200");
}
