//! Streamed responses through the layer: Inworld's `metadata` as one more server-sent event,
//! after failover too, whatever the upstream's framing; everything else untouched.
// Helpers outside `#[test]` functions unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use abroute::Engine;
use abroute_http::{AbrouteLayer, BoxError, Full, LayerOptions, UpstreamAttempt};
use bytes::Bytes;
use common::Rng;
use common::*;
use http::{Request, Response, StatusCode};
use http_body::Body;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use serde_json::Value;
use tower::{Layer, Service};

/// What the upstream answers for one attempt (by attempt number; the last for any later).
#[derive(Clone)]
enum Answer {
    /// This status and an OpenAI-style error body.
    Status(u16),
    /// 200 with this content type and these frames.
    Stream(&'static str, Vec<Bytes>),
}

#[derive(Clone)]
struct StreamUpstream {
    answers: Arc<Vec<Answer>>,
    models: Arc<Mutex<Vec<String>>>,
}

impl StreamUpstream {
    fn new(answers: Vec<Answer>) -> StreamUpstream {
        StreamUpstream {
            answers: Arc::new(answers),
            models: Arc::default(),
        }
    }
}

impl Service<Request<Bytes>> for StreamUpstream {
    type Response = Response<Frames>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Frames>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let attempt = req.extensions().get::<UpstreamAttempt>().cloned().unwrap();
        self.models.lock().unwrap().push(attempt.model_id.clone());
        let answer = self.answers[attempt.attempt.min(self.answers.len() - 1)].clone();
        Box::pin(async move {
            let (status, ctype, frames) = match answer {
                Answer::Status(s) => (
                    s,
                    "application/json",
                    vec![Bytes::from_static(br#"{"error":{"message":"no"}}"#)],
                ),
                Answer::Stream(ctype, frames) => (200, ctype, frames),
            };
            let len: usize = frames.iter().map(Bytes::len).sum();
            let mut r = Response::new(Frames(frames.into()));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r.headers_mut()
                .insert("content-type", ctype.parse().unwrap());
            // As a proxied upstream might send it: the layer must not keep it.
            r.headers_mut().insert("content-length", len.into());
            Ok(r)
        })
    }
}

/// Two variants of one model each, failing over across variants.
const TWO: &str = r#"{ "name": "two", "defaultRoute": { "route_id": "default",
  "failover": { "across_variants": true }, "variants": [
  { "variant": { "variant_id": "a", "model_id": "p/one" }, "weight": 50 },
  { "variant": { "variant_id": "b", "model_id": "p/two" }, "weight": 50 } ] } }"#;

const STREAM_REQ: &str = r#"{"model":"inworld/two","stream":true,"user":"u-1","messages":[{"role":"user","content":"hi"}]}"#;

fn chunk(content: &str) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-7\",\"object\":\"chat.completion.chunk\",\"created\":1700000001,\"model\":\"two-model\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n"
    )
}

type Out = Response<abroute_http::AbrouteBody<Frames>>;

/// One engine for every call: routers compile once (sticky tables are not small).
fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    Arc::clone(ENGINE.get_or_init(|| engine_with(&[TWO])))
}

fn call(upstream: StreamUpstream, options: LayerOptions, path: &str, body: &str) -> Out {
    let mut svc = AbrouteLayer::new(engine())
        .layer_options(options)
        .clock(|| Duration::from_millis(1234))
        .layer(upstream);
    let req: Request<Full> = post(path, body);
    block_on(svc.call(req)).unwrap_or_else(|e| match e {})
}

