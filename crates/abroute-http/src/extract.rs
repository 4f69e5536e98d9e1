//! Extraction: what routing needs from a request body, read in one pass, borrowed.
//!
//! [`extract`] scans an OpenAI chat-completions, OpenAI responses or Anthropic messages body
//! once (validating it as JSON on the way) and keeps *spans* into it: where each top-level member
//! is, where `model`, `user`, `messages`, `extra_body.metadata`, `extra_body.models` and
//! `extra_body.fallback` are. Nothing is decoded or copied unless asked for, except the `model`
//! and `user` strings when they hold escapes.
//!
//! What is read, per API:
//!
//! | field | chat completions | responses | messages (Anthropic) |
//! |---|---|---|---|
//! | router model | `model` | `model` | `model` |
//! | sticky key | `user` | `user` | `metadata.user_id` |
//! | conditions' `messages` | `messages` | `input` (a string becomes one user message) | `messages` |
//! | token estimate | `messages`, `tools` | `input`, `instructions`, `tools` | `messages`, `system`, `tools` |
//! | vision | an `image_url` part | an `input_image` part | an `image` part |
//! | tools | non-empty `tools` or `functions` | non-empty `tools` | non-empty `tools` |
//! | response schema | `response_format.type == "json_schema"` | `text.format.type == "json_schema"` | `output_format.type == "json_schema"` |
//! | output tokens | `max_completion_tokens`, `max_tokens` | `max_output_tokens` | `max_tokens` |
//! | metadata, models, TTFT | `extra_body.metadata`, `extra_body.models`, `extra_body.fallback.ttft_timeout` | same | same |
//!
//! A key written twice counts once, with its **last** value, as `serde_json` and Python read it.
//! A lone surrogate escape (`"\ud800"`, which JSON's grammar allows) decodes to U+FFFD; the body
//! is not refused for it.
//! The input-token estimate is the bytes of string values (message text, tool schemas; keys and
//! `data:` URLs excluded) divided by four, rounded up: a cheap upper-side guess for English,
//! good enough to keep a request away from a model whose context window it would overflow.

use std::borrow::Cow;
use std::time::Duration;

use abroute::{MetadataValue, Needs, RequestContext};
use serde_json::Value;

use crate::error::ApiError;
use crate::json::{ContentStats, Kind, Scanner, Span, StrSpan, SyntaxError, ValueSpan};
use crate::list::SmallList;

/// The most `extra_body.metadata` keys a request may send.
pub const MAX_METADATA_KEYS: usize = 128;
/// The most `extra_body.models` a request may send (a plan tries at most 16 models).
pub const MAX_REQUEST_MODELS: usize = 16;
/// The shortest `extra_body.fallback.ttft_timeout`, as Inworld documents it.
pub const MIN_TTFT_TIMEOUT: Duration = Duration::from_millis(300);

/// The API a request body is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI `POST /v1/chat/completions`.
    ChatCompletions,
    /// OpenAI `POST /v1/responses`.
    Responses,
    /// Anthropic `POST /v1/messages`.
    Messages,
}

impl Api {
    /// The API of a request path, by its ending: `/chat/completions`, `/responses` or
    /// `/messages` (so `/v1/...` and any prefix such as `/openai/v1/...` work).
    pub fn from_path(path: &str) -> Option<Api> {
        let path = path.strip_suffix('/').unwrap_or(path);
        if path.ends_with("/chat/completions") {
            Some(Api::ChatCompletions)
        } else if path.ends_with("/responses") {
            Some(Api::Responses)
        } else if path.ends_with("/messages") {
            Some(Api::Messages)
        } else {
            None
        }
    }

    /// A short name: `chat_completions`, `responses` or `messages`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat_completions",
            Api::Responses => "responses",
            Api::Messages => "messages",
        }
    }
}

/// One object member: its key, its value, and what the key is to the rewriter.
///
/// Stored in 20 bytes (offsets as `u32`: [`extract`] refuses bodies of 4 GiB or more), so the
/// member lists, and the [`Extracted`] that holds them, stay small to move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Member {
    key: PackedStr,
    value: [u32; 2],
    value_kind: Kind,
    pub(crate) kind: MemberKind,
}

/// A [`StrSpan`] in 12 bytes (see [`Member`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PackedStr {
    span: [u32; 2],
    escaped: bool,
}

impl PackedStr {
    fn new(s: StrSpan) -> PackedStr {
        // Lossless: `extract` refuses bodies whose offsets do not fit.
        PackedStr {
            span: [s.inner.start as u32, s.inner.end as u32],
            escaped: s.escaped,
        }
    }

    fn get(self) -> StrSpan {
        StrSpan {
            inner: Span {
                start: self.span[0] as usize,
                end: self.span[1] as usize,
            },
            escaped: self.escaped,
        }
    }
}

/// What a member's key is to the rewriter, found once during extraction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum MemberKind {
    /// A top-level `model`.
    Model,
    /// A top-level `extra_body`.
    ExtraBody,
    /// A router key inside `extra_body` (see [`RouterKey`]).
    Router,
    /// Anything else.
    #[default]
    Other,
}

