//! Table tests for extraction: the router, the sticky key, metadata, request models, the TTFT
//! limit, capability needs and token estimates, per API; and the errors, with positions.

use std::borrow::Cow;
use std::time::Duration;

use abroute::MetadataValue;
use abroute_http::{Api, extract};
use serde_json::json;

#[test]
fn router_name_and_prefix() {
    let cases = [
        (
            r#"{"model":"inworld/compare"}"#,
            "inworld/",
            Some("compare"),
        ),
        (
            r#"{"model":"inworld\/compare"}"#,
            "inworld/",
            Some("compare"),
        ),
        (r#"{"model":"\u0069nworld/x"}"#, "inworld/", Some("x")),
        (r#"{"model":"abroute/x"}"#, "abroute/", Some("x")),
        (r#"{"model":"abroute/x"}"#, "inworld/", None),
        (r#"{"model":"inworld/"}"#, "inworld/", None),
        (r#"{"model":"openai/gpt-4.1"}"#, "inworld/", None),
        (r#"{"model":5}"#, "inworld/", None),
        (r#"{"messages":[]}"#, "inworld/", None),
        (
            r#"{"model":"inworld/a","model":"inworld/b"}"#,
            "inworld/",
            Some("b"),
        ),
        (r#"{"model":"inworld/a","model":null}"#, "inworld/", None),
        (
            r#"{"messages":[{"model":"inworld/inner"}],"meta":{"model":"inworld/x"}}"#,
            "inworld/",
            None,
        ),
    ];
    for (body, prefix, want) in cases {
        let ex = extract(Api::ChatCompletions, body.as_bytes()).unwrap();
        assert_eq!(ex.router_name(prefix), want, "{body}");
    }
}

#[test]
fn sticky_key_per_api_and_header_override() {
    let chat = extract(Api::ChatCompletions, br#"{"user":"u1","model":"m"}"#).unwrap();
    assert_eq!(chat.user(), Some("u1"));
    assert_eq!(chat.context(None).unwrap().user(), Some("u1"));
    assert_eq!(chat.context(Some("hdr")).unwrap().user(), Some("hdr"));
    let last = extract(Api::ChatCompletions, br#"{"user":"a","user":"b\u00e9"}"#).unwrap();
    assert_eq!(last.user(), Some("bé"));
    let responses = extract(Api::Responses, br#"{"user":"r1"}"#).unwrap();
    assert_eq!(responses.user(), Some("r1"));
    let anthropic = extract(
        Api::Messages,
        br#"{"metadata":{"user_id":"a1"},"user":"ignored"}"#,
    )
    .unwrap();
    assert_eq!(anthropic.user(), Some("a1"));
    let not_string = extract(Api::ChatCompletions, br#"{"user":42}"#).unwrap();
    assert_eq!(not_string.user(), None);
}

#[test]
fn metadata_is_typed_as_sent() {
    let body = br#"{"model":"inworld/r","extra_body":{"metadata":{
        "tier":"gold","seats":12,"ratio":0.5,"big":1e400,"huge":18446744073709551615,
        "on":true,"none":null,"esc":"a\nb","tags":["x",1],"obj":{"k":{"v":2}}}}}"#;
    let ex = extract(Api::ChatCompletions, body).unwrap();
    let ctx = ex.context(None).unwrap();
    assert_eq!(
        ctx.metadata("tier"),
        Some(&MetadataValue::Str(Cow::Borrowed("gold")))
    );
    assert!(matches!(
        ctx.metadata("tier"),
        Some(MetadataValue::Str(Cow::Borrowed(_)))
    ));
    assert_eq!(ctx.metadata("seats"), Some(&MetadataValue::Int(12)));
    assert_eq!(ctx.metadata("ratio"), Some(&MetadataValue::Float(0.5)));
    assert_eq!(
        ctx.metadata("big"),
        Some(&MetadataValue::Float(f64::INFINITY))
    );
    assert_eq!(ctx.metadata("huge"), Some(&MetadataValue::UInt(u64::MAX)));
    assert_eq!(ctx.metadata("on"), Some(&MetadataValue::Bool(true)));
    assert_eq!(ctx.metadata("none"), Some(&MetadataValue::Null));
    assert_eq!(
        ctx.metadata("esc"),
        Some(&MetadataValue::Str(Cow::Owned("a\nb".into())))
    );
    assert_eq!(
        ctx.metadata("tags"),
        Some(&MetadataValue::Json(Cow::Owned(json!(["x", 1]))))
    );
    assert_eq!(
        ctx.metadata("obj"),
        Some(&MetadataValue::Json(Cow::Owned(json!({"k": {"v": 2}}))))
    );
    assert_eq!(ctx.metadata_entries().count(), 10);
}

#[test]
fn last_extra_body_wins() {
    let body =
        br#"{"extra_body":{"metadata":{"a":1},"models":["x"]},"extra_body":{"metadata":{"b":2}}}"#;
    let ex = extract(Api::ChatCompletions, body).unwrap();
    let ctx = ex.context(None).unwrap();
    assert_eq!(ctx.metadata("a"), None);
    assert_eq!(ctx.metadata("b"), Some(&MetadataValue::Int(2)));
    assert!(ctx.models().is_empty());
}

#[test]
fn request_models_and_ttft() {
    let body = br#"{"extra_body":{"models":["openai/gpt-4.1","anthropic\/claude"],"fallback":{"ttft_timeout":"1.5s"}}}"#;
    let ex = extract(Api::ChatCompletions, body).unwrap();
    let ctx = ex.context(None).unwrap();
    let models: Vec<&str> = ctx.models().iter().map(|m| m.as_ref()).collect();
    assert_eq!(models, ["openai/gpt-4.1", "anthropic/claude"]);
    assert_eq!(
        ex.ttft_timeout().unwrap(),
        Some(Duration::from_millis(1500))
    );

    for (fallback, param) in [
        (
            r#"{"ttft_timeout":"299ms"}"#,
            "extra_body.fallback.ttft_timeout",
        ),
        (
            r#"{"ttft_timeout":300}"#,
            "extra_body.fallback.ttft_timeout",
        ),
        (
            r#"{"ttft_timeout":"soon"}"#,
            "extra_body.fallback.ttft_timeout",
        ),
        (r#""300ms""#, "extra_body.fallback"),
    ] {
        let body = format!(r#"{{"extra_body":{{"fallback":{fallback}}}}}"#);
        let ex = extract(Api::ChatCompletions, body.as_bytes()).unwrap();
        let e = ex.ttft_timeout().unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.param()),
            (400, Some(param)),
            "{fallback}"
        );
    }
    let ok = extract(
        Api::ChatCompletions,
        br#"{"extra_body":{"fallback":{"ttft_timeout":null}}}"#,
    )
    .unwrap();
    assert_eq!(ok.ttft_timeout().unwrap(), None);
}

#[test]
fn context_errors() {
    let too_many: String = (0..=abroute_http::MAX_METADATA_KEYS)
        .map(|i| format!(r#""k{i}":{i}"#))
        .collect::<Vec<_>>()
        .join(",");
    let models17 = vec!["\"m\""; abroute_http::MAX_REQUEST_MODELS + 1].join(",");
    for (extra, param) in [
        (r#"{"metadata":[1]}"#.to_owned(), "extra_body.metadata"),
        (
            format!(r#"{{"metadata":{{{too_many}}}}}"#),
            "extra_body.metadata",
        ),
        (
            r#"{"metadata":{"x":[1e400]}}"#.to_owned(),
            "extra_body.metadata",
        ),
        (r#"{"models":["a",2]}"#.to_owned(), "extra_body.models"),
        (r#"{"models":{}}"#.to_owned(), "extra_body.models"),
        (format!(r#"{{"models":[{models17}]}}"#), "extra_body.models"),
    ] {
        let body = format!(r#"{{"extra_body":{extra}}}"#);
        let ex = extract(Api::ChatCompletions, body.as_bytes()).unwrap();
        let e = ex.context(None).unwrap_err();
        assert_eq!(e.status().as_u16(), 400, "{extra}");
        assert_eq!(e.param(), Some(param), "{extra}");
        assert_eq!(e.code(), "invalid_parameter");
    }
}

#[test]
fn needs_per_api() {
    let chat = extract(
        Api::ChatCompletions,
        br#"{"messages":[{"role":"user","content":[{"type":"text","text":"abcdefgh"},
            {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}],
            "tools":[{"type":"function","function":{"name":"f"}}],
            "response_format":{"type":"json_schema","json_schema":{}},
            "max_completion_tokens":300}"#,
    )
    .unwrap();
    let n = chat.needs();
    assert!(n.vision && n.tools && n.response_schema);
    assert_eq!(n.output_tokens, Some(300));
    // Strings counted: "user", "text", "abcdefgh", "image_url", "function", "f" (keys and the
    // data: URL are not): 4 + 4 + 8 + 9 + 8 + 1 = 34 bytes, so 9 tokens.
    assert_eq!(n.input_tokens, Some(9));

    let plain = extract(
        Api::ChatCompletions,
        br#"{"messages":[{"role":"user","content":"the image_url type"}],"tools":[ ],
            "response_format":{"type":"json_object"},"functions":[]}"#,
    )
    .unwrap()
    .needs();
    assert!(!plain.vision && !plain.tools && !plain.response_schema);

    let responses = extract(
        Api::Responses,
        br#"{"input":[{"role":"user","content":[{"type":"input_image","image_url":"https://x"}]}],
            "instructions":"be brief","text":{"format":{"type":"json_schema","schema":{}}},
            "max_output_tokens":50,"tools":[{"type":"web_search"}]}"#,
    )
    .unwrap()
    .needs();
    assert!(responses.vision && responses.tools && responses.response_schema);
    assert_eq!(responses.output_tokens, Some(50));

    let messages = extract(
        Api::Messages,
        br#"{"system":"s","messages":[{"role":"user","content":[{"type":"image","source":{}}]}],
            "max_tokens":1024,"output_format":{"type":"json_schema"}}"#,
    )
    .unwrap()
    .needs();
    assert!(messages.vision && !messages.tools && messages.response_schema);
    assert_eq!(messages.output_tokens, Some(1024));
    // An escaped `type` key still counts.
    let escaped = extract(
        Api::Messages,
        br#"{"messages":[{"content":[{"typ\u0065":"image"}]}]}"#,
    )
    .unwrap()
    .needs();
    assert!(escaped.vision);
}

#[test]
fn messages_for_conditions() {
    let chat = extract(
        Api::ChatCompletions,
        br#"{"messages":[{"role":"user","content":"refund please"}]}"#,
    )
    .unwrap();
    assert_eq!(
        chat.messages_json().unwrap(),
        Some(json!([{"role":"user","content":"refund please"}]))
    );
    let responses = extract(Api::Responses, br#"{"input":"hi"}"#).unwrap();
    assert_eq!(
        responses.messages_json().unwrap(),
        Some(json!([{"role":"user","content":"hi"}]))
    );
    assert_eq!(responses.messages_raw(), Some(&br#""hi""#[..]));
    let none = extract(Api::ChatCompletions, b"{}").unwrap();
    assert_eq!(none.messages_json().unwrap(), None);
    let bad = extract(Api::ChatCompletions, br#"{"messages":{"a":1}}"#).unwrap();
    assert_eq!(bad.messages_json().unwrap_err().param(), Some("messages"));
}

#[test]
fn syntax_errors_with_position() {
    let cases: [(&[u8], &str); 9] = [
        (
            b"",
            "end of input where a value was expected at line 1 column 1 (byte 0)",
        ),
        (
            b"{\"model\" \"x\"}",
            "expected `:` after an object key at line 1 column 10 (byte 9)",
        ),
        (
            b"{\"a\":1,}",
            "expected a string key at line 1 column 8 (byte 7)",
        ),
        (
            b"{\"a\":01}",
            "expected `,` or `}` after an object member at line 1 column 7 (byte 6)",
        ),
        (
            b"{\"a\":\"\x01\"}",
            "control character (U+0000 to U+001F) inside a string at line 1 column 7 (byte 6)",
        ),
        (
            b"{\"a\":\"\xff\"}",
            "invalid UTF-8 inside a string at line 1 column 7 (byte 6)",
        ),
        (
            b"{\"a\":1} {}",
            "trailing characters after the JSON value at line 1 column 9 (byte 8)",
        ),
        (
            b"{\n\"a\":tru}",
            "invalid literal (expected true, false or null) at line 2 column 5 (byte 6)",
        ),
        (
            b"\xef\xbb\xbf{}",
            "expected a value at line 1 column 1 (byte 0)",
        ),
    ];
    for (body, message) in cases {
        let e = extract(Api::ChatCompletions, body).unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(e.code(), "invalid_json");
        assert_eq!(
            e.message(),
            format!("the request body is not valid JSON: {message}"),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let e = extract(Api::ChatCompletions, b" [1] ").unwrap_err();
    assert_eq!(e.message(), "the request body must be a JSON object");
    let e = extract(Api::ChatCompletions, b"\"x\"").unwrap_err();
    assert_eq!(e.code(), "invalid_json");
}

#[test]
fn lone_surrogates_are_not_errors() {
    // JSON's grammar allows them and Python keeps them; decoded, they become U+FFFD.
    // (Found by the `rewrite` fuzz target: a top-level key holding one.)
    let body =
        br#"{"dddd\\\tddddddd\\\udddddddddddd":"in\\\\","user":"a\ud800b","model":"inworld/r"}"#;
    let ex = extract(Api::ChatCompletions, body).unwrap();
    assert_eq!(ex.user(), Some("a\u{fffd}b"));
    assert_eq!(ex.router_name("inworld/"), Some("r"));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!(
        r#"{{"model":"inworld/r","x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let e = extract(Api::ChatCompletions, deep.as_bytes()).unwrap_err();
    assert!(e.message().contains("nested too deeply"), "{}", e.message());
}
