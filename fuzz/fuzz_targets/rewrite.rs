//! Arbitrary bytes as a request body through extraction and rewriting. Nothing may panic, and:
//!
//! - extraction accepts exactly the JSON objects serde_json accepts (when the body is UTF-8 and
//!   shallow enough for serde_json's recursion limit; serde_json does not check UTF-8 inside
//!   strings it skips, abroute-http does);
//! - the context, TTFT limit, needs and messages of an accepted body never panic;
//! - the parameters rendered ahead of time (`GenerationParams`) rewrite to the same bytes;
//! - a rewritten body is JSON again, extracts again, names the chosen model, has none of the
//!   router's `extra_body` keys left, and is the same size as the sizing pass said;
//! - with message templates (half the inputs), the parsed templates and the config value write
//!   the same bytes, and the body is JSON again and extracts again;
//! - the pass-through's model swap (`set_model`) changes exactly the top-level `model` (read by
//!   serde_json, the rest of the object is the same), keeps the body JSON, and refuses only
//!   what has no top-level string `model`.
#![no_main]

use abroute_http::{
    Api, GenerationParams, MessageTemplates, Precedence, Rewrite, extract, rewrite, set_model,
};
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

/// `set_model` on any body: see the module documentation.
fn check_set_model(body: &[u8]) {
    let model = "gpt-4.1 \"é\"";
    let before = serde_json::from_slice::<Value>(body).ok();
    match set_model(body, model) {
        Some(out) => {
            assert_eq!(out.len(), out.capacity(), "the sizing was exact");
            assert!(
                extract(Api::ChatCompletions, body).is_ok(),
                "set_model took what extract refuses"
            );
            let again = extract(Api::ChatCompletions, &out).expect("set_model keeps the body JSON");
            assert_eq!(again.model(), Some(model));
            if let Some(Value::Object(mut before)) = before {
                let Ok(Value::Object(mut after)) = serde_json::from_slice::<Value>(&out) else {
                    panic!("serde_json reads the body but not after set_model");
                };
                assert_eq!(after.remove("model"), Some(Value::from(model)));
                assert!(before.remove("model").is_some_and(|m| m.is_string()));
                assert_eq!(before, after, "set_model changed more than the model");
            }
        }
        None => {
            if let Some(Value::Object(m)) = before {
                assert!(
                    !m.get("model").is_some_and(Value::is_string),
                    "set_model refused a body with a string model"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let api = match selector % 3 {
        0 => Api::ChatCompletions,
        1 => Api::Responses,
        _ => Api::Messages,
    };
    let extracted = extract(api, body);
    // An answer's usage is read from upstream bytes the same way: it must not panic either.
    let _ = abroute_http::usage_of(api, body);
    check_set_model(body);

    let shallow = body.iter().filter(|&&b| b == b'[' || b == b'{').count() < 100;
    let serde_ok = serde_json::from_slice::<IgnoredAny>(body).is_ok();
    let is_object = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{');
    if extracted.is_ok() && shallow {
        assert!(serde_ok, "abroute-http accepted what serde_json refuses");
    }
    if serde_ok && is_object && std::str::from_utf8(body).is_ok() {
        assert!(
            extracted.is_ok(),
            "serde_json accepted what abroute-http refuses"
        );
    }
    let Ok(ex) = extracted else {
        return;
    };
    let _ = ex.context(Some("header-user"));
    let _ = ex.context(None);
    let _ = ex.ttft_timeout();
    let _ = ex.needs();
    let _ = ex.messages_json();
    let _ = ex.router_name("inworld/");

    let generation = match selector / 3 % 4 {
        0 => None,
        1 => Some(json!({"temperature": 0.2, "max_tokens": 64})),
        2 => Some(
            json!({"stop_sequences": ["\n\n"], "maxTokens": 8, "logit_bias": [{"token_id": "1", "bias_value": -1}],
                         "reasoning": {"effort": "low", "max_tokens": 100}, "top_k": 3}),
        ),
        _ => Some(json!({"seed": 7, "model": "nope", "extra_body": 1, "temperature": null})),
    };
    let precedence = if selector & 0x80 == 0 {
        Precedence::Router
    } else {
        Precedence::Request
    };
    let model = "openai/gpt-4.1 \"é\"";
    let out = rewrite(
        &ex,
        &Rewrite {
            model,
            generation: generation.as_ref(),
            rendered: None,
            precedence,
            ..Default::default()
        },
    );
    assert_eq!(out.len(), out.capacity(), "the sizing pass was exact");
    // The parameters rendered ahead of time (as the layer keeps them) write the same bytes.
    let params = generation.as_ref().map(|g| GenerationParams::new(api, g));
    let fast = rewrite(
        &ex,
        &Rewrite {
            model,
            generation: None,
            rendered: params.as_ref(),
            precedence,
            ..Default::default()
        },
    );
    assert_eq!(fast, out, "rendered parameters give the same body");
    let again = extract(api, &out).expect("a rewritten body is JSON");
    assert_eq!(again.model(), Some(model));
    if shallow {
        assert!(serde_json::from_slice::<IgnoredAny>(&out).is_ok());
    }
    let ctx = again.context(None);
    if let Ok(ctx) = ctx {
        assert_eq!(
            ctx.metadata_entries().count(),
            0,
            "router metadata is removed"
        );
        assert!(ctx.models().is_empty(), "router models are removed");
    }
    assert_eq!(again.ttft_timeout().ok().flatten(), None);

    if selector & 0x40 != 0 {
        let value = json!([
            {"role": "system", "content": "You are {{a}}, {{ b }} {{{c}}}."},
            {"role": "user", "content": [{"type": "text", "text": "{{c}}\n{{a}}"}]}
        ]);
        let parsed = MessageTemplates::new(&value).expect("the templates are valid");
        let slow = rewrite(
            &ex,
            &Rewrite {
                model,
                message_templates: Some(&value),
                ..Default::default()
            },
        );
        let fast = rewrite(
            &ex,
            &Rewrite {
                model,
                templates: Some(&parsed),
                ..Default::default()
            },
        );
        assert_eq!(
            slow, fast,
            "parsed and configured templates give the same body"
        );
        assert_eq!(fast.len(), fast.capacity(), "the sizing pass was exact");
        let t = extract(api, &fast).expect("a body with templates is JSON");
        assert_eq!(t.model(), Some(model));
        if shallow {
            assert!(serde_json::from_slice::<IgnoredAny>(&fast).is_ok());
        }
    }
});
