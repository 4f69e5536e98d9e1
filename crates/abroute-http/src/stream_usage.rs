//! Token usage read from a server-sent event stream, one frame at a time, allocating nothing.
//!
//! Where each API puts the usage of a streamed answer:
//!
//! | API | event | object |
//! |---|---|---|
//! | chat completions | the last chunk before `data: [DONE]` (sent when the request had `stream_options.include_usage`) | `usage`: `prompt_tokens`, `completion_tokens`, `prompt_tokens_details.cached_tokens` |
//! | messages | `message_start` (input) and `message_delta` (output, cumulative) | `message.usage` / `usage`: `input_tokens`, `output_tokens`, `cache_read_input_tokens` |
//! | responses | `response.completed` (or `.incomplete`, `.failed`) | `response.usage`: `input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens` |
//!
//! [`UsageReader`] follows the SSE grammar line by line (`\n`, `\r\n` or `\r`; a `\r\n` split
//! across frames is one line end) and lexes each `data:` line as JSON, tracking strings and
//! escapes, so a `"usage"` inside a message's text is never taken for the member. A `usage`
//! member whose value is an object, at depth one or two of the event's object, is copied into
//! a fixed buffer of [`USAGE_CAPTURE`] bytes as it streams past (a usage object is 100 to 400
//! bytes; a larger one is skipped, never cut) and read when it closes. Counts merge: a count
//! an event carries replaces the one before, a count it omits keeps it (Anthropic's
//! `message_delta` carries only `output_tokens`). `"usage": null` is skipped.
//!
//! For chat completions it also tells, at the end of each event, whether the event was a
//! usage-only chunk (top-level `"choices": []` and a `usage` object): the chunk the adapter
//! removes from the client's stream when it asked the upstream for usage on the client's
//! behalf (see [`include_usage`](crate::include_usage)).

use crate::extract::Api;
use crate::json::{Kind, Scanner};

/// The most bytes of one `usage` object that are read; a larger object is skipped.
pub const USAGE_CAPTURE: usize = 1024;

/// The token counts of a streamed answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamUsage {
    /// Tokens in the prompt, as the API counts them (for messages, without cache reads).
    pub input_tokens: Option<u64>,
    /// Tokens generated.
    pub output_tokens: Option<u64>,
    /// Prompt tokens read from the provider's cache (billed at the cached-input price): in
    /// chat completions and responses a part of `input_tokens`, in messages apart from it.
    pub cached_input_tokens: Option<u64>,
}

impl StreamUsage {
    /// True when some count was found.
    pub fn is_empty(&self) -> bool {
        self.input_tokens.is_none() && self.output_tokens.is_none()
    }

    /// Prompt tokens billed at the full input price and at the cached price, for an answer of
    /// `api` (the two APIs count cached tokens differently, see `cached_input_tokens`).
    pub fn billed_input(&self, api: Api) -> (u64, u64) {
        let input = self.input_tokens.unwrap_or(0);
        let cached = self.cached_input_tokens.unwrap_or(0);
        match api {
            Api::Messages => (input, cached),
            Api::ChatCompletions | Api::Responses => (input.saturating_sub(cached), cached),
        }
    }

    /// The counts as the non-streaming [`Usage`](crate::Usage).
    pub fn to_usage(self) -> crate::Usage {
        crate::Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
        }
    }

    fn merge(&mut self, other: StreamUsage) {
        self.input_tokens = other.input_tokens.or(self.input_tokens);
        self.output_tokens = other.output_tokens.or(self.output_tokens);
        self.cached_input_tokens = other.cached_input_tokens.or(self.cached_input_tokens);
    }
}

/// Where the reader is in the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line.
    Start,
    /// Matching `data:` (this many bytes matched).
    Field(u8),
    /// After `data:`, before the value (an optional space).
    AfterField,
    /// In a `data:` line's value, lexing it.
    Data,
    /// In a line that matters no more.
    Skip,
}

/// Which key a just-closed string was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    None,
    Usage,
    Choices,
}

/// What the lexer expects next after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Nothing in particular.
    Nothing,
    /// A `:`, after the key.
    Colon(Key),
    /// The key's value.
    Value(Key),
    /// `]` right after `"choices": [`.
    EmptyArray,
}

