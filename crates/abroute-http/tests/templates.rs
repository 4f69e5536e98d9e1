//! Message templates and prompt variables in the rewrite, byte for byte: where the templates
//! go for each API, how each kind of variable value is written, and that the parsed templates
//! (as the layer keeps them) and the config value give the same bytes.

use abroute_http::{Api, MessageTemplates, Rewrite, extract, rewrite};
use serde_json::{Value, json};

/// Rewrites `input` for `api` with `templates` both ways, checks they agree and that the
/// output is JSON, and returns it.
// Template messages are written with their keys sorted: the router config keeps them as
// `serde_json` values, which do not keep key order.
fn run(api: Api, templates: &Value, input: &str) -> String {
    let ex = extract(api, input.as_bytes()).expect("the input extracts");
    let parsed = MessageTemplates::new(templates).expect("the templates parse");
    let fast = rewrite(
        &ex,
        &Rewrite {
            model: "m",
            templates: Some(&parsed),
            ..Default::default()
        },
    );
    let slow = rewrite(
        &ex,
        &Rewrite {
            model: "m",
            message_templates: Some(templates),
            ..Default::default()
        },
    );
    assert_eq!(fast, slow, "parsed and configured templates agree");
    assert_eq!(fast.len(), fast.capacity(), "the sizing pass was exact");
    let out = String::from_utf8(fast).expect("UTF-8");
    serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    extract(api, out.as_bytes()).expect("the output extracts again");
    out
}

fn agent() -> Value {
    json!([{"role": "system", "content": "You are {{agent_name}}, who loves {{ item }}."}])
}

#[test]
fn chat_templates_go_first_with_variables_filled() {
    let out = run(
        Api::ChatCompletions,
        &agent(),
        r#"{"model": "inworld/r", "messages": [{"role": "user", "content": "hi {{item}}"}], "extra_body": {"prompt_variables": {"agent_name": "Ava", "item": "tea"}}}"#,
    );
    assert_eq!(
        out,
        r#"{"model": "m", "messages": [{"content":"You are Ava, who loves tea.","role":"system"},{"role": "user", "content": "hi {{item}}"}]}"#,
        "the request's own messages are not searched for placeholders"
    );
}