impl Member {
    /// A member of a body shorter than 4 GiB.
    fn new(key: StrSpan, value: ValueSpan, kind: MemberKind) -> Member {
        // Lossless: `extract` refuses bodies whose offsets do not fit.
        Member {
            key: PackedStr::new(key),
            value: [value.span.start as u32, value.span.end as u32],
            value_kind: value.kind,
            kind,
        }
    }

    /// The key.
    pub(crate) fn key(&self) -> StrSpan {
        self.key.get()
    }

    /// The value.
    pub(crate) fn value(&self) -> ValueSpan {
        ValueSpan {
            span: Span {
                start: self.value[0] as usize,
                end: self.value[1] as usize,
            },
            kind: self.value_kind,
        }
    }

    /// Where the member starts (its key's opening quote).
    pub(crate) fn start(&self) -> usize {
        self.key.span[0] as usize - 1
    }
}

/// What the extractor knows about a top-level key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Model,
    User,
    Stream,
    /// The conversation (`messages`, or `input` in responses).
    Conversation,
    /// More text counted for tokens (`system`, `instructions`).
    Text,
    Tools,
    /// `functions` (chat completions' older spelling of `tools`).
    Functions,
    /// `response_format` (chat) or `output_format` (messages): `{type}`.
    Format,
    /// `text` (responses): `{format: {type}}`.
    TextFormat,
    OutputTokens,
    /// Anthropic's `metadata` (`user_id`).
    AnthropicMetadata,
    ExtraBody,
    Other,
}

/// What `key` is for `api`. Matches the raw bytes of an unescaped key (no UTF-8 check, no
/// copy: the scanner has validated it); a key with escapes is decoded first.
fn classify(api: Api, body: &[u8], key: &StrSpan) -> Result<Key, SyntaxError> {
    if key.escaped {
        Ok(classify_name(api, key.decode(body)?.as_bytes()))
    } else {
        Ok(classify_name(api, key.inner.of(body)))
    }
}

fn classify_name(api: Api, key: &[u8]) -> Key {
    use Api::{ChatCompletions as C, Messages as M, Responses as R};
    match (key, api) {
        (b"model", _) => Key::Model,
        (b"user", C | R) => Key::User,
        (b"stream", _) => Key::Stream,
        (b"messages", C | M) | (b"input", R) => Key::Conversation,
        (b"system", M) | (b"instructions", R) => Key::Text,
        (b"tools", _) => Key::Tools,
        (b"functions", C) => Key::Functions,
        (b"response_format", C) | (b"output_format", M) => Key::Format,
        (b"text", R) => Key::TextFormat,
        (b"max_tokens", C | M) | (b"max_completion_tokens", C) | (b"max_output_tokens", R) => {
            Key::OutputTokens
        }
        (b"metadata", M) => Key::AnthropicMetadata,
        (b"extra_body", _) => Key::ExtraBody,
        _ => Key::Other,
    }
}

/// What routing needs from one request body: spans into it, decoded only on demand.
#[derive(Debug, Clone)]
pub struct Extracted<'a> {
    api: Api,
    body: &'a [u8],
    /// The body as text, when it is valid UTF-8 (checked once, vectorized): scanners made from
    /// it skip the per-character check.
    text: Option<&'a str>,
    object_start: usize,
    members: SmallList<Member, 16>,
    model_member: Option<usize>,
    model: Option<Cow<'a, str>>,
    user: Option<Cow<'a, str>>,
    stream: bool,
    conversation: Option<ValueSpan>,
    /// The messages API's `system`.
    system: Option<ValueSpan>,
    /// The offset of the top-level `}`.
    object_end: usize,
    extra_body_member: Option<usize>,
    extra_members: SmallList<Member, 8>,
    metadata: Option<ValueSpan>,
    /// The first [`READ_AHEAD`] metadata entries, read at extraction; `meta_len` counts them
    /// all (past `READ_AHEAD`, the context scans the object again).
    meta: [MetaEntry; READ_AHEAD],
    meta_len: usize,
    models: Option<ValueSpan>,
    /// The first [`READ_AHEAD`] request models, read at extraction; `models_len` counts every
    /// element, `models_strings` whether all are strings.
    model_strs: [PackedStr; READ_AHEAD],
    models_len: usize,
    models_strings: bool,
    fallback: Option<ValueSpan>,
    prompt_variables: Option<ValueSpan>,
    /// `extra_body.sort` and `extra_body.ignore` (request-level routing).
    sort: Option<ValueSpan>,
    ignore: Option<ValueSpan>,
    stats: ContentStats,
    tools: bool,
    functions: bool,
    response_schema: bool,
    output_tokens: Option<u64>,
}

/// How many `extra_body.metadata` entries and `extra_body.models` extraction keeps, so that
/// [`Extracted::context`] need not scan them again (a larger object or list is scanned again).
const READ_AHEAD: usize = 4;

/// One `extra_body.metadata` entry: its key, its value, and the value's string if it is one.
#[derive(Debug, Clone, Copy, Default)]
struct MetaEntry {
    member: Member,
    /// For a string value: whether it holds an escape.
    escaped: bool,
}

impl MetaEntry {
    fn new(key: StrSpan, value: ValueSpan, string: Option<StrSpan>) -> MetaEntry {
        MetaEntry {
            member: Member::new(key, value, MemberKind::Other),
            escaped: string.is_some_and(|s| s.escaped),
        }
    }

