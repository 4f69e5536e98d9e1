//! Table tests for rewriting, byte for byte: what changes (model, generation parameters, the
//! router's `extra_body` keys) and what must not (everything else, however it is written).

use abroute_http::{Api, GenerationParams, Precedence, Rewrite, extract, rewrite};
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    api: Api,
    input: &'static str,
    generation: Option<Value>,
    precedence: Precedence,
    expected: &'static str,
}

fn case(name: &'static str, input: &'static str, expected: &'static str) -> Case {
    Case {
        name,
        api: Api::ChatCompletions,
        input,
        generation: None,
        precedence: Precedence::Router,
        expected,
    }
}

impl Case {
    fn generation(mut self, g: Value) -> Case {
        self.generation = Some(g);
        self
    }
    fn api(mut self, api: Api) -> Case {
        self.api = api;
        self
    }
    fn request_wins(mut self) -> Case {
        self.precedence = Precedence::Request;
        self
    }
}

fn run(c: &Case) {
    let ex = extract(c.api, c.input.as_bytes())
        .unwrap_or_else(|e| panic!("{}: extract failed: {e}", c.name));
    let out = rewrite(
        &ex,
        &Rewrite {
            model: "openai/gpt-4.1",
            generation: c.generation.as_ref(),
            rendered: None,
            precedence: c.precedence,
            ..Default::default()
        },
    );
    assert_eq!(
        out.len(),
        out.capacity(),
        "{}: one exact allocation",
        c.name
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        c.expected,
        "case {:?}",
        c.name
    );
    // The same parameters rendered ahead of time (as the layer keeps them per router) give the
    // same bytes.
    let params = c
        .generation
        .as_ref()
        .map(|g| GenerationParams::new(c.api, g));
    let fast = rewrite(
        &ex,
        &Rewrite {
            model: "openai/gpt-4.1",
            generation: None,
            rendered: params.as_ref(),
            precedence: c.precedence,
            ..Default::default()
        },
    );
    assert_eq!(
        String::from_utf8_lossy(&fast),
        c.expected,
        "case {:?}, rendered",
        c.name
    );
    assert_eq!(fast.len(), fast.capacity(), "{}: rendered, exact", c.name);
}

