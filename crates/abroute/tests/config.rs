//! Reading and writing router configs: the seed and a full router, both protobuf spellings,
//! unknown fields, error parity between `serde_json::from_str` and `RouterConfig::from_json`,
//! the `parse → serialize → parse` identity, and "nothing panics" over arbitrary input.

use abroute::config::{
    Condition, ConditionalRoute, Failover, ModelSelection, ProviderPreferences, Route,
    SortDirection, SortKey, SortMetric, Variant, WeightedVariant,
};
use abroute::error::PathSegment;
use abroute::validate::{ValidationOptions, validate};
use abroute::{ConfigErrorKind, ConfigErrors, RequestContext, RouterConfig};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

const SEED: &str = include_str!("data/seed.json");
const FULL: &str = include_str!("data/full.json");
/// `full.json` in the other protobuf spelling, with a `routers/` prefix on the name.
const FULL_OTHER: &str = include_str!("data/full_other_spelling.json");

fn value(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn parse(text: &str) -> RouterConfig {
    match RouterConfig::from_json(text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

/// Reads `text` both ways, checks they fail with the same text, and returns our errors.
fn parse_err(text: &str) -> ConfigErrors {
    let ours = match RouterConfig::from_json(text) {
        Ok(c) => panic!("expected an error for {text}, got {c:?}"),
        Err(e) => e,
    };
    let serde = match serde_json::from_str::<RouterConfig>(text) {
        Ok(c) => panic!("serde accepted what from_json refused: {c:?}"),
        Err(e) => e,
    };
    assert_eq!(serde.to_string(), ours.to_string(), "input: {text}");
    ours
}

/// Reads a value both ways, checks they fail with the same text, and returns our errors.
fn value_err(v: &Value) -> ConfigErrors {
    let ours = match RouterConfig::from_value(v) {
        Ok(c) => panic!("expected an error for {v}, got {c:?}"),
        Err(e) => e,
    };
    let serde = serde_json::from_value::<RouterConfig>(v.clone()).expect_err("serde agrees");
    assert_eq!(serde.to_string(), ours.to_string(), "input: {v}");
    // The text path gives the same errors as the value path when the text is well formed.
    assert_eq!(parse_err(&v.to_string()), ours);
    ours
}

/// Every object key in `v`, recursively.
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                keys(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        _ => {}
    }
}

/// `v` with `key: val` added to the object at JSON pointer `at`.
fn with_member(v: &Value, at: &str, key: &str, val: Value) -> Value {
    let mut v = v.clone();
    let obj = v
        .pointer_mut(at)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {at}"));
    obj.insert(key.to_owned(), val);
    v
}

fn variant(id: &str, model: &str) -> Variant {
    Variant {
        variant_id: id.to_owned(),
        model_id: model.to_owned(),
        model_selection: None,
        text_generation_config: None,
        message_templates: None,
        web_search: None,
        compression: None,
    }
}

// ---------------------------------------------------------------------------------------------
// The seed router and a full router

#[test]
fn seed_router_parses_compiles_and_serializes_unchanged() {
    let config = parse(SEED);
    assert_eq!(config.name, "compare-frontier-models");
    assert_eq!(config.display_name, None);
    assert!(config.routes.is_empty());
    assert_eq!(config.defaults, None);
    let route = config.default_route.as_ref().expect("default route");
    assert_eq!(route.route_id, "default");
    assert_eq!(route.salt, None);
    let got: Vec<(&str, &str, u32)> = route
        .variants
        .iter()
        .map(|wv| {
            (
                wv.variant.variant_id.as_str(),
                wv.variant.model_id.as_str(),
                wv.weight,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("openai/gpt-4o-mini-a", "openai/gpt-4o-mini", 33),
            ("openai/gpt-3.5-turbo-b", "openai/gpt-3.5-turbo", 33),
            ("openai/gpt-4.1-c", "openai/gpt-4.1", 34),
        ]
    );
    assert_eq!(
        route.variants[0].variant,
        variant("openai/gpt-4o-mini-a", "openai/gpt-4o-mini")
    );

    // Inworld's rules hold too: the weights add up to 100.
    validate(&config, &ValidationOptions::strict()).expect("strict validation");
    let compiled = config.compile().expect("compiles");
    assert_eq!(compiled.name(), "compare-frontier-models");
    assert!(compiled.conditional_routes().is_empty());
    let default = compiled.default_route().expect("compiled default route");
    assert_eq!(default.id(), "default");
    assert_eq!(default.total_weight(), 100);
    assert_eq!(default.variants().len(), 3);
    assert_eq!(default.variants()[2].id(), "openai/gpt-4.1-c");
    assert_eq!(default.variants()[2].model_id(), "openai/gpt-4.1");
    assert!((default.share(2) - 0.34).abs() < 1e-12);
    let d = compiled
        .decide(&RequestContext::new().with_random(12345))
        .expect("decides");
    assert_eq!(d.route_id(), "default");

    // Written back, it is the same JSON, and byte for byte the same text.
    assert_eq!(value(&config.to_json()), value(SEED));
    assert_eq!(config.to_json(), SEED.trim_end());
    assert_eq!(parse(&config.to_json_pretty()), config);
}

#[test]
fn full_router_reads_every_field() {
    let config = parse(FULL);
    assert_eq!(config.name, "support-assistant");
    assert_eq!(
        config.display_name.as_deref(),
        Some("Support assistant: premium and long-context experiments")
    );
    assert_eq!(config.routes.len(), 2);

    let premium = &config.routes[0];
    assert_eq!(
        premium.condition,
        Some(Condition {
            cel_expression: r#"tier == "premium""#.to_owned()
        })
    );
    assert_eq!(premium.route.route_id, "premium");
    let claude = &premium.route.variants[0];
    assert_eq!(claude.weight, 70);
    assert_eq!(claude.variant.model_id, "anthropic/claude-sonnet-4");
    assert_eq!(
        claude.variant.model_selection,
        Some(ModelSelection {
            models: vec!["anthropic/claude-sonnet-4".into(), "openai/gpt-4.1".into()],
            sort: vec![],
            ignore: vec!["deepinfra".into()],
            provider: Some(ProviderPreferences {
                order: vec!["anthropic".into(), "bedrock".into()],
                allow_fallbacks: Some(false),
            }),
        })
    );
    assert_eq!(
        claude.variant.text_generation_config,
        Some(json!({ "temperature": 0.7, "max_tokens": 1024, "top_p": 0.95 }))
    );
    assert_eq!(
        premium.route.variants[1].variant.text_generation_config,
        Some(json!({ "temperature": 0.2, "stop": ["\n\nUser:"] }))
    );

    let long = &config.routes[1].route;
    let auto = long.variants[0]
        .variant
        .model_selection
        .as_ref()
        .expect("selection");
    assert_eq!(long.variants[0].variant.model_id, "auto");
    assert_eq!(
        auto.sort,
        [
            SortKey {
                metric: SortMetric::Price,
                direction: SortDirection::Ascending
            },
            SortKey {
                metric: SortMetric::Latency,
                direction: SortDirection::Ascending
            },
            SortKey {
                metric: SortMetric::Intelligence,
                direction: SortDirection::Descending
            },
        ]
    );
    assert_eq!(auto.models.len(), 3);
    assert_eq!(auto.provider, None);
    assert_eq!(
        long.variants[1].variant.compression,
        Some(json!({ "enabled": true, "threshold_tokens": 100000 }))
    );

    let default = config.default_route.as_ref().expect("default route");
    assert_eq!(
        default.variants[0].variant.message_templates,
        Some(
            json!([{ "role": "system", "content": "You are a helpful support agent for {{company}}." }])
        )
    );
    assert_eq!(
        default.variants[0].variant.web_search,
        Some(json!({ "enabled": true, "max_results": 5 }))
    );
    let llama = default.variants[1]
        .variant
        .model_selection
        .as_ref()
        .expect("selection");
    assert_eq!(llama.sort[0].metric, SortMetric::Throughput);
    assert_eq!(llama.sort[0].direction, SortDirection::Descending);
    assert_eq!(
        llama.provider.as_ref().and_then(|p| p.allow_fallbacks),
        Some(true)
    );
    assert_eq!(
        config
            .defaults
            .as_ref()
            .and_then(|d| d.pointer("/message_templates/0/content")),
        Some(&json!(
            "Answer briefly. Ünïcödé and emoji 🚀 are kept as given."
        ))
    );

    validate(&config, &ValidationOptions::strict()).expect("strict validation");
    // The `auto` pool names models the shipped catalog does not know, and sorts by a score it
    // does not have: compiling against it says so, for each model and key, with paths.
    let errors = config
        .compile()
        .expect_err("the catalog lacks the pool's models");
    assert!(
        errors
            .errors()
            .iter()
            .all(|e| matches!(e.kind, ConfigErrorKind::Selection { .. })
                && e.path
                    .to_string()
                    .starts_with("routes[1].route.variants[0].variant.model_selection.models[")),
        "{errors}"
    );
    let mut known = config.clone();
    known.routes[1].route.variants[0].variant.model_id = "openai/gpt-4.1-mini".into();
    known.routes[1].route.variants[0].variant.model_selection = None;
    let compiled = known.compile().expect("compiles");
    let conds: Vec<_> = compiled
        .conditional_routes()
        .iter()
        .map(|r| (r.id(), r.condition()))
        .collect();
    assert_eq!(
        conds,
        [
            ("premium", Some(r#"tier == "premium""#)),
            (
                "long-context",
                Some(r#"size(messages) > 20 && locale.startsWith("en")"#)
            ),
        ]
    );
    assert_eq!(compiled.routes().count(), 3);

    // The fixture is in the written spelling with every default spelled out: serializing
    // gives it back exactly.
    assert_eq!(value(&config.to_json()), value(FULL));
    assert_eq!(value(&config.to_json_pretty()), value(FULL));
}

#[test]
fn both_spellings_read_the_same_and_serialization_uses_the_documented_one() {
    let snake = parse(FULL);
    let other = parse(FULL_OTHER);
    assert_eq!(other, snake, "the other spelling reads to the same config");
    assert_eq!(other.name, "support-assistant", "`routers/` is removed");
    assert_eq!(other.to_json(), snake.to_json());

    let mut written = Vec::new();
    keys(&value(&other.to_json()), &mut written);
    for documented in [
        "displayName",
        "defaultRoute",
        "route_id",
        "variant_id",
        "model_id",
        "cel_expression",
        "model_selection",
        "text_generation_config",
        "message_templates",
        "web_search",
        "allow_fallbacks",
    ] {
        assert!(written.iter().any(|k| k == documented), "{documented}");
    }
    for other_spelling in [
        "display_name",
        "default_route",
        "routeId",
        "variantId",
        "modelId",
        "celExpression",
        "modelSelection",
        "textGenerationConfig",
        "messageTemplates",
        "webSearch",
        "allowFallbacks",
    ] {
        assert!(
            !written.iter().any(|k| k == other_spelling),
            "{other_spelling} must not be written"
        );
    }
    // Keys inside passthrough values are not ours to rename.
    let tgc = &other.routes[0].route.variants[0]
        .variant
        .text_generation_config;
    assert!(tgc.as_ref().is_some_and(|v| v.get("max_tokens").is_some()));
}

#[test]
fn mixed_spellings_in_one_document() {
    let text = r#"{"name":"mixed","default_route":{"routeId":"r","variants":[
        {"variant":{"variantId":"a","model_id":"m1"},"weight":1},
        {"variant":{"variant_id":"b","modelId":"m2"},"weight":2}]}}"#;
    let config = parse(text);
    let route = config.default_route.as_ref().expect("default route");
    assert_eq!(route.route_id, "r");
    assert_eq!(route.variants[0].variant, variant("a", "m1"));
    assert_eq!(route.variants[1].variant, variant("b", "m2"));
}

#[test]
fn giving_both_spellings_of_one_field_is_an_error() {
    let full = value(FULL);
    let cases = [
        ("", "displayName", "display_name", "(root)"),
        ("", "defaultRoute", "default_route", "(root)"),
        ("/routes/0/route", "route_id", "routeId", "routes[0].route"),
        (
            "/routes/0/condition",
            "cel_expression",
            "celExpression",
            "routes[0].condition",
        ),
        (
            "/routes/0/route/variants/0/variant",
            "variant_id",
            "variantId",
            "routes[0].route.variants[0].variant",
        ),
        (
            "/routes/0/route/variants/0/variant",
            "model_id",
            "modelId",
            "routes[0].route.variants[0].variant",
        ),
        (
            "/routes/0/route/variants/0/variant",
            "model_selection",
            "modelSelection",
            "routes[0].route.variants[0].variant",
        ),
        (
            "/routes/0/route/variants/0/variant",
            "text_generation_config",
            "textGenerationConfig",
            "routes[0].route.variants[0].variant",
        ),
        (
            "/defaultRoute/variants/0/variant",
            "message_templates",
            "messageTemplates",
            "defaultRoute.variants[0].variant",
        ),
        (
            "/defaultRoute/variants/0/variant",
            "web_search",
            "webSearch",
            "defaultRoute.variants[0].variant",
        ),
        (
            "/routes/0/route/variants/0/variant/model_selection/provider",
            "allow_fallbacks",
            "allowFallbacks",
            "routes[0].route.variants[0].variant.model_selection.provider",
        ),
    ];
    for (at, canon, alt, path) in cases {
        let same = full
            .pointer(at)
            .and_then(|o| o.get(canon))
            .cloned()
            .unwrap_or_else(|| panic!("{at}/{canon} in fixture"));
        let v = with_member(&full, at, alt, same);
        let errors = value_err(&v);
        assert_eq!(errors.len(), 1, "{errors}");
        let e = &errors.errors()[0];
        assert_eq!(e.path.to_string(), path);
        assert_eq!(
            e.kind,
            ConfigErrorKind::BothSpellings {
                first: canon,
                second: alt
            }
        );
        assert_eq!(
            e.to_string(),
            format!(
                "{path}: `{canon}` and `{alt}` are two spellings of the same field; give only one"
            )
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Unknown fields

#[test]
fn unknown_fields_are_rejected_at_every_level_with_their_path() {
    let full = value(FULL);
    let cases = [
        ("", "(root)"),
        ("/routes/0", "routes[0]"),
        ("/routes/0/route", "routes[0].route"),
        ("/routes/0/condition", "routes[0].condition"),
        ("/routes/0/route/variants/1", "routes[0].route.variants[1]"),
        (
            "/routes/0/route/variants/1/variant",
            "routes[0].route.variants[1].variant",
        ),
        (
            "/routes/0/route/variants/0/variant/model_selection",
            "routes[0].route.variants[0].variant.model_selection",
        ),
        (
            "/routes/0/route/variants/0/variant/model_selection/provider",
            "routes[0].route.variants[0].variant.model_selection.provider",
        ),
        (
            "/routes/1/route/variants/0/variant/model_selection/sort/2",
            "routes[1].route.variants[0].variant.model_selection.sort[2]",
        ),
        ("/defaultRoute", "defaultRoute"),
        ("/defaultRoute/variants/1", "defaultRoute.variants[1]"),
    ];
    for (at, path) in cases {
        let v = with_member(&full, at, "bogus_field", json!(1));
        let errors = value_err(&v);
        assert_eq!(errors.len(), 1, "{errors}");
        let e = &errors.errors()[0];
        assert_eq!(e.path.to_string(), path, "{at}");
        assert!(
            matches!(&e.kind, ConfigErrorKind::UnknownField { field, .. } if field == "bogus_field"),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with(&format!("{path}: unknown field `bogus_field`, expected ")),
            "{e}"
        );
    }

    // The full messages list what is allowed, in the written spelling.
    let v = with_member(&full, "", "dafaultRoute", json!({}));
    assert_eq!(
        value_err(&v).to_string(),
        "(root): unknown field `dafaultRoute`, expected one of `name`, `displayName`, `routes`, \
         `defaultRoute`, `defaults`"
    );
    let v = with_member(&full, "/routes/0/condition", "cel", json!("x"));
    assert_eq!(
        value_err(&v).to_string(),
        "routes[0].condition: unknown field `cel`, expected `cel_expression`"
    );
    let v = with_member(&full, "/defaultRoute", "salt ", json!("x"));
    assert_eq!(
        value_err(&v).to_string(),
        "defaultRoute: unknown field `salt `, expected one of `route_id`, `variants`, `salt`, `failover`"
    );
}

#[test]
fn passthrough_values_keep_unknown_members() {
    let full = value(FULL);
    let v = with_member(&full, "/defaults", "anything", json!({"goes": [1, null]}));
    let v = with_member(
        &v,
        "/routes/0/route/variants/0/variant/text_generation_config",
        "future_knob",
        json!(true),
    );
    let config = RouterConfig::from_value(&v).expect("passthrough is kept as given");
    assert_eq!(
        config.defaults.as_ref().and_then(|d| d.get("anything")),
        Some(&json!({"goes": [1, null]}))
    );
    assert_eq!(value(&config.to_json()), v);
}

// ---------------------------------------------------------------------------------------------
// Errors: the same text both ways, with the JSON path

/// The seed with its third weight replaced by `weight` (JSON text).
fn seed_with_third_weight(weight: &str) -> String {
    let s = SEED.trim_end();
    let at = s.rfind("\"weight\":34").expect("seed has weight 34");
    format!(
        "{}\"weight\":{weight}{}",
        &s[..at],
        &s[at + "\"weight\":34".len()..]
    )
}

#[test]
fn bad_inputs_give_the_same_error_text_both_ways() {
    let w = "defaultRoute.variants[2].weight";
    let cases: Vec<(String, String)> = vec![
        // Malformed JSON: serde_json's message, line and column, and the path reached.
        (
            "{\"name\": \"a\",\n  \"defaultRoute\": {\n    \"route_id\": }".into(),
            "defaultRoute.route_id: expected value at line 3 column 17".into(),
        ),
        (
            "{\"name\": \"a\"".into(),
            "EOF while parsing an object at line 1 column 12".into(),
        ),
        ("".into(), "EOF while parsing a value at line 1 column 0".into()),
        (
            "{\"name\": \"a\",}".into(),
            "trailing comma at line 1 column 14".into(),
        ),
        (
            seed_with_third_weight("34,"),
            "defaultRoute.variants[2]: trailing comma at line 1 column 361".into(),
        ),
        (
            seed_with_third_weight("1e400"),
            format!("{w}: number out of range at line 1 column 362"),
        ),
        // Trailing characters after a complete document.
        (
            format!("{} x", SEED.trim_end()),
            "trailing characters at line 1 column 365".into(),
        ),
        (
            format!("{}{{}}", SEED.trim_end()),
            "trailing characters at line 1 column 364".into(),
        ),
        // Wrong top-level types.
        (
            "[]".into(),
            "(root): expected a router object, found an array".into(),
        ),
        (
            "null".into(),
            "(root): expected a router object, found null".into(),
        ),
        (
            "\"compare-frontier-models\"".into(),
            "(root): expected a router object, found a string".into(),
        ),
        // Unknown fields.
        (
            SEED.replacen("\"weight\":34", "\"wieght\":34", 1),
            "defaultRoute.variants[2]: unknown field `wieght`, expected one of `variant`, `weight`\n\
             defaultRoute.variants[2]: missing field `weight`"
                .into(),
        ),
        // Wrong types.
        (
            SEED.replacen("\"compare-frontier-models\"", "7", 1),
            "name: expected a string, found a number".into(),
        ),
        (
            SEED.replacen("\"default\"", "[\"default\"]", 1),
            "defaultRoute.route_id: expected a string, found an array".into(),
        ),
        (
            SEED.replacen("\"openai/gpt-4.1\"", "{}", 1),
            "defaultRoute.variants[2].variant.model_id: expected a string, found an object".into(),
        ),
        (
            r#"{"name":"a","routes":{}}"#.into(),
            "routes: expected an array, found an object".into(),
        ),
        (
            r#"{"name":"a","defaultRoute":{"route_id":"r","variants":[7]}}"#.into(),
            "defaultRoute.variants[0]: expected a weighted variant object \
             ({\"variant\": ..., \"weight\": ...}), found a number"
                .into(),
        ),
        (
            r#"{"name":"a","routes":[{"route":{"route_id":"r","variants":[]},"condition":"x > 1"}]}"#
                .into(),
            "routes[0].condition: expected a condition object ({\"cel_expression\": ...}), \
             found a string"
                .into(),
        ),
        // Weights.
        (
            seed_with_third_weight("-3"),
            format!("{w}: invalid weight -3: a weight must not be negative"),
        ),
        (
            seed_with_third_weight("-3.5"),
            format!("{w}: invalid weight -3.5: a weight must not be negative"),
        ),
        (
            seed_with_third_weight("1.5"),
            format!("{w}: invalid weight 1.5: a weight must be a whole number"),
        ),
        (
            seed_with_third_weight("\"33\""),
            format!("{w}: invalid weight \"33\": a weight must be a JSON number, not a string"),
        ),
        (
            seed_with_third_weight("4294967296"),
            format!("{w}: invalid weight 4294967296: it is larger than 4294967295, the largest weight"),
        ),
        (
            seed_with_third_weight("1e10"),
            format!("{w}: invalid weight 10000000000.0: it is larger than 4294967295, the largest weight"),
        ),
        (
            seed_with_third_weight("true"),
            format!("{w}: invalid weight true: a weight must be a non-negative whole number"),
        ),
        // Missing fields (null counts as absent). A missing route_id or variant_id is derived
        // (tests/derive.rs), a missing name too when there is a displayName to derive it from.
        (
            seed_with_third_weight("null"),
            "defaultRoute.variants[2]: missing field `weight`".into(),
        ),
        (
            r#"{"defaultRoute":{"route_id":"r","variants":[{"weight":1}]}}"#.into(),
            "(root): missing field `name`, and no `displayName` to derive it from\n\
             defaultRoute.variants[0]: missing field `variant`"
                .into(),
        ),
        (
            r#"{"displayName":"!!","defaultRoute":{"route_id":"r","variants":[{"weight":1}]}}"#
                .into(),
            "(root): missing field `name`, and the displayName \"!!\" has no letter or digit \
             to derive it from\n\
             defaultRoute.variants[0]: missing field `variant`"
                .into(),
        ),
        (
            r#"{"name":"a","routes":[{"condition":{"cel_expression":"x"}}]}"#.into(),
            "routes[0]: missing field `route`".into(),
        ),
        (
            r#"{"name":"a","defaultRoute":{"route_id":"r","variants":[{"variant":{},"weight":1}]}}"#
                .into(),
            "defaultRoute.variants[0].variant: missing field `model_id`".into(),
        ),
        // Enums.
        (
            r#"{"name":"a","defaultRoute":{"route_id":"r","variants":[{"variant":{"variant_id":"v",
            "model_id":"auto","model_selection":{"sort":[{"metric":"PRICE"}]}},"weight":1}]}}"#
                .into(),
            "defaultRoute.variants[0].variant.model_selection.sort[0].metric: unknown value \
             \"PRICE\", expected one of `SORT_METRIC_PRICE`, `SORT_METRIC_LATENCY`, \
             `SORT_METRIC_THROUGHPUT`, `SORT_METRIC_INTELLIGENCE`, `SORT_METRIC_MATH`, \
             `SORT_METRIC_CODING`"
                .into(),
        ),
        (
            r#"{"name":"a","defaultRoute":{"route_id":"r","variants":[{"variant":{"variant_id":"v",
            "model_id":"m","model_selection":{"provider":{"allow_fallbacks":"yes"}}},"weight":1}]}}"#
                .into(),
            "defaultRoute.variants[0].variant.model_selection.provider.allow_fallbacks: expected \
             a boolean, found a string"
                .into(),
        ),
        // Keys that are not identifiers are quoted in paths.
        (
            r#"{"name":"a","défaults x":1}"#.into(),
            "(root): unknown field `défaults x`, expected one of `name`, `displayName`, \
             `routes`, `defaultRoute`, `defaults`"
                .into(),
        ),
    ];
    for (input, expected) in &cases {
        let errors = parse_err(input);
        assert_eq!(&errors.to_string(), expected, "input: {input}");
        // The same bytes through `from_slice`. (`from_reader` is left out: serde_json itself
        // reports some syntax errors one column later when reading from an `io::Read`.)
        let slice = serde_json::from_slice::<RouterConfig>(input.as_bytes()).expect_err("slice");
        assert_eq!(&slice.to_string(), expected);
    }
}

