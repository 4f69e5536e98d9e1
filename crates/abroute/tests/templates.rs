//! Message templates typed once: compiling resolves each variant's effective list (its own,
//! else the router's `defaults`) into checked [`MessageTemplate`]s, and the effective
//! `text_generation_config` beside it; validation reports exactly the problems
//! [`MessageTemplate::parse_list`] finds, so no reader of the compiled form can disagree.

use abroute::config::{MessageTemplate, TemplateProblem, TemplateProblemKind};
use abroute::validate::{ValidationOptions, validate};
use abroute::{JsonPath, RouterConfig};
use proptest::prelude::*;
use serde_json::{Value, json};

fn config(v: Value) -> RouterConfig {
    RouterConfig::from_value(&v).expect("test config reads")
}

fn roles(list: Option<&[MessageTemplate]>) -> Option<Vec<&str>> {
    list.map(|l| l.iter().map(MessageTemplate::role).collect())
}

#[test]
fn each_variant_gets_its_own_templates_or_else_the_defaults() {
    let c = config(json!({ "name": "r",
        "defaults": {
            "message_templates": [{ "role": "system", "content": "default {{x}}" }],
            "text_generation_config": { "temperature": 0.5 } },
        "routes": [{ "condition": { "cel_expression": "tier == 'gold'" },
            "route": { "route_id": "gold", "variants": [
                { "variant": { "variant_id": "own", "model_id": "openai/gpt-4.1",
                    "message_templates": [
                        { "role": "developer", "content": "be brief" },
                        { "role": "user", "content": [{ "type": "text", "text": "hi" }], "name": "u" } ],
                    "text_generation_config": { "max_tokens": 9 } }, "weight": 1 },
                { "variant": { "variant_id": "none", "model_id": "openai/gpt-4.1",
                    "message_templates": [] }, "weight": 1 } ] } }],
        "defaultRoute": { "route_id": "d", "variants": [
            { "variant": { "variant_id": "a", "model_id": "openai/gpt-4.1" }, "weight": 1 },
            { "variant": { "variant_id": "b", "model_id": "openai/gpt-4o-mini",
                "text_generation_config": { "top_p": 1 } }, "weight": 1 } ] } }));
    let router = config_compiles(&c);
    let gold = router.route("gold").expect("the conditional route");
    let own = &gold.variants()[0];
    assert_eq!(
        roles(own.message_templates()),
        Some(vec!["developer", "user"])
    );
    let list = own.message_templates().unwrap();
    assert!(list[0].is_system(), "developer is an instruction");
    assert!(!list[1].is_system());
    assert_eq!(list[0].content(), &json!("be brief"));
    assert_eq!(
        list[1].content(),
        &json!([{ "type": "text", "text": "hi" }])
    );
    assert_eq!(
        list[1].message()["name"],
        "u",
        "other members kept as given"
    );
    assert_eq!(own.generation_config(), Some(&json!({ "max_tokens": 9 })));

    let none = &gold.variants()[1];
    assert_eq!(
        roles(none.message_templates()),
        Some(vec![]),
        "an own empty list replaces the defaults"
    );
    assert_eq!(
        none.generation_config(),
        Some(&json!({ "temperature": 0.5 })),
        "each setting falls back on its own"
    );

    let d = router.default_route().unwrap();
    let (a, b) = (&d.variants()[0], &d.variants()[1]);
    assert_eq!(roles(a.message_templates()), Some(vec!["system"]));
    assert_eq!(
        a.message_templates().unwrap()[0].content(),
        &json!("default {{x}}")
    );
    assert_eq!(a.generation_config(), Some(&json!({ "temperature": 0.5 })));
    assert_eq!(roles(b.message_templates()), Some(vec!["system"]));
    assert_eq!(b.generation_config(), Some(&json!({ "top_p": 1 })));

    // The compiled form agrees with the config's own view of what is effective.
    for (route, compiled) in c.all_routes().zip(router.routes()) {
        for (wv, v) in route.variants.iter().zip(compiled.variants()) {
            assert_eq!(
                v.generation_config(),
                c.effective_generation_config(&wv.variant)
            );
            let parsed = c
                .effective_message_templates(&wv.variant)
                .map(|t| MessageTemplate::parse_list(t).unwrap());
            assert_eq!(v.message_templates(), parsed.as_deref());
        }
    }
}

fn config_compiles(c: &RouterConfig) -> abroute::CompiledRouter {
    c.compile().expect("test config compiles")
}

