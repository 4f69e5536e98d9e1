//! A validating, streaming JSON scanner over bytes: spans, never values.
//!
//! The rewriter must leave every byte it does not own exactly as it was, so nothing here builds
//! a `serde_json::Value` or reformats a number. The scanner walks the body once, checks it is
//! JSON (RFC 8259: UTF-8, no control characters in strings, valid escapes, the number grammar,
//! nothing after the top-level value) and reports where values start and end. Strings are
//! skipped 32 bytes at a time (SSE2 on x86-64, eight bytes at a time elsewhere) because in an
//! LLM request nearly every byte is inside a message string. A scanner made from a `&str`
//! ([`Scanner::from_str`], for a body whose UTF-8 was checked at once, vectorized) skips the
//! per-character UTF-8 check and, inside nested values where the CPU has AVX2, takes each
//! 32-byte window with one compare; it accepts and rejects exactly what the byte scanner does, at the same offsets.
//!
//! Numbers are checked against the grammar but never converted, so `1e400` passes through as
//! written. Duplicate keys are allowed (RFC 8259 leaves them to the reader); callers decide what
//! a duplicate means (the extractor takes the last one, as `serde_json` and Python do).

use std::borrow::Cow;
use std::fmt;

/// The deepest nesting a body may have. `serde_json` stops at 128 by default; this leaves room
/// for hand-written or generated bodies without letting a body of brackets exhaust anything.
pub const MAX_DEPTH: usize = 1024;

/// A byte range of the input: `start..end`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The bytes of this span in `body`.
    #[inline]
    pub fn of<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        body.get(self.start..self.end).unwrap_or_default()
    }

    /// Its length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True for an empty span.
    #[inline]
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code))] // `len`'s pair, for the fuzz API.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// A JSON string found by the scanner: the bytes between the quotes, and whether any escape
/// (`\n`, `\u00e9`, ...) occurs in them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StrSpan {
    /// The content, without the quotes.
    pub inner: Span,
    /// True when the content holds at least one backslash escape.
    pub escaped: bool,
}

impl StrSpan {
    /// The decoded string: borrowed when there is no escape.
    pub fn decode<'a>(&self, body: &'a [u8]) -> Result<Cow<'a, str>, SyntaxError> {
        decode(self.inner.of(body), self.escaped, self.inner.start)
    }

    /// [`decode`](Self::decode) in a body known to be UTF-8 (`text`): a string without escapes
    /// is borrowed without checking its UTF-8 again.
    #[inline]
    pub fn decode_text<'a>(&self, text: &'a str) -> Result<Cow<'a, str>, SyntaxError> {
        match text.get(self.inner.start..self.inner.end) {
            Some(s) if !self.escaped => Ok(Cow::Borrowed(s)),
            _ => self.decode(text.as_bytes()),
        }
    }

    /// True when the decoded string equals `s`, without allocating when there is no escape.
    #[inline]
    pub fn eq_str(&self, body: &[u8], s: &str) -> bool {
        if self.escaped {
            self.decode(body).is_ok_and(|d| d == s)
        } else {
            self.inner.of(body) == s.as_bytes()
        }
    }
}

/// What kind of JSON value a span holds, from its first byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    /// `{...}`
    Object,
    /// `[...]`
    Array,
    /// `"..."`
    String,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// `null`.
    #[default]
    Null,
}

impl Kind {
    /// The kind of the value starting with byte `b` (the scanner has validated it).
    pub fn of_first_byte(b: u8) -> Kind {
        match b {
            b'{' => Kind::Object,
            b'[' => Kind::Array,
            b'"' => Kind::String,
            b't' | b'f' => Kind::Bool,
            b'n' => Kind::Null,
            _ => Kind::Number,
        }
    }
}

/// A JSON value's span and kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValueSpan {
    /// The bytes of the value, without surrounding whitespace.
    pub span: Span,
    /// Its kind.
    pub kind: Kind,
}

/// A JSON syntax error: what was wrong and at which byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    offset: usize,
    message: &'static str,
    line: usize,
    column: usize,
}

impl SyntaxError {
    fn new(offset: usize, message: &'static str) -> SyntaxError {
        SyntaxError {
            offset,
            message,
            line: 0,
            column: 0,
        }
    }

    /// Fills in line and column from the body (only on the error path: it rescans up to the
    /// offset).
    pub(crate) fn locate(mut self, body: &[u8]) -> SyntaxError {
        let before = body.get(..self.offset).unwrap_or(body);
        self.line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        // Columns count characters, as serde_json's do, 1-based.
        let line_bytes = &before[line_start..];
        self.column = 1 + line_bytes.iter().filter(|&&b| (b & 0xC0) != 0x80).count();
        self
    }
}

// Read by the tests and the fuzz targets; the crate itself only displays the error.
#[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
impl SyntaxError {
    /// The byte offset of the error, from 0.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The 1-based line (0 if not located).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The 1-based column, in characters (0 if not located).
    pub fn column(&self) -> usize {
        self.column
    }

    /// What was wrong.
    pub fn message(&self) -> &'static str {
        self.message
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{} at line {} column {} (byte {})",
                self.message, self.line, self.column, self.offset
            )
        } else {
            write!(f, "{} at byte {}", self.message, self.offset)
        }
    }
}

impl std::error::Error for SyntaxError {}

/// What a value scan counts, for the token estimate and capability needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentStats {
    /// Bytes of string values (not keys), except `data:` URLs.
    pub text_bytes: u64,
    /// String values of a `type` member naming an image part (`image_url`, `input_image`,
    /// `image`).
    pub images: u32,
}