/// Reads the token usage of an event stream of one API, frame by frame. See the
/// [module documentation](crate::stream_usage).
pub struct UsageReader {
    api: Api,
    line: Line,
    cr: bool,
    /// Lexer state of the current data line.
    in_str: bool,
    esc: bool,
    /// Bytes of the current string matched against `usage` and `choices` (a bit each: still
    /// matching), and how many.
    k_alive: u8,
    k_len: u8,
    expect: Expect,
    depth: u32,
    /// Copying a `usage` object: its depth (0 when not copying).
    cap_depth: u32,
    cap_len: usize,
    cap_over: bool,
    buf: [u8; USAGE_CAPTURE],
    /// The current event (since the last blank line).
    event_usage: bool,
    event_choices_empty: bool,
    usage: StreamUsage,
}

impl std::fmt::Debug for UsageReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageReader")
            .field("api", &self.api)
            .field("line", &self.line)
            .field("usage", &self.usage)
            .finish_non_exhaustive()
    }
}

const KEYS: [&[u8]; 2] = [b"usage", b"choices"];

const fn table(stops: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < stops.len() {
        t[stops[i] as usize] = true;
        i += 1;
    }
    t
}

/// Where a skipped line may end.
static LINE_END: [bool; 256] = table(b"\n\r");
/// Where a skipped string may end (or its line).
static STRING_STOP: [bool; 256] = table(b"\"\\\n\r");

/// What [`UsageReader::read_events`] saw of an event that a blank line just ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventEnd {
    /// The event was a usage-only chat chunk (`"choices": []` and a `usage` object).
    pub usage_only: bool,
}

impl UsageReader {
    /// A reader for a stream of `api`.
    pub fn new(api: Api) -> UsageReader {
        UsageReader {
            api,
            line: Line::Start,
            cr: false,
            in_str: false,
            esc: false,
            k_alive: 0,
            k_len: 0,
            expect: Expect::Nothing,
            depth: 0,
            cap_depth: 0,
            cap_len: 0,
            cap_over: false,
            buf: [0; USAGE_CAPTURE],
            event_usage: false,
            event_choices_empty: false,
            usage: StreamUsage::default(),
        }
    }

    /// The usage found so far.
    pub fn usage(&self) -> StreamUsage {
        self.usage
    }

    /// Reads the next chunk of the stream.
    pub fn read(&mut self, chunk: &[u8]) {
        self.read_events(chunk, |_, _| {});
    }

    /// Reads one chunk and calls `on_event(offset_after_blank_line, end)` at the end of each
    /// event (the offset in `chunk` just past the blank line that ended it).
    ///
    /// Bytes that cannot change anything are skipped with a table lookup each: the rest of a
    /// line that is not `data:` (up to its end), and the inside of a string that is no key
    /// being matched (up to a quote, a backslash or a line end).
    pub fn read_events(&mut self, chunk: &[u8], mut on_event: impl FnMut(usize, EventEnd)) {
        let n = chunk.len();
        let mut i = 0;
        while i < n {
            if !self.cr {
                let stops: Option<&[bool; 256]> = match self.line {
                    Line::Skip => Some(&LINE_END),
                    Line::Data
                        if self.cap_depth == 0 && self.in_str && !self.esc && self.k_alive == 0 =>
                    {
                        Some(&STRING_STOP)
                    }
                    _ => None,
                };
                if let Some(stops) = stops {
                    match chunk[i..].iter().position(|&c| stops[usize::from(c)]) {
                        Some(p) => i += p,
                        None => return,
                    }
                }
            }
            if let Some(end) = self.byte(chunk[i]) {
                on_event(i + 1, end);
            }
            i += 1;
        }
    }

    /// One byte; at a blank line, what the event that it ended was.
    #[inline]
    fn byte(&mut self, c: u8) -> Option<EventEnd> {
        if self.cr {
            self.cr = false;
            if c == b'\n' {
                return None;
            }
        }
        if c == b'\n' || c == b'\r' {
            self.cr = c == b'\r';
            let blank = self.line == Line::Start;
            self.end_line();
            if blank {
                let end = EventEnd {
                    usage_only: self.event_usage && self.event_choices_empty,
                };
                self.event_usage = false;
                self.event_choices_empty = false;
                return Some(end);
            }
            return None;
        }
        match self.line {
            Line::Start => {
                self.line = if c == b'd' {
                    Line::Field(1)
                } else {
                    Line::Skip
                };
            }
            Line::Field(k) => {
                const DATA: &[u8] = b"data:";
                self.line = if DATA[usize::from(k)] == c {
                    if usize::from(k) + 1 == DATA.len() {
                        Line::AfterField
                    } else {
                        Line::Field(k + 1)
                    }
                } else {
                    Line::Skip
                };
            }
            Line::AfterField => {
                self.line = Line::Data;
                if c != b' ' {
                    self.lex(c);
                }
            }
            Line::Data => self.lex(c),
            Line::Skip => {}
        }
        None
    }

