//! Asking a chat-completions upstream for the usage of a streamed answer.
//!
//! OpenAI's chat completions send a stream's usage only when the request says
//! `"stream_options": {"include_usage": true}`: then one more chunk, with `"choices": []` and
//! the `usage` object, comes just before `data: [DONE]`. The adapter needs that usage for the
//! token counters, throughput and cost, so for a streamed chat request it writes the option
//! into the upstream's body ([`ask_for_usage`]), and when it did so on the client's behalf
//! ([`UsageAsk::Injected`]), removes the usage chunk from the client's stream (see
//! [`stream_tap`](crate::stream_tap)): the client gets the events it would have had. A client
//! that asked itself ([`UsageAsk::Asked`]) gets its stream untouched.
//!
//! One difference stays: with the option, OpenAI also writes `"usage": null` into every
//! other chunk. Removing it would copy every chunk; clients read `usage` as optional, and
//! null is what they see when it is absent.
//!
//! The body is edited in place with at most one insertion of 40 bytes; members other than
//! `stream_options` are left as they were, byte for byte.

use crate::json::{Kind, Scanner};

/// What [`ask_for_usage`] did to a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageAsk {
    /// The client asked for usage itself: the body is unchanged, the usage chunk is the client's.
    Asked,
    /// The adapter wrote `include_usage: true` into the body: the usage chunk is removed from
    /// the client's stream.
    Injected,
    /// The body is not a JSON object: unchanged, and no usage will come.
    Untouched,
}

/// Writes `"stream_options": {"include_usage": true}` into a chat-completions request body
/// (a JSON object): added when absent, merged into an existing `stream_options` object, a
/// `false` or `null` turned to `true`.
pub fn ask_for_usage(body: &mut Vec<u8>) -> UsageAsk {
    let Some(edit) = find_edit(body) else {
        return UsageAsk::Untouched;
    };
    match edit {
        Edit::None => UsageAsk::Asked,
        Edit::Insert(at, text) => {
            body.splice(at..at, text.iter().copied());
            UsageAsk::Injected
        }
        Edit::Replace(start, end, text) => {
            body.splice(start..end, text.iter().copied());
            UsageAsk::Injected
        }
    }
}