/// The scanner: a cursor over the body.
///
/// Made from bytes ([`Scanner::new`]), it checks UTF-8 character by character inside strings.
/// Made from a `&str` ([`Scanner::from_str`]), whose UTF-8 the type already guarantees (a
/// caller validates a whole body at once with a vectorized checker), its string scan only has
/// to stop at `"`, `\` and control bytes.
#[derive(Debug, Clone)]
pub struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    /// `b` as text, when it is known to be valid UTF-8.
    text: Option<&'a str>,
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

impl<'a> Scanner<'a> {
    /// A scanner at the start of `body`.
    pub fn new(body: &'a [u8]) -> Scanner<'a> {
        Scanner::at(body, 0)
    }

    /// A scanner at `offset`.
    pub fn at(body: &'a [u8], offset: usize) -> Scanner<'a> {
        Scanner {
            b: body,
            i: offset,
            text: None,
        }
    }

    /// A scanner at the start of a body already known to be UTF-8: strings are scanned for
    /// quotes, escapes and control characters only. It accepts and rejects exactly what
    /// [`Scanner::new`] does on the same bytes, at the same offsets.
    #[allow(clippy::should_implement_trait)] // Not `FromStr`: it borrows, and cannot fail.
    pub fn from_str(body: &'a str) -> Scanner<'a> {
        Scanner::at_str(body, 0)
    }

    /// [`Scanner::from_str`] at `offset`.
    pub fn at_str(body: &'a str, offset: usize) -> Scanner<'a> {
        Scanner {
            b: body.as_bytes(),
            i: offset,
            text: Some(body),
        }
    }

    /// The whole input.
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        self.b
    }

    /// Decodes a string read by this scanner (borrowed when it has no escape; without a second
    /// UTF-8 check when the scanner was made from text).
    #[inline]
    pub fn decode(&self, s: &StrSpan) -> Result<Cow<'a, str>, SyntaxError> {
        match self.text {
            Some(text) => s.decode_text(text),
            None => s.decode(self.b),
        }
    }

    /// The current offset.
    #[inline]
    pub fn pos(&self) -> usize {
        self.i
    }

    #[inline]
    fn err<T>(&self, message: &'static str) -> Result<T, SyntaxError> {
        Err(SyntaxError::new(self.i, message))
    }

    /// Skips whitespace.
    #[inline]
    pub fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if !is_ws(c) {
                break;
            }
            self.i += 1;
        }
    }