#[test]
fn variants_without_their_own_settings_share_the_defaults() {
    let c = config(json!({ "name": "r",
        "defaults": { "messageTemplates": [{ "role": "system", "content": "s" }],
                      "textGenerationConfig": { "temperature": 1 } },
        "defaultRoute": { "route_id": "d", "variants": [
            { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 },
            { "variant": { "variant_id": "b", "model_id": "m" }, "weight": 1 } ] } }));
    let router = config_compiles(&c);
    let v = router.default_route().unwrap().variants();
    let (a, b) = (
        v[0].message_templates().unwrap(),
        v[1].message_templates().unwrap(),
    );
    assert_eq!(
        a[0].role(),
        "system",
        "the camelCase spelling of defaults is read"
    );
    assert!(std::ptr::eq(a, b), "one list, shared");
    assert_eq!(v[1].generation_config(), Some(&json!({ "temperature": 1 })));

    let bare = config(
        json!({ "name": "r", "defaultRoute": { "route_id": "d", "variants": [
        { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 } ] } }),
    );
    let router = config_compiles(&bare);
    let a = &router.default_route().unwrap().variants()[0];
    assert_eq!(a.message_templates(), None);
    assert_eq!(a.generation_config(), None);
}

#[test]
fn problems_come_in_list_order_role_before_content() {
    let problems = MessageTemplate::parse_list(&json!([
        { "role": "user", "content": "fine" },
        { "role": 1, "content": 2 },
        7,
    ]))
    .unwrap_err();
    assert_eq!(
        problems,
        [
            TemplateProblem {
                index: Some(1),
                kind: TemplateProblemKind::RoleNotAString { found: "a number" }
            },
            TemplateProblem {
                index: Some(1),
                kind: TemplateProblemKind::ContentWrongType { found: "a number" }
            },
            TemplateProblem {
                index: Some(2),
                kind: TemplateProblemKind::NotAnObject { found: "a number" }
            },
        ]
    );
    assert_eq!(
        MessageTemplate::parse_list(&json!("x")).unwrap_err(),
        [TemplateProblem {
            index: None,
            kind: TemplateProblemKind::NotAList { found: "a string" }
        }]
    );
}

/// Any JSON value of a template-like shape.
fn template_value() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-z]{0,3}".prop_map(Value::from),
        Just(json!([{ "type": "text", "text": "t" }])),
        Just(json!({})),
    ];
    let message = (
        prop::option::of(scalar.clone()),
        prop::option::of(scalar.clone()),
    )
        .prop_map(|(role, content)| {
            let mut m = serde_json::Map::new();
            if let Some(r) = role {
                m.insert("role".into(), r);
            }
            if let Some(c) = content {
                m.insert("content".into(), c);
            }
            Value::Object(m)
        });
    prop_oneof![
        1 => scalar.clone(),
        6 => prop::collection::vec(prop_oneof![4 => message, 1 => scalar], 0..5).prop_map(Value::from),
    ]
}

proptest! {
    /// Validation's errors for a variant's templates are exactly `parse_list`'s problems at the
    /// variant's path, and a value validation accepts compiles to the list `parse_list` reads.
    #[test]
    fn validation_and_the_typed_templates_agree(t in template_value()) {
        // `"message_templates": null` reads as no templates at all.
        prop_assume!(!t.is_null());
        let c = config(json!({ "name": "r", "defaultRoute": { "route_id": "d", "variants": [
            { "variant": { "variant_id": "a", "model_id": "m", "message_templates": t.clone() },
              "weight": 1 } ] } }));
        let path = JsonPath::root()
            .key("defaultRoute").key("variants").index(0).key("variant").key("message_templates");
        match (MessageTemplate::parse_list(&t), validate(&c, &ValidationOptions::default())) {
            (Ok(list), Ok(())) => {
                let router = config_compiles(&c);
                let v = &router.default_route().unwrap().variants()[0];
                prop_assert_eq!(v.message_templates(), Some(list.as_slice()));
            }
            (Err(problems), Err(errors)) => {
                let want: Vec<String> =
                    problems.iter().map(|p| p.to_config_error(&path).to_string()).collect();
                let got: Vec<String> = errors.into_iter().map(|e| e.to_string()).collect();
                prop_assert_eq!(got, want);
            }
            (parsed, validated) => {
                prop_assert!(false, "disagree: {:?} vs {:?}", parsed.is_ok(), validated.is_ok());
            }
        }
    }
}
