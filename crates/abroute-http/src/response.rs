//! The response side: decision headers, and Inworld-style `metadata` merged into JSON bodies.
//!
//! Every routed response carries:
//!
//! | header | value |
//! |---|---|
//! | `x-abroute-router` | the router's name |
//! | `x-abroute-route` | the route taken (`route_id`) |
//! | `x-abroute-variant` | the variant of the attempt that produced this response |
//! | `x-abroute-assigned-variant` | the variant the request was assigned to (the experiment arm; differs from `x-abroute-variant` after failover to another variant) |
//! | `x-abroute-model` | the model of the attempt that produced this response |
//! | `x-abroute-version` | the config version that made the decision |
//!
//! For a non-streaming JSON response, [`merge_metadata`] adds Inworld's `metadata.attempts[]`
//! (`model`, `success`, `time_to_first_token_ms`, plus abroute's `variant_id`,
//! `assigned_variant`, `source`, `outcome`, `class` and `latency_ms`), `total_duration_ms`, and
//! the other fields of the [`DecisionRecord`] (`router`, `route_id`, `assigned_variant_id`,
//! `assigned_model_id`, `served_variant_id`, `served_model_id`, `version`, `assignment`,
//! `fail_open`). An existing `metadata` object keeps its other keys; the rest of the body is
//! copied as it was. A responses-API answer gets the same object as `abroute_metadata`
//! ([`metadata_member`]): its own `metadata` is the caller's. An event stream gets the same object as one more event
//! ([`stream`](crate::stream)).

use std::time::Duration;

use abroute::DecisionRecord;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::json::{Kind, Scanner, Sink, Span, write_value};

/// `x-abroute-router`: the router's name.
pub const ROUTER_HEADER: HeaderName = HeaderName::from_static("x-abroute-router");
/// `x-abroute-route`: the route taken.
pub const ROUTE_HEADER: HeaderName = HeaderName::from_static("x-abroute-route");
/// `x-abroute-variant`: the variant that produced the response.
pub const VARIANT_HEADER: HeaderName = HeaderName::from_static("x-abroute-variant");
/// `x-abroute-assigned-variant`: the variant the request was assigned to.
pub const ASSIGNED_VARIANT_HEADER: HeaderName =
    HeaderName::from_static("x-abroute-assigned-variant");
/// `x-abroute-model`: the model that produced the response.
pub const MODEL_HEADER: HeaderName = HeaderName::from_static("x-abroute-model");
/// `x-abroute-version`: the config version of the decision.
pub const VERSION_HEADER: HeaderName = HeaderName::from_static("x-abroute-version");

/// What the decision headers say.
#[derive(Debug, Clone, Copy)]
pub struct DecisionHeaders<'a> {
    /// The router's name.
    pub router: &'a str,
    /// The route taken.
    pub route_id: &'a str,
    /// The variant that produced the response.
    pub variant_id: &'a str,
    /// The variant the request was assigned to.
    pub assigned_variant_id: &'a str,
    /// The model that produced the response.
    pub model_id: &'a str,
    /// The config version of the decision.
    pub version: u64,
}

impl DecisionHeaders<'_> {
    /// Sets the `x-abroute-*` headers. A value that is not a valid header value (a control
    /// character in an id) is left out rather than mangled.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let mut set = |name: HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
                headers.insert(name, v);
            }
        };
        set(ROUTER_HEADER, self.router);
        set(ROUTE_HEADER, self.route_id);
        set(VARIANT_HEADER, self.variant_id);
        set(ASSIGNED_VARIANT_HEADER, self.assigned_variant_id);
        set(MODEL_HEADER, self.model_id);
        headers.insert(VERSION_HEADER, HeaderValue::from(self.version));
    }
}

/// The `metadata` object for a record: Inworld's fields and the record's.
pub fn metadata_value(record: &DecisionRecord, total_duration: Duration) -> Map<String, Value> {
    let mut map = match serde_json::to_value(record) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if let Some(Value::Array(attempts)) = map.get_mut("attempts") {
        for a in attempts.iter_mut() {
            if let Value::Object(a) = a {
                let success = a.get("outcome").and_then(Value::as_str) == Some("success");
                a.insert("success".into(), Value::Bool(success));
            }
        }
    }
    map.insert(
        "total_duration_ms".into(),
        Value::from(u64::try_from(total_duration.as_millis()).unwrap_or(u64::MAX)),
    );
    map
}

