//! Property: rewriting changes nothing but what it should.
//!
//! Random chat bodies (nested values, unicode and escapes, odd number spellings, whitespace
//! everywhere, duplicate keys, `model` keys at every depth, `extra_body` with router and other
//! keys) and random generation configs. Both bodies are parsed with `serde_json` (the last of
//! duplicate keys wins, as everywhere) and the output must equal the input with exactly the
//! documented changes. Without a generation config and an `extra_body`, the output must be the
//! input byte for byte except the top-level `model` values. `set_model` (the pass-through's
//! model swap) must give the input byte for byte except the top-level `model` values, always.

mod common;

use abroute_http::{Api, Precedence, Rewrite, extract, rewrite, set_model};
use common::Rng;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn ws(out: &mut String, rng: &mut Rng) {
    out.push_str(rng.pick(&["", "", " ", "\n", "\t", "\r\n  ", " \n "]));
}

fn write_string(out: &mut String, s: &str, rng: &mut Rng) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str(rng.pick(&["\\n", "\\u000a", "\\u000A"])),
            '/' => out.push_str(rng.pick(&["/", "\\/"])),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            'é' => out.push_str(rng.pick(&["é", "\\u00e9"])),
            '😀' => out.push_str(rng.pick(&["😀", "\\ud83d\\ude00"])),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &serde_json::Number, rng: &mut Rng) {
    if let Some(i) = n.as_i64() {
        let s = match rng.next() % 3 {
            0 => format!("{i}"),
            1 => format!("{i}.0"),
            _ => format!("{i}E0"),
        };
        out.push_str(&s);
    } else {
        out.push_str(&n.to_string());
    }
}

fn write_value(out: &mut String, v: &Value, rng: &mut Rng) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n, rng),
        Value::String(s) => write_string(out, s, rng),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(out, rng);
                write_value(out, item, rng);
                ws(out, rng);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let members: Vec<(String, Value)> =
                map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            write_object(out, &members, rng);
        }
    }
}

fn write_object(out: &mut String, members: &[(String, Value)], rng: &mut Rng) {
    out.push('{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        ws(out, rng);
        write_string(out, k, rng);
        ws(out, rng);
        out.push(':');
        ws(out, rng);
        write_value(out, v, rng);
        ws(out, rng);
    }
    out.push('}');
}

/// A body of these top-level members, spelled by the generator seeded with `seed`.
fn body_text(members: &[(String, Value)], seed: u64) -> String {
    let mut rng = Rng(seed | 1);
    let mut input = String::new();
    ws(&mut input, &mut rng);
    write_object(&mut input, members, &mut rng);
    ws(&mut input, &mut rng);
    input
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9 é😀/\"\\\\\n\u{1}日]{0,10}"
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("model".to_owned()),
        Just("extra_body".to_owned()),
        Just("metadata".to_owned()),
        Just("temperature".to_owned()),
        "[a-z]{1,6}",
        text(),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e300f64..1e300f64).prop_map(Value::from),
        text().prop_map(Value::String),
        Just(Value::String("inworld/r".into())),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

const ROUTER_KEYS: [&str; 4] = ["metadata", "models", "fallback", "prompt_variables"];

fn extra_body() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::collection::vec(
            (prop_oneof![
                Just("metadata".to_owned()),
                Just("models".to_owned()),
                Just("fallback".to_owned()),
                Just("prompt_variables".to_owned()),
                Just("reasoning".to_owned()),
                "[a-z]{1,4}",
            ], json()),
            0..5,
        )
        .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        1 => leaf(),
    ]
}

fn top_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("model".to_owned()),
        2 => Just("extra_body".to_owned()),
        1 => Just("messages".to_owned()),
        1 => Just("temperature".to_owned()),
        1 => Just("max_tokens".to_owned()),
        1 => Just("max_completion_tokens".to_owned()),
        1 => Just("stop".to_owned()),
        1 => Just("top_p".to_owned()),
        1 => Just("user".to_owned()),
        2 => key(),
    ]
}

/// Top-level members: every `model` is `"inworld/r"`, `extra_body` values look like one.
fn body_members() -> impl Strategy<Value = Vec<(String, Value)>> {
    (
        prop::collection::vec((top_key(), json(), extra_body()), 0..8),
        0usize..8,
    )
        .prop_map(|(members, at)| {
            let mut out: Vec<(String, Value)> = members
                .into_iter()
                .map(|(k, v, eb)| match k.as_str() {
                    "model" => (k, Value::String("inworld/r".into())),
                    "extra_body" => (k, eb),
                    _ => (k, v),
                })
                .collect();
            let at = at.min(out.len());
            out.insert(at, ("model".into(), Value::String("inworld/r".into())));
            out
        })
}