#[test]
fn a_key_repeated_in_one_object_is_an_error() {
    // serde_json's `Value` keeps the last of two equal keys: the 34 would vanish unseen.
    let text = SEED.replacen("\"weight\":34", "\"weight\":34,\"weight\":1", 1);
    let errors = parse_err(&text);
    assert_eq!(
        errors.to_string(),
        "defaultRoute.variants[2]: duplicate field `weight` at line 1 column 368"
    );
    assert!(matches!(
        &errors.errors()[0].kind,
        ConfigErrorKind::Syntax { message, .. } if message == "duplicate field `weight`"
    ));
    // At the top, and inside passthrough values too.
    let errors = parse_err(r#"{"name":"a","name":"b"}"#);
    assert_eq!(
        errors.to_string(),
        "duplicate field `name` at line 1 column 18"
    );
    let errors = parse_err(r#"{"name":"a","defaults":{"t":{"x":1,"x":1}}}"#);
    assert_eq!(
        errors.to_string(),
        "defaults.t: duplicate field `x` at line 1 column 38"
    );
    // Equal values in different objects, or keys that differ only in case, are fine.
    parse(r#"{"name":"a","defaults":{"x":1,"X":1,"y":{"x":1}}}"#);
}

#[test]
fn weights_in_other_number_forms() {
    for (text, weight) in [
        ("1e3", 1000),
        ("1E3", 1000),
        ("0.5e1", 5),
        ("34.0", 34),
        ("-0", 0),
        ("-0.0", 0),
        ("0", 0),
        ("4294967295", u32::MAX),
        ("4294967295.0", u32::MAX),
    ] {
        let text = seed_with_third_weight(text);
        let config = parse(&text);
        let route = config.default_route.as_ref().expect("default route");
        assert_eq!(route.variants[2].weight, weight, "{text}");
        let via_serde: RouterConfig = serde_json::from_str(&text).expect("serde reads it too");
        assert_eq!(via_serde, config);
    }
}

#[test]
fn errors_are_structured_with_path_and_kind() {
    let errors = parse_err(&seed_with_third_weight("-3"));
    assert_eq!(errors.len(), 1);
    let e = &errors.errors()[0];
    assert_eq!(
        e.path.segments(),
        [
            PathSegment::Key("defaultRoute".into()),
            PathSegment::Key("variants".into()),
            PathSegment::Index(2),
            PathSegment::Key("weight".into()),
        ]
    );
    assert_eq!(e.path.to_string(), "defaultRoute.variants[2].weight");
    assert_eq!(
        e.kind,
        ConfigErrorKind::InvalidWeight {
            value: "-3".into(),
            reason: "a weight must not be negative"
        }
    );

    // A path keeps the spelling the input used.
    let errors = parse_err(
        r#"{"name":"a","default_route":{"routeId":"r","variants":[{"variant":{"variantId":"v","modelId":1},"weight":1}]}}"#,
    );
    assert_eq!(
        errors.errors()[0].path.to_string(),
        "default_route.variants[0].variant.modelId"
    );

    let errors = parse_err("{\n\"name\": \"a\",\n\"routes\": [1,]}");
    let e = &errors.errors()[0];
    assert_eq!(e.path.to_string(), "routes");
    assert_eq!(
        e.kind,
        ConfigErrorKind::Syntax {
            message: "trailing comma".into(),
            line: 3,
            column: 14
        }
    );
    assert_eq!(e.to_string(), "routes: trailing comma at line 3 column 14");
}

#[test]
fn several_problems_are_all_reported_at_once_in_document_order() {
    let text = r#"{
      "name": 5,
      "displayName": "ok",
      "colour": "blue",
      "routes": [
        { "route": { "route_id": "a", "variants": [
            { "variant": { "variant_id": "x", "model_id": "m" }, "weight": -1 },
            { "variant": { "variant_id": "y" }, "weight": 1 } ] },
          "condition": { "cel_expression": 3 } },
        { "route": { "variants": [] }, "condition": { "cel_expression": "true" } }
      ],
      "defaultRoute": { "route_id": "d", "variants": [
        { "variant": { "variant_id": "z", "model_id": "m", "model_selection": { "sort": [
            { "metric": "SORT_METRIC_SPEED", "direction": "UP" } ] } },
          "weight": 2.5 } ] }
    }"#;
    let errors = parse_err(text);
    let got: Vec<(String, &str)> = errors
        .errors()
        .iter()
        .map(|e| {
            let kind = match &e.kind {
                ConfigErrorKind::UnknownField { .. } => "unknown field",
                ConfigErrorKind::WrongType { .. } => "wrong type",
                ConfigErrorKind::InvalidWeight { .. } => "invalid weight",
                ConfigErrorKind::MissingField { .. } => "missing field",
                ConfigErrorKind::UnknownValue { .. } => "unknown value",
                _ => "other",
            };
            (e.path.to_string(), kind)
        })
        .collect();
    let want = [
        ("(root)", "unknown field"),
        ("name", "wrong type"),
        ("routes[0].route.variants[0].weight", "invalid weight"),
        ("routes[0].route.variants[1].variant", "missing field"),
        ("routes[0].condition.cel_expression", "wrong type"),
        (
            "defaultRoute.variants[0].variant.model_selection.sort[0].metric",
            "unknown value",
        ),
        (
            "defaultRoute.variants[0].variant.model_selection.sort[0].direction",
            "unknown value",
        ),
        ("defaultRoute.variants[0].weight", "invalid weight"),
    ];
    let got: Vec<(&str, &str)> = got.iter().map(|(p, k)| (p.as_str(), *k)).collect();
    assert_eq!(got, want, "{errors}");
    assert_eq!(errors.to_string().lines().count(), want.len());
}

#[test]
fn an_unusable_optional_member_does_not_hide_its_siblings_problems() {
    // model_selection is unusable; web_search is given in both spellings. Both are reported.
    let v = json!({"name": "a", "defaultRoute": {"route_id": "r", "variants": [
        {"variant": {"variant_id": "v", "model_id": "m", "model_selection": 5,
                     "web_search": {}, "webSearch": {}}, "weight": 1}]}});
    let errors = value_err(&v);
    let got: Vec<String> = errors.errors().iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "defaultRoute.variants[0].variant.model_selection: expected a model_selection \
             object, found a number",
            "defaultRoute.variants[0].variant: `web_search` and `webSearch` are two spellings \
             of the same field; give only one",
        ]
    );

    // The same one level down: an unusable `provider` does not hide an unknown sort metric.
    let v = json!({"name": "a", "defaultRoute": {"route_id": "r", "variants": [
        {"variant": {"variant_id": "v", "model_id": "m", "model_selection": {
            "sort": [{"metric": "X"}], "provider": []}}, "weight": 1}]}});
    assert_eq!(value_err(&v).len(), 2);
}