    /// The value's string, without its quotes, when it is one.
    fn string(&self) -> Option<StrSpan> {
        let v = self.member.value();
        (v.kind == Kind::String).then_some(StrSpan {
            inner: Span {
                start: v.span.start + 1,
                end: v.span.end - 1,
            },
            escaped: self.escaped,
        })
    }
}

/// Scans `body` as a request for `api`: validates it as JSON and records what routing needs.
///
/// # Errors
///
/// 400 (`invalid_json`) with the line, column and byte offset of the first syntax
/// error, or when the body is not an object; 413 for a body of 4 GiB or more.
pub fn extract(api: Api, body: &[u8]) -> Result<Extracted<'_>, ApiError> {
    if u32::try_from(body.len()).is_err() {
        // Offsets are kept as `u32` (see `Member`); a 4 GiB request is far past any limit.
        return Err(ApiError::body_too_large(u32::MAX as usize));
    }
    let located = |e: SyntaxError| ApiError::invalid_json(&e.locate(body));
    // One vectorized UTF-8 check of the whole body, so the scanner's string path only stops
    // at quotes, escapes and control bytes. Equivalent for JSON: a non-ASCII byte outside a
    // string is a syntax error either way. On failure the byte-wise scanner runs instead and
    // reports the first error (the invalid character, or an earlier syntax error) exactly.
    let text = simdutf8::basic::from_utf8(body).ok();
    let mut ex = Extracted {
        api,
        body,
        text,
        object_start: 0,
        members: SmallList::default(),
        model_member: None,
        model: None,
        user: None,
        stream: false,
        conversation: None,
        system: None,
        object_end: 0,
        extra_body_member: None,
        extra_members: SmallList::default(),
        metadata: None,
        meta: [MetaEntry::default(); READ_AHEAD],
        meta_len: 0,
        models: None,
        model_strs: [PackedStr::default(); READ_AHEAD],
        models_len: 0,
        models_strings: true,
        fallback: None,
        prompt_variables: None,
        sort: None,
        ignore: None,
        stats: ContentStats::default(),
        tools: false,
        functions: false,
        response_schema: false,
        output_tokens: None,
    };
    let mut sc = ex.scanner_at(0);
    sc.ws();
    if sc.peek() != Some(b'{') {
        // Report a syntax error if there is one, else "not an object".
        sc.value().map_err(located)?;
        sc.end().map_err(located)?;
        return Err(ApiError::not_an_object());
    }
    ex.object_start = sc.pos();
    let mut model_key: Option<StrSpan> = None;
    let mut user_str: Option<StrSpan> = None;
    let object = sc
        .object(|sc, key| {
            let kind = classify(api, body, &key)?;
            let (value, string) = match kind {
                Key::Conversation | Key::Text | Key::Tools | Key::Functions => {
                    (sc.value_counting(Some(&mut ex.stats))?, None)
                }
                Key::Format => {
                    let (v, schema) = format_type(sc, false)?;
                    ex.response_schema = schema;
                    (v, None)
                }
                Key::TextFormat => {
                    let (v, schema) = format_type(sc, true)?;
                    ex.response_schema = schema;
                    (v, None)
                }
                Key::AnthropicMetadata => {
                    let (v, user) = anthropic_user(sc)?;
                    user_str = user;
                    (v, None)
                }
                Key::ExtraBody => (ex.extra_body(sc)?, None),
                _ => sc.value_str()?,
            };
            match kind {
                Key::Model => {
                    ex.model_member = Some(ex.members.len());
                    model_key = string;
                }
                Key::User => user_str = string,
                Key::Stream => ex.stream = value.span.of(body) == b"true",
                Key::Conversation => ex.conversation = Some(value),
                Key::Text if api == Api::Messages => ex.system = Some(value),
                Key::Tools => ex.tools = is_nonempty_array(body, value),
                Key::Functions => ex.functions = is_nonempty_array(body, value),
                Key::OutputTokens => {
                    ex.output_tokens = (value.kind == Kind::Number)
                        .then(|| std::str::from_utf8(value.span.of(body)).ok()?.parse().ok())
                        .flatten();
                }
                Key::ExtraBody => ex.extra_body_member = Some(ex.members.len()),
                _ => {}
            }
            let kind = match kind {
                Key::Model => MemberKind::Model,
                Key::ExtraBody => MemberKind::ExtraBody,
                _ => MemberKind::Other,
            };
            ex.members.push(Member::new(key, value, kind));
            Ok(())
        })
        .map_err(located)?;
    ex.object_end = object.end - 1;
    sc.end().map_err(located)?;
    ex.model = model_key
        .map(|s| ex.decode(&s))
        .transpose()
        .map_err(located)?;
    ex.user = user_str
        .map(|s| ex.decode(&s))
        .transpose()
        .map_err(located)?;
    Ok(ex)
}

/// True for an array holding at least one element.
fn is_nonempty_array(body: &[u8], v: ValueSpan) -> bool {
    v.kind == Kind::Array
        && !v.span.of(body)[1..v.span.len() - 1]
            .iter()
            .all(|b| b.is_ascii_whitespace())
}

