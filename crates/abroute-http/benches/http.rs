//! `http`: the adapter's hot path (extract, route, rewrite) beside what it must beat.
//!
//! Two bodies, built by [`chat_body`]: `4k` (4 KiB, 9 turns) and `1m` (1 MiB of long context,
//! about 2,300 turns), both chat-completions bodies for `inworld/compare-frontier-models` (the
//! seed router, 33/33/34, with a router default `text_generation_config`), with `user`,
//! `extra_body.metadata` and `extra_body.models`. Their prose is deliberately dense in what
//! slows a scanner down: an escape (`\"`, `\n`) or a non-ASCII character every 35 bytes.
//!
//! - `route+rewrite`: extract, build the context (metadata, request models), load the
//!   snapshot, route, take the plan's first attempt, find its generation parameters (rendered
//!   once per loaded router, as the layer does) and rewrite the body. Targets: 4k in at most 3 µs, and at least 5× faster than
//!   `serde_json-roundtrip`; 1m in at most 2× `copy+scan`.
//! - `route+rewrite+templates`: the same for the same seed router with a router default
//!   `message_templates` (a system message with two `{{variables}}`) and the body's
//!   `extra_body.prompt_variables` filling them: the cost of templates over `route+rewrite`.
//! - `serde_json-roundtrip`: `serde_json::from_slice::<Value>` then `to_vec`: what a
//!   parse-and-reserialize gateway does.
//! - `copy+scan`: the plain copy-and-scan: copy the body into a fresh `Vec` of its size, then
//!   one byte-at-a-time pass that knows where strings are (quotes, backslash escapes) and
//!   counts the structural bytes outside them: the least a JSON rewriter written plainly does.
//! - `copy+count-simd`: the hardware floor, for reference: the same copy, then a count of `"`
//!   bytes that the compiler vectorizes (16 bytes per instruction). It knows nothing of JSON.
//! - `extract` and `serde_json-validate`: our one validating pass alone, beside serde_json's
//!   validating pass (`IgnoredAny`), which builds nothing either.
//!
//! - `stream/…`: a streamed chat answer of 200 chunks (one frame each, split off one shared
//!   buffer as hyper hands them over, plus the usage chunk and `[DONE]`): `pass-through` moves
//!   the frames untouched (the baseline); `metadata-scanner` is the scanner that places the
//!   metadata event (the peer: the per-frame work the layer already did); `usage-reader`
//!   reads the usage from them;
//!   `tap` is the whole stream tap (whole events, the usage, the injected usage chunk
//!   removed, TTFT and the observer at the end).
//!
//! Run: `CARGO_TARGET_DIR=/work/target-http cargo bench -p abroute-http --bench http`.

use std::hint::black_box;
use std::time::Duration;

use abroute::{Engine, RouterConfig};
use abroute_http::{Api, AttemptSettings, Precedence, extract, rewrite};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SEED: &str = r#"{ "name": "compare-frontier-models", "defaultRoute": { "route_id": "default",
  "variants": [
    { "variant": { "variant_id": "openai/gpt-4o-mini-a", "model_id": "openai/gpt-4o-mini" }, "weight": 33 },
    { "variant": { "variant_id": "openai/gpt-3.5-turbo-b", "model_id": "openai/gpt-3.5-turbo" }, "weight": 33 },
    { "variant": { "variant_id": "openai/gpt-4.1-c", "model_id": "openai/gpt-4.1" }, "weight": 34 } ] },
  "defaults": { "text_generation_config": { "temperature": 0.2, "max_tokens": 512 } } }"#;