#[test]
fn sort_direction_defaults_to_ascending() {
    let v = json!({"name": "a", "defaultRoute": {"route_id": "r", "variants": [
        {"variant": {"variant_id": "v", "model_id": "auto", "model_selection": {
            "sort": [{"metric": "SORT_METRIC_CODING"}, {"metric": "SORT_METRIC_MATH", "direction": null}]}},
         "weight": 1}]}});
    let config = RouterConfig::from_value(&v).expect("valid");
    let route = config.default_route.as_ref().expect("default route");
    let sel = route.variants[0]
        .variant
        .model_selection
        .as_ref()
        .expect("selection");
    assert_eq!(
        sel.sort,
        [
            SortKey {
                metric: SortMetric::Coding,
                direction: SortDirection::Ascending
            },
            SortKey {
                metric: SortMetric::Math,
                direction: SortDirection::Ascending
            },
        ]
    );
    // Written back, the direction is spelled out.
    assert!(
        config
            .to_json()
            .contains(r#"{"metric":"SORT_METRIC_CODING","direction":"SORT_DIRECTION_ASCENDING"}"#)
    );
}

#[test]
fn recursion_limit_is_an_error_not_a_crash() {
    let nested = |depth: usize| {
        format!(
            r#"{{"name":"a","defaults":{{"x":{}1{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    // serde_json reads at most 127 nested levels; the router object and `defaults` are two.
    assert!(RouterConfig::from_json(&nested(125)).is_ok());
    let errors = parse_err(&nested(126));
    assert_eq!(
        errors.to_string(),
        format!(
            "defaults.x{}: recursion limit exceeded at line 1 column 154",
            "[0]".repeat(125)
        )
    );
    let errors = parse_err(&nested(10_000));
    let e = &errors.errors()[0];
    assert!(
        matches!(&e.kind, ConfigErrorKind::Syntax { message, .. } if message == "recursion limit exceeded")
    );
}

// ---------------------------------------------------------------------------------------------
// The salt extension

#[test]
fn route_salt_is_read_and_written_only_when_present() {
    let text = SEED.replacen(
        "\"route_id\":\"default\",",
        "\"route_id\":\"default\",\"salt\":\"pricing-test-2024 ✓\",",
        1,
    );
    let config = parse(&text);
    let route = config.default_route.as_ref().expect("default route");
    assert_eq!(route.salt.as_deref(), Some("pricing-test-2024 ✓"));
    assert_eq!(value(&config.to_json()), value(&text));
    config.compile().expect("a salted route compiles");

    // Absent: not written at all.
    assert!(!parse(SEED).to_json().contains("salt"));
    // `null` counts as absent.
    let nulled = SEED.replacen(
        "\"route_id\":\"default\",",
        "\"route_id\":\"default\",\"salt\":null,",
        1,
    );
    assert_eq!(parse(&nulled), parse(SEED));

    // Conditional routes take a salt too.
    let v = json!({"name": "a", "routes": [{"route": {"route_id": "r", "salt": "s", "variants": [
        {"variant": {"variant_id": "v", "model_id": "m"}, "weight": 1}]},
        "condition": {"cel_expression": "true"}}]});
    let config = RouterConfig::from_value(&v).expect("valid");
    assert_eq!(config.routes[0].route.salt.as_deref(), Some("s"));
    assert_eq!(value(&config.to_json()), v);

    // Wrong type.
    let bad = SEED.replacen(
        "\"route_id\":\"default\",",
        "\"route_id\":\"default\",\"salt\":42,",
        1,
    );
    assert_eq!(
        parse_err(&bad).to_string(),
        "defaultRoute.salt: expected a string, found a number"
    );
    // The camelCase spelling is the same word, so no other spelling exists.
    let v = json!({"name": "a", "defaultRoute": {"route_id": "r", "Salt": "s", "variants": []}});
    assert!(value_err(&v).to_string().contains("unknown field `Salt`"));
}

#[test]
fn route_construction_with_salt() {
    let route = Route {
        route_id: "r".into(),
        variants: vec![WeightedVariant {
            variant: variant("v", "m"),
            weight: 1,
        }],
        salt: Some("shared".into()),
        failover: None,
    };
    let config = RouterConfig {
        name: "a".into(),
        display_name: None,
        routes: vec![ConditionalRoute {
            route: route.clone(),
            condition: Some(Condition {
                cel_expression: "true".into(),
            }),
        }],
        default_route: Some(Route {
            route_id: "d".into(),
            ..route
        }),
        defaults: None,
    };
    let json = config.to_json();
    assert_eq!(json.matches(r#""salt":"shared""#).count(), 2, "{json}");
    assert_eq!(parse(&json), config);
}

// ---------------------------------------------------------------------------------------------
// parse → serialize → parse is the identity

/// `cases` cases from a fixed seed (the same inputs on every run and in CI), with nothing
/// written to disk on failure: the failure message shows the shrunk input.
fn fixed(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x0ab0_07e5),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(any::<char>(), 0..10).prop_map(String::from_iter),
        1 => "[a-z0-9-]{1,12}",
        1 => Just(String::new()),
        1 => Just("routers/".to_owned()),
    ]
}

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        arb_float().prop_map(Value::from),
        arb_string().prop_map(Value::String),
    ]
}

/// Floats as configs hold them (`0.7`, `-12.5e3`): at most 9 significant digits, exponents
/// from -12 to 6.
///
/// Not every `f64`: serde_json without its `float_roundtrip` feature reads numbers exactly
/// only when they have at most 15 or so digits and a decimal exponent within ±22; others may
/// come back 1 ULP off (`2.83623236e-20` does, and about 30% of random bit patterns), so such
/// a number in a passthrough value would change in its last digit on a round trip. That is
/// serde_json's behaviour, not the reader's; see `float_roundtrip_needs_serde_json_feature`.
fn arb_float() -> impl Strategy<Value = f64> {
    // Every finite f64: serde_json's `float_roundtrip` feature (on in the workspace) reads
    // them back exactly.
    any::<f64>().prop_filter("finite", |x| x.is_finite())
}

/// Any JSON value.
fn arb_json() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_string(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A passthrough value: any JSON but `null` at the top (`null` reads as absent).
fn arb_raw() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(arb_json().prop_filter("null is absent", |v| !v.is_null()))
}

/// A passthrough object (`defaults`, `text_generation_config`): any members, with a
/// `text_generation_config` in it an object too.
fn arb_raw_object() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(
        (
            prop::collection::vec((arb_string(), arb_json()), 0..6),
            prop::option::of(prop::collection::vec((arb_string(), arb_json()), 0..4)),
        )
            .prop_map(|(kv, tgc)| {
                let mut map: serde_json::Map<String, Value> = kv
                    .into_iter()
                    .filter(|(k, _)| k != "text_generation_config" && k != "textGenerationConfig")
                    .collect();
                if let Some(tgc) = tgc {
                    map.insert(
                        "text_generation_config".into(),
                        Value::Object(tgc.into_iter().collect()),
                    );
                }
                Value::Object(map)
            }),
    )
}