/// Reads `{..., "type": "json_schema", ...}` (or, nested, `{"format": {"type": ...}}`);
/// returns the value and whether the type is `json_schema`.
fn format_type(sc: &mut Scanner<'_>, nested: bool) -> Result<(ValueSpan, bool), SyntaxError> {
    sc.ws();
    if sc.peek() != Some(b'{') {
        return Ok((sc.value()?, false));
    }
    let body_start = sc.pos();
    let mut schema = false;
    let span = sc.object(|sc, key| {
        let body = sc_body(sc);
        if nested && key.eq_str(body, "format") {
            schema = format_type(sc, false)?.1;
        } else if !nested && key.eq_str(body, "type") {
            let (_, s) = sc.value_str()?;
            schema = s.is_some_and(|s| s.eq_str(body, "json_schema"));
        } else {
            sc.value()?;
        }
        Ok(())
    })?;
    debug_assert_eq!(span.start, body_start);
    Ok((
        ValueSpan {
            span,
            kind: Kind::Object,
        },
        schema,
    ))
}

/// Reads Anthropic's `metadata` object; returns it and its `user_id` string, if any.
fn anthropic_user(sc: &mut Scanner<'_>) -> Result<(ValueSpan, Option<StrSpan>), SyntaxError> {
    sc.ws();
    if sc.peek() != Some(b'{') {
        return Ok((sc.value()?, None));
    }
    let mut user = None;
    let span = sc.object(|sc, key| {
        let (_, s) = sc.value_str()?;
        if key.eq_str(sc_body(sc), "user_id") {
            user = s;
        }
        Ok(())
    })?;
    Ok((
        ValueSpan {
            span,
            kind: Kind::Object,
        },
        user,
    ))
}

fn sc_body<'a>(sc: &Scanner<'a>) -> &'a [u8] {
    sc.body()
}