enum Edit {
    None,
    Insert(usize, &'static [u8]),
    Replace(usize, usize, &'static [u8]),
}

const MEMBER: &[u8] = br#""stream_options":{"include_usage":true}"#;
const MEMBER_COMMA: &[u8] = br#","stream_options":{"include_usage":true}"#;
const OPTION: &[u8] = br#""include_usage":true"#;
const OPTION_COMMA: &[u8] = br#""include_usage":true,"#;
const OPTIONS: &[u8] = br#"{"include_usage":true}"#;

fn find_edit(body: &[u8]) -> Option<Edit> {
    let mut sc = Scanner::new(body);
    // The last `stream_options` wins, as in serde_json's reading of duplicate keys.
    let mut options = None;
    let mut members = 0usize;
    let span = sc
        .object(|sc, key| {
            let v = sc.value()?;
            members += 1;
            if key.eq_str(sc.body(), "stream_options") {
                options = Some(v);
            }
            Ok(())
        })
        .ok()?;
    sc.end().ok()?;
    let Some(v) = options else {
        let close = span.end - 1;
        return Some(if members == 0 {
            Edit::Insert(close, MEMBER)
        } else {
            Edit::Insert(close, MEMBER_COMMA)
        });
    };
    if v.kind != Kind::Object {
        return Some(Edit::Replace(v.span.start, v.span.end, OPTIONS));
    }
    let mut inner = Scanner::at(body, v.span.start);
    let mut flag = None;
    let mut n = 0usize;
    inner
        .object(|sc, key| {
            let f = sc.value()?;
            n += 1;
            if key.eq_str(sc.body(), "include_usage") {
                flag = Some(f);
            }
            Ok(())
        })
        .ok()?;
    Some(match flag {
        Some(f) if f.span.of(body) == b"true" => Edit::None,
        Some(f) => Edit::Replace(f.span.start, f.span.end, b"true"),
        None if n == 0 => Edit::Insert(v.span.start + 1, OPTION),
        None => Edit::Insert(v.span.start + 1, OPTION_COMMA),
    })
}

#[cfg(test)]
mod tests {
    // A failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::{Value, json};

    fn ask(body: &str) -> (UsageAsk, Value) {
        let mut b = body.as_bytes().to_vec();
        let r = ask_for_usage(&mut b);
        (r, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    #[test]
    fn every_shape_of_stream_options() {
        let on = json!({"include_usage": true});
        for (body, want, opts) in [
            (
                r#"{"model":"m","stream":true}"#,
                UsageAsk::Injected,
                on.clone(),
            ),
            (r#"{}"#, UsageAsk::Injected, on.clone()),
            (
                r#"{"stream_options":{"include_usage":true},"stream":true}"#,
                UsageAsk::Asked,
                on.clone(),
            ),
            (
                r#"{"stream_options":{"include_usage":false}}"#,
                UsageAsk::Injected,
                on.clone(),
            ),
            (r#"{"stream_options":null}"#, UsageAsk::Injected, on.clone()),
            (r#"{"stream_options":{}}"#, UsageAsk::Injected, on.clone()),
            (
                r#"{"stream_options":{"include_obfuscation":false}}"#,
                UsageAsk::Injected,
                json!({"include_usage": true, "include_obfuscation": false}),
            ),
            (
                r#" { "stream_options" : { "include_usage" : 1 } } "#,
                UsageAsk::Injected,
                on.clone(),
            ),
        ] {
            let (got, value) = ask(body);
            assert_eq!(got, want, "{body}");
            assert_eq!(value["stream_options"], opts, "{body}");
        }
    }

    #[test]
    fn other_members_stay_byte_for_byte_and_bad_bodies_are_untouched() {
        let body = r#"{"model":"m", "messages":[{"role":"user","content":"}"}]}"#;
        let mut b = body.as_bytes().to_vec();
        assert_eq!(ask_for_usage(&mut b), UsageAsk::Injected);
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"model":"m", "messages":[{"role":"user","content":"}"}],"stream_options":{"include_usage":true}}"#
        );
        for bad in ["", "[]", "{", r#"{"a":1} x"#, "null"] {
            let mut b = bad.as_bytes().to_vec();
            assert_eq!(ask_for_usage(&mut b), UsageAsk::Untouched, "{bad}");
            assert_eq!(b, bad.as_bytes());
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(17), ..ProptestConfig::default() })]

            /// Whatever the object, the result parses, asks for usage, and keeps every other
            /// member's value.
            #[test]
            fn the_rest_of_the_object_is_kept(
                keys in proptest::collection::vec("[a-z_]{1,8}", 0..6),
                opt in 0u8..4,
            ) {
                let mut obj = serde_json::Map::new();
                for (i, k) in keys.iter().enumerate() {
                    if k != "stream_options" {
                        obj.insert(k.clone(), json!(i));
                    }
                }
                match opt {
                    1 => { obj.insert("stream_options".into(), json!({"x": 1})); }
                    2 => { obj.insert("stream_options".into(), json!({"include_usage": true})); }
                    3 => { obj.insert("stream_options".into(), Value::Null); }
                    _ => {}
                }
                let mut b = serde_json::to_vec(&Value::Object(obj.clone())).unwrap();
                let r = ask_for_usage(&mut b);
                prop_assert_eq!(r, if opt == 2 { UsageAsk::Asked } else { UsageAsk::Injected });
                let v: Value = serde_json::from_slice(&b).unwrap();
                prop_assert_eq!(&v["stream_options"]["include_usage"], &json!(true));
                for (k, val) in &obj {
                    if k != "stream_options" {
                        prop_assert_eq!(&v[k], val);
                    }
                }
            }
        }
    }
}
