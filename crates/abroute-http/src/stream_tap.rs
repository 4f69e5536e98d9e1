//! The stream tap: what a routed event stream tells the host when it ends.
//!
//! Every routed `text/event-stream` answer (uncompressed) passes through a [`StreamTap`] when
//! the host set a [`StreamObserver`] ([`LayerOptions::stream_observer`](crate::LayerOptions::stream_observer)).
//! The tap
//!
//! - reads the stream's token usage as it passes ([`UsageReader`]), allocating nothing per
//!   frame;
//! - times the first byte the client gets (time to first token, from when the request was
//!   routed) and the whole stream;
//! - forwards whole events only: the bytes of an event not yet ended by its blank line are held
//!   (as slices of the upstream's frames, never copied) until it ends. An SSE client dispatches
//!   nothing before the blank line, so this delays nothing it could see. It makes two things
//!   possible: removing an event (the usage-only chat chunk the adapter asked for on the
//!   client's behalf, see [`include_usage`](crate::include_usage)), and ending a broken stream
//!   cleanly;
//! - when the upstream body fails after the first byte (a reset, a truncated chunk), drops the
//!   unfinished event and ends the client's stream with one error event in the API's own shape
//!   ([`error_event`]), then a clean end of the body, never a truncated one;
//! - calls the observer once with a [`StreamEnd`]: at the end, at the break, or when the client
//!   went away (the body was dropped before its end, which drops the upstream's body with it:
//!   the upstream connection closes and the tokens stop).
//!
//! An event longer than [`MAX_HELD`] frames is forwarded as it comes (the held slices go out):
//! then a break in its middle is ended with a blank line before the error event, and the client
//! sees one malformed event before it.

use std::sync::Arc;
use std::time::Duration;

use abroute::DecisionRecord;
use bytes::Bytes;
use http_body::Frame;

use crate::extract::Api;
use crate::stream_usage::{StreamUsage, UsageReader};
use crate::time::Clock;

/// The most frames of one unfinished event that are held.
pub const MAX_HELD: usize = 8;

/// Why a stream did not end as the upstream meant it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// The upstream body failed after the first byte (a reset, a broken chunked encoding).
    UpstreamReset,
    /// The upstream body stayed silent past the host's idle limit: its body failed with an
    /// [`std::io::Error`] of kind [`TimedOut`](std::io::ErrorKind::TimedOut).
    UpstreamStalled,
    /// The client went away before the end (the body was dropped).
    ClientClosed,
}

impl StreamError {
    /// The snake-case name (a metric label).
    pub fn name(self) -> &'static str {
        match self {
            StreamError::UpstreamReset => "upstream_reset",
            StreamError::UpstreamStalled => "upstream_stalled",
            StreamError::ClientClosed => "client_closed",
        }
    }

    /// The cause of an upstream body's failure: a stall when an [`std::io::Error`] of kind
    /// `TimedOut` is the error or one of its sources (how a host's idle limit says it cut the
    /// body), else a reset.
    pub fn of_upstream(error: &(dyn std::error::Error + 'static)) -> StreamError {
        let mut next = Some(error);
        while let Some(e) = next {
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            {
                return StreamError::UpstreamStalled;
            }
            next = e.source();
        }
        StreamError::UpstreamReset
    }
}

/// What a routed event stream was, given to the [`StreamObserver`] when it ends.
#[derive(Debug, Clone)]
pub struct StreamEnd {
    /// The decision that routed the request.
    pub record: DecisionRecord,
    /// The API of the stream.
    pub api: Api,
    /// The token usage found in the stream.
    pub usage: StreamUsage,
    /// From routing to the first byte sent to the client, if one was.
    pub time_to_first_token: Option<Duration>,
    /// From routing to the end of the stream.
    pub duration: Duration,
    /// When the stream ended, on the layer's clock (for reports to passive health).
    pub ended_at: Duration,
    /// Why it ended early, if it did.
    pub error: Option<StreamError>,
}

/// Told about every routed event stream when it ends (once each). Called on the task that
/// polls (or drops) the body: keep it short.
pub trait StreamObserver: Send + Sync + 'static {
    /// One stream ended.
    fn stream_ended(&self, end: StreamEnd);
}

impl<F: Fn(StreamEnd) + Send + Sync + 'static> StreamObserver for F {
    fn stream_ended(&self, end: StreamEnd) {
        self(end)
    }
}