    fn end_line(&mut self) {
        self.line = Line::Start;
        self.in_str = false;
        self.esc = false;
        self.expect = Expect::Nothing;
        self.depth = 0;
        self.cap_depth = 0;
        self.cap_len = 0;
        self.cap_over = false;
    }

    /// One byte of a `data:` line's JSON.
    #[inline]
    fn lex(&mut self, c: u8) {
        if self.cap_depth > 0 {
            self.capture(c);
            return;
        }
        if self.in_str {
            if self.esc {
                self.esc = false;
                self.k_alive = 0;
            } else if c == b'\\' {
                self.esc = true;
                self.k_alive = 0;
            } else if c == b'"' {
                self.in_str = false;
                let k = usize::from(self.k_len);
                let key = if self.k_alive & 1 != 0 && k == KEYS[0].len() {
                    Key::Usage
                } else if self.k_alive & 2 != 0 && k == KEYS[1].len() {
                    Key::Choices
                } else {
                    Key::None
                };
                self.expect = Expect::Colon(key);
            } else if self.k_alive != 0 {
                let k = usize::from(self.k_len);
                for (j, key) in KEYS.iter().enumerate() {
                    if key.get(k) != Some(&c) {
                        self.k_alive &= !(1 << j);
                    }
                }
                self.k_len = self.k_len.saturating_add(1);
            }
            return;
        }
        let expect = std::mem::replace(&mut self.expect, Expect::Nothing);
        match c {
            b' ' | b'\t' => self.expect = expect,
            b'"' => {
                self.in_str = true;
                self.k_alive = 0b11;
                self.k_len = 0;
            }
            b':' => {
                if let Expect::Colon(key) = expect {
                    self.expect = Expect::Value(key);
                }
            }
            b'{' => {
                self.depth += 1;
                if expect == Expect::Value(Key::Usage) && self.depth <= 3 {
                    self.cap_depth = 1;
                    self.cap_len = 0;
                    self.cap_over = false;
                    self.push(c);
                }
            }
            b'[' => {
                self.depth += 1;
                if expect == Expect::Value(Key::Choices) && self.depth == 2 {
                    self.expect = Expect::EmptyArray;
                }
            }
            b']' => {
                if expect == Expect::EmptyArray {
                    self.event_choices_empty = true;
                }
                self.depth = self.depth.saturating_sub(1);
            }
            b'}' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
    }

    fn push(&mut self, c: u8) {
        if self.cap_len < USAGE_CAPTURE {
            self.buf[self.cap_len] = c;
            self.cap_len += 1;
        } else {
            self.cap_over = true;
        }
    }

    /// One byte of a `usage` object being copied.
    fn capture(&mut self, c: u8) {
        self.push(c);
        if self.in_str {
            if self.esc {
                self.esc = false;
            } else if c == b'\\' {
                self.esc = true;
            } else if c == b'"' {
                self.in_str = false;
            }
            return;
        }
        match c {
            b'"' => self.in_str = true,
            b'{' => self.cap_depth += 1,
            b'}' => {
                self.cap_depth -= 1;
                if self.cap_depth == 0 {
                    // The object closed: its depth is left (it was counted at its `{`).
                    self.depth = self.depth.saturating_sub(1);
                    if !self.cap_over
                        && let Some(found) = parse_usage(self.api, &self.buf[..self.cap_len])
                    {
                        self.usage.merge(found);
                        self.event_usage = true;
                    }
                }
            }
            _ => {}
        }
    }
}

/// A whole number that fits a `u64`.
fn count(body: &[u8], kind: Kind, span: crate::json::Span) -> Option<u64> {
    (kind == Kind::Number)
        .then(|| std::str::from_utf8(span.of(body)).ok()?.parse().ok())
        .flatten()
}

/// The counts of one `usage` object of `api`; `None` when it is not valid JSON.
pub fn parse_usage(api: Api, obj: &[u8]) -> Option<StreamUsage> {
    let (input_key, output_key, details_key, cached_key) = match api {
        Api::ChatCompletions => (
            "prompt_tokens",
            "completion_tokens",
            "prompt_tokens_details",
            "cached_tokens",
        ),
        Api::Responses => (
            "input_tokens",
            "output_tokens",
            "input_tokens_details",
            "cached_tokens",
        ),
        Api::Messages => (
            "input_tokens",
            "output_tokens",
            "",
            "cache_read_input_tokens",
        ),
    };
    let mut usage = StreamUsage::default();
    let mut sc = Scanner::new(obj);
    sc.object(|sc, key| {
        let body = sc.body();
        if !details_key.is_empty() && key.eq_str(body, details_key) && {
            sc.ws();
            sc.peek() == Some(b'{')
        } {
            return sc
                .object(|sc, key| {
                    let v = sc.value()?;
                    if key.eq_str(sc.body(), cached_key) {
                        usage.cached_input_tokens = count(sc.body(), v.kind, v.span);
                    }
                    Ok(())
                })
                .map(|_| ());
        }
        let v = sc.value()?;
        if key.eq_str(body, input_key) {
            usage.input_tokens = count(body, v.kind, v.span);
        } else if key.eq_str(body, output_key) {
            usage.output_tokens = count(body, v.kind, v.span);
        } else if details_key.is_empty() && key.eq_str(body, cached_key) {
            usage.cached_input_tokens = count(body, v.kind, v.span);
        }
        Ok(())
    })
    .ok()?;
    Some(usage)
}

#[cfg(test)]
mod tests {
    // A failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn read(api: Api, frames: &[&[u8]]) -> StreamUsage {
        let mut r = UsageReader::new(api);
        for f in frames {
            r.read(f);
        }
        r.usage()
    }

