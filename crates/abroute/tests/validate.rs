//! Validation: every problem at once with its JSON path, the name rule, ids, weights, limits,
//! strict mode, the salt extension, and readable messages. `compile()` reports the same.

use abroute::config::{Route, Variant, WeightedVariant};
use abroute::validate::{
    MAX_CONDITION_BYTES, MAX_ID_BYTES, MAX_ROUTES, MAX_VARIANTS, MAX_WEIGHT_SUM,
    is_valid_router_name, validate,
};
use abroute::{
    ConfigErrorKind as K, ConfigErrors, RequestContext, RouteError, RouterConfig, ValidationOptions,
};
use serde_json::{Value, json};

fn read(v: &Value) -> RouterConfig {
    match RouterConfig::from_value(v) {
        Ok(c) => c,
        Err(e) => panic!("the test config must read:\n{e}"),
    }
}

/// Validates with default options, checks `compile()` reports the same, returns the errors.
fn invalid(config: &RouterConfig) -> ConfigErrors {
    let errors = match validate(config, &ValidationOptions::default()) {
        Ok(()) => panic!("expected validation errors for {}", config.to_json()),
        Err(e) => e,
    };
    match config.compile() {
        Ok(_) => panic!("compiled an invalid config"),
        Err(e) => assert_eq!(e, errors, "compile() reports validation's errors"),
    }
    errors
}

fn valid(config: &RouterConfig) {
    if let Err(e) = validate(config, &ValidationOptions::default()) {
        panic!("expected a valid config, got:\n{e}");
    }
    if let Err(e) = config.compile() {
        panic!("a valid config must compile:\n{e}");
    }
}

/// `(path, message)` of every error, for exact comparison.
fn listed(errors: &ConfigErrors) -> Vec<(String, String)> {
    errors
        .errors()
        .iter()
        .map(|e| (e.path.to_string(), e.kind.to_string()))
        .collect()
}

fn paths(errors: &ConfigErrors) -> Vec<String> {
    errors.errors().iter().map(|e| e.path.to_string()).collect()
}

/// A router whose default route has these `(variant_id, weight)` variants.
fn router(variants: &[(&str, u32)]) -> RouterConfig {
    read(&json!({
        "name": "r",
        "defaultRoute": { "route_id": "default", "variants": variants.iter().map(|(id, w)| json!({
            "variant": { "variant_id": id, "model_id": format!("m/{id}") }, "weight": w
        })).collect::<Vec<_>>() }
    }))
}

fn weighted(id: String, weight: u32) -> WeightedVariant {
    WeightedVariant {
        variant: Variant {
            model_id: id.clone(),
            variant_id: id,
            model_selection: None,
            text_generation_config: None,
            message_templates: None,
            web_search: None,
            compression: None,
        },
        weight,
    }
}