    /// The next byte, if any (no whitespace skipping).
    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skips whitespace, then consumes `c` or fails with `message`.
    #[inline]
    pub fn expect(&mut self, c: u8, message: &'static str) -> Result<(), SyntaxError> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.err(message)
        }
    }

    /// After the top-level value: only whitespace may follow.
    pub fn end(&mut self) -> Result<(), SyntaxError> {
        self.ws();
        if self.i < self.b.len() {
            return self.err("trailing characters after the JSON value");
        }
        Ok(())
    }

    /// Reads a string starting at the cursor (which must be at `"`).
    #[inline(always)]
    pub fn string(&mut self) -> Result<StrSpan, SyntaxError> {
        self.string_in::<false>()
    }

    /// [`string`](Self::string); with `AVX2` (only inside code compiled for AVX2, see
    /// [`nested_avx2`](Self::nested_avx2)) a text scanner's windows take one AVX2 compare.
    #[inline(always)]
    fn string_in<const AVX2: bool>(&mut self) -> Result<StrSpan, SyntaxError> {
        if self.peek() != Some(b'"') {
            return self.err("expected a string");
        }
        let start = self.i + 1;
        let (end, escaped) = match (self.text.is_some(), AVX2) {
            (true, true) => scan_string::<true, true>(self.b, start)?,
            (true, false) => scan_string::<true, false>(self.b, start)?,
            _ => scan_string::<false, false>(self.b, start)?,
        };
        self.i = end + 1;
        Ok(StrSpan {
            inner: Span { start, end },
            escaped,
        })
    }

    /// Reads a number at the cursor, checking the grammar
    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    pub fn number(&mut self) -> Result<Span, SyntaxError> {
        let start = self.i;
        let b = self.b;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                i += 1;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return Err(SyntaxError::new(i, "invalid number")),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !b.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(SyntaxError::new(
                    i,
                    "invalid number: digit expected after `.`",
                ));
            }
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !b.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(SyntaxError::new(
                    i,
                    "invalid number: digit expected in exponent",
                ));
            }
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        self.i = i;
        Ok(Span { start, end: i })
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), SyntaxError> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.err("invalid literal (expected true, false or null)")
        }
    }

    /// Reads any value at the cursor (after whitespace) and returns its span and kind.
    #[inline]
    pub fn value(&mut self) -> Result<ValueSpan, SyntaxError> {
        self.value_counting(None)
    }

    /// Reads any value; for a string, also its [`StrSpan`] (content span and escape flag).
    pub fn value_str(&mut self) -> Result<(ValueSpan, Option<StrSpan>), SyntaxError> {
        self.ws();
        if self.peek() == Some(b'"') {
            let start = self.i;
            let s = self.string()?;
            let span = Span { start, end: self.i };
            return Ok((
                ValueSpan {
                    span,
                    kind: Kind::String,
                },
                Some(s),
            ));
        }
        Ok((self.value()?, None))
    }

    /// Reads any value; when `stats` is given, counts string bytes and image parts in it.
    pub fn value_counting(
        &mut self,
        mut stats: Option<&mut ContentStats>,
    ) -> Result<ValueSpan, SyntaxError> {
        self.ws();
        let start = self.i;
        let Some(first) = self.peek() else {
            return self.err("end of input where a value was expected");
        };
        let kind = Kind::of_first_byte(first);
        match first {
            b'"' => {
                let s = self.string()?;
                if let Some(st) = stats.as_deref_mut() {
                    count_text(st, self.b, &s);
                }
            }
            b'{' | b'[' => {
                #[cfg(target_arch = "x86_64")]
                if self.text.is_some() && std::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 was detected just above.
                    unsafe { self.nested_avx2(stats)? };
                    return Ok(ValueSpan {
                        span: Span { start, end: self.i },
                        kind,
                    });
                }
                self.nested::<false>(stats)?;
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => {
                self.number()?;
            }
            _ => return self.err("expected a value"),
        }
        Ok(ValueSpan {
            span: Span { start, end: self.i },
            kind,
        })
    }

    /// Skips an object or array at the cursor, iteratively (no recursion, so no stack overflow
    /// whatever the depth), with a bit stack of what each level is.
    #[inline(always)]
    fn nested<const AVX2: bool>(
        &mut self,
        mut stats: Option<&mut ContentStats>,
    ) -> Result<(), SyntaxError> {
        // Bit d of the stack: 1 when level d is an object.
        let mut stack = [0u64; MAX_DEPTH / 64];
        let mut depth = 0usize;
        // Whether the value about to be read is the value of a `type` member.
        let mut type_value = false;
        'value: loop {
            // At the start of a value (whitespace skipped by the caller or below).
            self.ws();
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    if depth >= MAX_DEPTH {
                        return self.err("JSON nested too deeply");
                    }
                    let is_obj = open == b'{';
                    let (word, bit) = (depth / 64, depth % 64);
                    if is_obj {
                        stack[word] |= 1 << bit;
                    } else {
                        stack[word] &= !(1 << bit);
                    }
                    depth += 1;
                    self.i += 1;
                    self.ws();
                    let close = if is_obj { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.i += 1;
                        depth -= 1;
                    } else if is_obj {
                        type_value = self.key_then_colon::<AVX2>()?;
                        continue 'value;
                    } else {
                        type_value = false;
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    let s = self.string_in::<AVX2>()?;
                    if let Some(st) = stats.as_deref_mut() {
                        count_text(st, self.b, &s);
                        if type_value && is_image_type(self.b, &s) {
                            st.images += 1;
                        }
                    }
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                Some(_) => return self.err("expected a value"),
                None => return self.err("end of input where a value was expected"),
            }
            // After a value: close levels or move to the next element.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                let d = depth - 1;
                let is_obj = stack[d / 64] & (1 << (d % 64)) != 0;
                self.ws();
                match (self.peek(), is_obj) {
                    (Some(b','), true) => {
                        self.i += 1;
                        self.ws();
                        type_value = self.key_then_colon::<AVX2>()?;
                        continue 'value;
                    }
                    (Some(b','), false) => {
                        self.i += 1;
                        type_value = false;
                        continue 'value;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.i += 1;
                        depth -= 1;
                    }
                    (None, _) => return self.err("end of input inside an object or array"),
                    (_, true) => return self.err("expected `,` or `}` after an object member"),
                    (_, false) => return self.err("expected `,` or `]` after an array element"),
                }
            }
        }
    }

    /// [`nested`](Self::nested) compiled for AVX2, for a text scanner: the strings inside take
    /// the AVX2 window with no call per string.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn nested_avx2(&mut self, stats: Option<&mut ContentStats>) -> Result<(), SyntaxError> {
        debug_assert!(self.text.is_some());
        self.nested::<true>(stats)
    }

    /// Reads `"key"` `:`; returns whether the key is `type`.
    #[inline(always)]
    fn key_then_colon<const AVX2: bool>(&mut self) -> Result<bool, SyntaxError> {
        if self.peek() != Some(b'"') {
            return self.err("expected a string key");
        }
        let key = self.string_in::<AVX2>()?;
        self.expect(b':', "expected `:` after an object key")?;
        // The common case without a call to memcmp: four plain bytes.
        let is_type = match self.b.get(key.inner.start..key.inner.end) {
            Some(&[b't', b'y', b'p', b'e']) => true,
            _ => key.escaped && key.eq_str(self.b, "type"),
        };
        Ok(is_type)
    }

    /// Iterates over the members of the object at the cursor, calling `f(scanner, key)` with
    /// the cursor after the `:`; `f` must read the value. Returns the object's span.
    pub fn object(
        &mut self,
        mut f: impl FnMut(&mut Scanner<'a>, StrSpan) -> Result<(), SyntaxError>,
    ) -> Result<Span, SyntaxError> {
        self.ws();
        let start = self.i;
        if self.peek() != Some(b'{') {
            return self.err("expected an object");
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Span { start, end: self.i });
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.err("expected a string key");
            }
            let key = self.string()?;
            self.expect(b':', "expected `:` after an object key")?;
            f(self, key)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Span { start, end: self.i });
                }
                None => return self.err("end of input inside an object"),
                Some(_) => return self.err("expected `,` or `}` after an object member"),
            }
        }
    }

    /// Iterates over the elements of the array at the cursor, calling `f(scanner)` with the
    /// cursor at each element; `f` must read it.
    pub fn array(
        &mut self,
        mut f: impl FnMut(&mut Scanner<'a>) -> Result<(), SyntaxError>,
    ) -> Result<Span, SyntaxError> {
        self.ws();
        let start = self.i;
        if self.peek() != Some(b'[') {
            return self.err("expected an array");
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Span { start, end: self.i });
        }
        loop {
            self.ws();
            f(self)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Span { start, end: self.i });
                }
                None => return self.err("end of input inside an array"),
                Some(_) => return self.err("expected `,` or `]` after an array element"),
            }
        }
    }
}