impl<'a> Extracted<'a> {
    /// A scanner over the body at `offset`: the UTF-8-checked one when the body is text.
    fn scanner_at(&self, offset: usize) -> Scanner<'a> {
        match self.text {
            Some(text) => Scanner::at_str(text, offset),
            None => Scanner::at(self.body, offset),
        }
    }

    /// Decodes a string of the body (borrowed when it has no escape).
    fn decode(&self, s: &StrSpan) -> Result<Cow<'a, str>, SyntaxError> {
        match self.text {
            Some(text) => s.decode_text(text),
            None => s.decode(self.body),
        }
    }

    /// Reads an `extra_body` value: for an object, records its members and the router's keys.
    fn extra_body(&mut self, sc: &mut Scanner<'a>) -> Result<ValueSpan, SyntaxError> {
        // A later `extra_body` replaces an earlier one entirely (last one wins).
        self.extra_members = SmallList::default();
        self.metadata = None;
        self.models = None;
        self.fallback = None;
        self.prompt_variables = None;
        self.sort = None;
        self.ignore = None;
        sc.ws();
        if sc.peek() != Some(b'{') {
            return sc.value();
        }
        let body = self.body;
        let span = sc.object(|sc, key| {
            let router = router_key(body, &key);
            sc.ws();
            let value = match (router, sc.peek()) {
                (Some(RouterKey::Metadata), Some(b'{')) => self.read_metadata(sc)?,
                (Some(RouterKey::Models), Some(b'[')) => self.read_models(sc)?,
                _ => sc.value()?,
            };
            match router {
                Some(RouterKey::Metadata) => self.metadata = Some(value),
                Some(RouterKey::Models) => self.models = Some(value),
                Some(RouterKey::Fallback) => self.fallback = Some(value),
                Some(RouterKey::PromptVariables) => self.prompt_variables = Some(value),
                Some(RouterKey::Sort) => self.sort = Some(value),
                Some(RouterKey::Ignore) => self.ignore = Some(value),
                None => {}
            }
            let kind = match router {
                Some(_) => MemberKind::Router,
                None => MemberKind::Other,
            };
            self.extra_members.push(Member::new(key, value, kind));
            Ok(())
        })?;
        Ok(ValueSpan {
            span,
            kind: Kind::Object,
        })
    }

    /// Reads the `extra_body.metadata` object at the cursor, keeping its first entries.
    fn read_metadata(&mut self, sc: &mut Scanner<'a>) -> Result<ValueSpan, SyntaxError> {
        let mut n = 0;
        let span = sc.object(|sc, key| {
            let (value, string) = sc.value_str()?;
            if let Some(slot) = self.meta.get_mut(n) {
                *slot = MetaEntry::new(key, value, string);
            }
            n += 1;
            Ok(())
        })?;
        self.meta_len = n;
        Ok(ValueSpan {
            span,
            kind: Kind::Object,
        })
    }

    /// Reads the `extra_body.models` array at the cursor, keeping its first strings.
    fn read_models(&mut self, sc: &mut Scanner<'a>) -> Result<ValueSpan, SyntaxError> {
        let mut n = 0;
        let mut strings = true;
        let span = sc.array(|sc| {
            match sc.value_str()? {
                (_, Some(s)) => {
                    if let Some(slot) = self.model_strs.get_mut(n) {
                        *slot = PackedStr::new(s);
                    }
                }
                _ => strings = false,
            }
            n += 1;
            Ok(())
        })?;
        self.models_len = n;
        self.models_strings = strings;
        Ok(ValueSpan {
            span,
            kind: Kind::Array,
        })
    }

    /// The API the body was read as.
    pub fn api(&self) -> Api {
        self.api
    }

    /// The body.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The `model` string (the last one, if written twice); `None` when absent or not a string.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The router named by the model: the model without `prefix` (`inworld/`), if it has it.
    pub fn router_name(&self, prefix: &str) -> Option<&str> {
        self.model()?.strip_prefix(prefix).filter(|n| !n.is_empty())
    }

    /// The sticky key in the body: `user`, or Anthropic's `metadata.user_id`.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// True for `"stream": true`.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// The raw bytes of the conversation (`messages`, or `input` for responses), if present.
    pub fn messages_raw(&self) -> Option<&'a [u8]> {
        self.conversation.map(|v| v.span.of(self.body))
    }

    /// The conversation as a JSON list of messages, for conditions over `messages`. A string
    /// `input` (responses) becomes `[{"role": "user", "content": input}]`. Parses on each call:
    /// call it only when a router's conditions read `messages`.
    ///
    /// # Errors
    ///
    /// 400 when the conversation is not a list (or a string `input`), or holds a number
    /// `serde_json` cannot represent (such as `1e400`).
    pub fn messages_json(&self) -> Result<Option<Value>, ApiError> {
        let Some(v) = self.conversation else {
            return Ok(None);
        };
        let param = match self.api {
            Api::Responses => "input",
            _ => "messages",
        };
        let parsed: Value = serde_json::from_slice(v.span.of(self.body))
            .map_err(|e| ApiError::invalid_param(param, format!("{param}: {e}")))?;
        match parsed {
            Value::Array(_) => Ok(Some(parsed)),
            Value::String(s) if self.api == Api::Responses => {
                Ok(Some(serde_json::json!([{ "role": "user", "content": s }])))
            }
            _ => Err(ApiError::invalid_param(
                param,
                format!("{param} must be a list of messages"),
            )),
        }
    }

    /// What the request needs from a model: vision, tools, a response schema, and token counts.
    // Field by field rather than a literal, so fields the core adds later keep their defaults.
    #[allow(clippy::field_reassign_with_default)]
    pub fn needs(&self) -> Needs {
        let mut needs = Needs::default();
        needs.vision = self.stats.images > 0;
        needs.tools = self.tools || self.functions;
        needs.response_schema = self.response_schema;
        needs.input_tokens = Some(self.stats.text_bytes.div_ceil(4));
        needs.output_tokens = self.output_tokens;
        needs
    }

    /// `extra_body.fallback.ttft_timeout`: a duration string such as `"300ms"` or `"1.5s"`.
    ///
    /// # Errors
    ///
    /// 400 for a value that is not such a string, or is below 300 ms.
    pub fn ttft_timeout(&self) -> Result<Option<Duration>, ApiError> {
        const PARAM: &str = "extra_body.fallback.ttft_timeout";
        let Some(fallback) = self.fallback else {
            return Ok(None);
        };
        if fallback.kind == Kind::Null {
            return Ok(None);
        }
        if fallback.kind != Kind::Object {
            return Err(ApiError::invalid_param(
                "extra_body.fallback",
                "extra_body.fallback must be an object",
            ));
        }
        let mut found = None;
        let mut sc = self.scanner_at(fallback.span.start);
        let body = self.body;
        sc.object(|sc, key| {
            let (v, s) = sc.value_str()?;
            if key.eq_str(body, "ttft_timeout") {
                found = Some((v, s));
            }
            Ok(())
        })
        .map_err(|e| ApiError::invalid_json(&e.locate(body)))?;
        let Some((v, s)) = found else {
            return Ok(None);
        };
        if v.kind == Kind::Null {
            return Ok(None);
        }
        let Some(s) = s else {
            return Err(ApiError::invalid_param(
                PARAM,
                "extra_body.fallback.ttft_timeout must be a duration string such as \"300ms\" \
                 or \"1.5s\"",
            ));
        };
        let text = s
            .decode(body)
            .map_err(|e| ApiError::invalid_json(&e.locate(body)))?;
        let d = parse_duration(&text).ok_or_else(|| {
            ApiError::invalid_param(
                PARAM,
                format!(
                    "extra_body.fallback.ttft_timeout {text:?} is not a duration such as \
                     \"300ms\" or \"1.5s\""
                ),
            )
        })?;
        if d < MIN_TTFT_TIMEOUT {
            return Err(ApiError::invalid_param(
                PARAM,
                format!("extra_body.fallback.ttft_timeout {text:?} is below the minimum of 300ms"),
            ));
        }
        Ok(Some(d))
    }

    /// The routing context: the sticky key (`user_override`, from a header, wins over the
    /// body's), `extra_body.metadata` typed as sent, and `extra_body.models`.
    ///
    /// Strings are borrowed from the body unless they hold escapes; nested metadata values
    /// (lists, maps) are parsed into `serde_json::Value`s.
    ///
    /// # Errors
    ///
    /// 400 when `metadata` is not an object or has more than [`MAX_METADATA_KEYS`] keys, or
    /// `models` is not a list of at most [`MAX_REQUEST_MODELS`] strings.
    pub fn context<'s>(
        &'s self,
        user_override: Option<&'s str>,
    ) -> Result<RequestContext<'s>, ApiError> {
        let mut ctx = RequestContext::new();
        if let Some(user) = user_override.or(self.user.as_deref()) {
            ctx.set_user(user);
        }
        let body = self.body;
        let located = |e: SyntaxError| ApiError::invalid_json(&e.locate(body));
        if let Some(meta) = self.metadata.filter(|m| m.kind != Kind::Null) {
            if meta.kind != Kind::Object {
                return Err(ApiError::invalid_param(
                    "extra_body.metadata",
                    "extra_body.metadata must be an object",
                ));
            }
            if self.meta_len <= READ_AHEAD {
                // Read at extraction: no second scan.
                for e in self.meta.iter().take(self.meta_len) {
                    let (key, value) = self.meta_entry(e)?;
                    ctx.set_metadata(key, value);
                }
            } else {
                let mut count = 0usize;
                let mut entries: Result<(), ApiError> = Ok(());
                let mut sc = self.scanner_at(meta.span.start);
                sc.object(|sc, key| {
                    let (value, string) = sc.value_str()?;
                    count += 1;
                    if count > MAX_METADATA_KEYS || entries.is_err() {
                        return Ok(());
                    }
                    match self.meta_entry(&MetaEntry::new(key, value, string)) {
                        Ok((key, value)) => ctx.set_metadata(key, value),
                        Err(e) => entries = Err(e),
                    }
                    Ok(())
                })
                .map_err(located)?;
                entries?;
                over_limit("extra_body.metadata has", count, "keys", MAX_METADATA_KEYS)?;
            }
        }
        if let Some(models) = self.models.filter(|m| m.kind != Kind::Null) {
            let not_list = || {
                ApiError::invalid_param(
                    "extra_body.models",
                    "extra_body.models must be a list of model ids (strings)",
                )
            };
            if models.kind != Kind::Array || !self.models_strings {
                return Err(not_list());
            }
            if self.models_len <= READ_AHEAD {
                // Read at extraction: no second scan.
                for s in self.model_strs.iter().take(self.models_len) {
                    ctx.push_model(self.decode(&s.get()).map_err(located)?);
                }
            } else {
                // First check every element (so the second pass, which hands the strings to
                // the context without a temporary list, cannot fail), then pass them on.
                let mut count = 0usize;
                let mut sc = self.scanner_at(models.span.start);
                sc.array(|sc| {
                    if let (_, Some(s)) = sc.value_str()? {
                        sc.decode(&s)?;
                    }
                    count += 1;
                    Ok(())
                })
                .map_err(located)?;
                over_limit(
                    "extra_body.models lists",
                    count,
                    "models",
                    MAX_REQUEST_MODELS,
                )?;
                for model in (StrArray {
                    sc: self.scanner_at(models.span.start + 1),
                    left: count,
                }) {
                    ctx.push_model(model);
                }
            }
        }
        Ok(ctx)
    }

    /// One metadata entry, typed: strings borrowed unless escaped, numbers as `serde_json`
    /// types them, lists and maps parsed.
    fn meta_entry(&self, e: &MetaEntry) -> Result<(Cow<'a, str>, MetadataValue<'a>), ApiError> {
        let body = self.body;
        let located = |e: SyntaxError| ApiError::invalid_json(&e.locate(body));
        let key = self.decode(&e.member.key()).map_err(located)?;
        let v = e.member.value();
        let text = v.span.of(body);
        let value = match (v.kind, e.string()) {
            (Kind::String, Some(s)) => MetadataValue::Str(self.decode(&s).map_err(located)?),
            (Kind::Number, _) => number_value(text),
            (Kind::Bool, _) => MetadataValue::Bool(text == b"true"),
            (Kind::Null, _) => MetadataValue::Null,
            _ => match serde_json::from_slice::<Value>(text) {
                Ok(json) => MetadataValue::Json(Cow::Owned(json)),
                Err(err) => {
                    return Err(ApiError::invalid_param(
                        "extra_body.metadata",
                        format!("extra_body.metadata.{key}: {err}"),
                    ));
                }
            },
        };
        Ok((key, value))
    }

    /// Whether `extra_body` holds any of the router's keys (`metadata`, `models`, `fallback`,
    /// `prompt_variables`, `sort`, `ignore`), `null` or not: a request that names no router is
    /// then routed at the request level, so that none of them reaches the upstream.
    pub(crate) fn has_router_keys(&self) -> bool {
        self.extra_members
            .iter()
            .any(|m| m.kind == MemberKind::Router)
    }

    /// `extra_body.sort` as JSON text (`None` when absent or `null`).
    pub(crate) fn sort_raw(&self) -> Option<&'a [u8]> {
        self.sort
            .filter(|v| v.kind != Kind::Null)
            .map(|v| v.span.of(self.body))
    }

    /// `extra_body.ignore` as JSON text (`None` when absent or `null`).
    pub(crate) fn ignore_raw(&self) -> Option<&'a [u8]> {
        self.ignore
            .filter(|v| v.kind != Kind::Null)
            .map(|v| v.span.of(self.body))
    }

    /// The top-level members, in order.
    pub(crate) fn members(&self) -> &SmallList<Member, 16> {
        &self.members
    }

    /// The offset of the top-level `{`.
    pub(crate) fn object_start(&self) -> usize {
        self.object_start
    }

    /// The index of the last `model` member.
    pub(crate) fn model_member(&self) -> Option<usize> {
        self.model_member
    }

    /// The index of the last `extra_body` member.
    pub(crate) fn extra_body_member(&self) -> Option<usize> {
        self.extra_body_member
    }

    /// The members of the last `extra_body` (when it is an object).
    pub(crate) fn extra_members(&self) -> &SmallList<Member, 8> {
        &self.extra_members
    }

    /// The offset of the top-level `}`.
    pub(crate) fn object_end(&self) -> usize {
        self.object_end
    }

    /// The conversation's value (`messages`, or `input` for responses), the last one written.
    pub(crate) fn conversation(&self) -> Option<ValueSpan> {
        self.conversation
    }

    /// The messages API's `system` value, the last one written.
    pub(crate) fn system(&self) -> Option<ValueSpan> {
        self.system
    }

    /// The entries of `extra_body.prompt_variables` (when it is an object), in order.
    pub(crate) fn prompt_variables(&self) -> SmallList<(StrSpan, ValueSpan), 8> {
        let mut entries = SmallList::default();
        let Some(v) = self.prompt_variables.filter(|v| v.kind == Kind::Object) else {
            return entries;
        };
        let mut sc = self.scanner_at(v.span.start);
        // The body was scanned whole already: this cannot fail, and would only lose entries.
        let _ = sc.object(|sc, key| {
            entries.push((key, sc.value()?));
            Ok(())
        });
        entries
    }
}