fn arb_selection() -> impl Strategy<Value = ModelSelection> {
    let key = (0..SortMetric::ALL.len(), any::<bool>()).prop_map(|(m, desc)| SortKey {
        metric: SortMetric::ALL[m],
        direction: if desc {
            SortDirection::Descending
        } else {
            SortDirection::Ascending
        },
    });
    let provider = (
        prop::collection::vec(arb_string(), 0..3),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(order, allow_fallbacks)| ProviderPreferences {
            order,
            allow_fallbacks,
        });
    (
        prop::collection::vec(arb_string(), 0..3),
        prop::collection::vec(key, 0..3),
        prop::collection::vec(arb_string(), 0..3),
        prop::option::of(provider),
    )
        .prop_map(|(models, sort, ignore, provider)| ModelSelection {
            models,
            sort,
            ignore,
            provider,
        })
}

fn arb_variant() -> impl Strategy<Value = WeightedVariant> {
    (
        arb_string(),
        arb_string(),
        prop::option::of(arb_selection()),
        (arb_raw_object(), arb_raw(), arb_raw(), arb_raw()),
        prop_oneof![any::<u32>(), 0..200u32],
    )
        .prop_map(
            |(variant_id, model_id, model_selection, (tgc, mt, ws, comp), weight)| {
                WeightedVariant {
                    variant: Variant {
                        variant_id,
                        model_id,
                        model_selection,
                        text_generation_config: tgc,
                        message_templates: mt,
                        web_search: ws,
                        compression: comp,
                    },
                    weight,
                }
            },
        )
}