fn default_route(config: &mut RouterConfig) -> &mut Route {
    config.default_route.as_mut().expect("default route")
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let config = read(&json!({
        "name": "routers/Compare_Models",
        "routes": [
            { "route": { "route_id": "premium", "variants": [] },
              "condition": { "cel_expression": "tier == 'premium'" } },
            { "route": { "route_id": "zeros", "variants": [
                { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 0 },
                { "variant": { "variant_id": "b", "model_id": "m" }, "weight": 0 } ] } },
            { "route": { "route_id": "premium", "variants": [
                { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 },
                { "variant": { "variant_id": "a", "model_id": "" }, "weight": 1 },
                { "variant": { "variant_id": "", "model_id": "m" }, "weight": 1 } ] },
              "condition": { "cel_expression": "  " } }
        ],
        "defaultRoute": { "route_id": "", "variants": [
            { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 4294967295u32 },
            { "variant": { "variant_id": "b", "model_id": "m" }, "weight": 1 } ] }
    }));
    assert_eq!(
        config.name, "Compare_Models",
        "`routers/` is removed on read"
    );
    let errors = invalid(&config);
    let got = listed(&errors);
    let want = [
        (
            "name",
            "invalid router name \"Compare_Models\": it must start with a lowercase letter or digit and hold only lowercase letters, digits and '-' (^[a-z0-9][a-z0-9-]*$)",
        ),
        (
            "routes[0].route.variants",
            "a route needs at least one variant",
        ),
        (
            "routes[1].route.variants",
            "every weight in this route is 0, so no variant could ever be picked; give at least one variant a positive weight",
        ),
        (
            "routes[1]",
            "a conditional route needs `condition.cel_expression`; use `defaultRoute` for the route without a condition",
        ),
        (
            "routes[2].route.route_id",
            "route_id \"premium\" is already used at routes[0].route.route_id",
        ),
        (
            "routes[2].route.variants[1].variant.variant_id",
            "variant_id \"a\" is already used in this route at routes[2].route.variants[0].variant.variant_id",
        ),
        (
            "routes[2].route.variants[1].variant.model_id",
            "model_id must not be empty",
        ),
        (
            "routes[2].route.variants[2].variant.variant_id",
            "variant_id must not be empty",
        ),
        (
            "routes[2].condition.cel_expression",
            "a conditional route needs `condition.cel_expression`; use `defaultRoute` for the route without a condition",
        ),
        ("defaultRoute.route_id", "route_id must not be empty"),
        (
            "defaultRoute.variants",
            "the weights add up to 4294967296, more than the limit of 4294967295",
        ),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
        .collect();
    assert_eq!(got, want);

    // Structured kinds, not just text.
    let kinds: Vec<&K> = errors.errors().iter().map(|e| &e.kind).collect();
    assert!(matches!(kinds[0], K::InvalidName { name } if name == "Compare_Models"));
    assert_eq!(kinds[1], &K::NoVariants);
    assert_eq!(kinds[2], &K::AllWeightsZero);
    assert_eq!(kinds[3], &K::MissingCondition);
    assert!(
        matches!(kinds[4], K::DuplicateRouteId { id, first } if id == "premium"
            && first.to_string() == "routes[0].route.route_id")
    );
    assert!(matches!(kinds[5], K::DuplicateVariantId { id, .. } if id == "a"));
    assert_eq!(kinds[6], &K::Empty { what: "model_id" });
    assert_eq!(
        kinds[10],
        &K::WeightSumTooLarge {
            sum: 1 << 32,
            max: MAX_WEIGHT_SUM
        }
    );
}

#[test]
fn router_names() {
    for ok in ["a", "7", "compare-frontier-models", "a-", "0-0-0", "x9"] {
        assert!(is_valid_router_name(ok), "{ok}");
        let mut c = router(&[("a", 1)]);
        c.name = ok.to_owned();
        valid(&c);
    }
    for bad in [
        "",
        "-a",
        "A",
        "aB",
        "a_b",
        "a b",
        "a.b",
        "é",
        "routers/a",
        "a/b",
        " a",
        "a\n",
    ] {
        assert!(!is_valid_router_name(bad), "{bad:?}");
        let mut c = router(&[("a", 1)]);
        c.name = bad.to_owned();
        let errors = invalid(&c);
        assert_eq!(paths(&errors), ["name"]);
        assert_eq!(errors.errors()[0].kind, K::InvalidName { name: bad.into() });
    }

    // `routers/<name>` is accepted and normalized on read, in both entry points.
    let text = r#"{"name":"routers/compare-frontier-models","defaultRoute":{"route_id":"d","variants":[{"variant":{"variant_id":"a","model_id":"m"},"weight":1}]}}"#;
    let c = RouterConfig::from_json(text).expect("reads");
    assert_eq!(c.name, "compare-frontier-models");
    let via_serde: RouterConfig = serde_json::from_str(text).expect("reads");
    assert_eq!(via_serde, c);
    assert_eq!(
        c.compile().expect("compiles").name(),
        "compare-frontier-models"
    );
    assert!(
        c.to_json()
            .starts_with(r#"{"name":"compare-frontier-models","#)
    );

    // Only one prefix is removed; what is left must still be a valid name.
    for (given, left) in [
        ("routers/", ""),
        ("routers/routers/a", "routers/a"),
        ("routers/Ab", "Ab"),
    ] {
        let mut v: Value = serde_json::from_str(text).expect("json");
        v["name"] = json!(given);
        let c = read(&v);
        assert_eq!(c.name, left);
        assert_eq!(paths(&invalid(&c)), ["name"]);
    }
    // The prefix is case-sensitive.
    let mut v: Value = serde_json::from_str(text).expect("json");
    v["name"] = json!("Routers/a");
    assert_eq!(read(&v).name, "Routers/a");
}

#[test]
fn routes_need_variants_and_a_positive_weight_sum() {
    let c = router(&[]);
    let errors = invalid(&c);
    assert_eq!(
        listed(&errors),
        [(
            "defaultRoute.variants".to_owned(),
            "a route needs at least one variant".to_owned()
        )]
    );

    let errors = invalid(&router(&[("a", 0), ("b", 0), ("c", 0)]));
    assert_eq!(paths(&errors), ["defaultRoute.variants"]);
    assert_eq!(errors.errors()[0].kind, K::AllWeightsZero);

    // Weight-0 variants are allowed next to positive ones, and never picked.
    let c = router(&[("off", 0), ("on", 3), ("also-off", 0), ("on2", 1)]);
    valid(&c);
    let compiled = c.compile().expect("compiles");
    let route = compiled.default_route().expect("default route");
    assert_eq!(route.total_weight(), 4);
    let mut seen = [0usize; 4];
    for i in 0..4096u64 {
        let draw = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i << 50);
        let d = compiled
            .decide(&RequestContext::new().with_random(draw))
            .expect("decides");
        seen[d.variant_index()] += 1;
    }
    assert_eq!(seen[0], 0, "weight 0 is never picked");
    assert_eq!(seen[2], 0, "weight 0 is never picked");
    assert!(seen[1] > seen[3] && seen[3] > 0, "{seen:?}");
}

#[test]
fn weight_sum_limit() {
    assert_eq!(MAX_WEIGHT_SUM, u64::from(u32::MAX));
    // Exactly at the limit: fine.
    valid(&router(&[("a", u32::MAX)]));
    valid(&router(&[("a", u32::MAX - 1), ("b", 1)]));
    valid(&router(&[("a", u32::MAX / 2), ("b", u32::MAX / 2 + 1)]));
    // One past it, and far past it.
    let errors = invalid(&router(&[("a", u32::MAX), ("b", 1)]));
    assert_eq!(
        errors.errors()[0].kind,
        K::WeightSumTooLarge {
            sum: MAX_WEIGHT_SUM + 1,
            max: MAX_WEIGHT_SUM
        }
    );
    let errors = invalid(&router(&[
        ("a", u32::MAX),
        ("b", u32::MAX),
        ("c", u32::MAX),
    ]));
    assert_eq!(paths(&errors), ["defaultRoute.variants"]);
    assert_eq!(
        errors.to_string(),
        "defaultRoute.variants: the weights add up to 12884901885, more than the limit of \
         4294967295"
    );
}

#[test]
fn route_ids_are_unique_within_a_router() {
    let v = json!({
        "name": "r",
        "routes": [
            { "route": { "route_id": "x", "variants": [
                { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 } ] },
              "condition": { "cel_expression": "true" } },
            { "route": { "route_id": "y", "variants": [
                { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 } ] },
              "condition": { "cel_expression": "true" } },
            { "route": { "route_id": "x", "variants": [
                { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 } ] },
              "condition": { "cel_expression": "true" } }
        ],
        "defaultRoute": { "route_id": "x", "variants": [
            { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 } ] }
    });
    let errors = invalid(&read(&v));
    // Each repeat points at the first use. The same variant_id in different routes is fine.
    assert_eq!(
        listed(&errors),
        [
            (
                "routes[2].route.route_id".to_owned(),
                "route_id \"x\" is already used at routes[0].route.route_id".to_owned()
            ),
            (
                "defaultRoute.route_id".to_owned(),
                "route_id \"x\" is already used at routes[0].route.route_id".to_owned()
            ),
        ]
    );

    // Ids are compared exactly: case and spaces matter.
    let mut v = v;
    v["routes"][2]["route"]["route_id"] = json!("X");
    v["defaultRoute"]["route_id"] = json!("x ");
    valid(&read(&v));
}

#[test]
fn variant_ids_are_unique_within_a_route() {
    let errors = invalid(&router(&[("a", 1), ("b", 1), ("a", 1), ("a", 1), ("b", 0)]));
    assert_eq!(
        paths(&errors),
        [
            "defaultRoute.variants[2].variant.variant_id",
            "defaultRoute.variants[3].variant.variant_id",
            "defaultRoute.variants[4].variant.variant_id",
        ]
    );
    let firsts: Vec<String> = errors
        .errors()
        .iter()
        .map(|e| match &e.kind {
            K::DuplicateVariantId { first, .. } => first.to_string(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        firsts,
        [
            "defaultRoute.variants[0].variant.variant_id",
            "defaultRoute.variants[0].variant.variant_id",
            "defaultRoute.variants[1].variant.variant_id",
        ]
    );
    // The seed's ids contain '/' and '.', which is fine.
    valid(&router(&[
        ("openai/gpt-4o-mini-a", 1),
        ("openai/gpt-4.1-c", 1),
    ]));
}

#[test]
fn ids_must_not_be_empty() {
    let mut c = router(&[("a", 1), ("", 1)]);
    default_route(&mut c).route_id = String::new();
    default_route(&mut c).variants[0].variant.model_id = String::new();
    let errors = invalid(&c);
    assert_eq!(
        listed(&errors),
        [
            (
                "defaultRoute.route_id".to_owned(),
                "route_id must not be empty".to_owned()
            ),
            (
                "defaultRoute.variants[0].variant.model_id".to_owned(),
                "model_id must not be empty".to_owned()
            ),
            (
                "defaultRoute.variants[1].variant.variant_id".to_owned(),
                "variant_id must not be empty".to_owned()
            ),
        ]
    );
    // Two empty ids are two "empty" errors, not a duplicate.
    let errors = invalid(&router(&[("", 1), ("", 1)]));
    assert!(
        errors
            .errors()
            .iter()
            .all(|e| e.kind == K::Empty { what: "variant_id" }),
        "{errors}"
    );
}

#[test]
fn conditional_routes_need_a_condition() {
    let route = json!({ "route_id": "c", "variants": [
        { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 } ] });
    let cases = [
        (json!({ "route": route }), "routes[0]"),
        (json!({ "route": route, "condition": null }), "routes[0]"),
        (
            json!({ "route": route, "condition": { "cel_expression": "" } }),
            "routes[0].condition.cel_expression",
        ),
        (
            json!({ "route": route, "condition": { "cel_expression": " \n\t" } }),
            "routes[0].condition.cel_expression",
        ),
    ];
    for (conditional, path) in cases {
        let c = read(&json!({ "name": "r", "routes": [conditional] }));
        let errors = invalid(&c);
        assert_eq!(paths(&errors), [path], "{conditional}");
        assert_eq!(errors.errors()[0].kind, K::MissingCondition);
    }

    // A condition at the size limit is fine; one byte more is not.
    let at_limit = format!("x == \"{}\"", "y".repeat(MAX_CONDITION_BYTES - 7));
    assert_eq!(at_limit.len(), MAX_CONDITION_BYTES);
    let c = read(&json!({ "name": "r", "routes": [
        { "route": route, "condition": { "cel_expression": at_limit } } ] }));
    valid(&c);
    let c = read(&json!({ "name": "r", "routes": [
        { "route": route, "condition": { "cel_expression": format!("{at_limit} ") } } ] }));
    assert_eq!(
        invalid(&c).errors()[0].kind,
        K::TooLong {
            what: "cel_expression",
            len: MAX_CONDITION_BYTES + 1,
            max: MAX_CONDITION_BYTES
        }
    );

    // A router of conditional routes only is valid; a request no condition matches finds no
    // route, with Inworld's message.
    let c = read(&json!({ "name": "r", "routes": [
        { "route": route, "condition": { "cel_expression": "tier == 'gold'" } } ] }));
    valid(&c);
    let compiled = c.compile().expect("compiles");
    let gold = RequestContext::new().with_metadata("tier", "gold");
    assert_eq!(compiled.decide(&gold).map(|d| d.route_id()), Ok("c"));
    let err = compiled
        .decide(&RequestContext::new().with_random(7))
        .expect_err("no default route");
    assert_eq!(err, RouteError::NoRouteMatched);
    assert_eq!(
        err.to_string(),
        "No route matched. Configure a default route or adjust conditions."
    );
}

#[test]
fn a_router_needs_a_route() {
    let c = read(&json!({ "name": "lonely" }));
    let errors = invalid(&c);
    assert_eq!(
        errors.to_string(),
        "(root): the router has neither a `defaultRoute` nor any conditional route, so no \
         request could be routed"
    );
    assert!(errors.errors()[0].path.is_root());
    assert_eq!(errors.errors()[0].kind, K::NoRoutes);
    // An explicit empty list and a null default route are the same.
    let c = read(&json!({ "name": "lonely", "routes": [], "defaultRoute": null }));
    assert_eq!(invalid(&c).errors()[0].kind, K::NoRoutes);
}

#[test]
fn ids_are_limited_in_bytes() {
    let at = "a".repeat(MAX_ID_BYTES);
    let over = "a".repeat(MAX_ID_BYTES + 1);
    // 129 two-byte characters: 129 chars, 258 bytes. The limit is in bytes.
    let wide = "é".repeat(129);
    assert_eq!(wide.len(), 258);

    let mut c = router(&[("a", 1)]);
    c.name = at.clone();
    default_route(&mut c).route_id = at.clone();
    default_route(&mut c).salt = Some(at.clone());
    default_route(&mut c).variants[0].variant.variant_id = at.clone();
    default_route(&mut c).variants[0].variant.model_id = at.clone();
    valid(&c);

    c.name = over.clone();
    default_route(&mut c).route_id = over.clone();
    default_route(&mut c).salt = Some(wide.clone());
    default_route(&mut c).variants[0].variant.variant_id = wide.clone();
    default_route(&mut c).variants[0].variant.model_id = over.clone();
    let errors = invalid(&c);
    assert_eq!(
        listed(&errors),
        [
            (
                "name".to_owned(),
                "the router name is 257 bytes long; the limit is 256".to_owned()
            ),
            (
                "defaultRoute.route_id".to_owned(),
                "route_id is 257 bytes long; the limit is 256".to_owned()
            ),
            (
                "defaultRoute.salt".to_owned(),
                "salt is 258 bytes long; the limit is 256".to_owned()
            ),
            (
                "defaultRoute.variants[0].variant.variant_id".to_owned(),
                "variant_id is 258 bytes long; the limit is 256".to_owned()
            ),
            (
                "defaultRoute.variants[0].variant.model_id".to_owned(),
                "model_id is 257 bytes long; the limit is 256".to_owned()
            ),
        ]
    );
    assert_eq!(
        errors.errors()[0].kind,
        K::TooLong {
            what: "the router name",
            len: 257,
            max: MAX_ID_BYTES
        }
    );
}

#[test]
fn route_salt_must_be_non_empty_and_short() {
    let mut c = router(&[("a", 1)]);
    default_route(&mut c).salt = Some("shared-population".into());
    valid(&c);
    default_route(&mut c).salt = Some(String::new());
    let errors = invalid(&c);
    assert_eq!(
        listed(&errors),
        [(
            "defaultRoute.salt".to_owned(),
            "salt must not be empty".to_owned()
        )]
    );
    assert_eq!(errors.errors()[0].kind, K::Empty { what: "salt" });

    // In a conditional route, read from JSON, the path is the route's.
    let c = read(
        &json!({ "name": "r", "routes": [{ "route": { "route_id": "c", "salt": "",
        "variants": [{ "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 }] },
        "condition": { "cel_expression": "true" } }] }),
    );
    assert_eq!(paths(&invalid(&c)), ["routes[0].route.salt"]);
    // Two routes may share a salt on purpose.
    let c = read(&json!({ "name": "r",
        "routes": [{ "route": { "route_id": "c", "salt": "s",
            "variants": [{ "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 }] },
            "condition": { "cel_expression": "true" } }],
        "defaultRoute": { "route_id": "d", "salt": "s",
            "variants": [{ "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 }] } }));
    valid(&c);
}

#[test]
fn at_most_max_routes_conditional_routes() {
    let conditional = |i: usize| {
        json!({ "route": { "route_id": format!("r{i}"), "variants": [
            { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 } ] },
          "condition": { "cel_expression": "true" } })
    };
    let routes: Vec<Value> = (0..MAX_ROUTES).map(conditional).collect();
    let mut v = json!({ "name": "many", "routes": routes });
    valid(&read(&v));

    v["routes"]
        .as_array_mut()
        .expect("array")
        .push(conditional(MAX_ROUTES));
    let errors = invalid(&read(&v));
    assert_eq!(
        listed(&errors),
        [(
            "routes".to_owned(),
            "1001 conditional routes is more than the limit of 1000".to_owned()
        )]
    );
    assert_eq!(
        errors.errors()[0].kind,
        K::TooMany {
            what: "conditional routes",
            count: MAX_ROUTES + 1,
            max: MAX_ROUTES
        }
    );
}

#[test]
fn at_most_max_variants_per_route() {
    // Built in memory: a million variants is 100+ MB of JSON text.
    let mut c = router(&[("a", 1)]);
    let variants: Vec<WeightedVariant> = (0..MAX_VARIANTS)
        .map(|i| weighted(i.to_string(), u32::from(i % 7 != 0)))
        .collect();
    default_route(&mut c).variants = variants;
    // At the limit it is valid. (Compiling it is left out: it takes seconds in a debug build.)
    validate(&c, &ValidationOptions::default()).expect("a million variants are allowed");
    // Duplicates are still found at that size, pointing at the first use.
    default_route(&mut c).variants[MAX_VARIANTS - 1]
        .variant
        .variant_id = "0".into();
    let errors = validate(&c, &ValidationOptions::default()).expect_err("duplicate");
    assert_eq!(
        errors.to_string(),
        "defaultRoute.variants[999999].variant.variant_id: variant_id \"0\" is already used in \
         this route at defaultRoute.variants[0].variant.variant_id"
    );
    default_route(&mut c).variants[MAX_VARIANTS - 1]
        .variant
        .variant_id = "last".into();

    default_route(&mut c)
        .variants
        .push(weighted("one-too-many".into(), 1));
    let errors = invalid(&c);
    assert_eq!(
        listed(&errors),
        [(
            "defaultRoute.variants".to_owned(),
            "1000001 variants is more than the limit of 1000000".to_owned()
        )]
    );
}

#[test]
fn strict_mode_requires_sums_of_exactly_100() {
    let strict = ValidationOptions::strict();
    assert!(strict.require_sum_100);
    assert!(!ValidationOptions::default().require_sum_100);

    for ok in [
        &[("a", 100)][..],
        &[("a", 33), ("b", 33), ("c", 34)],
        &[("a", 0), ("b", 100)],
    ] {
        let c = router(ok);
        validate(&c, &strict).expect("sums to 100");
        c.compile_with(&strict).expect("compiles strictly");
    }
    for (weights, sum) in [
        (&[("a", 1), ("b", 3)][..], 4),
        (&[("a", 50), ("b", 51)], 101),
        (&[("a", 99)], 99),
    ] {
        let c = router(weights);
        valid(&c); // abroute normalizes by the sum by default
        let errors = validate(&c, &strict).expect_err("strict refuses");
        assert_eq!(errors, c.compile_with(&strict).expect_err("compile agrees"));
        assert_eq!(paths(&errors), ["defaultRoute.variants"]);
        assert_eq!(errors.errors()[0].kind, K::SumNot100 { sum });
        assert_eq!(
            errors.to_string(),
            format!(
                "defaultRoute.variants: the weights add up to {sum}; strict mode (as in \
                 Inworld) requires exactly 100"
            )
        );
    }
    // Each route is checked, conditional ones too; all-zero is reported once, as all-zero.
    let c = read(&json!({ "name": "r",
        "routes": [{ "route": { "route_id": "c", "variants": [
            { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 10 } ] },
            "condition": { "cel_expression": "true" } }],
        "defaultRoute": { "route_id": "d", "variants": [
            { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 0 } ] } }));
    let errors = validate(&c, &strict).expect_err("strict refuses");
    let kinds: Vec<&K> = errors.errors().iter().map(|e| &e.kind).collect();
    assert_eq!(kinds, [&K::SumNot100 { sum: 10 }, &K::AllWeightsZero]);
}

#[test]
fn every_message_is_a_readable_sentence() {
    // One config with at least one error of every validation kind.
    let mut c = read(&json!({
        "name": "Not A Name",
        "routes": [
            { "route": { "route_id": "", "salt": "", "variants": [] } },
            { "route": { "route_id": "dup", "variants": [
                { "variant": { "variant_id": "a", "model_id": "" }, "weight": 0 },
                { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 0 } ] },
              "condition": { "cel_expression": "x" } },
            { "route": { "route_id": "dup", "variants": [
                { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 4294967295u32 },
                { "variant": { "variant_id": "b", "model_id": "m" }, "weight": 4294967295u32 } ] },
              "condition": { "cel_expression": "x" } }
        ],
        "defaultRoute": { "route_id": "d", "variants": [
            { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 3 } ] }
    }));
    default_route(&mut c).route_id = "r".repeat(300);
    let errors = validate(&c, &ValidationOptions::strict()).expect_err("invalid");
    assert!(errors.len() >= 10, "{errors}");
    for e in errors.errors() {
        let line = e.to_string();
        let (path, message) = line.split_once(": ").expect("`path: message`");
        assert_eq!(path, e.path.to_string());
        assert!(
            message.split(' ').count() >= 5,
            "a sentence, not a code: {line}"
        );
        assert!(
            message.starts_with(|c: char| c.is_lowercase() || c.is_ascii_digit() || c == '`'),
            "{line}"
        );
        assert!(!message.ends_with('.') && !message.ends_with(' '), "{line}");
        for debug_leak in ["Some(", "None", "JsonPath", "Key(", "Index(", "\\\""] {
            assert!(!message.contains(debug_leak), "{line}");
        }
        assert!(!line.contains('\n'), "one line per error: {line}");
    }
    assert_eq!(errors.to_string().lines().count(), errors.len());
}

#[test]
fn message_templates_are_lists_of_role_and_content() {
    let ok = json!([
        { "role": "system", "content": "You are {{agent_name}}." },
        { "role": "user", "content": [{ "type": "text", "text": "{{q}}" }], "name": "x" },
    ]);
    valid(&read(&json!({ "name": "r",
        "defaults": { "message_templates": ok },
        "defaultRoute": { "route_id": "d", "variants": [
            { "variant": { "variant_id": "a", "model_id": "m", "message_templates": ok }, "weight": 1 }] } })));
    let bad = json!([
        "text",
        { "content": "c" },
        { "role": "", "content": "c" },
        { "role": 3, "content": "c" },
        { "role": "user" },
        { "role": "user", "content": 1 },
    ]);
    let errors = invalid(&read(&json!({ "name": "r",
        "defaults": { "messageTemplates": {} },
        "defaultRoute": { "route_id": "d", "variants": [
            { "variant": { "variant_id": "a", "model_id": "m", "message_templates": bad }, "weight": 1 }] } })));
    let v = "defaultRoute.variants[0].variant.message_templates";
    let want: Vec<(String, String)> = [
        (
            format!("{v}[0]"),
            "expected a message object with `role` and `content`, found a string",
        ),
        (format!("{v}[1]"), "missing field `role`"),
        (format!("{v}[2].role"), "role must not be empty"),
        (format!("{v}[3].role"), "expected a string, found a number"),
        (format!("{v}[4]"), "missing field `content`"),
        (
            format!("{v}[5].content"),
            "expected a string or a list of parts, found a number",
        ),
        (
            "defaults.messageTemplates".to_owned(),
            "expected a list of messages, found an object",
        ),
    ]
    .into_iter()
    .map(|(p, m)| (p, m.to_owned()))
    .collect();
    assert_eq!(listed(&errors), want);
}