#[test]
fn table() {
    let cases = [
        case(
            "minimal",
            r#"{"model":"inworld/r"}"#,
            r#"{"model":"openai/gpt-4.1"}"#,
        ),
        case(
            "whitespace everywhere JSON allows it",
            "\r\n\t { \n\"model\"\t:\r\n \"inworld/r\" ,\n \"messages\" : [ { \"role\" : \"user\" } ] \n} \t\n",
            "\r\n\t { \n\"model\"\t:\r\n \"openai/gpt-4.1\" ,\n \"messages\" : [ { \"role\" : \"user\" } ] \n} \t\n",
        ),
        case(
            "unicode and escapes are copied as written",
            r#"{"messages":[{"content":"日本語 😀 \u00e9\n\"q\" \\ \/ \ud83d\ude00"}],"model":"inworld\/r","ü":"ß"}"#,
            r#"{"messages":[{"content":"日本語 😀 \u00e9\n\"q\" \\ \/ \ud83d\ude00"}],"model":"openai/gpt-4.1","ü":"ß"}"#,
        ),
        case(
            "a model key inside messages or nested objects is not touched",
            r#"{"messages":[{"role":"user","content":"x","model":"keep"}],"tools":[{"function":{"model":"keep"}}],"meta":{"model":{"model":"keep"}},"model":"inworld/r"}"#,
            r#"{"messages":[{"role":"user","content":"x","model":"keep"}],"tools":[{"function":{"model":"keep"}}],"meta":{"model":{"model":"keep"}},"model":"openai/gpt-4.1"}"#,
        ),
        case(
            "a model mentioned inside a string is not touched",
            r#"{"messages":[{"content":"{\"model\":\"inworld/r\"}"}],"model":"inworld/r"}"#,
            r#"{"messages":[{"content":"{\"model\":\"inworld/r\"}"}],"model":"openai/gpt-4.1"}"#,
        ),
        case(
            "duplicate model keys are all rewritten",
            r#"{"model":"gpt-4","x":1,"model":"inworld/r"}"#,
            r#"{"model":"openai/gpt-4.1","x":1,"model":"openai/gpt-4.1"}"#,
        ),
        case(
            "an escaped key is the key it decodes to",
            r#"{"mod\u0065l":"inworld/r","extr\u0061_body":{"models":[]}}"#,
            r#"{"mod\u0065l":"openai/gpt-4.1"}"#,
        ),
        case(
            "numbers keep their spelling",
            r#"{"model":"inworld/r","a":1e400,"b":-0.0,"c":1.000,"d":12345678901234567890123,"e":1E-7,"f":[0,-1,2.5e+3]}"#,
            r#"{"model":"openai/gpt-4.1","a":1e400,"b":-0.0,"c":1.000,"d":12345678901234567890123,"e":1E-7,"f":[0,-1,2.5e+3]}"#,
        ),
        case(
            "literals and empty containers",
            r#"{"model":"inworld/r","t":true,"f":false,"n":null,"o":{},"a":[],"s":""}"#,
            r#"{"model":"openai/gpt-4.1","t":true,"f":false,"n":null,"o":{},"a":[],"s":""}"#,
        ),
        case(
            "extra_body with only router keys goes, first member",
            r#"{"extra_body":{"metadata":{"a":1},"models":["x"],"fallback":{"ttft_timeout":"1s"},"prompt_variables":{}} , "model":"inworld/r"}"#,
            r#"{"model":"openai/gpt-4.1"}"#,
        ),
        case(
            "extra_body goes, middle member",
            r#"{"model":"inworld/r", "extra_body": {"metadata": {}}, "stream": true}"#,
            r#"{"model":"openai/gpt-4.1", "stream": true}"#,
        ),
        case(
            "extra_body goes, last member",
            "{\"model\":\"inworld/r\",\n  \"extra_body\": {\"models\": []}\n}",
            "{\"model\":\"openai/gpt-4.1\"\n}",
        ),
        case(
            "an empty extra_body goes",
            r#"{"model":"inworld/r","extra_body":{}}"#,
            r#"{"model":"openai/gpt-4.1"}"#,
        ),
        case(
            "other extra_body keys stay",
            r#"{"model":"inworld/r","extra_body":{ "metadata":{"a":1}, "reasoning": {"effort":"low"} , "models":["x"] }}"#,
            r#"{"model":"openai/gpt-4.1","extra_body":{ "reasoning": {"effort":"low"} }}"#,
        ),
        case(
            "other extra_body keys stay, router key first and last",
            r#"{"model":"inworld/r","extra_body":{"models":[],"a":1,"b":2,"fallback":{}}}"#,
            r#"{"model":"openai/gpt-4.1","extra_body":{"a":1,"b":2}}"#,
        ),
        case(
            "a duplicate extra_body: the earlier one goes whole",
            r#"{"extra_body":{"keep":1},"model":"inworld/r","extra_body":{"metadata":{}}}"#,
            r#"{"model":"openai/gpt-4.1"}"#,
        ),
        case(
            "an extra_body that is not an object is left alone",
            r#"{"model":"inworld/r","extra_body":null}"#,
            r#"{"model":"openai/gpt-4.1","extra_body":null}"#,
        ),
        case(
            "deep nesting is copied",
            r#"{"model":"inworld/r","x":[[[[[[[[[[[[[[[[[[[[{"a":[[[[[[[[[[{"model":1}]]]]]]]]]]}]]]]]]]]]]]]]]]]]]]]}"#,
            r#"{"model":"openai/gpt-4.1","x":[[[[[[[[[[[[[[[[[[[[{"a":[[[[[[[[[[{"model":1}]]]]]]]]]]}]]]]]]]]]]]]]]]]]]]]}"#,
        ),
        case(
            "generation config: replaced in place, missing ones inserted after model",
            r#"{"temperature": 1.0e0, "model" : "inworld/r", "stream":true}"#,
            r#"{"temperature": 0.2, "model" : "openai/gpt-4.1","max_tokens":100,"stop":["END"], "stream":true}"#,
        )
        .generation(json!({"temperature": 0.2, "max_tokens": 100, "stop_sequences": ["END"]})),
        case(
            "generation config: max_completion_tokens is used when the body uses it",
            r#"{"model":"inworld/r","max_completion_tokens":5}"#,
            r#"{"model":"openai/gpt-4.1","max_completion_tokens":64}"#,
        )
        .generation(json!({"maxTokens": 64})),
        case(
            "generation config: duplicate parameter keys are all replaced",
            r#"{"model":"inworld/r","top_p":0.1,"top_p":0.2}"#,
            r#"{"model":"openai/gpt-4.1","top_p":0.9,"top_p":0.9}"#,
        )
        .generation(json!({"top_p": 0.9})),
        case(
            "generation config: the request wins under Precedence::Request",
            r#"{"model":"inworld/r","temperature":1}"#,
            r#"{"model":"openai/gpt-4.1","seed":7,"temperature":1}"#,
        )
        .generation(json!({"temperature": 0.2, "seed": 7}))
        .request_wins(),
        case(
            "generation config: null values and unknown keys",
            r#"{"model":"inworld/r"}"#,
            r#"{"model":"openai/gpt-4.1","top_k":40}"#,
        )
        .generation(json!({"temperature": null, "top_k": 40})),
        case(
            "generation config, responses: max_output_tokens; penalties not sent",
            r#"{"model":"inworld/r","input":"hi"}"#,
            r#"{"model":"openai/gpt-4.1","max_output_tokens":10,"temperature":0,"input":"hi"}"#,
        )
        .api(Api::Responses)
        .generation(json!({"max_tokens": 10, "frequency_penalty": 1, "temperature": 0, "seed": 1, "stop_sequences": ["x"]})),
        case(
            "generation config, messages: stop_sequences and max_tokens",
            r#"{"model":"inworld/r","max_tokens":1024,"messages":[]}"#,
            r#"{"model":"openai/gpt-4.1","stop_sequences":["\n\n"],"max_tokens":256,"messages":[]}"#,
        )
        .api(Api::Messages)
        .generation(json!({"max_tokens": 256, "stop_sequences": ["\n\n"], "presence_penalty": 1})),
        case(
            "no model member: one is added",
            r#"{ "messages": [] }"#,
            r#"{"model":"openai/gpt-4.1", "messages": [] }"#,
        ),
    ];
    for c in &cases {
        run(c);
    }
}

#[test]
fn model_values_are_escaped() {
    let ex = extract(Api::ChatCompletions, br#"{"model":"inworld/r"}"#).unwrap();
    let out = rewrite(
        &ex,
        &Rewrite {
            model: "we\"ird\\model\n",
            generation: None,
            rendered: None,
            precedence: Precedence::Router,
            ..Default::default()
        },
    );
    assert_eq!(out, br#"{"model":"we\"ird\\model\n"}"#);
}

#[test]
fn a_1mb_body_is_copied_exactly() {
    let content = "lorem ipsum dolor sit amet é 日本 ".repeat(40_000);
    let input =
        format!(r#"{{"model":"inworld/r","messages":[{{"role":"user","content":"{content}"}}]}}"#);
    let ex = extract(Api::ChatCompletions, input.as_bytes()).unwrap();
    let out = rewrite(
        &ex,
        &Rewrite {
            model: "m",
            generation: None,
            rendered: None,
            precedence: Precedence::Router,
            ..Default::default()
        },
    );
    let expected = input.replacen("inworld/r", "m", 1);
    assert!(out == expected.as_bytes());
}
