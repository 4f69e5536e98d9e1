//! Streaming responses: Inworld's `metadata` as one more server-sent event.
//!
//! With [`LayerOptions::merge_metadata`](crate::LayerOptions::merge_metadata), a routed
//! response whose `content-type` is `text/event-stream` (and whose `content-encoding` is absent
//! or `identity`) gets one event more than the upstream sent, carrying the same `metadata`
//! object as a non-streaming answer ([`metadata_value`]), with `total_duration_ms` measured when
//! the event is written. Where it goes, by API:
//!
//! | API | the event goes just before | the event |
//! |---|---|---|
//! | chat completions | `data: [DONE]` | `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":[],"metadata":{…}}` |
//! | messages | `event: message_stop` | `event: abroute.metadata` / `data: {"type":"abroute.metadata","metadata":{…}}` |
//! | responses | `event: response.completed` (or `.failed`, `.incomplete`) | the same `abroute.metadata` event |
//!
//! The chat chunk copies `id`, `created` and `model` from the stream's first chunk with a
//! non-empty `id` (OpenAI gives every chunk of a completion the same three; Azure opens with a
//! prompt-filter chunk of empty ones); its `choices` is empty, like OpenAI's own usage chunk, so
//! SDKs accept it. When the stream has no terminal line, the event is added at
//! its end, if it ended between two events.
//!
//! [`SseScanner`] finds the place without delaying anything: upstream bytes go out as they
//! arrive, except the start of a line that could still become the terminal line (at most the
//! 26 bytes of `event: response.incomplete`, and only until the frame that completes or
//! contradicts it). Such a line is the first of an event, so nothing the client could have
//! parsed waits. The held bytes are never copied: they are a prefix of a known literal, and go
//! out as a static slice. The scanner follows the SSE grammar byte by byte: lines end with
//! `\n`, `\r\n` or `\r` (a `\r\n` split across frames is one line end), the space after the
//! colon is optional, comment lines (`:`) are skipped, and the terminal must be the first field
//! line of its event, so `[DONE]` inside a JSON string or a later line of an event is not one.
//! It allocates nothing: the first chunk's head is copied into a fixed buffer. The layer's body
//! cuts a frame only where it holds bytes or inserts the event (`Bytes::truncate`, which
//! allocates only to promote a `Bytes` owning a whole `Vec`; hyper's frames are shared already).

use std::sync::Arc;
use std::time::Duration;

use abroute::DecisionRecord;
use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http_body::Frame;
use serde_json::{Map, Value};

use crate::error::BoxError;
use crate::extract::Api;
use crate::json::{Kind, Scanner, Sink, SinkWriter, Span, write_str};
use crate::response::metadata_value;
use crate::time::Clock;

/// The event name (and `type`) of the metadata event in messages and responses streams.
pub const METADATA_EVENT: &str = "abroute.metadata";

/// A line that ends a stream, spelled with and without the optional space after the colon.
#[derive(Debug)]
struct Terminal {
    spaced: &'static [u8],
    tight: &'static [u8],
}

const CHAT_END: &[Terminal] = &[Terminal {
    spaced: b"data: [DONE]",
    tight: b"data:[DONE]",
}];

const MESSAGES_END: &[Terminal] = &[Terminal {
    spaced: b"event: message_stop",
    tight: b"event:message_stop",
}];

const RESPONSES_END: &[Terminal] = &[
    Terminal {
        spaced: b"event: response.completed",
        tight: b"event:response.completed",
    },
    Terminal {
        spaced: b"event: response.failed",
        tight: b"event:response.failed",
    },
    Terminal {
        spaced: b"event: response.incomplete",
        tight: b"event:response.incomplete",
    },
];

/// How much of a chat chunk's line is kept to read its `id`, `created` and `model`.
const HEAD_CAPTURE: usize = 1024;
/// How many chunks are read for a non-empty `id` before taking what there is.
const HEAD_TRIES: u8 = 4;

/// Where the scanner is in the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line.
    Start,
    /// In the first bytes of a field line, matching them against the terminals (and `data:`).
    Head,
    /// In the rest of a line that matters no more.
    Skip,
    /// In a chat chunk's `data:` value, copying it.
    Capture,
}

/// True for a `created` worth copying: a whole number of seconds that fits a `u64` (what
/// OpenAI sends). `1e400` or `-1` is valid JSON, but typed clients refuse it; the chunk then
/// says `0`.
fn is_timestamp(raw: &[u8]) -> bool {
    !raw.is_empty()
        && raw.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(raw).is_ok_and(|s| s.parse::<u64>().is_ok())
}

/// The first bytes of a chat chunk, and where its `id`, `created` and `model` are in them.
struct ChunkHead {
    buf: [u8; HEAD_CAPTURE],
    len: usize,
    tries: u8,
    settled: bool,
    id: Option<Span>,
    created: Option<Span>,
    model: Option<Span>,
}