/// 400 when `count` is past `limit`: "`<what> <count> <unit>; the limit is <limit>`", for the
/// parameter named by `what`'s first word.
fn over_limit(what: &'static str, count: usize, unit: &str, limit: usize) -> Result<(), ApiError> {
    if count <= limit {
        return Ok(());
    }
    let param = what.split(' ').next().unwrap_or(what);
    Err(ApiError::invalid_param(
        param,
        format!("{what} {count} {unit}; the limit is {limit}"),
    ))
}

/// The strings of an array already checked to hold `left` valid strings, in order.
struct StrArray<'a> {
    sc: Scanner<'a>,
    left: usize,
}

impl<'a> Iterator for StrArray<'a> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Cow<'a, str>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.sc.ws();
        if self.sc.peek() == Some(b',') {
            self.sc.expect(b',', "").ok()?;
            self.sc.ws();
        }
        let s = self.sc.string().ok()?;
        self.sc.decode(&s).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// The keys of `extra_body` that belong to the router (and are removed before the upstream
/// call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouterKey {
    Metadata,
    Models,
    Fallback,
    PromptVariables,
    /// Request-level routing's ranking (`"sort": ["price"]`).
    Sort,
    /// Request-level routing's exclusions (`"ignore": ["openai"]`).
    Ignore,
}