/// The error event that ends a broken stream, per API: what OpenAI's chat completions send
/// (`data: {"error": {...}}`), Anthropic's `event: error`, and the responses API's `error`
/// event.
pub fn error_event(api: Api) -> &'static [u8] {
    match api {
        Api::ChatCompletions => {
            b"data: {\"error\":{\"message\":\"the upstream stream broke before its end\",\"type\":\"server_error\",\"param\":null,\"code\":\"stream_broken\"}}\n\n"
        }
        Api::Messages => {
            b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"the upstream stream broke before its end\"}}\n\n"
        }
        Api::Responses => {
            b"event: error\ndata: {\"type\":\"error\",\"code\":\"stream_broken\",\"message\":\"the upstream stream broke before its end\",\"param\":null}\n\n"
        }
    }
}

/// Frames out of one frame in: the held ones, and at most three runs of the new one.
const QUEUE: usize = MAX_HELD + 4;

/// The tap of one stream. See the [module documentation](crate::stream_tap).
pub struct StreamTap {
    api: Api,
    reader: UsageReader,
    /// Remove the usage-only chunk (the adapter asked for it).
    suppress: bool,
    held: [Option<Bytes>; MAX_HELD],
    n_held: usize,
    /// Bytes of the current event went out before its end.
    leaked: bool,
    queue: [Option<Frame<Bytes>>; QUEUE],
    q_head: usize,
    q_len: usize,
    record: Option<DecisionRecord>,
    start: Duration,
    clock: Arc<dyn Clock>,
    observer: Arc<dyn StreamObserver>,
    first: Option<Duration>,
    ended: bool,
}

impl std::fmt::Debug for StreamTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTap")
            .field("reader", &self.reader)
            .field("suppress", &self.suppress)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl StreamTap {
    /// A tap for a stream of `api` answering `record`, routed at `start` on `clock`; with
    /// `suppress`, the usage-only chat chunk is removed.
    pub fn new(
        api: Api,
        suppress: bool,
        record: DecisionRecord,
        start: Duration,
        clock: Arc<dyn Clock>,
        observer: Arc<dyn StreamObserver>,
    ) -> Box<StreamTap> {
        Box::new(StreamTap {
            api,
            reader: UsageReader::new(api),
            suppress: suppress && api == Api::ChatCompletions,
            held: Default::default(),
            n_held: 0,
            leaked: false,
            queue: Default::default(),
            q_head: 0,
            q_len: 0,
            record: Some(record),
            start,
            clock,
            observer,
            first: None,
            ended: false,
        })
    }

    fn put(&mut self, f: Frame<Bytes>) {
        if f.data_ref().is_some_and(Bytes::is_empty) {
            return;
        }
        if self.first.is_none() && f.is_data() {
            self.first = Some(self.clock.now().saturating_sub(self.start));
        }
        debug_assert!(self.q_len < QUEUE, "the tap's queue is full");
        if self.q_len < QUEUE {
            self.queue[(self.q_head + self.q_len) % QUEUE] = Some(f);
            self.q_len += 1;
        }
    }

    fn release_held(&mut self) {
        for i in 0..self.n_held {
            if let Some(b) = self.held[i].take() {
                self.put(Frame::data(b));
            }
        }
        self.n_held = 0;
    }

    fn drop_held(&mut self) {
        for h in &mut self.held[..self.n_held] {
            *h = None;
        }
        self.n_held = 0;
    }

    /// The next data frame from upstream.
    pub fn push(&mut self, data: Bytes) {
        if self.ended {
            return;
        }
        // Where the last event ending in this frame ends, and the events to remove (at most
        // two a frame; a third is kept): read first, then cut.
        let mut dropped = [(0usize, 0usize); 2];
        let mut n_dropped = 0usize;
        let mut last_end = 0usize;
        let suppress = self.suppress;
        let leaked = self.leaked;
        self.reader.read_events(&data, |at, end| {
            // An event whose first bytes already went out cannot be removed.
            let whole = last_end > 0 || !leaked;
            if suppress && end.usage_only && whole && n_dropped < dropped.len() {
                dropped[n_dropped] = (last_end, at);
                n_dropped += 1;
            }
            last_end = at;
        });
        let mut from = 0usize;
        for &(start, end) in &dropped[..n_dropped] {
            if start == 0 {
                self.drop_held();
            } else {
                self.release_held();
                self.put(Frame::data(data.slice(from..start)));
            }
            from = end;
        }
        if last_end > from {
            self.release_held();
            self.put(Frame::data(data.slice(from..last_end)));
            from = last_end;
        }
        if last_end > 0 {
            self.leaked = false;
        }
        if from < data.len() {
            if self.n_held == MAX_HELD {
                self.release_held();
                self.leaked = true;
            }
            if self.leaked {
                self.put(Frame::data(data.slice(from..)));
            } else {
                self.held[self.n_held] = Some(data.slice(from..));
                self.n_held += 1;
            }
        }
    }

    /// The upstream's trailers: the data is over.
    pub fn trailers(&mut self, trailers: Frame<Bytes>) {
        self.end();
        self.put(trailers);
    }

    /// The upstream body ended: what is held goes out (an unfinished last event as it came).
    pub fn end(&mut self) {
        if self.ended {
            return;
        }
        self.release_held();
        self.finish(None);
    }

    /// The upstream body failed (`cause`: [`StreamError::of_upstream`]): the unfinished event
    /// is dropped and the error event sent.
    pub fn fail(&mut self, cause: StreamError) {
        if self.ended {
            return;
        }
        self.drop_held();
        if self.leaked {
            self.put(Frame::data(Bytes::from_static(b"\n\n")));
        }
        self.put(Frame::data(Bytes::from_static(error_event(self.api))));
        self.finish(Some(cause));
    }

    fn finish(&mut self, error: Option<StreamError>) {
        self.ended = true;
        if let Some(record) = self.record.take() {
            let now = self.clock.now();
            self.observer.stream_ended(StreamEnd {
                record,
                api: self.api,
                usage: self.reader.usage(),
                time_to_first_token: self.first,
                duration: now.saturating_sub(self.start),
                ended_at: now,
                error,
            });
        }
    }

    /// The next frame to send, if one is ready.
    pub fn pop(&mut self) -> Option<Frame<Bytes>> {
        if self.q_len == 0 {
            return None;
        }
        let f = self.queue[self.q_head].take();
        self.q_head = (self.q_head + 1) % QUEUE;
        self.q_len -= 1;
        f
    }

    /// True once the upstream's body is over.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// True once everything was sent.
    pub fn drained(&self) -> bool {
        self.ended && self.q_len == 0
    }
}