/// Counts a string value's bytes into the stats, except `data:` URLs (inline images and files,
/// whose size says nothing about tokens).
#[inline(always)]
fn count_text(st: &mut ContentStats, body: &[u8], s: &StrSpan) {
    let bytes = s.inner.of(body);
    if !matches!(bytes, [b'd', b'a', b't', b'a', b':', ..]) {
        st.text_bytes += bytes.len() as u64;
    }
}

fn is_image_type(body: &[u8], s: &StrSpan) -> bool {
    ["image_url", "input_image", "image"]
        .iter()
        .any(|t| s.eq_str(body, t))
}

/// Decodes a JSON string's content (without quotes). `offset` is where it starts in the body,
/// for errors. A lone surrogate escape decodes to U+FFFD.
pub fn decode(raw: &[u8], escaped: bool, offset: usize) -> Result<Cow<'_, str>, SyntaxError> {
    let utf8 = |bytes| {
        std::str::from_utf8(bytes).map_err(|e| {
            SyntaxError::new(offset + e.valid_up_to(), "invalid UTF-8 inside a string")
        })
    };
    if !escaped {
        return utf8(raw).map(Cow::Borrowed);
    }
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let Some(rel) = raw[i..].iter().position(|&b| b == b'\\') else {
            out.push_str(utf8(&raw[i..])?);
            break;
        };
        out.push_str(utf8(&raw[i..i + rel])?);
        i += rel;
        let at = offset + i;
        let c = match raw.get(i + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let hi =
                    hex4(raw, i + 2).ok_or_else(|| SyntaxError::new(at, "invalid \\u escape"))?;
                i += 6;
                // A high surrogate followed by `\u` and a low surrogate is one character; a
                // surrogate alone (which JSON's grammar allows and Python keeps) decodes to
                // U+FFFD, so a body is never refused for it.
                let lo = (0xD800..0xDC00).contains(&hi).then(|| {
                    (raw.get(i) == Some(&b'\\') && raw.get(i + 1) == Some(&b'u'))
                        .then(|| hex4(raw, i + 2))
                        .flatten()
                        .filter(|lo| (0xDC00..0xE000).contains(lo))
                });
                let code = match lo {
                    Some(Some(lo)) => {
                        i += 6;
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    }
                    _ => hi,
                };
                let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
                out.push(c);
                continue;
            }
            _ => return Err(SyntaxError::new(at, "invalid escape")),
        };
        out.push(c);
        i += 2;
    }
    Ok(Cow::Owned(out))
}

fn hex4(raw: &[u8], at: usize) -> Option<u32> {
    let h = raw.get(at..at + 4)?;
    h.iter().try_fold(0u32, |acc, &c| {
        let d = char::from(c).to_digit(16)?;
        Some(acc << 4 | d)
    })
}

/// Writes `s` as a JSON string (with quotes), escaping what JSON requires, into `out`.
pub fn write_str<W: Sink>(out: &mut W, s: &str) {
    let bytes = s.as_bytes();
    // Model ids and parameter names need no escape: three copies.
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.put_quoted(bytes);
        return;
    }
    out.put(b"\"");
    write_str_content(out, s);
    out.put(b"\"");
}

/// Writes `s` escaped as the content of a JSON string, without the quotes.
pub fn write_str_content<W: Sink>(out: &mut W, s: &str) {
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.put(&bytes[from..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.put(esc);
        }
        from = i + 1;
    }
    out.put(&bytes[from..]);
}

/// Where rewritten bytes go: the output body, or a counter that sizes it first.
pub trait Sink {
    /// Appends bytes.
    fn put(&mut self, bytes: &[u8]);