    pub(crate) const CHAT: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"say \\\"usage\\\": {\\\"prompt_tokens\\\": 99}\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":34,\"total_tokens\":46,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n\
data: [DONE]\n\n";

    const MESSAGES: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"\\\"usage\\\":{\\\"output_tokens\\\":7}\"}}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

    const RESPONSES: &str = "event: response.created\n\
data: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"usage\":null}}\n\n\
event: response.output_text.delta\n\
data: {\"type\":\"response.output_text.delta\",\"delta\":\"usage\"}\n\n\
event: response.completed\n\
data: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"output\":[{\"content\":[{\"text\":\"}{\"}]}],\"usage\":{\"input_tokens\":8,\"input_tokens_details\":{\"cached_tokens\":2},\"output_tokens\":5,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":13},\"user\":null}}\n\n";

    fn expected(api: Api) -> (&'static str, StreamUsage) {
        let u = |i, o, c| StreamUsage {
            input_tokens: Some(i),
            output_tokens: Some(o),
            cached_input_tokens: Some(c),
        };
        match api {
            Api::ChatCompletions => (CHAT, u(12, 34, 4)),
            Api::Messages => (MESSAGES, u(25, 15, 3)),
            Api::Responses => (RESPONSES, u(8, 5, 2)),
        }
    }

    const APIS: [Api; 3] = [Api::ChatCompletions, Api::Messages, Api::Responses];

    #[test]
    fn every_framing_gives_its_usage() {
        for api in APIS {
            let (stream, want) = expected(api);
            assert_eq!(read(api, &[stream.as_bytes()]), want, "{api:?}");
        }
    }

    #[test]
    fn every_split_into_two_or_three_frames_gives_the_same_usage() {
        for api in APIS {
            let (stream, want) = expected(api);
            let b = stream.as_bytes();
            for i in 0..=b.len() {
                assert_eq!(read(api, &[&b[..i], &b[i..]]), want, "{api:?} at {i}");
            }
            for i in (0..b.len()).step_by(7) {
                for j in (i..b.len()).step_by(11) {
                    assert_eq!(read(api, &[&b[..i], &b[i..j], &b[j..]]), want);
                }
            }
        }
    }

    #[test]
    fn crlf_cr_and_tight_fields_read_alike() {
        for api in APIS {
            let (stream, want) = expected(api);
            let crlf = stream.replace('\n', "\r\n");
            let cr = stream.replace('\n', "\r");
            let tight = stream.replace("data: ", "data:");
            for s in [crlf, cr, tight] {
                assert_eq!(read(api, &[s.as_bytes()]), want, "{api:?} {s:?}");
            }
        }
    }

    #[test]
    fn a_usage_in_a_string_comment_or_other_field_is_not_read() {
        let s = ": data: {\"usage\":{\"prompt_tokens\":1}}\n\
event: {\"usage\":{\"prompt_tokens\":1}}\n\
data: {\"text\":\"\\\"usage\\\":{\\\"prompt_tokens\\\":1}\"}\n\
data: {\"a\":\"usage\",\"b\":{\"prompt_tokens\":1}}\n\n";
        assert!(read(Api::ChatCompletions, &[s.as_bytes()]).is_empty());
    }

    #[test]
    fn a_usage_too_large_or_invalid_is_skipped_and_counts_merge() {
        let big = format!(
            "data: {{\"usage\":{{\"prompt_tokens\":1,\"pad\":\"{}\"}}}}\n\n",
            "x".repeat(USAGE_CAPTURE)
        );
        assert!(read(Api::ChatCompletions, &[big.as_bytes()]).is_empty());
        let bad = "data: {\"usage\":{\"prompt_tokens\":1,}}\n\n";
        assert!(read(Api::ChatCompletions, &[bad.as_bytes()]).is_empty());
        let cut = "data: {\"usage\":{\"prompt_tokens\":1\n\ndata: {\"x\":1}}\n\n";
        assert!(read(Api::ChatCompletions, &[cut.as_bytes()]).is_empty());
        // A later event's count replaces; an absent one keeps.
        let two = "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n\
data: {\"usage\":{\"completion_tokens\":5,\"prompt_tokens\":-1}}\n\n";
        let u = read(Api::ChatCompletions, &[two.as_bytes()]);
        assert_eq!((u.input_tokens, u.output_tokens), (Some(1), Some(5)));
    }

    #[test]
    fn the_usage_only_chunk_is_told_apart() {
        let mut r = UsageReader::new(Api::ChatCompletions);
        let mut ends = Vec::new();
        r.read_events(CHAT.as_bytes(), |at, e| ends.push((at, e.usage_only)));
        let first = CHAT.find("\n\n").unwrap() + 2;
        let second = CHAT[first..].find("\n\n").unwrap() + 2 + first;
        assert_eq!(
            ends,
            vec![(first, false), (second, true), (CHAT.len(), false)]
        );
        // Choices with elements, or nested ones, are not empty.
        let mut r = UsageReader::new(Api::ChatCompletions);
        let s = "data: {\"x\":{\"choices\":[]},\"choices\":[ 1 ],\"usage\":{}}\n\n";
        let mut only = Vec::new();
        r.read_events(s.as_bytes(), |_, e| only.push(e.usage_only));
        assert_eq!(only, vec![false]);
    }

    #[test]
    fn billed_input_per_api() {
        let u = StreamUsage {
            input_tokens: Some(10),
            output_tokens: Some(1),
            cached_input_tokens: Some(4),
        };
        assert_eq!(u.billed_input(Api::ChatCompletions), (6, 4));
        assert_eq!(u.billed_input(Api::Responses), (6, 4));
        assert_eq!(u.billed_input(Api::Messages), (10, 4));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(17), ..ProptestConfig::default() })]

            /// Any split into frames gives the usage of the whole.
            #[test]
            fn frames_do_not_matter(api in 0usize..3, cuts in proptest::collection::vec(0usize..2000, 0..8)) {
                let api = APIS[api];
                let (stream, want) = expected(api);
                let b = stream.as_bytes();
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (b.len() + 1)).collect();
                cuts.sort_unstable();
                let mut r = UsageReader::new(api);
                let mut at = 0;
                for c in cuts {
                    r.read(&b[at..c]);
                    at = c;
                }
                r.read(&b[at..]);
                prop_assert_eq!(r.usage(), want);
            }

            /// Arbitrary bytes never panic, and whatever is found comes from a valid object.
            #[test]
            fn arbitrary_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                for api in APIS {
                    let mut r = UsageReader::new(api);
                    r.read(&bytes);
                    let _ = r.usage();
                }
            }
        }
    }
}