fn arb_route() -> impl Strategy<Value = Route> {
    (
        arb_string(),
        prop::collection::vec(arb_variant(), 0..4),
        prop::option::of(arb_string()),
        prop::option::of(any::<bool>().prop_map(|across_variants| Failover { across_variants })),
    )
        .prop_map(|(route_id, variants, salt, failover)| Route {
            route_id,
            variants,
            salt,
            failover,
        })
}

fn arb_config() -> impl Strategy<Value = RouterConfig> {
    let conditional = (
        arb_route(),
        prop::option::of(arb_string().prop_map(|cel_expression| Condition { cel_expression })),
    )
        .prop_map(|(route, condition)| ConditionalRoute { route, condition });
    (
        // A `routers/` prefix is removed on read, so a name read back never has one.
        arb_string().prop_filter("no routers/ prefix", |n| !n.starts_with("routers/")),
        prop::option::of(arb_string()),
        prop::collection::vec(conditional, 0..3),
        prop::option::of(arb_route()),
        arb_raw_object(),
    )
        .prop_map(
            |(name, display_name, routes, default_route, defaults)| RouterConfig {
                name,
                display_name,
                routes,
                default_route,
                defaults,
            },
        )
}

proptest! {
    #![proptest_config(fixed(256))]

    #[test]
    fn serialize_then_parse_is_the_identity(config in arb_config()) {
        let json = config.to_json();
        let back = RouterConfig::from_json(&json);
        prop_assert_eq!(back.as_ref(), Ok(&config), "json: {}", json);
        // serde's entry point agrees, and so does the pretty form.
        let via_serde: RouterConfig = serde_json::from_str(&json).expect("serde reads it");
        prop_assert_eq!(&via_serde, &config);
        let pretty = RouterConfig::from_json(&config.to_json_pretty());
        prop_assert_eq!(pretty.as_ref(), Ok(&config));
        // And writing it again gives the same text.
        prop_assert_eq!(back.map(|c| c.to_json()).ok(), Some(json));
    }
}