/// The data of the stream's events, in order (comments and other fields dropped).
fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| {
            let data: Vec<&str> = e
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

#[test]
fn a_streamed_chat_ends_with_the_metadata_chunk_after_failover() {
    let stream = [chunk("Hel"), chunk("lo"), "data: [DONE]\n\n".to_owned()].concat();
    let frames = vec![
        Bytes::from(stream[..20].to_owned()),
        Bytes::from(stream[20..stream.len() - 10].to_owned()),
        Bytes::from(stream[stream.len() - 10..].to_owned()),
    ];
    let up = StreamUpstream::new(vec![
        Answer::Status(429),
        Answer::Stream("text/event-stream", frames),
    ]);
    let r = call(
        up.clone(),
        LayerOptions::new().merge_metadata(true),
        "/v1/chat/completions",
        STREAM_REQ,
    );
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("content-length").is_none(),
        "the length changed"
    );
    let served = header(&r, "x-abroute-variant");
    let assigned = header(&r, "x-abroute-assigned-variant");
    assert_ne!(served, assigned, "failed over to the other variant");
    let body = body_bytes(r.into_body());
    let text = std::str::from_utf8(&body).unwrap();
    assert!(text.starts_with(&stream[..stream.len() - 14]), "{text}");
    assert!(text.ends_with("}\n\ndata: [DONE]\n\n"), "{text}");
    let events = events(text);
    assert_eq!(events.len(), 4, "{text}");
    assert_eq!(events[3], "[DONE]");
    let chunk: Value = serde_json::from_str(&events[2]).unwrap();
    assert_eq!(chunk["id"], "chatcmpl-7");
    assert_eq!(chunk["object"], "chat.completion.chunk");
    assert_eq!(chunk["created"], 1_700_000_001);
    assert_eq!(chunk["model"], "two-model");
    assert_eq!(chunk["choices"], serde_json::json!([]));
    let meta = &chunk["metadata"];
    let models = up.models.lock().unwrap().clone();
    assert_eq!(meta["attempts"][0]["model"], models[0].as_str());
    assert_eq!(meta["attempts"][0]["success"], false);
    assert_eq!(meta["attempts"][0]["class"], "rate_limited");
    assert_eq!(meta["attempts"][1]["model"], models[1].as_str());
    assert_eq!(meta["attempts"][1]["success"], true);
    assert!(meta["attempts"][1]["time_to_first_token_ms"].is_u64());
    assert_eq!(meta["served_variant_id"], served.as_str());
    assert_eq!(meta["assigned_variant_id"], assigned.as_str());
    assert_eq!(meta["served_model_id"], models[1].as_str());
    assert_eq!(meta["router"], "two");
    assert_eq!(meta["route_id"], "default");
    // The clock stood still: the request took no time.
    assert_eq!(meta["total_duration_ms"], 0);
}

#[test]
fn messages_and_responses_streams_get_the_abroute_metadata_event() {
    let messages = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n\
        event: message_delta\ndata: {\"type\":\"message_delta\"}\n\n";
    let responses = "event: response.created\ndata: {\"type\":\"response.created\"}\n\n";
    for (path, body, before, last) in [
        (
            "/v1/messages",
            r#"{"model":"inworld/two","stream":true,"max_tokens":5,"messages":[]}"#,
            messages,
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ),
        (
            "/v1/responses",
            r#"{"model":"inworld/two","stream":true,"input":"hi"}"#,
            responses,
            "event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n",
        ),
    ] {
        let frames = vec![Bytes::from(before), Bytes::from(last)];
        let up = StreamUpstream::new(vec![Answer::Stream("text/event-stream", frames)]);
        let r = call(up, LayerOptions::new().merge_metadata(true), path, body);
        let out = body_bytes(r.into_body());
        let text = std::str::from_utf8(&out).unwrap();
        let event = text
            .strip_prefix(before)
            .and_then(|t| t.strip_suffix(last))
            .unwrap_or_else(|| panic!("{text}"));
        let data = event
            .strip_prefix("event: abroute.metadata\ndata: ")
            .and_then(|d| d.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("{event}"));
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["type"], "abroute.metadata", "{path}");
        assert_eq!(v["metadata"]["attempts"][0]["success"], true, "{path}");
        assert_eq!(v["metadata"]["router"], "two", "{path}");
    }
}