/// A chat body of at least `target` bytes: a system prompt, then user/assistant turns of ~400
/// bytes of prose each (with a few escapes and non-ASCII characters), and the router's
/// `extra_body`.
fn chat_body(target: usize) -> Vec<u8> {
    let prose = "The quarterly report shows revenue growth of 12% \u{2014} mostly from the \
                 \\\"enterprise\\\" tier. Customers in Zürich and 東京 asked about refunds; \
                 please summarize the main drivers, list risks, and propose next steps.\\n";
    let mut messages = vec![format!(
        r#"{{"role":"system","content":"You are a careful analyst. {prose}"}}"#
    )];
    let mut size = 400;
    let mut i = 0;
    while size < target {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let m = format!(r#"{{"role":"{role}","content":"Turn {i}. {prose}{prose}"}}"#);
        size += m.len() + 1;
        messages.push(m);
        i += 1;
    }
    let body = format!(
        r#"{{"model":"inworld/compare-frontier-models","messages":[{}],"stream":false,"user":"user-1234","temperature":0.7,"extra_body":{{"metadata":{{"tier":"premium","seats":12}},"models":["anthropic/claude-3.5-sonnet"]}}}}"#,
        messages.join(",")
    );
    body.into_bytes()
}

/// The seed router under another name, with router default templates.
fn templated_router() -> String {
    SEED.replacen(
        r#""name": "compare-frontier-models""#,
        r#""name": "agents""#,
        1,
    )
    .replacen(
        r#""defaults": {"#,
        r#""defaults": { "message_templates": [ { "role": "system",
          "content": "You are {{agent_name}}, a support agent for {{company}}. Answer briefly." } ],"#,
        1,
    )
}

/// `body` for the templated router, with the variables.
fn templated_body(body: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(body)
        .replacen("inworld/compare-frontier-models", "inworld/agents", 1)
        .replacen(
            r#""extra_body":{"#,
            r#""extra_body":{"prompt_variables":{"agent_name":"Ava","company":"Acme \"Widgets\""},"#,
            1,
        )
        .into_bytes()
}

fn route_rewrite(engine: &Engine, body: &[u8]) -> usize {
    routed_body(engine, body).len()
}

fn routed_body(engine: &Engine, body: &[u8]) -> Vec<u8> {
    let ex = extract(Api::ChatCompletions, body).expect("bench body extracts");
    let router = ex.router_name("inworld/").expect("a router model");
    let ctx = ex.context(None).expect("context");
    let snapshot = engine.load();
    let decision = snapshot.route(router, &ctx).expect("routes");
    let mut plan = decision.plan(&ctx, Duration::ZERO);
    let attempt = plan.next().expect("an attempt");
    // As the layer does: the parameters and message templates prepared once per loaded router.
    let settings = AttemptSettings::of(
        snapshot.router(router),
        &decision,
        attempt.variant_index(),
        ex.api(),
    );
    rewrite(
        &ex,
        &settings.rewrite(attempt.model_id(), Precedence::Router),
    )
}

fn serde_roundtrip(body: &[u8]) -> usize {
    let v: serde_json::Value = serde_json::from_slice(body).expect("bench body parses");
    serde_json::to_vec(&v).expect("serializes").len()
}

/// The plain copy-and-scan: copy, then one byte-at-a-time pass tracking strings and escapes,
/// counting structural bytes outside strings.
fn copy_scan(body: &[u8]) -> usize {
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(body);
    let (mut in_string, mut escaped, mut structural) = (false, false, 0usize);
    for &b in &out {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b'{' | b'}' | b'[' | b']' | b':' | b',') {
            structural += 1;
        }
    }
    black_box(&out);
    structural
}

/// The floor: copy, then count `"` bytes on 255-byte chunks with a `u8` accumulator, which
/// the compiler vectorizes.
fn copy_count_simd(body: &[u8]) -> usize {
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(body);
    let quotes = out
        .chunks(255)
        .map(|c| usize::from(c.iter().fold(0u8, |n, &b| n + u8::from(b == b'"'))))
        .sum();
    black_box(&out);
    quotes
}