// ---------------------------------------------------------------------------------------------
// Nothing panics on any input

/// Names the mutator likes to insert: the schema's fields in both spellings, and some noise.
const FIELD_NAMES: &[&str] = &[
    "name",
    "displayName",
    "display_name",
    "routes",
    "defaultRoute",
    "default_route",
    "defaults",
    "route",
    "condition",
    "cel_expression",
    "celExpression",
    "route_id",
    "routeId",
    "variants",
    "salt",
    "variant",
    "weight",
    "variant_id",
    "variantId",
    "model_id",
    "modelId",
    "model_selection",
    "modelSelection",
    "models",
    "sort",
    "metric",
    "direction",
    "ignore",
    "provider",
    "order",
    "allow_fallbacks",
    "allowFallbacks",
    "text_generation_config",
    "web_search",
    "compression",
    "",
    "wieght",
];

/// JSON values a router might plausibly hold, and some it should not.
fn arb_router_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        arb_leaf(),
        prop::sample::select(FIELD_NAMES).prop_map(Value::from),
        prop::sample::select(&SortMetric::NAMES[..]).prop_map(Value::from),
        prop::sample::select(&SortDirection::NAMES[..]).prop_map(Value::from),
        prop_oneof![
            Just(json!(0)),
            Just(json!(-1)),
            Just(json!(1.5)),
            Just(json!(1e3)),
            Just(json!(u32::MAX)),
            Just(json!(u64::from(u32::MAX) + 1)),
            Just(json!(-0.0)),
            Just(json!("routers/x")),
            Just(json!("a".repeat(300))),
        ],
    ]
}