    /// Appends `"`, the bytes, `"` (for a string that needs no escape).
    #[inline]
    fn put_quoted(&mut self, bytes: &[u8]) {
        self.put(b"\"");
        self.put(bytes);
        self.put(b"\"");
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A [`Sink`] that only counts, to size the output before writing it.
#[derive(Debug, Default)]
pub struct Counter(pub usize);

impl Sink for Counter {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// `serde_json` serializes through `io::Write`; this adapts any [`Sink`].
pub struct SinkWriter<'s, W: Sink>(pub &'s mut W);

impl<W: Sink> std::io::Write for SinkWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.put(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes a `serde_json::Value` compactly into a sink.
pub fn write_value<W: Sink>(out: &mut W, v: &serde_json::Value) {
    // Writing a Value into an infallible writer cannot fail.
    let _ = serde_json::to_writer(SinkWriter(out), v);
}

/// Scans string content from `start` (just after the opening quote) to the closing quote,
/// checking it: escapes, UTF-8, no control characters. Returns the closing quote's offset and
/// whether any escape was seen. With `UTF8` the caller guarantees `b` is valid UTF-8, so a
/// non-ASCII byte is plain content: it needs no check and no stop.
///
/// Plain content is skipped 32 bytes at a time: a window's *special* bytes (`"`, `\`, control,
/// and non-ASCII unless `UTF8`) come as a bit mask, and each is handled from the mask without
/// reloading, so an escape or a non-ASCII character costs a few instructions, not a restart.
#[inline(always)]
fn scan_string<const UTF8: bool, const AVX2: bool>(
    b: &[u8],
    start: usize,
) -> Result<(usize, bool), SyntaxError> {
    let mut i = start;
    let mut escaped = false;
    'windows: while i + 32 <= b.len() {
        let mut mask = match (UTF8, AVX2) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `AVX2` is only true inside `Scanner::nested_avx2`, which is compiled for
            // AVX2 and called only where it was detected.
            (true, true) => unsafe { special_mask32_text_avx2(b, i) },
            (true, _) => special_mask32_text(b, i),
            _ => special_mask32(b, i),
        };
        while mask != 0 {
            let p = i + mask.trailing_zeros() as usize;
            let next = match b[p] {
                b'"' => return Ok((p, escaped)),
                b'\\' => {
                    escaped = true;
                    escape_end(b, p)?
                }
                c if !UTF8 && c >= 0x80 => utf8_char_end(b, p)?,
                _ => return Err(control(p)),
            };
            let skip = next - i;
            if skip >= 32 {
                i = next;
                continue 'windows;
            }
            // Forget the specials the escape or character covered.
            mask &= u32::MAX << skip;
        }
        i += 32;
    }
    if UTF8 {
        return scan_text_tail(b, i, escaped);
    }
    // The tail, byte by byte.
    loop {
        match b.get(i) {
            Some(b'"') => return Ok((i, escaped)),
            Some(b'\\') => {
                escaped = true;
                i = escape_end(b, i)?;
            }
            Some(&c) if !UTF8 && c >= 0x80 => i = utf8_char_end(b, i)?,
            Some(&c) if c < 0x20 => return Err(control(i)),
            Some(_) => i += 1,
            None => return Err(SyntaxError::new(i, "end of input inside a string")),
        }
    }
}

/// The last bytes of a text string (fewer than 32 left in the body), as one window: copied
/// into a buffer padded with spaces (never special), so a short string at the end of a body
/// is not read byte by byte. Finds what the byte-wise loop finds, at the same offsets.
#[inline(never)]
fn scan_text_tail(b: &[u8], start: usize, mut escaped: bool) -> Result<(usize, bool), SyntaxError> {
    let rest = b.get(start..).unwrap_or_default();
    let mut window = [b' '; 32];
    window[..rest.len()].copy_from_slice(rest);
    let mut mask = special_mask32_text(&window, 0);
    while mask != 0 {
        // Below `b.len()`: the padding is never special.
        let p = start + mask.trailing_zeros() as usize;
        match b[p] {
            b'"' => return Ok((p, escaped)),
            b'\\' => {
                escaped = true;
                // At most `b.len() - start`, below 32.
                let next = escape_end(b, p)?;
                mask &= u32::MAX << (next - start);
            }
            _ => return Err(control(p)),
        }
    }
    Err(SyntaxError::new(b.len(), "end of input inside a string"))
}

#[cold]
fn control(at: usize) -> SyntaxError {
    SyntaxError::new(at, "control character (U+0000 to U+001F) inside a string")
}

/// For each byte after a backslash: 2 for a one-character escape, 6 for `u`, 0 for invalid.
static ESCAPE_LEN: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut k = 0;
    let singles = *b"\"\\/bfnrt";
    while k < singles.len() {
        t[singles[k] as usize] = 2;
        k += 1;
    }
    t[b'u' as usize] = 6;
    t
};

/// Checks the escape at `i` (a backslash); returns the offset after it.
#[inline(always)]
fn escape_end(b: &[u8], i: usize) -> Result<usize, SyntaxError> {
    let Some(&c) = b.get(i + 1) else {
        return Err(SyntaxError::new(i, "end of input inside a string"));
    };
    match ESCAPE_LEN[usize::from(c)] {
        2 => Ok(i + 2),
        6 => match b.get(i + 2..i + 6) {
            Some(h) if h.iter().all(u8::is_ascii_hexdigit) => Ok(i + 6),
            _ => Err(SyntaxError::new(i, "invalid \\u escape")),
        },
        _ => Err(SyntaxError::new(i, "invalid escape")),
    }
}

/// Checks the UTF-8 character starting at `i` (a non-ASCII byte); returns the offset after it.
/// Checks exactly what `std::str::from_utf8` checks: no overlong forms, no surrogates, nothing
/// past U+10FFFF, no truncated sequence.
#[inline(always)]
fn utf8_char_end(b: &[u8], i: usize) -> Result<usize, SyntaxError> {
    let lead = b[i];
    // The range of the second byte depends on the lead byte (RFC 3629's table); the others
    // are plain continuation bytes.
    let (len, lo, hi) = match lead {
        0xC2..=0xDF => (2, 0x80, 0xBF),
        0xE0 => (3, 0xA0, 0xBF),
        0xED => (3, 0x80, 0x9F),
        0xE1..=0xEF => (3, 0x80, 0xBF),
        0xF0 => (4, 0x90, 0xBF),
        0xF4 => (4, 0x80, 0x8F),
        0xF1..=0xF3 => (4, 0x80, 0xBF),
        _ => return Err(invalid_utf8(i)),
    };
    let ok = match b.get(i + 1..i + len) {
        Some([second, rest @ ..]) => {
            (lo..=hi).contains(second) && rest.iter().all(|&c| (0x80..=0xBF).contains(&c))
        }
        _ => false,
    };
    if ok {
        Ok(i + len)
    } else {
        Err(invalid_utf8(i))
    }
}