impl Drop for StreamTap {
    fn drop(&mut self) {
        if !self.ended {
            self.finish(Some(StreamError::ClientClosed));
        }
    }
}

#[cfg(test)]
mod tests {
    // A failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use super::*;

    fn record() -> DecisionRecord {
        serde_json::from_str(
            r#"{"router": "r", "route_id": "default",
              "assigned_variant_id": "a", "assigned_model_id": "p/one",
              "served_variant_id": "a", "served_model_id": "p/one", "version": 7,
              "assignment": { "kind": "random", "draw": "9e3779b97f4a7c15" },
              "attempts": [], "fail_open": false }"#,
        )
        .unwrap()
    }

    type Ends = Arc<Mutex<Vec<StreamEnd>>>;

    fn tap(api: Api, suppress: bool) -> (Box<StreamTap>, Ends) {
        let ends: Ends = Arc::default();
        let sink = ends.clone();
        let observer = Arc::new(move |e: StreamEnd| sink.lock().unwrap().push(e));
        let t = StreamTap::new(
            api,
            suppress,
            record(),
            Duration::ZERO,
            Arc::new(|| Duration::from_millis(5)),
            observer,
        );
        (t, ends)
    }

    fn drain(t: &mut StreamTap, out: &mut Vec<u8>) {
        while let Some(f) = t.pop() {
            out.extend_from_slice(f.data_ref().unwrap());
        }
    }

    /// Runs frames through a tap; `fail` breaks the stream after them.
    fn run(api: Api, suppress: bool, frames: &[&[u8]], fail: bool) -> (Vec<u8>, StreamEnd) {
        let (mut t, ends) = tap(api, suppress);
        let mut out = Vec::new();
        for f in frames {
            t.push(Bytes::copy_from_slice(f));
            drain(&mut t, &mut out);
        }
        if fail {
            t.fail(StreamError::UpstreamReset)
        } else {
            t.end()
        }
        drain(&mut t, &mut out);
        drop(t);
        let mut ends = ends.lock().unwrap();
        assert_eq!(ends.len(), 1, "the observer is told once");
        (out, ends.pop().unwrap())
    }

    const CHAT: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n\
