//! The streamed body allocates nothing per frame: a counting allocator watches the layer's body
//! while it passes thousands of token frames, cut at every offset of the SSE lines (so that
//! frames end inside `data: ` and the scanner holds and releases bytes).
// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use abroute_http::{AbrouteLayer, BoxError, Full, LayerOptions};
use bytes::{Bytes, BytesMut};
use common::*;
use http::{Request, Response};
use http_body::Body;
use tower::{Layer, Service};

/// Counts the allocations of the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Answers every call with the same prepared stream (taken once).
#[derive(Clone)]
struct Upstream(std::sync::Arc<std::sync::Mutex<Option<VecDeque<Bytes>>>>);

impl Service<Request<Bytes>> for Upstream {
    type Response = Response<Frames>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Frames>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<Bytes>) -> Self::Future {
        let frames = self.0.lock().unwrap().take().unwrap();
        Box::pin(async move {
            let mut r = Response::new(Frames(frames));
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            Ok(r)
        })
    }
}

/// `TOKENS` chat chunks, then `data: [DONE]`.
fn chat_stream() -> String {
    const TOKENS: usize = 4000;
    let mut stream = String::new();
    for i in 0..TOKENS {
        stream.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-a\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" tok{i}\"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    stream.push_str("data: [DONE]\n\n");
    stream
}

/// An odd stride: frames end at every offset of the lines, `data: ` included.
const STRIDE: usize = 37;

/// Streams `frames` through the layer; returns the allocations made while the frames between
/// the 100th and the 100th from the end were polled, and the output.
fn run(stream: &str, frames: VecDeque<Bytes>) -> (u64, Vec<u8>) {
    let n = frames.len();
    let engine = engine_with(&[FAILOVER]);
    let mut svc = AbrouteLayer::new(engine)
        .layer_options(LayerOptions::new().merge_metadata(true))
        .clock(|| Duration::from_millis(1))
        .layer(Upstream(std::sync::Arc::new(std::sync::Mutex::new(Some(
            frames,
        )))));
    let body = r#"{"model":"inworld/fo","stream":true,"user":"u-1","messages":[]}"#;
    let req: Request<Full> = post("/v1/chat/completions", body);
    let response = block_on(svc.call(req)).unwrap_or_else(|e| match e {});
    let mut body = pin!(response.into_body());
    let mut out: Vec<u8> = Vec::with_capacity(stream.len() * 2);
    let (mut polls, mut before, mut after) = (0usize, 0, 0);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    loop {
        if polls == 100 {
            before = allocations();
        }
        if polls == n - 100 {
            after = allocations();
        }
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(f)) => out.extend_from_slice(&f.unwrap().into_data().unwrap()),
            Poll::Ready(None) => break,
            Poll::Pending => panic!("the test body never waits"),
        }
        polls += 1;
    }
    assert!(
        polls > n,
        "{polls} polls for {n} frames: held bytes went out as frames of their own"
    );
    let text = std::str::from_utf8(&out).unwrap();
    let at = stream.len() - "data: [DONE]\n\n".len();
    assert_eq!(&text[..at], &stream[..at]);
    assert!(text[at..].starts_with("data: {\"id\":\"chatcmpl-a\""));
    assert!(text.ends_with("}}\n\ndata: [DONE]\n\n"));
    (after - before, out)
}

#[test]
fn no_allocation_per_frame() {
    let stream = chat_stream();
    // As hyper hands them over: frames split off one shared buffer.
    let mut buf = BytesMut::from(stream.as_bytes());
    let mut frames = VecDeque::new();
    while !buf.is_empty() {
        frames.push_back(buf.split_to(STRIDE.min(buf.len())).freeze());
    }
    let (allocations, shared) = run(&stream, frames);
    assert_eq!(allocations, 0, "allocations in the steady state");

    // Frames that each own a `Vec`: cutting one where it ends inside `data: ` (holding the
    // start of a line that might be `data: [DONE]`) promotes it to a shared `Bytes`, one
    // allocation, and nothing else allocates.
    let frames: VecDeque<Bytes> = stream
        .as_bytes()
        .chunks(STRIDE)
        .map(|c| Bytes::from(c.to_vec()))
        .collect();
    let cut = (1..frames.len())
        .map(|k| k * STRIDE)
        .filter(|&end| {
            let line = stream[..end].rfind('\n').map_or(0, |i| i + 1);
            let start = end - STRIDE;
            // The line began inside this frame, and what the frame has of it may be [DONE].
            line > start && line < end && "data: [DONE]".starts_with(&stream[line..end])
        })
        .count() as u64;
    let (allocations, owned) = run(&stream, frames);
    eprintln!("owned frames: {allocations} allocations, {cut} frames cut");
    assert!(owned == shared, "the same bytes either way");
    assert!(cut > 100, "{cut}");
    // The counted window skips 100 frames at each end.
    assert!(
        allocations <= cut && allocations + 100 >= cut,
        "{allocations} allocations, {cut} frames cut"
    );
}

/// With a stream observer, the stream tap (whole events only, the usage read as it passes)
/// allocates nothing while the body is polled, end included: over the whole stream, cut at
/// every offset, the counter does not move, and the usage chunk the layer asked for is
/// removed.
#[test]
fn the_stream_tap_allocates_nothing_per_frame() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let mut stream = chat_stream();
    let usage = "data: {\"id\":\"chatcmpl-a\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":4000}}\n\n";
    let done = stream.len() - "data: [DONE]\n\n".len();
    let client_sees = stream.clone();
    stream.insert_str(done, usage);
    let mut buf = BytesMut::from(stream.as_bytes());
    let mut frames = VecDeque::new();
    while !buf.is_empty() {
        frames.push_back(buf.split_to(STRIDE.min(buf.len())).freeze());
    }
    let output_tokens = std::sync::Arc::new(AtomicU64::new(0));
    let seen = output_tokens.clone();
    let observer = std::sync::Arc::new(move |end: abroute_http::stream_tap::StreamEnd| {
        seen.store(end.usage.output_tokens.unwrap_or(0), Ordering::Relaxed);
    });
    let engine = engine_with(&[FAILOVER]);
    let mut svc = AbrouteLayer::new(engine)
        .layer_options(LayerOptions::new().stream_observer(observer))
        .clock(|| Duration::from_millis(1))
        .layer(Upstream(std::sync::Arc::new(std::sync::Mutex::new(Some(
            frames,
        )))));
    let body = r#"{"model":"inworld/fo","stream":true,"user":"u-1","messages":[]}"#;
    let req: Request<Full> = post("/v1/chat/completions", body);
    let response = block_on(svc.call(req)).unwrap_or_else(|e| match e {});
    let mut body = pin!(response.into_body());
    let mut out: Vec<u8> = Vec::with_capacity(stream.len() * 2);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let before = allocations();
    let mut polls = 0usize;
    // Bounded: at most one poll a byte.
    while polls <= stream.len() {
        polls += 1;
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(f)) => {
                if let Some(d) = f.unwrap().data_ref() {
                    out.extend_from_slice(d);
                }
            }
            Poll::Ready(None) => break,
            Poll::Pending => panic!("the test body never waits"),
        }
    }
    let after = allocations();
    assert_eq!(after - before, 0, "allocations while the body was polled");
    assert_eq!(std::str::from_utf8(&out).unwrap(), client_sees);
    assert_eq!(output_tokens.load(Ordering::Relaxed), 4000);
}