fn generation() -> impl Strategy<Value = Option<Value>> {
    let param = prop_oneof![
        Just("temperature"),
        Just("top_p"),
        Just("max_tokens"),
        Just("stop_sequences"),
        Just("seed"),
        Just("top_k"),
    ];
    prop::option::of(
        prop::collection::vec((param, leaf()), 0..5)
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
    )
}

/// The documented changes, applied to the parsed input.
fn expected(input: &Value, generation: Option<&Value>) -> Value {
    let mut map = input.as_object().cloned().unwrap_or_default();
    map.insert("model".into(), Value::String("p/m".into()));
    if let Some(Value::Object(eb)) = map.get_mut("extra_body") {
        for k in ROUTER_KEYS {
            eb.remove(k);
        }
        if eb.is_empty() {
            map.remove("extra_body");
        }
    }
    if let Some(Value::Object(g)) = generation {
        for (k, v) in g {
            if v.is_null() {
                continue;
            }
            let names: Vec<&str> = match k.as_str() {
                "max_tokens" => vec!["max_tokens", "max_completion_tokens"],
                "stop_sequences" => vec!["stop"],
                other => vec![other],
            };
            let present: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| map.contains_key(*n))
                .collect();
            if present.is_empty() {
                map.insert(names[0].to_owned(), v.clone());
            } else {
                for n in present {
                    map.insert(n.to_owned(), v.clone());
                }
            }
        }
    }
    Value::Object(map)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x0ab0_5e77),
        ..ProptestConfig::default()
    })]

    #[test]
    fn rewriting_changes_only_what_it_should(
        members in body_members(),
        generation in generation(),
        seed in any::<u64>(),
    ) {
        let input = body_text(&members, seed);

        let ex = extract(Api::ChatCompletions, input.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}: {input}")))?;
        prop_assert_eq!(ex.router_name("inworld/"), Some("r"));
        let out = rewrite(&ex, &Rewrite {
            model: "p/m",
            generation: generation.as_ref(),
            rendered: None,
            precedence: Precedence::Router,
            ..Default::default()
        });
        prop_assert_eq!(out.len(), out.capacity());
        let parsed_in: Value = serde_json::from_str(&input).unwrap();
        let parsed_out: Value = serde_json::from_slice(&out)
            .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&out))))?;
        prop_assert_eq!(&parsed_out, &expected(&parsed_in, generation.as_ref()), "input: {}", input);

        let has_extra = members.iter().any(|(k, _)| k == "extra_body");
        if generation.is_none() && !has_extra {
            // Byte for byte: only the top-level model values differ.
            let want = input
                .replace(r#""inworld/r""#, r#""p/m""#)
                .replace(r#""inworld\/r""#, r#""p/m""#);
            let nested = members.iter().any(|(k, v)| k != "model" && v.to_string().contains("inworld/r"));
            if !nested {
                prop_assert_eq!(String::from_utf8_lossy(&out), want);
            }
        }
    }

    #[test]
    fn set_model_changes_only_the_top_level_model(
        members in body_members(),
        seed in any::<u64>(),
    ) {
        let input = body_text(&members, seed);

        let out = set_model(input.as_bytes(), "p/m")
            .ok_or_else(|| TestCaseError::fail(format!("refused: {input}")))?;
        prop_assert_eq!(out.len(), out.capacity());
        let mut want: Value = serde_json::from_str(&input).unwrap();
        want["model"] = Value::String("p/m".into());
        let parsed_out: Value = serde_json::from_slice(&out)
            .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&out))))?;
        prop_assert_eq!(&parsed_out, &want, "input: {}", input);
        let nested = members.iter().any(|(k, v)| k != "model" && v.to_string().contains("inworld/r"));
        if !nested {
            let want = input
                .replace(r#""inworld/r""#, r#""p/m""#)
                .replace(r#""inworld\/r""#, r#""p/m""#);
            prop_assert_eq!(String::from_utf8_lossy(&out), want);
        }
    }

    #[test]
    fn extraction_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(ex) = extract(Api::ChatCompletions, &bytes) {
            // Whatever extracts, serde_json must also accept (it is JSON).
            prop_assert!(serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok());
            let _ = ex.context(None);
            let _ = ex.ttft_timeout();
            let out = rewrite(&ex, &Rewrite { model: "m", generation: None, rendered: None, precedence: Precedence::Router, ..Default::default() });
            prop_assert!(serde_json::from_slice::<serde::de::IgnoredAny>(&out).is_ok());
        }
    }
}