impl ChunkHead {
    fn begin(&mut self) {
        self.len = 0;
        self.tries += 1;
        self.id = None;
        self.created = None;
        self.model = None;
    }

    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(HEAD_CAPTURE - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    /// Reads the members that were copied whole (the line may have been cut at the limit).
    fn end(&mut self) {
        let buf = &self.buf[..self.len];
        let (mut id, mut created, mut model) = (None, None, None);
        let mut sc = Scanner::new(buf);
        let _ = sc.object(|sc, key| {
            let v = sc.value()?;
            // A value that reaches the end of the copy may have been cut (a number).
            if v.span.end < buf.len() {
                // Strings are copied as written, so only those a strict reader takes: a lone
                // surrogate escape (`\udfff`) is valid JSON grammar, but serde_json and typed
                // clients refuse it. Checked only for the rare string with an escape.
                let text = || {
                    v.kind == Kind::String
                        && (!v.span.of(buf).contains(&b'\\')
                            || serde_json::from_slice::<String>(v.span.of(buf)).is_ok())
                };
                if key.eq_str(buf, "id") && text() {
                    id = Some(v.span);
                } else if key.eq_str(buf, "created") && is_timestamp(v.span.of(buf)) {
                    created = Some(v.span);
                } else if key.eq_str(buf, "model") && text() {
                    model = Some(v.span);
                }
            }
            Ok(())
        });
        self.id = id;
        self.created = created;
        self.model = model;
        // Some providers open with a chunk of empty ids (Azure's prompt filter results).
        self.settled = id.is_some_and(|s| s.len() > 2);
    }
}

/// What [`SseScanner::scan`] decided about one chunk.
///
/// The output for the chunk is `released`, then `chunk[..emit]`, with the metadata event
/// inserted at `insert_at`, an offset into that concatenation. `chunk[emit..]` is held: it
/// starts a line that may be the terminal, and goes out with a later chunk (as `released`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Bytes held from earlier chunks, to send before this chunk's.
    pub released: &'static [u8],
    /// Where the metadata event goes, when it goes in this chunk.
    pub insert_at: Option<usize>,
    /// How many of the chunk's bytes to send now.
    pub emit: usize,
}

/// What [`SseScanner::finish`] decided at the end of the stream: the metadata event (when
/// `insert`), then `released`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finish {
    /// Whether the metadata event goes here.
    pub insert: bool,
    /// Bytes still held, to send after it.
    pub released: &'static [u8],
}

/// Finds where the metadata event goes in a server-sent event stream, one chunk at a time,
/// whatever the chunks' boundaries. See the [module documentation](crate::stream).
pub struct SseScanner {
    api: Api,
    terminals: &'static [Terminal],
    line: Line,
    /// The last byte was `\r`: a `\n` now ends nothing more.
    cr: bool,
    /// No field line since the last blank line (or the start): a line now begins an event.
    fresh: bool,
    /// The event's place was found (or the stream ended).
    done: bool,
    /// Terminals still matching the current line (a bit each), bytes matched (without the
    /// optional space), and whether that space was seen.
    t_alive: u8,
    t_k: u8,
    t_space: bool,
    /// The current line's bytes from earlier chunks, held while it may be a terminal.
    held: &'static [u8],
    /// Matching `data:` then `{` (the chat chunk whose head is copied).
    d_on: bool,
    d_k: u8,
    d_space: bool,
    head: ChunkHead,
}

impl std::fmt::Debug for SseScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseScanner")
            .field("api", &self.api)
            .field("line", &self.line)
            .field("done", &self.done)
            .field("held", &String::from_utf8_lossy(self.held))
            .finish_non_exhaustive()
    }
}

impl SseScanner {
    /// A scanner for a stream of `api`.
    pub fn new(api: Api) -> SseScanner {
        SseScanner {
            api,
            terminals: match api {
                Api::ChatCompletions => CHAT_END,
                Api::Messages => MESSAGES_END,
                Api::Responses => RESPONSES_END,
            },
            line: Line::Start,
            cr: false,
            fresh: true,
            done: false,
            t_alive: 0,
            t_k: 0,
            t_space: false,
            held: &[],
            d_on: false,
            d_k: 0,
            d_space: false,
            head: ChunkHead {
                buf: [0; HEAD_CAPTURE],
                len: 0,
                tries: 0,
                settled: false,
                id: None,
                created: None,
                model: None,
            },
        }
    }

