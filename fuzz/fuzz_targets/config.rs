//! Arbitrary bytes through every way of reading a router config, then validation and
//! compilation. Nothing may panic, and the two entry points must agree:
//!
//! - `RouterConfig::from_json` and `serde_json::from_str::<RouterConfig>` give the same config
//!   or the same error text (and `serde_json::from_slice` agrees on the raw bytes);
//! - a config that reads validates (both modes), compiles when it validates (unless an `auto`
//!   selection asks the catalog for what it lacks), and
//!   decides without panicking;
//! - it serializes and reads back to itself (unless it holds a float in a passthrough value,
//!   which serde_json without `float_roundtrip` may read back 1 ULP off).
#![no_main]

use abroute::validate::{ValidationOptions, validate};
use abroute::{RequestContext, RouterConfig};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

fn passthrough_floats(c: &RouterConfig) -> bool {
    let variant_values = c.all_routes().flat_map(|r| &r.variants).flat_map(|wv| {
        let v = &wv.variant;
        [
            &v.text_generation_config,
            &v.message_templates,
            &v.web_search,
            &v.compression,
        ]
    });
    variant_values.chain([&c.defaults]).flatten().any(has_float)
}

fn check(config: &RouterConfig) {
    let loose = validate(config, &ValidationOptions::default());
    let strict = validate(config, &ValidationOptions::strict());
    assert!(loose.is_ok() || strict.is_err(), "strict is stricter");
    match config.compile() {
        Ok(router) => {
            assert!(loose.is_ok(), "compiled an invalid config");
            for draw in [0, 1, u64::MAX / 3, u64::MAX] {
                if let Ok(d) = router.decide(&RequestContext::new().with_random(draw)) {
                    assert!(d.variant().weight() > 0, "picked a weight-0 variant");
                }
            }
        }
        Err(e) => match &loose {
            Err(_) => assert_eq!(Err(e), loose, "compile and validate disagree"),
            // Past validation, compile fails only for `auto` selections the catalog cannot meet.
            Ok(()) => assert!(
                e.errors()
                    .iter()
                    .all(|e| matches!(e.kind, abroute::ConfigErrorKind::Selection { .. })),
                "compile failed past validation: {e}"
            ),
        },
    }
    let _ = config.compile_with(&ValidationOptions::strict());

    let json = config.to_json();
    let back = match RouterConfig::from_json(&json) {
        Ok(back) => back,
        Err(e) => panic!("a config read cannot be read back: {e}\n{json}"),
    };
    if !passthrough_floats(config) {
        assert_eq!(&back, config, "round trip changed the config");
    }
}

fuzz_target!(|data: &[u8]| {
    let via_slice = serde_json::from_slice::<RouterConfig>(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ours = RouterConfig::from_json(text);
    let via_serde = serde_json::from_str::<RouterConfig>(text);
    let ours_text = ours.as_ref().map_err(ToString::to_string);
    assert_eq!(ours_text, via_serde.as_ref().map_err(ToString::to_string));
    assert_eq!(ours_text, via_slice.as_ref().map_err(ToString::to_string));
    if let Ok(config) = &ours {
        check(config);
        // Reading the parsed value gives the same config as reading the text.
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            assert_eq!(RouterConfig::from_value(&value).as_ref(), Ok(config));
        }
    }
});