#[cold]
fn invalid_utf8(at: usize) -> SyntaxError {
    SyntaxError::new(at, "invalid UTF-8 inside a string")
}

/// Whether `c` ends a run of plain string content: `"`, `\`, control or non-ASCII.
#[cfg(test)]
fn is_special(c: u8) -> bool {
    c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c)
}

/// The special bytes of `b[i..i + 32]` as a bit mask (bit k for byte `i + k`): `"`, `\`,
/// control (below 0x20) and non-ASCII (0x80 and up). The caller guarantees `i + 32 <= len`.
#[cfg(target_arch = "x86_64")]
#[inline]
fn special_mask32(b: &[u8], i: usize) -> u32 {
    special_mask32_sse2::<false>(b, i)
}

/// [`special_mask32`] for content known to be UTF-8: only `"`, `\` and control bytes (below
/// 0x20, unsigned), so non-ASCII characters need no stop.
#[cfg(target_arch = "x86_64")]
#[inline]
fn special_mask32_text(b: &[u8], i: usize) -> u32 {
    special_mask32_sse2::<true>(b, i)
}

/// Both masks with SSE2 (part of the x86-64 baseline, so always available there): two 16-byte
/// loads, three compares and the sign bits each. A *signed* `v < 0x20` flags both control
/// bytes and non-ASCII ones (0x80 and up are negative), so one compare covers both; for `TEXT`
/// an `andnot` with the byte itself clears the non-ASCII ones.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(unused_unsafe)] // The intrinsics are safe to call on recent toolchains, not on 1.85.
fn special_mask32_sse2<const TEXT: bool>(b: &[u8], i: usize) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let window = &b[i..i + 32];
    // SAFETY: SSE2 is part of the x86-64 baseline, so the intrinsics are available. The two
    // loads read `window[0..16]` and `window[16..32]`, inside the 32-byte `window` (the slice
    // index above panics rather than read past `b`); `_mm_loadu_si128` has no alignment
    // requirement.
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let space = _mm_set1_epi8(0x20);
        let half = |v: __m128i| -> u32 {
            let q = _mm_cmpeq_epi8(v, quote);
            let s = _mm_cmpeq_epi8(v, backslash);
            let below = _mm_cmplt_epi8(v, space);
            // Top bit for TEXT: signed below 0x20, and not itself 0x80 or above.
            let c = if TEXT {
                _mm_andnot_si128(v, below)
            } else {
                below
            };
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(q, s), c)) as u32
        };
        let lo = _mm_loadu_si128(window.as_ptr().cast::<__m128i>());
        let hi = _mm_loadu_si128(window.as_ptr().add(16).cast::<__m128i>());
        half(lo) | half(hi) << 16
    }
}

/// [`special_mask32_text`] with AVX2: one 32-byte load, and unsigned `v < 0x20` as
/// `min(v, 0x1f) == v`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
#[allow(unused_unsafe)] // The intrinsics are safe to call on recent toolchains, not on 1.85.
fn special_mask32_text_avx2(b: &[u8], i: usize) -> u32 {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_min_epu8, _mm256_movemask_epi8,
        _mm256_or_si256, _mm256_set1_epi8,
    };
    let window = &b[i..i + 32];
    // SAFETY: the function is compiled for AVX2 and only called where it was detected; the
    // one unaligned 32-byte load reads exactly `window` (the slice index above panics rather
    // than read past `b`).
    unsafe {
        let v = _mm256_loadu_si256(window.as_ptr().cast::<__m256i>());
        let q = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8));
        let s = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8));
        let c = _mm256_cmpeq_epi8(_mm256_min_epu8(v, _mm256_set1_epi8(0x1f)), v);
        _mm256_movemask_epi8(_mm256_or_si256(_mm256_or_si256(q, s), c)) as u32
    }
}

/// [`special_mask32_text`] without SSE2.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn special_mask32_text(b: &[u8], i: usize) -> u32 {
    special_mask32_text_swar(b, i)
}

/// The portable version of [`special_mask32_text`]: the SWAR mask without its non-ASCII bits,
/// also tested on x86-64 against the SSE2 one.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
fn special_mask32_text_swar(b: &[u8], i: usize) -> u32 {
    let mut high = 0u32;
    for (k, &c) in b[i..i + 32].iter().enumerate() {
        high |= u32::from(c >> 7) << k;
    }
    special_mask32_swar(b, i) & !high
}

/// The special bytes of `b[i..i + 32]` without SSE2: four `u64` words (SWAR).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn special_mask32(b: &[u8], i: usize) -> u32 {
    special_mask32_swar(b, i)
}