    /// True once the event's place was found (or [`finish`](Self::finish) was called): every
    /// later chunk goes out whole.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn all_terminals(&self) -> u8 {
        // At most three terminals: the mask fits.
        ((1u16 << self.terminals.len()) - 1) as u8
    }

    fn first_alive(&self) -> &'static Terminal {
        let i = self.t_alive.trailing_zeros() as usize;
        &self.terminals[i.min(self.terminals.len() - 1)]
    }

    /// The line's bytes so far, when some terminal still matches: a prefix of its spelling.
    fn matched(&self) -> &'static [u8] {
        let t = self.first_alive();
        let lit = if self.t_space { t.spaced } else { t.tight };
        &lit[..usize::from(self.t_k) + usize::from(self.t_space)]
    }

    fn complete(&self) -> bool {
        self.terminals
            .iter()
            .enumerate()
            .any(|(j, t)| self.t_alive & (1 << j) != 0 && t.tight.len() == usize::from(self.t_k))
    }

    fn take_held(&mut self) -> &'static [u8] {
        std::mem::take(&mut self.held)
    }

    fn wants_head(&self) -> bool {
        self.api == Api::ChatCompletions && !self.head.settled && self.head.tries < HEAD_TRIES
    }

    /// One byte of a line against the terminals; false when none matches any more.
    fn step_terminal(&mut self, c: u8) -> bool {
        let k = usize::from(self.t_k);
        if !self.t_space && k > 0 && self.first_alive().tight[k - 1] == b':' && c == b' ' {
            self.t_space = true;
            return true;
        }
        let mut alive = 0;
        for (j, t) in self.terminals.iter().enumerate() {
            if self.t_alive & (1 << j) != 0 && t.tight.get(k) == Some(&c) {
                alive |= 1 << j;
            }
        }
        self.t_alive = alive;
        self.t_k += 1;
        alive != 0
    }

    /// One byte of a line against `data:` and an optional space; true at the `{` after them.
    fn step_data(&mut self, c: u8) -> bool {
        const DATA: &[u8] = b"data:";
        let k = usize::from(self.d_k);
        if k < DATA.len() {
            if DATA[k] == c {
                self.d_k += 1;
            } else {
                self.d_on = false;
            }
            return false;
        }
        if c == b' ' && !self.d_space {
            self.d_space = true;
            return false;
        }
        self.d_on = false;
        c == b'{'
    }

    /// Scans the next chunk of the stream. See [`Scan`] for what to send.
    pub fn scan(&mut self, chunk: &[u8]) -> Scan {
        let n = chunk.len();
        let mut out = Scan {
            released: &[],
            insert_at: None,
            emit: n,
        };
        if self.done {
            return out;
        }
        // Where the line matched against the terminals began in this chunk (`None`: in an
        // earlier one, whose bytes are held).
        let mut t_start: Option<usize> = None;
        let mut i = 0;
        while i < n {
            let c = chunk[i];
            if self.cr {
                self.cr = false;
                if c == b'\n' {
                    i += 1;
                    continue;
                }
            }
            match self.line {
                Line::Start => {
                    if c == b'\n' || c == b'\r' {
                        // A blank line ends the event.
                        self.fresh = true;
                        self.cr = c == b'\r';
                        i += 1;
                        continue;
                    }
                    if c == b':' {
                        // A comment: neither ends nor starts an event.
                        self.line = Line::Skip;
                        i += 1;
                        continue;
                    }
                    let fresh = std::mem::replace(&mut self.fresh, false);
                    self.t_alive = if fresh { self.all_terminals() } else { 0 };
                    self.t_k = 0;
                    self.t_space = false;
                    self.d_on = self.wants_head();
                    self.d_k = 0;
                    self.d_space = false;
                    if self.t_alive != 0 {
                        t_start = Some(i);
                    }
                    self.line = Line::Head;
                    // `c` is read again below as the line's first byte.
                }
                Line::Head => {
                    if c == b'\n' || c == b'\r' {
                        if self.t_alive != 0 {
                            if self.complete() {
                                self.done = true;
                                out.insert_at = Some(match t_start {
                                    Some(p) => out.released.len() + p,
                                    None => {
                                        out.released = self.take_held();
                                        0
                                    }
                                });
                                return out;
                            }
                            self.t_alive = 0;
                            if t_start.is_none() {
                                out.released = self.take_held();
                            }
                        }
                        self.line = Line::Start;
                        self.cr = c == b'\r';
                        i += 1;
                        continue;
                    }
                    if self.t_alive != 0 && !self.step_terminal(c) && t_start.is_none() {
                        out.released = self.take_held();
                    }
                    if self.d_on && self.step_data(c) {
                        self.head.begin();
                        self.line = Line::Capture;
                        // `c`, the `{`, is the first byte copied.
                        continue;
                    }
                    if self.t_alive == 0 && !self.d_on {
                        self.line = Line::Skip;
                    }
                    i += 1;
                }
                Line::Skip | Line::Capture => {
                    let end = find_line_end(&chunk[i..]);
                    let j = end.map_or(n, |e| i + e);
                    let capture = self.line == Line::Capture;
                    if capture {
                        self.head.push(&chunk[i..j]);
                    }
                    if j == n {
                        break;
                    }
                    if capture {
                        self.head.end();
                    }
                    self.line = Line::Start;
                    self.cr = chunk[j] == b'\r';
                    i = j + 1;
                }
            }
        }
        if self.line == Line::Head && self.t_alive != 0 {
            // The line may still be the terminal: hold its bytes (a prefix of its spelling).
            out.emit = t_start.unwrap_or(0);
            self.held = self.matched();
        }
        out
    }

    /// Ends the stream: the event goes at the end when the stream ended between two events
    /// (or on a terminal line without its line end); bytes still held go after it.
    pub fn finish(&mut self) -> Finish {
        if self.done {
            return Finish {
                insert: false,
                released: &[],
            };
        }
        self.done = true;
        match self.line {
            Line::Head if self.t_alive != 0 => Finish {
                insert: self.complete(),
                released: self.take_held(),
            },
            Line::Start => Finish {
                insert: self.fresh,
                released: &[],
            },
            Line::Capture => {
                self.head.end();
                Finish {
                    insert: false,
                    released: &[],
                }
            }
            Line::Head | Line::Skip => Finish {
                insert: false,
                released: &[],
            },
        }
    }

    /// The metadata event for this stream's API (see the [module documentation](crate::stream)),
    /// with its blank line. `model` names the model in a chat chunk when the stream gave none.
    pub fn metadata_event(&self, metadata: &Map<String, Value>, model: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        match self.api {
            Api::ChatCompletions => {
                let head = &self.head;
                let raw = |s: Option<Span>| s.map(|s| s.of(&head.buf));
                out.put(b"data: {\"id\":");
                out.put(raw(head.id).unwrap_or(b"\"\""));
                out.put(b",\"object\":\"chat.completion.chunk\",\"created\":");
                out.put(raw(head.created).unwrap_or(b"0"));
                out.put(b",\"model\":");
                match raw(head.model) {
                    Some(m) => out.put(m),
                    None => write_str(&mut out, model),
                }
                out.put(b",\"choices\":[],\"metadata\":");
            }
            Api::Messages | Api::Responses => {
                out.put(b"event: ");
                out.put(METADATA_EVENT.as_bytes());
                out.put(b"\ndata: {\"type\":\"");
                out.put(METADATA_EVENT.as_bytes());
                out.put(b"\",\"metadata\":");
            }
        }
        // Serializing a map of JSON values into an infallible writer cannot fail.
        let _ = serde_json::to_writer(SinkWriter(&mut out), metadata);
        out.put(b"}\n\n");
        out
    }
}