/// Which router key `key` is, if any.
pub(crate) fn router_key(body: &[u8], key: &StrSpan) -> Option<RouterKey> {
    let named = |name: &[u8]| match name {
        b"metadata" => Some(RouterKey::Metadata),
        b"models" => Some(RouterKey::Models),
        b"fallback" => Some(RouterKey::Fallback),
        b"prompt_variables" => Some(RouterKey::PromptVariables),
        b"sort" => Some(RouterKey::Sort),
        b"ignore" => Some(RouterKey::Ignore),
        _ => None,
    };
    if key.escaped {
        named(key.decode(body).ok()?.as_bytes())
    } else {
        named(key.inner.of(body))
    }
}

/// A metadata number, typed as `serde_json` would: an integer when it has no fraction or
/// exponent and fits, else a float (`1e400` becomes infinity).
fn number_value(text: &[u8]) -> MetadataValue<'static> {
    let Ok(text) = std::str::from_utf8(text) else {
        return MetadataValue::Null;
    };
    if !text.contains(['.', 'e', 'E']) {
        if let Ok(i) = text.parse::<i64>() {
            return MetadataValue::Int(i);
        }
        if let Ok(u) = text.parse::<u64>() {
            return MetadataValue::UInt(u);
        }
    }
    MetadataValue::Float(text.parse::<f64>().unwrap_or(f64::NAN))
}