#[test]
fn other_responses_pass_through_untouched() {
    let stream = [chunk("x"), "data: [DONE]\n\n".to_owned()].concat();
    let cases = [
        // Not an event stream.
        (
            LayerOptions::new().merge_metadata(true),
            Answer::Stream("text/plain", vec![Bytes::from(stream.clone())]),
            200,
        ),
        // Merging is off.
        (
            LayerOptions::new(),
            Answer::Stream("text/event-stream", vec![Bytes::from(stream.clone())]),
            200,
        ),
        // An error status, passed on after every attempt failed.
        (
            LayerOptions::new().merge_metadata(true),
            Answer::Status(503),
            503,
        ),
    ];
    for (options, answer, status) in cases {
        let expected = match &answer {
            Answer::Stream(_, f) => f[0].clone(),
            Answer::Status(_) => Bytes::from_static(br#"{"error":{"message":"no"}}"#),
        };
        let up = StreamUpstream::new(vec![answer]);
        let r = call(up, options, "/v1/chat/completions", STREAM_REQ);
        assert_eq!(r.status(), status);
        assert_eq!(
            header(&r, "content-length"),
            expected.len().to_string(),
            "untouched headers"
        );
        assert!(!header(&r, "x-abroute-router").is_empty());
        assert_eq!(body_bytes(r.into_body()), expected);
    }
}

// Property: any framing of any stream gives the bytes of one frame, which are the input with
// one metadata chunk inserted just before `data: [DONE]` (at the end without it).

/// Writes a line and its end; a blank line after a `\r` is never a lone `\n` (that would
/// make one `\r\n`).
fn line(out: &mut String, text: &str, rng: &mut Rng) {
    out.push_str(text);
    let eol = rng.pick(&["\n", "\n", "\r\n", "\r"]);
    if text.is_empty() && eol == "\n" && out.ends_with('\r') {
        out.push_str("\r\n");
    } else {
        out.push_str(eol);
    }
}

/// A random chat stream and where the metadata chunk goes.
fn random_stream(rng: &mut Rng) -> (String, usize) {
    let mut s = String::new();
    if rng.below(4) == 0 {
        line(&mut s, ": opening comment", rng);
        line(&mut s, "", rng);
    }
    let contents = [
        "plain",
        "data: [DONE]",
        "[DONE]",
        "\\ndata: [DONE]\\r\\n",
        "é😀",
        "event: message_stop",
        "",
    ];
    for _ in 0..rng.below(8) {
        if rng.below(5) == 0 {
            line(&mut s, rng.pick(&[":", ": ping", ":data: [DONE]"]), rng);
        }
        if rng.below(6) == 0 {
            line(
                &mut s,
                rng.pick(&["id: 1", "retry: 10", "event: chunk"]),
                rng,
            );
        }
        let space = rng.pick(&[" ", " ", ""]);
        let content = rng.pick(&contents);
        line(
            &mut s,
            &format!(
                "data:{space}{{\"id\":\"chatcmpl-p\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}}}}]}}"
            ),
            rng,
        );
        if rng.below(8) == 0 {
            // A later data line of the same event: never the terminal.
            line(&mut s, rng.pick(&["data: [DONE]", "data:[DONE]"]), rng);
        }
        line(&mut s, "", rng);
    }
    if rng.below(5) == 0 {
        // No [DONE]: the chunk goes at the end.
        let at = s.len();
        return (s, at);
    }
    if rng.below(4) == 0 {
        line(&mut s, ": before done", rng);
    }
    let at = s.len();
    line(&mut s, rng.pick(&["data: [DONE]", "data:[DONE]"]), rng);
    line(&mut s, "", rng);
    if rng.below(4) == 0 {
        line(&mut s, ": after done", rng);
        line(&mut s, "", rng);
    }
    (s, at)
}

fn through_layer(frames: Vec<Bytes>) -> Bytes {
    let up = StreamUpstream::new(vec![Answer::Stream("text/event-stream", frames)]);
    let r = call(
        up,
        LayerOptions::new().merge_metadata(true),
        "/v1/chat/completions",
        STREAM_REQ,
    );
    assert_eq!(r.status(), 200);
    body_bytes(r.into_body())
}

fn fixed(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x5e_5eed),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(fixed(1000))]

    #[test]
    fn any_framing_gives_the_input_with_one_chunk_before_done(
        seed in any::<u64>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut rng = Rng(seed | 1);
        let (input, at) = random_stream(&mut rng);
        let bytes = input.as_bytes();
        let whole = through_layer(vec![Bytes::copy_from_slice(bytes)]);

        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut frames = Vec::new();
        let mut from = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            frames.push(Bytes::copy_from_slice(&bytes[from..p]));
            from = p;
        }
        let framed = through_layer(frames);
        prop_assert_eq!(&framed, &whole, "{:?}", input);

        prop_assert!(whole.len() > bytes.len());
        let n = whole.len() - bytes.len();
        prop_assert_eq!(&whole[..at], &bytes[..at]);
        prop_assert_eq!(&whole[at + n..], &bytes[at..]);
        let event = std::str::from_utf8(&whole[at..at + n]).unwrap();
        let data = event.strip_prefix("data: ").and_then(|d| d.strip_suffix("}\n\n"));
        prop_assert!(data.is_some(), "{:?}", event);
        let chunk: Value = serde_json::from_str(&format!("{}}}", data.unwrap())).unwrap();
        prop_assert_eq!(&chunk["choices"], &serde_json::json!([]));
        prop_assert_eq!(&chunk["metadata"]["router"], "two");
        prop_assert_eq!(&chunk["metadata"]["attempts"][0]["success"], true);
        // The first chunk's id, unless the stream had none.
        let expected_id = if input.contains("chatcmpl-p") { "chatcmpl-p" } else { "" };
        prop_assert_eq!(&chunk["id"], expected_id);
    }
}