/// The first `\n` or `\r` in `b`, eight bytes at a time.
#[inline]
fn find_line_end(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A high bit for each zero byte of `x`; the lowest one is exact (later ones may be
    // borrows), and the lowest is all that is read.
    let zeros = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut words = b.chunks_exact(8);
    let mut i = 0;
    for w in &mut words {
        let mut word = [0; 8];
        word.copy_from_slice(w);
        let x = u64::from_le_bytes(word);
        let m = zeros(x ^ (ONES * u64::from(b'\n'))) | zeros(x ^ (ONES * u64::from(b'\r')));
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .map(|p| i + p)
}

/// Whether a response is a server-sent event stream the layer can read: `text/event-stream`,
/// not compressed.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    let sse = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim_start().as_bytes();
            v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream")
        });
    sse && headers
        .get(CONTENT_ENCODING)
        .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// At most four frames come out of one chunk (held bytes, the chunk's first part, the event,
/// its second part); the queue is always empty when a chunk comes in.
const QUEUE: usize = 4;

/// A fixed queue of frames: no allocation.
struct Queue {
    items: [Option<Frame<Bytes>>; QUEUE],
    head: usize,
    len: usize,
}

impl Queue {
    fn push(&mut self, f: Frame<Bytes>) {
        debug_assert!(self.len < QUEUE, "the frame queue is full");
        if self.len < QUEUE {
            self.items[(self.head + self.len) % QUEUE] = Some(f);
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<Frame<Bytes>> {
        if self.len == 0 {
            return None;
        }
        let f = self.items[self.head].take();
        self.head = (self.head + 1) % QUEUE;
        self.len -= 1;
        f
    }
}

/// The layer's side of a streamed response: scans the frames, and writes the metadata event
/// where the scanner says, from the decision record and the clock.
pub(crate) struct MetadataTap {
    scanner: SseScanner,
    record: DecisionRecord,
    start: Duration,
    clock: Arc<dyn Clock>,
    queue: Queue,
    error: Option<BoxError>,
    ended: bool,
}

impl std::fmt::Debug for MetadataTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataTap")
            .field("scanner", &self.scanner)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl MetadataTap {
    /// A tap for a stream of `api` answering the decision in `record`; `start` is when the
    /// request was routed, on `clock`.
    pub(crate) fn new(
        api: Api,
        record: DecisionRecord,
        start: Duration,
        clock: Arc<dyn Clock>,
    ) -> Box<MetadataTap> {
        Box::new(MetadataTap {
            scanner: SseScanner::new(api),
            record,
            start,
            clock,
            queue: Queue {
                items: [None, None, None, None],
                head: 0,
                len: 0,
            },
            error: None,
            ended: false,
        })
    }

    fn event(&self) -> Bytes {
        let total = self.clock.now().saturating_sub(self.start);
        let metadata = metadata_value(&self.record, total);
        let model = self.record.served_model_id.as_deref().unwrap_or("");
        Bytes::from(self.scanner.metadata_event(&metadata, model))
    }

    fn put(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.queue.push(Frame::data(b));
        }
    }

    /// The next frame from upstream. A frame that goes out whole and alone (most of them) is
    /// handed back; anything else is queued for [`pop`](Self::pop).
    pub(crate) fn push(&mut self, frame: Frame<Bytes>) -> Option<Frame<Bytes>> {
        let mut data = match frame.into_data() {
            Ok(d) => d,
            Err(frame) => {
                // Trailers: the data is over.
                self.end();
                self.queue.push(frame);
                return None;
            }
        };
        if self.scanner.is_done() {
            return Some(Frame::data(data));
        }
        let scan = self.scanner.scan(&data);
        let released = scan.released;
        if released.is_empty() && scan.insert_at.is_none() && scan.emit == data.len() {
            return Some(Frame::data(data));
        }
        data.truncate(scan.emit);
        match scan.insert_at {
            None => {
                self.put(Bytes::from_static(released));
                self.put(data);
            }
            Some(at) if at <= released.len() => {
                self.put(Bytes::from_static(&released[..at]));
                let event = self.event();
                self.put(event);
                self.put(Bytes::from_static(&released[at..]));
                self.put(data);
            }
            Some(at) => {
                self.put(Bytes::from_static(released));
                let rest = data.split_off(at - released.len());
                self.put(data);
                let event = self.event();
                self.put(event);
                self.put(rest);
            }
        }
        None
    }

    /// The upstream body ended.
    pub(crate) fn end(&mut self) {
        let finish = self.scanner.finish();
        if finish.insert {
            let event = self.event();
            self.put(event);
        }
        self.put(Bytes::from_static(finish.released));
        self.ended = true;
    }

    /// The upstream body failed: what was held goes out, then the error, and no event.
    pub(crate) fn fail(&mut self, e: BoxError) {
        let finish = self.scanner.finish();
        self.put(Bytes::from_static(finish.released));
        self.error = Some(e);
        self.ended = true;
    }

    /// The next frame (or error) to send, if any is ready.
    pub(crate) fn pop(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        match self.queue.pop() {
            Some(f) => Some(Ok(f)),
            None => self.error.take().map(Err),
        }
    }

    /// True once the upstream body is over (nothing more is read from it).
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// True once everything was sent.
    pub(crate) fn drained(&self) -> bool {
        self.ended && self.queue.len == 0 && self.error.is_none()
    }
}

#[cfg(test)]
mod tests {
    // A failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]