fn arb_router_json() -> impl Strategy<Value = Value> {
    arb_router_leaf().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(FIELD_NAMES).prop_map(String::from),
                        arb_string()
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// JSON pointers of every value in `v`, the root first.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            out.push(at.clone());
            for (k, x) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(x, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            out.push(at.clone());
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => out.push(at),
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(Index, Value),
    Remove(Index),
    Insert(Index, &'static str, Value),
    Duplicate(Index),
    /// A string or number replaced by another of its kind: ids that clash, are empty or too
    /// long, names that break the rule, weights at and past the limits.
    Tweak(Index, Index),
}

const TWEAK_STRINGS: &[&str] = &[
    "",
    " ",
    "default",
    "premium",
    "mini",
    "llama",
    "openai/gpt-4.1",
    "routers/x",
    "Bad Name",
    "a-b-c",
    "true",
];
const TWEAK_NUMBERS: &[u64] = &[0, 1, 100, u32::MAX as u64, 1 << 32, 1 << 31];

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), arb_router_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        2 => any::<Index>().prop_map(Mutation::Remove),
        2 => (any::<Index>(), prop::sample::select(FIELD_NAMES), arb_router_json())
            .prop_map(|(i, k, v)| Mutation::Insert(i, k, v)),
        1 => any::<Index>().prop_map(Mutation::Duplicate),
        12 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Mutation::Tweak(i, j)),
    ]
}

fn apply(v: &mut Value, m: &Mutation) {
    let mut ps = Vec::new();
    pointers(v, String::new(), &mut ps);
    let pick = |i: &Index| ps[i.index(ps.len())].clone();
    match m {
        Mutation::Replace(i, x) => {
            if let Some(slot) = v.pointer_mut(&pick(i)) {
                *slot = x.clone();
            }
        }
        Mutation::Remove(i) => {
            let p = pick(i);
            let Some((parent, last)) = p.rsplit_once('/') else {
                return;
            };
            match v.pointer_mut(parent) {
                Some(Value::Object(o)) => {
                    o.remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(a)) => {
                    if let Ok(n) = last.parse::<usize>()
                        && n < a.len()
                    {
                        a.remove(n);
                    }
                }
                _ => {}
            }
        }
        Mutation::Insert(i, k, x) => {
            if let Some(Value::Object(o)) = v.pointer_mut(&pick(i)) {
                o.insert((*k).to_owned(), x.clone());
            }
        }
        Mutation::Tweak(i, j) => {
            let leaves: Vec<&String> = ps
                .iter()
                .filter(|p| matches!(v.pointer(p), Some(Value::String(_) | Value::Number(_))))
                .collect();
            if leaves.is_empty() {
                return;
            }
            let p = leaves[i.index(leaves.len())].clone();
            if let Some(slot) = v.pointer_mut(&p) {
                *slot = match slot {
                    Value::String(_) => {
                        let long = "x".repeat(257);
                        let k = j.index(TWEAK_STRINGS.len() + 1);
                        Value::from(TWEAK_STRINGS.get(k).map_or(long, |s| (*s).to_owned()))
                    }
                    _ => Value::from(TWEAK_NUMBERS[j.index(TWEAK_NUMBERS.len())]),
                };
            }
        }
        Mutation::Duplicate(i) => {
            let p = pick(i);
            let Some(x) = v.pointer(&p).cloned() else {
                return;
            };
            if let Some(Value::Array(a)) = v.pointer_mut(&p) {
                a.push(x);
            }
        }
    }
}

/// A valid router (one of the fixtures) changed by a few random mutations.
fn arb_mutated_router() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![SEED, FULL, FULL_OTHER]),
        prop::collection::vec(arb_mutation(), 1..5),
    )
        .prop_map(|(base, ms)| {
            let mut v = value(base);
            for m in &ms {
                apply(&mut v, m);
            }
            v
        })
}

/// Every step after reading: both validations, compile, a decision, and a round trip.
fn exercise(config: &RouterConfig) {
    let loose = validate(config, &ValidationOptions::default());
    let strict = validate(config, &ValidationOptions::strict());
    if loose.is_err() {
        assert!(strict.is_err(), "strict is stricter");
    }
    match config.compile() {
        Ok(router) => {
            assert!(loose.is_ok(), "compile succeeds only on valid configs");
            for draw in [0, 1, u64::MAX / 2, u64::MAX] {
                if let Ok(d) = router.decide(&RequestContext::new().with_random(draw)) {
                    assert!(
                        d.variant().weight() > 0,
                        "weight-0 variants are never picked"
                    );
                }
            }
        }
        Err(e) => match &loose {
            // Validation's errors, exactly, when it found any.
            Err(_) => assert_eq!(Err(e), loose, "compile reports validation's errors"),
            // Otherwise only what needs the catalog: `auto` selections it cannot satisfy.
            Ok(()) => assert!(
                e.errors()
                    .iter()
                    .all(|e| matches!(e.kind, ConfigErrorKind::Selection { .. })),
                "compile fails past validation only for model selection: {e}"
            ),
        },
    }
    let _ = config.compile_with(&ValidationOptions::strict());
    let back = RouterConfig::from_json(&config.to_json());
    assert_eq!(
        back.as_ref(),
        Ok(config),
        "a config read is written and read back as is"
    );
}