/// Parses `"300ms"`, `"1.5s"`, `"2s"` (a non-negative decimal and `ms` or `s`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        return None;
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let seconds = number.parse::<f64>().ok()? * scale;
    // More than a day is a mistake, not a timeout.
    (seconds.is_finite() && seconds <= 86_400.0).then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_from_path() {
        assert_eq!(
            Api::from_path("/v1/chat/completions"),
            Some(Api::ChatCompletions)
        );
        assert_eq!(
            Api::from_path("/openai/v1/chat/completions/"),
            Some(Api::ChatCompletions)
        );
        assert_eq!(Api::from_path("/v1/responses"), Some(Api::Responses));
        assert_eq!(Api::from_path("/v1/messages"), Some(Api::Messages));
        assert_eq!(Api::from_path("/v1/embeddings"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        for bad in ["", "s", "ms", "-1s", "1", "1m", "1e3s", "abc", "100000s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_typed_like_serde_json() {
        assert_eq!(number_value(b"12"), MetadataValue::Int(12));
        assert_eq!(number_value(b"-3"), MetadataValue::Int(-3));
        assert_eq!(
            number_value(b"18446744073709551615"),
            MetadataValue::UInt(u64::MAX)
        );
        assert_eq!(number_value(b"1.5"), MetadataValue::Float(1.5));
        assert_eq!(number_value(b"1e400"), MetadataValue::Float(f64::INFINITY));
        assert_eq!(
            number_value(b"100000000000000000000000"),
            MetadataValue::Float(1e23)
        );
    }

    #[test]
    fn invalid_utf8_at_every_offset_reported_as_bytewise() {
        // The vectorized check fails, the byte-wise scanner runs and reports the first error
        // exactly where scanning bytes alone does (the bad byte, or an earlier syntax error
        // when the byte breaks the structure).
        let body = "{\"model\":\"inworld/r\",\"messages\":[{\"role\":\"user\",\"content\":\
                    \"Zürich \\\"東京\\\" 😀 and a longer tail of plain words to span windows\"}],\
                    \"extra_body\":{\"metadata\":{\"tier\":\"é\"},\"models\":[\"a/b\"]}}";
        assert!(extract(Api::ChatCompletions, body.as_bytes()).is_ok());
        for at in 0..=body.len() {
            for bad in [&[0xff][..], &[0xc3], &[0xe6, 0x9d], &[0xed, 0xa0, 0x80]] {
                let mut b = body.as_bytes().to_vec();
                b.splice(at..at, bad.iter().copied());
                let got = extract(Api::ChatCompletions, &b).expect_err("invalid UTF-8");
                let mut sc = Scanner::new(&b);
                let want = sc
                    .value()
                    .and_then(|_| sc.end())
                    .expect_err("the byte-wise scanner refuses it too");
                assert_eq!(got, ApiError::invalid_json(&want.locate(&b)), "at {at}");
            }
        }
    }

    #[test]
    fn context_same_with_and_without_read_ahead() {
        // Up to READ_AHEAD entries and models come from extraction, more from a second scan:
        // the context is the same either way.
        let values = [
            r#""s""#,
            r#""\u00e9\"""#,
            "12",
            "-1.5",
            "true",
            "null",
            r#"[1,{"a":"b"}]"#,
            "18446744073709551615",
        ];
        for n in 0..=READ_AHEAD + 3 {
            let meta: Vec<String> = (0..n)
                .map(|i| format!(r#""k{i}":{}"#, values[i % values.len()]))
                .collect();
            let models: Vec<String> = (0..n).map(|i| format!(r#""p/m\u002{i}""#)).collect();
            let body = format!(
                r#"{{"model":"inworld/r","extra_body":{{"metadata":{{{}}},"models":[{}]}}}}"#,
                meta.join(","),
                models.join(",")
            );
            let ex = extract(Api::ChatCompletions, body.as_bytes()).unwrap();
            let ctx = ex.context(Some("u")).unwrap();
            let want: Value = serde_json::from_str(&body).unwrap();
            let want_meta = want["extra_body"]["metadata"].as_object().unwrap();
            let got: Vec<(String, MetadataValue<'_>)> = ctx
                .metadata_entries()
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect();
            let expected: Vec<(String, MetadataValue<'_>)> = want_meta
                .iter()
                .map(|(k, v)| (k.clone(), MetadataValue::from(v)))
                .collect();
            assert_eq!(got, expected, "{body}");
            let want_models: Vec<&str> = want["extra_body"]["models"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap())
                .collect();
            assert_eq!(ctx.models(), want_models.as_slice(), "{body}");
            assert_eq!(ctx.user(), Some("u"));
            // A non-string among them is refused, wherever it is.
            for bad in 0..n {
                let mut models = models.clone();
                models[bad] = "7".into();
                let body = format!(r#"{{"extra_body":{{"models":[{}]}}}}"#, models.join(","));
                let ex = extract(Api::ChatCompletions, body.as_bytes()).unwrap();
                assert!(ex.context(None).is_err(), "{body}");
            }
        }
        // The last `metadata`, `models` and `extra_body` win.
        for (body, meta, models) in [
            (
                r#"{"extra_body":{"metadata":{"a":1},"metadata":null}}"#,
                0,
                0,
            ),
            (r#"{"extra_body":{"models":[1],"models":["x/y"]}}"#, 0, 1),
            (
                r#"{"extra_body":{"models":[1]},"extra_body":{"z":1}}"#,
                0,
                0,
            ),
            (
                r#"{"extra_body":{"metadata":{"a":1,"b":2}},"extra_body":{"metadata":{}}}"#,
                0,
                0,
            ),
        ] {
            let ex = extract(Api::ChatCompletions, body.as_bytes()).unwrap();
            let ctx = ex.context(None).unwrap();
            assert_eq!(ctx.metadata_entries().count(), meta, "{body}");
            assert_eq!(ctx.models().len(), models, "{body}");
        }
    }
}