#[test]
fn lists_empty_missing_and_of_the_wrong_type() {
    let t = json!([{"role": "system", "content": "S"}]);
    assert_eq!(
        run(Api::ChatCompletions, &t, r#"{"model":"x","messages":[ ]}"#),
        r#"{"model":"m","messages":[{"content":"S","role":"system"} ]}"#
    );
    assert_eq!(
        run(Api::ChatCompletions, &t, r#"{"model":"x" }"#),
        r#"{"model":"m" ,"messages":[{"content":"S","role":"system"}]}"#
    );
    assert_eq!(
        run(
            Api::ChatCompletions,
            &t,
            r#"{"extra_body":{"prompt_variables":{}}}"#
        ),
        r#"{"model":"m","messages":[{"content":"S","role":"system"}]}"#,
        "every member removed, the model inserted, the messages added"
    );
    assert_eq!(
        run(Api::ChatCompletions, &t, r#"{}"#),
        r#"{"model":"m","messages":[{"content":"S","role":"system"}]}"#
    );
    assert_eq!(
        run(Api::ChatCompletions, &t, r#"{"messages":"hi","model":"x"}"#),
        r#"{"messages":"hi","model":"m"}"#,
        "messages that are not a list are the upstream's to refuse"
    );
    // Duplicate `messages`: the last one, which every reader uses, gets the templates.
    assert_eq!(
        run(
            Api::ChatCompletions,
            &t,
            r#"{"messages":[1],"model":"x","messages":[2]}"#
        ),
        r#"{"messages":[1],"model":"m","messages":[{"content":"S","role":"system"},2]}"#
    );
}

#[test]
fn every_kind_of_value() {
    let t = json!([{"role": "user", "content": "[{{s}}|{{e}}|{{n}}|{{b}}|{{z}}|{{o}}|{{a}}|{{missing}}|{{d}}|{{ak}}]"}]);
    let out = run(
        Api::ChatCompletions,
        &t,
        r#"{"model":"x","messages":[],"extra_body":{"prompt_variables":{
            "s": "plain", "e": "q\"\n\u00e9😀", "n": 1e400, "b": true, "z": null,
            "o": {"k": [1, "two"]}, "a": [ 1 ,2 ], "d": "first", "d": "last", "a\u006b": "esc"}}}"#,
    );
    assert_eq!(
        out,
        r#"{"model":"x","messages":[{"content":"[plain|q\"\n\u00e9😀|1e400|true||{\"k\": [1, \"two\"]}|[ 1 ,2 ]||last|esc]","role":"user"}]}"#
            .replace(r#""model":"x""#, r#""model":"m""#),
        "strings copied escaped as written, numbers as written, null and missing as nothing, \
         objects and lists as their JSON text, the last duplicate, an escaped key matched"
    );
    let parsed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        parsed["messages"][0]["content"],
        "[plain|q\"\né😀|1e400|true||{\"k\": [1, \"two\"]}|[ 1 ,2 ]||last|esc]"
    );
}

#[test]
fn several_templates_keep_their_order_and_members() {
    let t = json!([
        {"role": "system", "content": "one {{x}}"},
        {"role": "assistant", "content": [{"type": "text", "text": "two {{x}}"}], "name": "bot"},
    ]);
    assert_eq!(
        run(
            Api::ChatCompletions,
            &t,
            r#"{"model":"x","messages":[{"role":"user","content":"q"}],"extra_body":{"prompt_variables":{"x":"X"},"keep":1}}"#
        ),
        r#"{"model":"m","messages":[{"content":"one X","role":"system"},{"content":[{"text":"two X","type":"text"}],"name":"bot","role":"assistant"},{"role":"user","content":"q"}],"extra_body":{"keep":1}}"#
    );
}

#[test]
fn responses_input_list_string_or_missing() {
    let t = agent();
    let vars = r#""extra_body":{"prompt_variables":{"agent_name":"Ava","item":"tea"}}"#;
    let sys = r#"{"content":"You are Ava, who loves tea.","role":"system"}"#;
    assert_eq!(
        run(
            Api::Responses,
            &t,
            &format!(r#"{{"model":"x","input":[{{"role":"user","content":"q"}}],{vars}}}"#)
        ),
        format!(r#"{{"model":"m","input":[{sys},{{"role":"user","content":"q"}}]}}"#)
    );
    assert_eq!(
        run(
            Api::Responses,
            &t,
            &format!(r#"{{"model":"x","input":"what\n?",{vars}}}"#)
        ),
        format!(r#"{{"model":"m","input":[{sys},{{"role":"user","content":"what\n?"}}]}}"#),
        "a string input becomes the user's message after the templates"
    );
    assert_eq!(
        run(Api::Responses, &t, &format!(r#"{{"model":"x",{vars}}}"#)),
        format!(r#"{{"model":"m","input":[{sys}]}}"#)
    );
}

#[test]
fn anthropic_system_templates_become_system_blocks() {
    let t = json!([
        {"role": "system", "content": "You are {{n}}."},
        {"role": "developer", "content": [{"type": "text", "text": "Be {{m}}.", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "Hello, {{n}}"},
    ]);
    let vars = r#""extra_body":{"prompt_variables":{"n":"Ava","m":"brief"}}"#;
    let blocks = r#"{"text":"You are Ava.","type":"text"},{"cache_control":{"type":"ephemeral"},"text":"Be brief.","type":"text"}"#;
    let user = r#"{"content":"Hello, Ava","role":"user"}"#;
    // `system` as a string, after `messages` in the body.
    assert_eq!(
        run(
            Api::Messages,
            &t,
            &format!(
                r#"{{"model":"x","messages":[{{"role":"user","content":"q"}}],"system":"Own.",{vars}}}"#
            )
        ),
        format!(
            r#"{{"model":"m","messages":[{user},{{"role":"user","content":"q"}}],"system":[{blocks},{{"type":"text","text":"Own."}}]}}"#
        )
    );
    // `system` as a list of blocks, before `messages`.
    assert_eq!(
        run(
            Api::Messages,
            &t,
            &format!(
                r#"{{"model":"x","system":[{{"type":"text","text":"Own."}}],"messages":[],{vars}}}"#
            )
        ),
        format!(
            r#"{{"model":"m","system":[{blocks},{{"type":"text","text":"Own."}}],"messages":[{user}]}}"#
        )
    );
    // Neither.
    assert_eq!(
        run(Api::Messages, &t, &format!(r#"{{"model":"x",{vars}}}"#)),
        format!(r#"{{"model":"m","messages":[{user}],"system":[{blocks}]}}"#)
    );
    // An empty `system` string is dropped, not kept as an empty text block.
    assert_eq!(
        run(
            Api::Messages,
            &json!([{"role": "system", "content": "S"}]),
            r#"{"model":"x","system":"","messages":[]}"#
        ),
        r#"{"model":"m","system":[{"text":"S","type":"text"}],"messages":[]}"#
    );
    // Only system templates: `messages` is untouched.
    let only = json!([{"role": "system", "content": "S"}]);
    assert_eq!(
        run(
            Api::Messages,
            &only,
            r#"{"model":"x","messages":[{"role":"user","content":"q"}]}"#
        ),
        r#"{"model":"m","messages":[{"role":"user","content":"q"}],"system":[{"text":"S","type":"text"}]}"#
    );
}

#[test]
fn no_templates_no_change() {
    let input = r#"{"model":"x","messages":[{"role":"user","content":"{{a}}"}],"extra_body":{"prompt_variables":{"a":"b"}}}"#;
    let ex = extract(Api::ChatCompletions, input.as_bytes()).unwrap();
    let empty = MessageTemplates::new(&json!([])).unwrap();
    for rw in [
        Rewrite {
            model: "m",
            ..Default::default()
        },
        Rewrite {
            model: "m",
            templates: Some(&empty),
            ..Default::default()
        },
    ] {
        assert_eq!(
            String::from_utf8(rewrite(&ex, &rw)).unwrap(),
            r#"{"model":"m","messages":[{"role":"user","content":"{{a}}"}]}"#
        );
    }
}

/// Through `RouterOptions::route` (the layer's path): the router's default templates, a
/// variant's own replacing them as a whole, both parsed once per loaded router.
#[test]
fn routed_requests_get_their_variants_templates() {
    use abroute::{Engine, RouterConfig};
    use abroute_http::{Prepared, RouterOptions, Routing};
    let engine = Engine::new();
    engine
        .upsert(
            RouterConfig::from_value(&json!({
                "name": "agents",
                "defaults": { "message_templates": [
                    { "role": "system", "content": "You are {{agent_name}}." } ] },
                "routes": [{
                    "condition": { "cel_expression": "tier == \"gold\"" },
                    "route": { "route_id": "gold", "variants": [
                        { "variant": { "variant_id": "own", "model_id": "openai/gpt-4.1",
                            "message_templates": [
                                { "role": "system", "content": "Gold {{agent_name}} loves {{item}}." } ] },
                          "weight": 100 } ] } }],
                "defaultRoute": { "route_id": "default", "variants": [
                    { "variant": { "variant_id": "plain", "model_id": "openai/gpt-4o-mini" },
                      "weight": 100 } ] }
            }))
            .unwrap(),
        )
        .unwrap();
    let snapshot = engine.load();
    let route = |tier: &str| {
        let body = format!(
            r#"{{"model":"inworld/agents","messages":[{{"role":"user","content":"hi"}}],"extra_body":{{"metadata":{{"tier":"{tier}"}},"prompt_variables":{{"agent_name":"Ava","item":"tea"}}}}}}"#
        );
        match RouterOptions::new()
            .route(
                &snapshot,
                Api::ChatCompletions,
                &http::HeaderMap::new(),
                body.as_bytes(),
                std::time::Duration::ZERO,
            )
            .unwrap()
        {
            Routing::Routed(r) => String::from_utf8(r.body.to_vec()).unwrap(),
            Routing::PassThrough => panic!("routed"),
        }
    };
    assert_eq!(
        route("silver"),
        r#"{"model":"openai/gpt-4o-mini","messages":[{"content":"You are Ava.","role":"system"},{"role":"user","content":"hi"}]}"#
    );
    assert_eq!(
        route("gold"),
        r#"{"model":"openai/gpt-4.1","messages":[{"content":"Gold Ava loves tea.","role":"system"},{"role":"user","content":"hi"}]}"#
    );
    // The parsed templates live in the router's extension slot, by route index (0: `gold`,
    // 1: the default route) and variant index.
    let loaded = snapshot.router("agents").unwrap();
    let rendered = Prepared::of(loaded).unwrap();
    assert_eq!(
        rendered
            .templates(0, 0)
            .unwrap()
            .variables()
            .collect::<Vec<_>>(),
        ["agent_name", "item"]
    );
    assert_eq!(rendered.templates(1, 0).unwrap().len(), 1);
    assert!(rendered.templates(1, 1).is_none());
}