/// The token counts of an answer, from its `usage` (`prompt_tokens` and `completion_tokens` in
/// chat completions, `input_tokens` and `output_tokens` in responses and messages). The layer
/// puts it in the response's extensions when it read the answer whole (non-streaming JSON with
/// [`merge_metadata`](crate::LayerOptions::merge_metadata)), and reports the output tokens for
/// throughput sorting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens in the prompt.
    pub input_tokens: Option<u64>,
    /// Tokens generated.
    pub output_tokens: Option<u64>,
}

/// The `usage` of a JSON answer of `api`; `None` when the body is not a JSON object or has no
/// `usage` object (the last one, if written twice). A count that is not a whole number is
/// left out.
pub fn usage_of(api: crate::Api, body: &[u8]) -> Option<Usage> {
    let answer = scan_answer(body, "")?;
    Some(read_usage(api, body, answer.usage?))
}

/// The counts in a `usage` object (`span`, of `body`).
fn read_usage(api: crate::Api, body: &[u8], span: Span) -> Usage {
    let (input_key, output_key) = match api {
        crate::Api::ChatCompletions => ("prompt_tokens", "completion_tokens"),
        crate::Api::Responses | crate::Api::Messages => ("input_tokens", "output_tokens"),
    };
    let mut usage = Usage::default();
    let mut sc = Scanner::new(span.of(body));
    // The span was scanned as an object already.
    let _ = sc.object(|sc, key| {
        let v = sc.value()?;
        let count = || {
            (v.kind == Kind::Number)
                .then(|| std::str::from_utf8(v.span.of(sc.body())).ok()?.parse().ok())
                .flatten()
        };
        if key.eq_str(sc.body(), input_key) {
            usage.input_tokens = count();
        } else if key.eq_str(sc.body(), output_key) {
            usage.output_tokens = count();
        }
        Ok(())
    });
    usage
}

/// One pass over a JSON answer: where its object opens, where its last member ends, its
/// `member` value (the last one) and its `usage` object (the last one). `None` when the body is
/// not a JSON object.
struct AnswerScan {
    open: usize,
    last_end: Option<usize>,
    existing: Option<(Kind, Span)>,
    usage: Option<Span>,
}

fn scan_answer(body: &[u8], member: &str) -> Option<AnswerScan> {
    // The answer's strings are checked for UTF-8 at once (vectorized), as requests are.
    let mut sc = match simdutf8::basic::from_utf8(body) {
        Ok(text) => Scanner::from_str(text),
        Err(_) => Scanner::new(body),
    };
    sc.ws();
    let mut answer = AnswerScan {
        open: sc.pos(),
        last_end: None,
        existing: None,
        usage: None,
    };
    sc.object(|sc, key| {
        let v = sc.value()?;
        if key.eq_str(sc.body(), member) {
            answer.existing = Some((v.kind, v.span));
        } else if v.kind == Kind::Object && key.eq_str(sc.body(), "usage") {
            answer.usage = Some(v.span);
        }
        answer.last_end = Some(v.span.end);
        Ok(())
    })
    .ok()?;
    sc.end().ok()?;
    Some(answer)
}

/// The member that carries the metadata in an answer of `api`: `metadata` (Inworld's place)
/// for chat completions and messages; [`RESPONSES_METADATA_MEMBER`] for responses, whose own
/// `metadata` is the caller's map of at most 16 strings, echoed back, which typed clients parse
/// as such.
pub fn metadata_member(api: crate::Api) -> &'static str {
    match api {
        crate::Api::Responses => RESPONSES_METADATA_MEMBER,
        crate::Api::ChatCompletions | crate::Api::Messages => "metadata",
    }
}

/// The top-level member that carries abroute's metadata in a responses-API answer.
pub const RESPONSES_METADATA_MEMBER: &str = "abroute_metadata";

/// Merges `metadata` into a JSON object body. `None` when the body is not a JSON object (it is
/// then left alone); only the `metadata` member is written anew.
pub fn merge_metadata(body: &[u8], metadata: Map<String, Value>) -> Option<Vec<u8>> {
    merge_metadata_as(body, "metadata", metadata)
}