proptest! {
    #![proptest_config(fixed(512))]

    #[test]
    fn no_panic_on_mutated_routers(v in arb_mutated_router()) {
        let ours = RouterConfig::from_value(&v);
        let serde = serde_json::from_value::<RouterConfig>(v.clone());
        prop_assert_eq!(
            ours.as_ref().map_err(ToString::to_string),
            serde.as_ref().map_err(ToString::to_string)
        );
        if let Ok(config) = &ours {
            exercise(config);
        }
        // The text form reads the same as the value.
        prop_assert_eq!(RouterConfig::from_json(&v.to_string()), ours);
    }

    #[test]
    fn no_panic_on_arbitrary_json(v in arb_router_json()) {
        let ours = RouterConfig::from_value(&v);
        let serde = serde_json::from_value::<RouterConfig>(v);
        prop_assert_eq!(
            ours.as_ref().map_err(ToString::to_string),
            serde.as_ref().map_err(ToString::to_string)
        );
        if let Ok(config) = &ours {
            exercise(config);
        }
    }

    #[test]
    fn no_panic_on_arbitrary_text(
        text in prop_oneof![
            any::<String>(),
            // Damaged router text: a mutated router with some bytes cut out or inserted.
            (arb_mutated_router(), any::<Index>(), any::<Index>(), ".{0,3}").prop_map(
                |(v, a, b, ins)| {
                    let s = v.to_string();
                    let chars: Vec<char> = s.chars().collect();
                    let (x, y) = (a.index(chars.len() + 1), b.index(chars.len() + 1));
                    let (x, y) = (x.min(y), x.max(y).min(x + 4));
                    chars[..x].iter().chain(ins.chars().collect::<Vec<_>>().iter()).chain(&chars[y..]).collect()
                }
            ),
        ]
    ) {
        let ours = RouterConfig::from_json(&text);
        let serde = serde_json::from_str::<RouterConfig>(&text);
        prop_assert_eq!(
            ours.as_ref().map_err(ToString::to_string),
            serde.as_ref().map_err(ToString::to_string)
        );
        if let Ok(config) = &ours {
            exercise(config);
        }
    }
}

/// Passthrough floats round-trip bit for bit: serde_json's `float_roundtrip` feature is on in
/// the workspace (without it, this value reads back one unit low).
#[test]
fn passthrough_floats_round_trip_exactly() {
    let x = 1.0715660391465826e-75_f64;
    let config = RouterConfig {
        name: "a".into(),
        display_name: None,
        routes: vec![],
        default_route: None,
        defaults: Some(json!({ "x": x })),
    };
    let json = config.to_json();
    assert_eq!(
        json,
        r#"{"name":"a","defaults":{"x":1.0715660391465826e-75}}"#
    );
    let back = parse(&json);
    let read = back.defaults.as_ref().and_then(|d| d["x"].as_f64());
    assert_eq!(read.map(f64::to_bits), Some(x.to_bits()));
}

/// The mutated-router strategy is only useful if it reaches every stage: some inputs must fail
/// to read, some must read but fail validation, and some must compile.
#[test]
fn mutated_routers_reach_every_stage() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::new(fixed(1));
    let strategy = arb_mutated_router();
    let (mut unreadable, mut invalid, mut compiled) = (0, 0, 0);
    for _ in 0..400 {
        let v = strategy
            .new_tree(&mut runner)
            .expect("strategy generates")
            .current();
        match RouterConfig::from_value(&v) {
            Err(_) => unreadable += 1,
            Ok(c) => match c.compile() {
                Err(_) => invalid += 1,
                Ok(_) => compiled += 1,
            },
        }
    }
    eprintln!("unreadable {unreadable}, invalid {invalid}, compiled {compiled}");
    assert!(unreadable >= 40, "{unreadable}");
    assert!(invalid >= 20, "{invalid}");
    assert!(compiled >= 30, "{compiled}");
}

#[test]
fn failover_extension_reads_and_round_trips() {
    let v = json!({"name": "a", "defaultRoute": {"route_id": "r", "failover": {"acrossVariants": true},
        "variants": [{"variant": {"variant_id": "v", "model_id": "m"}, "weight": 1}]}});
    let config = RouterConfig::from_value(&v).unwrap();
    let failover = config.default_route.as_ref().and_then(|r| r.failover);
    assert_eq!(
        failover,
        Some(Failover {
            across_variants: true
        })
    );
    assert!(
        config
            .to_json()
            .contains(r#""failover":{"across_variants":true}"#)
    );
    let bad = json!({"name": "a", "defaultRoute": {"route_id": "r", "failover": {"across": true},
        "variants": [{"variant": {"variant_id": "v", "model_id": "m"}, "weight": 1}]}});
    let err = RouterConfig::from_value(&bad).unwrap_err().to_string();
    assert!(
        err.contains("defaultRoute.failover: unknown field `across`, expected `across_variants`"),
        "{err}"
    );
}

#[test]
fn passthrough_objects_must_be_objects_and_spelled_once() {
    let variant = |tgc: &str| {
        format!(
            r#"{{"name":"a","defaultRoute":{{"route_id":"d","variants":[{{"variant":{{"variant_id":"v","model_id":"m","text_generation_config":{tgc}}},"weight":1}}]}}}}"#
        )
    };
    assert!(RouterConfig::from_json(&variant(r#"{"temperature":0.2}"#)).is_ok());
    assert_eq!(
        parse_err(&variant(r#""hot""#)).to_string(),
        "defaultRoute.variants[0].variant.text_generation_config: expected a \
         text_generation_config object, found a string"
    );
    assert_eq!(
        parse_err(&variant(r#"{"max_tokens":5,"maxTokens":6}"#)).to_string(),
        "defaultRoute.variants[0].variant.text_generation_config: `max_tokens` and `maxTokens` \
         are two spellings of the same field; give only one"
    );
    let defaults = |d: &str| format!(r#"{{"name":"a","defaults":{d}}}"#);
    assert!(RouterConfig::from_json(&defaults(r#"{"text_generation_config":{}}"#)).is_ok());
    assert_eq!(
        parse_err(&defaults("3")).to_string(),
        "defaults: expected a defaults object, found a number"
    );
    assert_eq!(
        parse_err(&defaults(r#"{"textGenerationConfig":[1]}"#)).to_string(),
        "defaults.textGenerationConfig: expected a text_generation_config object, found an array"
    );
    assert_eq!(
        parse_err(&defaults(
            r#"{"message_templates":[],"messageTemplates":[]}"#
        ))
        .to_string(),
        "defaults: `message_templates` and `messageTemplates` are two spellings of the same \
         field; give only one"
    );
}