data: [DONE]\n\n";

    fn without_usage_chunk() -> String {
        let a = CHAT.find("\n\n").unwrap() + 2;
        let b = CHAT[a..].find("\n\n").unwrap() + 2 + a;
        format!("{}{}", &CHAT[..a], &CHAT[b..])
    }

    #[test]
    fn the_injected_usage_chunk_is_removed_at_every_split() {
        let want = without_usage_chunk();
        let b = CHAT.as_bytes();
        for i in 0..=b.len() {
            for j in (i..=b.len()).step_by(5) {
                let (out, end) = run(
                    Api::ChatCompletions,
                    true,
                    &[&b[..i], &b[i..j], &b[j..]],
                    false,
                );
                assert_eq!(String::from_utf8(out).unwrap(), want, "at {i} {j}");
                assert_eq!(end.usage.input_tokens, Some(3));
                assert_eq!(end.usage.output_tokens, Some(2));
                assert_eq!(end.error, None);
            }
        }
    }

    #[test]
    fn an_asked_usage_chunk_stays() {
        let b = CHAT.as_bytes();
        for i in 0..=b.len() {
            let (out, end) = run(Api::ChatCompletions, false, &[&b[..i], &b[i..]], false);
            assert_eq!(out, b);
            assert_eq!(end.usage.output_tokens, Some(2));
        }
    }

    #[test]
    fn a_break_drops_the_unfinished_event_and_ends_with_the_error_event() {
        for api in [Api::ChatCompletions, Api::Messages, Api::Responses] {
            let whole = "data: {\"a\":1}\n\n";
            let cut = "data: {\"b\":";
            let (out, end) = run(api, false, &[whole.as_bytes(), cut.as_bytes()], true);
            let mut want = whole.as_bytes().to_vec();
            want.extend_from_slice(error_event(api));
            assert_eq!(out, want, "{api:?}");
            assert_eq!(end.error, Some(StreamError::UpstreamReset));
            // The error event is a well-formed event: its data line is JSON.
            let text = std::str::from_utf8(error_event(api)).unwrap();
            let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            assert!(v.get("error").is_some() || v["type"] == "error");
        }
    }

    #[test]
    fn a_long_event_goes_out_as_it_comes_and_a_break_in_it_ends_its_line() {
        let frames: Vec<&[u8]> = (0..MAX_HELD + 3).map(|_| b"xxxx".as_slice()).collect();
        let (mut t, _ends) = tap(Api::ChatCompletions, false);
        let mut out = Vec::new();
        for f in &frames {
            t.push(Bytes::copy_from_slice(f));
            drain(&mut t, &mut out);
        }
        assert!(!out.is_empty(), "beyond MAX_HELD frames, bytes flow");
        t.fail(StreamError::UpstreamReset);
        drain(&mut t, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(&format!(
            "\n\n{}",
            std::str::from_utf8(error_event(Api::ChatCompletions)).unwrap()
        )));
        assert_eq!(text.matches('x').count(), 4 * (MAX_HELD + 3));
    }

    #[test]
    fn a_dropped_body_tells_the_observer_the_client_went_away() {
        let (mut t, ends) = tap(Api::Messages, false);
        t.push(Bytes::from_static(
            b"event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":4}}}\n\n",
        ));
        let mut out = Vec::new();
        drain(&mut t, &mut out);
        drop(t);
        let ends = ends.lock().unwrap();
        assert_eq!(ends.len(), 1);
        assert_eq!(ends[0].error, Some(StreamError::ClientClosed));
        assert_eq!(ends[0].usage.input_tokens, Some(4));
        assert_eq!(ends[0].time_to_first_token, Some(Duration::from_millis(5)));
    }

    #[test]
    fn an_upstream_failure_is_a_stall_only_for_a_timed_out_io_error() {
        #[derive(Debug)]
        struct Wrapped(std::io::Error);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the body failed")
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "silent");
        let reset = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            StreamError::of_upstream(&timed_out()),
            StreamError::UpstreamStalled
        );
        assert_eq!(
            StreamError::of_upstream(&Wrapped(timed_out())),
            StreamError::UpstreamStalled
        );
        assert_eq!(
            StreamError::of_upstream(&Wrapped(reset())),
            StreamError::UpstreamReset
        );
        assert_eq!(StreamError::UpstreamStalled.name(), "upstream_stalled");
    }
}