/// [`merge_metadata`] under another member name (see [`metadata_member`]).
pub fn merge_metadata_as(
    body: &[u8],
    member: &str,
    metadata: Map<String, Value>,
) -> Option<Vec<u8>> {
    let answer = scan_answer(body, member)?;
    write_merged(body, &answer, member, metadata)
}

/// [`merge_metadata_as`] and [`usage_of`] in one pass over the answer (the layer's path): the
/// merged body (`None` when the answer is not a JSON object) and its usage.
pub fn merge_metadata_and_usage(
    api: crate::Api,
    body: &[u8],
    metadata: Map<String, Value>,
) -> (Option<Vec<u8>>, Option<Usage>) {
    let member = metadata_member(api);
    let Some(answer) = scan_answer(body, member) else {
        return (None, None);
    };
    let usage = answer.usage.map(|span| read_usage(api, body, span));
    (write_merged(body, &answer, member, metadata), usage)
}

/// The answer with `metadata` merged into its `member`; `None` when an existing `member` object
/// is one `serde_json` cannot read (the answer is then left alone).
fn write_merged(
    body: &[u8],
    answer: &AnswerScan,
    member: &str,
    metadata: Map<String, Value>,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() + 512);
    match answer.existing {
        Some((kind, span)) => {
            // An existing object keeps its other keys.
            let mut merged = if kind == Kind::Object {
                serde_json::from_slice::<Map<String, Value>>(span.of(body)).ok()?
            } else {
                Map::new()
            };
            merged.extend(metadata);
            out.put(&body[..span.start]);
            write_value(&mut out, &Value::Object(merged));
            out.put(&body[span.end..]);
        }
        None => {
            let at = answer.last_end.unwrap_or(answer.open + 1);
            out.put(&body[..at]);
            if answer.last_end.is_some() {
                out.put(b",");
            }
            crate::json::write_str(&mut out, member);
            out.put(b":");
            write_value(&mut out, &Value::Object(metadata));
            out.put(&body[at..]);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("router".into(), Value::from("r"));
        m
    }

    #[test]
    fn inserts_or_merges() {
        assert_eq!(
            merge_metadata(br#"{"id":"x", "n": 1.0 }"#, meta()).unwrap(),
            br#"{"id":"x", "n": 1.0,"metadata":{"router":"r"} }"#
        );
        assert_eq!(
            merge_metadata(br#"{}"#, meta()).unwrap(),
            br#"{"metadata":{"router":"r"}}"#
        );
        assert_eq!(
            merge_metadata(
                br#"{"metadata": {"generation_id": "g", "router": "old"}, "z": 1e400}"#,
                meta()
            )
            .unwrap(),
            br#"{"metadata": {"generation_id":"g","router":"r"}, "z": 1e400}"#
        );
        assert_eq!(merge_metadata(b"[1]", meta()), None);
        // Usage, per API; a count that is no whole number is left out; the last `usage` wins.
        let chat =
            br#"{"usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}"#;
        assert_eq!(
            usage_of(crate::Api::ChatCompletions, chat),
            Some(Usage {
                input_tokens: Some(12),
                output_tokens: Some(7)
            })
        );
        let other = br#"{"usage":{"input_tokens":3,"output_tokens":1.5},"usage":{"input_tokens":4,"output_tokens":-2}}"#;
        assert_eq!(
            usage_of(crate::Api::Messages, other),
            Some(Usage {
                input_tokens: Some(4),
                output_tokens: None
            })
        );
        assert_eq!(usage_of(crate::Api::Responses, br#"{"usage":null}"#), None);
        assert_eq!(usage_of(crate::Api::Responses, b"[]"), None);
        // A responses answer keeps its own `metadata` (the caller's strings).
        assert_eq!(
            merge_metadata_as(
                br#"{"object":"response","metadata":{"k":"v"}}"#,
                metadata_member(crate::Api::Responses),
                meta()
            )
            .unwrap(),
            br#"{"object":"response","metadata":{"k":"v"},"abroute_metadata":{"router":"r"}}"#
        );
        assert_eq!(merge_metadata(b"{", meta()), None);
    }
}