    use super::*;

    const RECORD: &str = r#"{"router": "r", "route_id": "default",
      "assigned_variant_id": "a", "assigned_model_id": "p/one",
      "served_variant_id": "b", "served_model_id": "p/two", "version": 7,
      "assignment": { "kind": "random", "draw": "9e3779b97f4a7c15" },
      "attempts": [
        { "variant_id": "a", "model": "p/one", "assigned_variant": true, "source": "primary",
          "outcome": "failure", "class": "rate_limited", "latency_ms": 5 },
        { "variant_id": "b", "model": "p/two", "assigned_variant": false,
          "source": "other_variant", "outcome": "success", "latency_ms": 9,
          "time_to_first_token_ms": 9 } ],
      "fail_open": false }"#;

    fn tap(api: Api) -> Box<MetadataTap> {
        let record: DecisionRecord = serde_json::from_str(RECORD).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(|| Duration::from_millis(45));
        MetadataTap::new(api, record, Duration::from_millis(3), clock)
    }

    fn drain(t: &mut MetadataTap, out: &mut Vec<u8>) {
        while let Some(f) = t.pop() {
            out.extend_from_slice(&f.unwrap().into_data().unwrap());
        }
    }

    /// The output for these frames; checks on the way that at most a terminal's prefix is
    /// held after each frame.
    fn run(api: Api, frames: &[&[u8]]) -> Vec<u8> {
        let mut t = tap(api);
        let mut out = Vec::new();
        let mut fed = 0;
        for f in frames {
            if let Some(f) = t.push(Frame::data(Bytes::copy_from_slice(f))) {
                out.extend_from_slice(&f.into_data().unwrap());
            }
            fed += f.len();
            drain(&mut t, &mut out);
            if !t.scanner.is_done() {
                assert!(
                    out.len() <= fed && fed - out.len() <= 26,
                    "{fed} fed, {} out",
                    out.len()
                );
            }
        }
        t.end();
        drain(&mut t, &mut out);
        assert!(t.drained());
        out
    }

    fn chunk(content: &str, finish: &str) -> String {
        format!(
            r#"data: {{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-x","choices":[{{"index":0,"delta":{{"content":"{content}"}},"finish_reason":{finish}}}]}}"#
        )
    }

    /// A chat stream with every line ended by `eol`, and where `data: [DONE]` starts.
    fn chat_stream(eol: &str) -> (String, usize) {
        let mut s = String::new();
        for line in [
            chunk("", "null"),
            String::new(),
            chunk("data: [DONE]", "null"),
            String::new(),
            ": keep-alive".to_owned(),
            String::new(),
            chunk("\\ndata: [DONE]\\n", "null"),
            String::new(),
            chunk("", "\"stop\""),
            String::new(),
        ] {
            s.push_str(&line);
            s.push_str(eol);
        }
        let at = s.len();
        s.push_str("data: [DONE]");
        s.push_str(eol);
        s.push_str(eol);
        (s, at)
    }