/// The portable version of [`special_mask32`], also tested on x86-64 against the SSE2 one.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
fn special_mask32_swar(b: &[u8], i: usize) -> u32 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut mask = 0u32;
    for k in 0..4 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i + 8 * k..i + 8 * k + 8]);
        let x = u64::from_le_bytes(w);
        let q = x ^ (LO * u64::from(b'"'));
        let s = x ^ (LO * u64::from(b'\\'));
        // Per byte: zero in q or s, below 0x20 in x (ASCII only, by `!x`), or the high bit of x.
        // Exact, because each test is done on 7-bit values with the high bits masked first.
        let low7 = |v: u64| v & !HI;
        let zero = |v: u64| !(((low7(v) + !HI) | v) & HI) & HI;
        let below20 = (!(low7(x) + (LO * 0x60)) & !x) & HI;
        let m = zero(q) | zero(s) | below20 | (x & HI);
        // Gather the eight flag bits (bit 7 of each byte) into one byte.
        let bits = ((m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32;
        mask |= bits << (8 * k);
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(s: &str) -> Result<ValueSpan, SyntaxError> {
        let mut sc = Scanner::new(s.as_bytes());
        let v = sc.value()?;
        sc.end()?;
        Ok(v)
    }

    #[test]
    fn accepts_what_json_allows() {
        for ok in [
            "0",
            "-0",
            "1e400",
            "-1.5E-7",
            "123456789012345678901234567890",
            "\"\"",
            "\"\\u00e9\\ud83d\\ude00\\n\\/\"",
            "\"é日本😀\"",
            " \t\r\n{ \"a\" : [ 1 , { } , [ ] , null , true , false ] } \n",
            "[[[[[[[[[[]]]]]]]]]]",
        ] {
            assert!(scan(ok).is_ok(), "{ok:?}: {:?}", scan(ok));
        }
    }

    #[test]
    fn rejects_what_json_forbids() {
        for (bad, at) in [
            ("01", 1),
            ("1.", 2),
            ("1e", 2),
            ("-", 1),
            ("+1", 0),
            ("\"a\u{1}b\"", 2),
            ("\"\\x\"", 1),
            ("\"\\u12g4\"", 1),
            ("\"abc", 4),
            ("{\"a\" 1}", 5),
            ("{\"a\":1,}", 7),
            ("[1,]", 3),
            ("[1 2]", 3),
            ("{1:2}", 1),
            ("tru", 0),
            ("{} x", 3),
            ("", 0),
        ] {
            let err = scan(bad).expect_err(bad);
            assert_eq!(err.offset(), at, "{bad:?}: {err}");
        }
        let mut invalid_utf8 = b"\"ab".to_vec();
        invalid_utf8.extend_from_slice(&[0xff, b'"']);
        let mut sc = Scanner::new(&invalid_utf8);
        assert_eq!(sc.value().unwrap_err().offset(), 3);
    }

    #[test]
    fn depth_limit_without_recursion() {
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(scan(&deep).is_ok());
        let deeper = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(
            scan(&deeper).unwrap_err().message(),
            "JSON nested too deeply"
        );
        // A million open brackets: an error, not a stack overflow.
        assert!(scan(&"[".repeat(1_000_000)).is_err());
    }

    #[test]
    fn error_location() {
        let body = b"{\n  \"a\": 1,\n  \"b\" 2\n}";
        let mut sc = Scanner::new(body);
        let e = sc.value().unwrap_err().locate(body);
        assert_eq!((e.line(), e.column()), (3, 7));
        assert_eq!(
            e.to_string(),
            "expected `:` after an object key at line 3 column 7 (byte 18)"
        );
        // The same place serde_json reports.
        let serde = serde_json::from_slice::<serde_json::Value>(body).unwrap_err();
        assert_eq!((serde.line(), serde.column()), (3, 7));
    }

    #[test]
    fn decode_escapes() {
        let cases = [
            (r#"plain"#, "plain"),
            (r#"a\"b\\c\/d\b\f\n\r\t"#, "a\"b\\c/d\u{8}\u{c}\n\r\t"),
            (r#"\u00e9\u65e5"#, "é日"),
            (r#"\ud83d\ude00!"#, "😀!"),
            ("é\\u0041", "éA"),
        ];
        for (raw, want) in cases {
            let escaped = raw.contains('\\');
            assert_eq!(decode(raw.as_bytes(), escaped, 0).unwrap(), want);
        }
        // Lone surrogates decode to U+FFFD rather than failing.
        assert_eq!(decode(br"\ud83d", true, 0).unwrap(), "\u{fffd}");
        assert_eq!(decode(br"\ude00x", true, 0).unwrap(), "\u{fffd}x");
        assert_eq!(decode(br"\ud83d\u0041", true, 0).unwrap(), "\u{fffd}A");
    }

    #[test]
    fn write_str_round_trips() {
        for s in ["", "a\"b\\c\n\u{1}\u{1f}é😀", "inworld/x"] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
            let mut n = Counter::default();
            write_str(&mut n, s);
            assert_eq!(n.0, out.len());
        }
    }

    #[test]
    fn masks_agree_with_bytewise() {
        // Every byte value at every position of a window, alone and with another special.
        for pos in 0..32 {
            for c in 0..=255u8 {
                for other in [None, Some((31 - pos, b'"')), Some(((pos + 5) % 32, 0xe9))] {
                    let mut w: Vec<u8> = (0..32).map(|k| b'a' + (k % 26) as u8).collect();
                    if let Some((p, v)) = other {
                        w[p] = v;
                    }
                    w[pos] = c;
                    let want = w
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| is_special(**c))
                        .fold(0u32, |m, (k, _)| m | 1 << k);
                    assert_eq!(special_mask32(&w, 0), want, "{w:?}");
                    assert_eq!(special_mask32_swar(&w, 0), want, "{w:?}");
                    // For text known to be UTF-8: the same without the non-ASCII bytes.
                    let text = want
                        & !w.iter()
                            .rev()
                            .fold(0u32, |m, &c| m << 1 | u32::from(c >> 7));
                    assert_eq!(special_mask32_text(&w, 0), text, "{w:?}");
                    assert_eq!(special_mask32_text_swar(&w, 0), text, "{w:?}");
                    #[cfg(target_arch = "x86_64")]
                    if std::is_x86_feature_detected!("avx2") {
                        // SAFETY: AVX2 was detected just above.
                        assert_eq!(unsafe { special_mask32_text_avx2(&w, 0) }, text, "{w:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn strings_across_windows() {
        // Escapes and multi-byte characters straddling every window boundary.
        for pad in 0..70 {
            for piece in [r#"\""#, r"\\", r"\u00e9", "é", "日", "😀", r"\n"] {
                let content = format!("{}{piece}{}", "x".repeat(pad), "y".repeat(40));
                let body = format!("\"{content}\"");
                let s = Scanner::new(body.as_bytes()).string().unwrap();
                assert_eq!(s.inner.end, body.len() - 1, "{body}");
                assert_eq!(s.escaped, piece.starts_with('\\'));
            }
        }
    }

    #[test]
    fn utf8_validation_matches_std() {
        // Every 1- to 3-byte sequence starting with a non-ASCII byte, then a quote.
        let mut seqs: Vec<Vec<u8>> = Vec::new();
        for a in 0x80..=0xffu8 {
            seqs.push(vec![a]);
            for b in [0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff] {
                seqs.push(vec![a, b]);
                for c in [0x80, 0xbf, 0xc0] {
                    seqs.push(vec![a, b, c]);
                    seqs.push(vec![a, b, c, 0x80]);
                    seqs.push(vec![a, b, c, 0xc0]);
                }
            }
        }
        for seq in seqs {
            let mut body = b"\"".to_vec();
            body.extend_from_slice(&seq);
            body.push(b'"');
            let ours = Scanner::new(&body).string().is_ok();
            let std_ok =
                std::str::from_utf8(&seq).is_ok() && !seq.iter().any(|&c| c < 0x20 || c == b'"');
            assert_eq!(ours, std_ok, "{seq:x?}");
        }
    }

    /// Both scanners on the same text: the same value and end, or the same error at the same
    /// offset with the same message.
    fn same_in_both_modes(text: &str) {
        let mut bytewise = Scanner::new(text.as_bytes());
        let mut checked = Scanner::from_str(text);
        let a = bytewise.value().and_then(|v| bytewise.end().map(|()| v));
        let b = checked.value().and_then(|v| checked.end().map(|()| v));
        assert_eq!(a, b, "{text:?}");
        let mut bytewise = Scanner::new(text.as_bytes());
        let mut checked = Scanner::from_str(text);
        if bytewise.peek() == Some(b'"') {
            // The SSE2 window of the text scanner (strings nested in `value()` above take the
            // AVX2 one where the CPU has it).
            let sse2 = scan_string::<true, false>(text.as_bytes(), 1);
            let (a, b) = (bytewise.string(), checked.string());
            assert_eq!(a, b, "{text:?}");
            assert_eq!(
                a.as_ref().map(|s| (s.inner.end, s.escaped)),
                sse2.as_ref().map(|e| *e)
            );
            if let Ok(s) = a {
                assert_eq!(s.decode(text.as_bytes()), s.decode_text(text), "{text:?}");
                assert_eq!(checked.decode(&s), s.decode(text.as_bytes()));
            }
        }
    }

    #[test]
    fn text_scanner_matches_bytewise_on_random_strings() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
        // Pieces dense in what either scanner stops at: quotes, escapes valid and not, control
        // bytes, 2- to 4-byte characters, and plain runs that move them across windows.
        let piece = prop::sample::select(vec![
            "a",
            "xyz",
            "                ",
            "\"",
            "\\",
            "\\\"",
            "\\\\",
            "\\n",
            "\\/",
            "\\u00e9",
            "\\uD83D",
            "\\u12g4",
            "\\x",
            "\\",
            "\u{1}",
            "\u{1f}",
            "\n",
            "\u{7f}",
            "é",
            "日",
            "😀",
            "\u{80}",
            "\u{10ffff}",
            "{",
            "}",
            ",",
            ":",
            "[1,2]",
        ]);
        let doc = (
            0usize..70,
            prop::collection::vec(piece, 0..40),
            prop::bool::ANY,
            prop::sample::select(vec!["", " ", "]", "\"", "x", ",\"k\":1}"]),
        );
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: 20_000,
                ..Config::default()
            },
            TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
        );
        runner
            .run(&doc, |(pad, pieces, close, tail)| {
                let content = format!("{}{}", "p".repeat(pad), pieces.concat());
                let close = if close { "\"" } else { "" };
                same_in_both_modes(&format!("\"{content}{close}{tail}"));
                same_in_both_modes(&format!("{{\"k\":[\"{content}{close}{tail}]}}"));
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn text_scanner_matches_bytewise_at_every_offset() {
        // Each special at every offset of a string longer than two windows, and near the end
        // of the input (the byte-wise tail).
        for piece in [
            "\"", "\\\"", "\\\\", "\\u00e9", "\\q", "\\u00", "\u{1}", "é", "😀",
        ] {
            for at in 0..80 {
                for after in [0, 1, 3, 40] {
                    let content = format!("{}{piece}{}", "x".repeat(at), "y".repeat(after));
                    same_in_both_modes(&format!("\"{content}\""));
                    same_in_both_modes(&format!("\"{content}"));
                }
            }
        }
    }
}