fn bench(c: &mut Criterion) {
    let engine = Engine::new();
    engine
        .upsert(RouterConfig::from_json(SEED).expect("seed parses"))
        .expect("seed is valid");
    engine
        .upsert(RouterConfig::from_json(&templated_router()).expect("templated router parses"))
        .expect("templated router is valid");
    let mut group = c.benchmark_group("http");
    for size in [4096usize, 1 << 20] {
        let body = chat_body(size);
        let turns = body.windows(8).filter(|w| w == b"\"role\":\"").count();
        eprintln!("http: body of {} bytes, {turns} messages", body.len());
    }
    for (label, size) in [("4k", 4096usize), ("1m", 1 << 20)] {
        let body = chat_body(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("route+rewrite", label),
            &body,
            |b, body| {
                b.iter(|| route_rewrite(&engine, black_box(body)));
            },
        );
        let templated = templated_body(&body);
        let sent = String::from_utf8(routed_body(&engine, &templated)).expect("UTF-8");
        assert!(
            sent.contains(
                r#""You are Ava, a support agent for Acme \"Widgets\". Answer briefly.""#
            ),
            "the templates are written: {}",
            &sent[..300]
        );
        group.bench_with_input(
            BenchmarkId::new("route+rewrite+templates", label),
            &templated,
            |b, body| {
                b.iter(|| route_rewrite(&engine, black_box(body)));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("serde_json-roundtrip", label),
            &body,
            |b, body| b.iter(|| serde_roundtrip(black_box(body))),
        );
        group.bench_with_input(BenchmarkId::new("copy+scan", label), &body, |b, body| {
            b.iter(|| copy_scan(black_box(body)));
        });
        group.bench_with_input(
            BenchmarkId::new("copy+count-simd", label),
            &body,
            |b, body| b.iter(|| copy_count_simd(black_box(body))),
        );
        group.bench_with_input(BenchmarkId::new("extract", label), &body, |b, body| {
            b.iter(|| {
                extract(Api::ChatCompletions, black_box(body))
                    .map(|ex| ex.model().map_or(0, str::len))
                    .unwrap_or(0)
            });
        });
        group.bench_with_input(
            BenchmarkId::new("serde_json-validate", label),
            &body,
            |b, body| {
                b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(body)).is_ok())
            },
        );
    }
    group.finish();
}

/// 200 chat chunks, the usage chunk and `[DONE]`, one frame each, off one shared buffer.
fn chat_frames() -> Vec<bytes::Bytes> {
    let mut text = String::new();
    let mut ends = Vec::new();
    for i in 0..200 {
        text.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_fc9f1d7035\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" word{i}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
        ends.push(text.len());
    }
    text.push_str("data: {\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":200,\"total_tokens\":219,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n");
    ends.push(text.len());
    text.push_str("data: [DONE]\n\n");
    ends.push(text.len());
    let all = bytes::Bytes::from(text);
    let mut from = 0;
    ends.into_iter()
        .map(|e| {
            let f = all.slice(from..e);
            from = e;
            f
        })
        .collect()
}

fn stream_bench(c: &mut Criterion) {
    use abroute_http::stream_tap::{StreamEnd, StreamTap};
    use abroute_http::stream_usage::UsageReader;
    use std::sync::Arc;
    let frames = chat_frames();
    let bytes: usize = frames.iter().map(|f| f.len()).sum();
    let record: abroute::DecisionRecord = serde_json::from_str(
        r#"{"router":"r","route_id":"d","assigned_variant_id":"a","assigned_model_id":"m",
          "served_variant_id":"a","served_model_id":"m","version":1,
          "assignment":{"kind":"random","draw":"0000000000000001"},"attempts":[],"fail_open":false}"#,
    )
    .expect("a valid record");
    let observer = Arc::new(|end: StreamEnd| {
        black_box(end.usage);
    });
    let clock: Arc<dyn abroute_http::Clock> = Arc::new(|| Duration::from_millis(1));
    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Elements(frames.len() as u64));
    eprintln!("stream: {} frames, {bytes} bytes", frames.len());
    group.bench_function("pass-through/200", |b| {
        b.iter_batched(
            || frames.clone(),
            |frames| {
                let mut n = 0;
                for f in frames {
                    n += black_box(http_body::Frame::data(f))
                        .data_ref()
                        .map_or(0, |d| d.len());
                }
                n
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.bench_function("metadata-scanner/200", |b| {
        b.iter(|| {
            let mut sc = abroute_http::SseScanner::new(Api::ChatCompletions);
            let mut n = 0;
            for f in &frames {
                n += sc.scan(black_box(f)).emit;
            }
            n
        });
    });
    group.bench_function("usage-reader/200", |b| {
        b.iter(|| {
            let mut r = UsageReader::new(Api::ChatCompletions);
            for f in &frames {
                r.read(black_box(f));
            }
            r.usage()
        });
    });
    group.bench_function("tap/200", |b| {
        b.iter_batched(
            || {
                let tap = StreamTap::new(
                    Api::ChatCompletions,
                    true,
                    record.clone(),
                    Duration::ZERO,
                    clock.clone(),
                    observer.clone(),
                );
                (tap, frames.clone())
            },
            |(mut tap, frames)| {
                let mut n = 0;
                for f in frames {
                    tap.push(f);
                    while let Some(out) = tap.pop() {
                        n += black_box(out).data_ref().map_or(0, |d| d.len());
                    }
                }
                tap.end();
                n
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench, stream_bench);
criterion_main!(benches);