    /// Checks that `out` is `input` with one event inserted at `at`, and returns its JSON.
    fn inserted(api: Api, input: &[u8], out: &[u8], at: usize) -> Value {
        let text = String::from_utf8_lossy(out);
        assert!(out.len() > input.len(), "no event in {text}");
        let n = out.len() - input.len();
        assert_eq!(&out[..at], &input[..at], "{text}");
        assert_eq!(&out[at + n..], &input[at..], "{text}");
        let event = std::str::from_utf8(&out[at..at + n]).unwrap();
        let data = match api {
            Api::ChatCompletions => event.strip_prefix("data: ").unwrap(),
            _ => event
                .strip_prefix("event: abroute.metadata\ndata: ")
                .unwrap(),
        };
        let data = data.strip_suffix("\n\n").unwrap();
        assert!(!data.contains('\n'), "{event}");
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["metadata"]["router"], "r");
        assert_eq!(v["metadata"]["served_variant_id"], "b");
        assert_eq!(v["metadata"]["attempts"][0]["success"], false);
        assert_eq!(v["metadata"]["attempts"][1]["success"], true);
        assert_eq!(v["metadata"]["total_duration_ms"], 42);
        v
    }

    #[test]
    fn the_chat_chunk_goes_before_done_with_the_stream_s_id() {
        let (s, at) = chat_stream("\n");
        let out = run(Api::ChatCompletions, &[s.as_bytes()]);
        let v = inserted(Api::ChatCompletions, s.as_bytes(), &out, at);
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["choices"], serde_json::json!([]));
        let event = &out[at..out.len() - (s.len() - at)];
        assert!(event.starts_with(
            br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-x","choices":[],"metadata":{"#
        ), "{}", String::from_utf8_lossy(event));
        assert!(event.ends_with(b"}}\n\n"));
    }

    /// A short stream with the hard parts: `[DONE]` in a string and on a later line of an
    /// event, a comment, and the terminal.
    fn compact_stream(eol: &str) -> (String, usize) {
        let mut s = String::new();
        for line in [
            r#"data: {"id":"c","choices":[{"delta":{"content":"data: [DONE]"}}]}"#,
            "",
            ": ka",
            r#"data: {"a":"#,
            "data: [DONE]",
            "",
        ] {
            s.push_str(line);
            s.push_str(eol);
        }
        let at = s.len();
        s.push_str("data: [DONE]");
        s.push_str(eol);
        s.push_str(eol);
        (s, at)
    }

    #[test]
    fn every_split_into_two_or_three_frames_gives_the_same_bytes() {
        for eol in ["\n", "\r\n", "\r"] {
            let (s, at) = chat_stream(eol);
            let s = s.as_bytes();
            let whole = run(Api::ChatCompletions, &[s]);
            inserted(Api::ChatCompletions, s, &whole, at);
            for i in 0..=s.len() {
                let two = run(Api::ChatCompletions, &[&s[..i], &s[i..]]);
                assert_eq!(two, whole, "{eol:?} split at {i}");
            }
            // One byte a frame.
            let bytes: Vec<&[u8]> = s.chunks(1).collect();
            assert_eq!(run(Api::ChatCompletions, &bytes), whole, "{eol:?} bytewise");

            let (s, at) = compact_stream(eol);
            let s = s.as_bytes();
            let whole = run(Api::ChatCompletions, &[s]);
            inserted(Api::ChatCompletions, s, &whole, at);
            for i in 0..=s.len() {
                for j in i..=s.len() {
                    let three = run(Api::ChatCompletions, &[&s[..i], &s[i..j], &s[j..]]);
                    assert_eq!(three, whole, "{eol:?} split at {i} and {j}");
                }
            }
        }
    }

    #[test]
    fn messages_and_responses_get_their_own_event_before_the_last() {
        let messages = "event: message_start\r\ndata: {\"type\":\"message_start\"}\r\n\r\n\
            event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"event: message_stop\"}}\r\n\r\n\
            event: message_delta\r\ndata: {\"type\":\"message_delta\"}\r\n\r\n";
        let stop = "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";
        let responses = "event: response.created\ndata: {\"type\":\"response.created\"}\n\n\
            event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"x\"}\n\n\
            event: response.in_progress\ndata: {}\n\n";
        for (api, body, last) in [
            (Api::Messages, messages, stop),
            (Api::Messages, messages, "event:message_stop\ndata: {}\n\n"),
            (
                Api::Responses,
                responses,
                "event: response.completed\ndata: {}\n\n",
            ),
            (
                Api::Responses,
                responses,
                "event: response.failed\ndata: {}\n\n",
            ),
            (
                Api::Responses,
                responses,
                "event:response.incomplete\rdata: {}\r\r",
            ),
        ] {
            let s = format!("{body}{last}");
            let s = s.as_bytes();
            let whole = run(api, &[s]);
            let v = inserted(api, s, &whole, body.len());
            assert_eq!(v["type"], "abroute.metadata");
            for i in 0..=s.len() {
                assert_eq!(run(api, &[&s[..i], &s[i..]]), whole, "{api:?} split at {i}");
            }
        }
    }

    #[test]
    fn optional_space_after_the_colon() {
        let s = format!("{}\n\ndata:[DONE]\n\n", chunk("hi", "null"));
        let at = s.len() - "data:[DONE]\n\n".len();
        let out = run(Api::ChatCompletions, &[s.as_bytes()]);
        inserted(Api::ChatCompletions, s.as_bytes(), &out, at);
        // Two spaces: the value is " [DONE]", not a terminal; the event goes at the end.
        let s = format!("{}\n\ndata:  [DONE]\n\n", chunk("hi", "null"));
        let out = run(Api::ChatCompletions, &[s.as_bytes()]);
        inserted(Api::ChatCompletions, s.as_bytes(), &out, s.len());
    }

    #[test]
    fn done_inside_a_string_or_a_later_line_is_not_the_end() {
        // `[DONE]` in content, and as the second data line of an event: neither ends the
        // stream, so the event goes before the real one only.
        let s = format!(
            "{}\n\ndata: {{\"a\":\ndata: [DONE]\n\n{}\n\ndata: [DONE]\n\n",
            chunk("data: [DONE]", "null"),
            chunk("", "\"stop\"")
        );
        let at = s.len() - "data: [DONE]\n\n".len();
        let out = run(Api::ChatCompletions, &[s.as_bytes()]);
        inserted(Api::ChatCompletions, s.as_bytes(), &out, at);
        // A comment before the terminal line: the event goes after it, still before [DONE].
        let s = format!("{}\n\n: ping\ndata: [DONE]\n\n", chunk("x", "null"));
        let at = s.len() - "data: [DONE]\n\n".len();
        let out = run(Api::ChatCompletions, &[s.as_bytes()]);
        inserted(Api::ChatCompletions, s.as_bytes(), &out, at);
    }

    #[test]
    fn a_stream_without_done() {
        // Ended between events: the event goes at the end.
        let s = format!(
            "{}\n\n{}\r\n\r\n",
            chunk("a", "null"),
            chunk("", "\"stop\"")
        );
        for i in 0..=s.len() {
            let out = run(
                Api::ChatCompletions,
                &[&s.as_bytes()[..i], &s.as_bytes()[i..]],
            );
            inserted(Api::ChatCompletions, s.as_bytes(), &out, s.len());
        }
        // Cut inside an event, or inside a line that could have been `[DONE]`: nothing is
        // added, nothing is lost.
        for cut in [
            format!("{}\n\n{}", chunk("a", "null"), chunk("b", "null")),
            format!("{}\n\n{}\n", chunk("a", "null"), chunk("b", "null")),
            format!("{}\n\ndata: [DO", chunk("a", "null")),
            format!("{}\n\ndata:", chunk("a", "null")),
        ] {
            for i in 0..=cut.len() {
                let out = run(
                    Api::ChatCompletions,
                    &[&cut.as_bytes()[..i], &cut.as_bytes()[i..]],
                );
                assert_eq!(out, cut.as_bytes(), "{cut:?} split at {i}");
            }
        }
        // `data: [DONE]` without its line end at the very end still counts.
        let s = format!("{}\n\ndata: [DONE]", chunk("a", "null"));
        let at = s.len() - "data: [DONE]".len();
        for i in 0..=s.len() {
            let out = run(
                Api::ChatCompletions,
                &[&s.as_bytes()[..i], &s.as_bytes()[i..]],
            );
            inserted(Api::ChatCompletions, s.as_bytes(), &out, at);
        }
    }

    #[test]
    fn the_chunk_head_is_read_from_the_first_chunk_with_an_id() {
        // Azure opens with a prompt-filter chunk of empty ids; keys in any order.
        let s = "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\"}\n\n\
            data: {\"model\":\"gpt-\\u0078\",\"created\":17,\"id\":\"c-\\\"2\\\"\"}\n\n\
            data: {\"id\":\"later\",\"created\":99,\"model\":\"other\"}\n\ndata: [DONE]\n\n";
        let out = run(Api::ChatCompletions, &[s.as_bytes()]);
        let at = s.len() - "data: [DONE]\n\n".len();
        let v = inserted(Api::ChatCompletions, s.as_bytes(), &out, at);
        assert_eq!(v["id"], "c-\"2\"");
        assert_eq!(v["created"], 17);
        // A `created` that is not a u64 of seconds is not copied.
        for bad in ["1.5", "-1", "1e400", "99999999999999999999999"] {
            assert!(!is_timestamp(bad.as_bytes()), "{bad}");
        }
        assert!(is_timestamp(b"1700000000"));
        // An id with a lone surrogate escape is not copied; one with a pair is.
        let mut odd = SseScanner::new(Api::ChatCompletions);
        odd.scan(b"data: {\"id\":\"a\\udfff\",\"model\":\"m\\ud83d\\ude00\"}\n\n");
        let event = String::from_utf8(odd.metadata_event(&Map::new(), "served")).unwrap();
        let w: Value = serde_json::from_str(event.trim().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(w["id"], "");
        assert_eq!(w["model"], "m\u{1f600}");
        assert_eq!(v["model"], "gpt-x");
        // No chunk at all: empty id, 0, and the served model.
        let out = run(Api::ChatCompletions, &[b"data: [DONE]\n\n"]);
        let v = inserted(Api::ChatCompletions, b"data: [DONE]\n\n", &out, 0);
        assert_eq!(
            (&v["id"], &v["created"], &v["model"]),
            (&"".into(), &0.into(), &"p/two".into())
        );
        // A first chunk longer than the copy: the members read whole are kept, a cut
        // number is not.
        let pad = "x".repeat(HEAD_CAPTURE);
        let long = format!(
            "data: {{\"id\":\"big\",\"model\":\"m\",\"pad\":\"{pad}\"}}\n\ndata: [DONE]\n\n"
        );
        let out = run(Api::ChatCompletions, &[long.as_bytes()]);
        let at = long.len() - "data: [DONE]\n\n".len();
        let v = inserted(Api::ChatCompletions, long.as_bytes(), &out, at);
        assert_eq!((&v["id"], &v["model"]), (&"big".into(), &"m".into()));
        // The copy ends right after `"created":12` (of 1234).
        let m = HEAD_CAPTURE - r#"{"id":"n","model":""#.len() - r#"","created":12"#.len();
        let cut = format!(
            "data: {{\"id\":\"n\",\"model\":\"{}\",\"created\":1234}}\n\ndata: [DONE]\n\n",
            "m".repeat(m)
        );
        let out = run(Api::ChatCompletions, &[cut.as_bytes()]);
        let at = cut.len() - "data: [DONE]\n\n".len();
        let v = inserted(Api::ChatCompletions, cut.as_bytes(), &out, at);
        assert_eq!((&v["id"], &v["created"]), (&"n".into(), &0.into()));
        assert_eq!(v["model"].as_str().unwrap().len(), m);
    }

    #[test]
    fn held_bytes_go_out_before_an_error_and_before_trailers() {
        let mut t = tap(Api::ChatCompletions);
        assert!(
            t.push(Frame::data(Bytes::from_static(b"data: {}\n\ndata: [DO")))
                .is_none()
        );
        let mut out = Vec::new();
        drain(&mut t, &mut out);
        assert_eq!(out, b"data: {}\n\n");
        t.fail("boom".into());
        assert_eq!(
            t.pop().unwrap().unwrap().into_data().unwrap(),
            &b"data: [DO"[..]
        );
        assert!(t.pop().unwrap().is_err());
        assert!(t.pop().is_none() && t.ended());

        let mut t = tap(Api::ChatCompletions);
        assert!(
            t.push(Frame::data(Bytes::from_static(b"data: {}\n\ndata: [DONE]")))
                .is_none()
        );
        assert!(t.push(Frame::trailers(HeaderMap::new())).is_none());
        let mut frames = Vec::new();
        while let Some(f) = t.pop() {
            frames.push(f.unwrap());
        }
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[0].data_ref().unwrap(), &b"data: {}\n\n"[..]);
        assert!(
            frames[1]
                .data_ref()
                .unwrap()
                .starts_with(b"data: {\"id\":\"\"")
        );
        assert_eq!(frames[2].data_ref().unwrap(), &b"data: [DONE]"[..]);
        assert!(frames[3].is_trailers());
        assert!(t.drained());
    }

    #[test]
    fn after_the_event_frames_pass_whole() {
        let mut t = tap(Api::ChatCompletions);
        assert!(
            t.push(Frame::data(Bytes::from_static(b"data: [DONE]\n\n")))
                .is_none()
        );
        let mut out = Vec::new();
        drain(&mut t, &mut out);
        let after = Bytes::from_static(b"data: [DONE]\n\n: trailing\n\n");
        let f = t
            .push(Frame::data(after.clone()))
            .unwrap()
            .into_data()
            .unwrap();
        assert!(t.pop().is_none());
        assert_eq!(f, after);
        assert_eq!(f.as_ptr(), after.as_ptr(), "the same bytes, not a copy");
        t.end();
        assert!(t.pop().is_none());
    }

    #[test]
    fn line_ends_are_found_at_every_offset() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'\n' || c == b'\r');
        for len in 0..40 {
            for at in 0..=len {
                for end in [b'\n', b'\r'] {
                    // Bytes next to the line ends in value, and a later line end of the other kind.
                    let mut b: Vec<u8> = (0..len)
                        .map(|i| [b'\x0b', b'\x0c', b'\x0e', b'\x8a', b'a'][i % 5])
                        .collect();
                    if at < len {
                        b[at] = end;
                        if at + 3 < len {
                            b[at + 3] = b'\n' + b'\r' - end;
                        }
                    }
                    assert_eq!(find_line_end(&b), naive(&b), "{b:?}");
                }
            }
        }
    }

    #[test]
    fn event_streams_are_recognized() {
        let h = |ct: &str, enc: Option<&str>| {
            let mut m = HeaderMap::new();
            m.insert(CONTENT_TYPE, ct.parse().unwrap());
            if let Some(e) = enc {
                m.insert(CONTENT_ENCODING, e.parse().unwrap());
            }
            is_event_stream(&m)
        };
        assert!(h("text/event-stream", None));
        assert!(h("Text/Event-Stream; charset=utf-8", None));
        assert!(h("text/event-stream", Some("identity")));
        assert!(!h("text/event-stream", Some("gzip")));
        assert!(!h("application/json", None));
        assert!(!h("text/event", None));
        assert!(!is_event_stream(&HeaderMap::new()));
    }
}