/// What the scanning costs, in release mode:
/// `cargo test --release -p abroute-http --test stream -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check: run in release mode"]
fn measure_the_cost_per_frame() {
    use std::time::Instant;

    use abroute_http::{Api, SseScanner};

    const TOKENS: usize = 4000;
    let mut events = Vec::with_capacity(TOKENS + 1);
    for i in 0..TOKENS {
        events.push(format!(
            "data: {{\"id\":\"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0123456789\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" tok{i}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
        ));
    }
    events.push("data: [DONE]\n\n".to_owned());
    let stream = events.concat();
    let size = stream.len() as f64 / events.len() as f64;
    fn best_of(mut f: impl FnMut() -> f64) -> f64 {
        (0..30).map(|_| f()).fold(f64::MAX, f64::min)
    }

    for (name, frames) in [
        (
            "one event a frame",
            events.iter().map(String::as_bytes).collect::<Vec<_>>(),
        ),
        ("37-byte frames", stream.as_bytes().chunks(37).collect()),
        (
            "16 KiB frames",
            stream.as_bytes().chunks(16 * 1024).collect(),
        ),
    ] {
        let ns = best_of(|| {
            let t = Instant::now();
            let mut s = SseScanner::new(Api::ChatCompletions);
            let mut sent = 0;
            for f in &frames {
                let scan = s.scan(std::hint::black_box(f));
                sent += scan.emit + scan.released.len();
            }
            std::hint::black_box(sent);
            t.elapsed().as_nanos() as f64
        });
        eprintln!(
            "scanner, {name}: {:.1} ns an event of {size:.0} bytes, {:.2} GB/s",
            ns / events.len() as f64,
            stream.len() as f64 / ns
        );
    }

    let frames: Vec<Bytes> = events.iter().map(|e| Bytes::from(e.clone())).collect();
    for merge in [false, true] {
        let ns = best_of(|| {
            let up = StreamUpstream::new(vec![Answer::Stream("text/event-stream", frames.clone())]);
            let r = call(
                up,
                LayerOptions::new().merge_metadata(merge),
                "/v1/chat/completions",
                STREAM_REQ,
            );
            let mut body = std::pin::pin!(r.into_body());
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let t = Instant::now();
            let mut n = 0;
            while let Poll::Ready(Some(f)) = body.as_mut().poll_frame(&mut cx) {
                n += f.unwrap().into_data().unwrap().len();
            }
            std::hint::black_box(n);
            t.elapsed().as_nanos() as f64
        });
        eprintln!(
            "layer body, merge_metadata({merge}): {:.1} ns a frame (one event a frame)",
            ns / events.len() as f64
        );
    }
}