/// An independent renderer for message templates, over decoded strings: `{{ name }}` (spaces
/// allowed, names of ASCII letters, digits, `_`, `-`, `.`) becomes the variable's string, its
/// boolean as written, or nothing (`null`, missing).
fn fill(text: &str, vars: &Map<String, Value>) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    'scan: while i < chars.len() {
        if chars[i] == '{' && chars.get(i + 1) == Some(&'{') {
            let mut j = i + 2;
            while chars.get(j) == Some(&' ') {
                j += 1;
            }
            let start = j;
            while chars
                .get(j)
                .is_some_and(|c| c.is_ascii_alphanumeric() || "_-.".contains(*c))
            {
                j += 1;
            }
            let name: String = chars[start..j].iter().collect();
            while chars.get(j) == Some(&' ') {
                j += 1;
            }
            if !name.is_empty() && chars.get(j) == Some(&'}') && chars.get(j + 1) == Some(&'}') {
                match vars.get(&name) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(Value::Bool(b)) => out.push_str(&b.to_string()),
                    _ => {}
                }
                i = j + 2;
                continue 'scan;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn template_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-z {}é\"\\\\\n]{0,6}",
            Just("{{a}}".to_owned()),
            Just("{{ b }}".to_owned()),
            Just("{{c.d}}".to_owned()),
            Just("{{missing}}".to_owned()),
            Just("{{ bad name }}".to_owned()),
            Just("{{{a}}}".to_owned()),
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

fn templates() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop_oneof![Just("system"), Just("user"), Just("assistant")].prop_map(str::to_owned),
            template_text(),
        ),
        1..4,
    )
}

fn prompt_variables() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec(
        (
            prop_oneof![Just("a"), Just("b"), Just("c.d"), Just("x")],
            prop_oneof![
                text().prop_map(Value::String),
                any::<bool>().prop_map(Value::Bool),
                Just(Value::Null),
            ],
        ),
        0..5,
    )
    .prop_map(|kv| kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x7e37_1a7e),
        ..ProptestConfig::default()
    })]

    #[test]
    fn templates_fill_like_an_independent_renderer(
        members in body_members(),
        templates in templates(),
        vars in prompt_variables(),
        at in 0usize..10,
        seed in any::<u64>(),
    ) {
        // The request's variables: one `extra_body` with them at a random place; any other
        // `extra_body` loses its own `prompt_variables` (their values could be numbers or
        // objects, which go in as written and are not predictable from a parsed value).
        let mut members: Vec<(String, Value)> = members
            .into_iter()
            .map(|(k, mut v)| {
                if k == "extra_body" && let Value::Object(m) = &mut v {
                    m.remove("prompt_variables");
                }
                (k, v)
            })
            .collect();
        let mut eb = Map::new();
        eb.insert("prompt_variables".into(), Value::Object(vars));
        members.insert(at.min(members.len()), ("extra_body".into(), Value::Object(eb)));

        let mut rng = Rng(seed | 1);
        let mut input = String::new();
        write_object(&mut input, &members, &mut rng);
        let template_value = Value::Array(
            templates
                .iter()
                .map(|(role, content)| serde_json::json!({"role": role, "content": content}))
                .collect(),
        );

        let ex = extract(Api::ChatCompletions, input.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}: {input}")))?;
        let out = rewrite(&ex, &Rewrite {
            model: "p/m",
            message_templates: Some(&template_value),
            ..Default::default()
        });
        prop_assert_eq!(out.len(), out.capacity());
        let parsed_out: Value = serde_json::from_slice(&out)
            .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&out))))?;

        let parsed_in: Value = serde_json::from_str(&input).unwrap();
        let used = parsed_in
            .get("extra_body")
            .and_then(|eb| eb.get("prompt_variables"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let rendered: Vec<Value> = templates
            .iter()
            .map(|(role, content)| serde_json::json!({"role": role, "content": fill(content, &used)}))
            .collect();
        let mut want = expected(&parsed_in, None);
        let map = want.as_object_mut().unwrap();
        match map.get_mut("messages") {
            Some(Value::Array(list)) => {
                list.splice(0..0, rendered);
            }
            Some(_) => {}
            None => {
                map.insert("messages".into(), Value::Array(rendered));
            }
        }
        prop_assert_eq!(&parsed_out, &want, "input: {}", input);
    }
}
