//! The model catalog and model selection: the shipped table against the seed page, catalog
//! errors with paths, capability checks, `auto`/bare/qualified ordering, validation, and the
//! latency and throughput averages.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use abroute::catalog::{
    Capability, Catalog, CatalogErrorKind, Modality, ModelInfo, Needs, Price, Pricing, Unsuitable,
};
use abroute::config::{ModelSelection, ProviderPreferences, SortDirection, SortKey, SortMetric};
use abroute::select::{
    MetricsConfig, MetricsConfigError, ModelMetrics, SelectionErrorKind, is_ignored, order_models,
    selection_errors, validate_selection,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// The shipped catalog against the seed page
// ---------------------------------------------------------------------------------------------

/// The seed page's table, verbatim: model, context window, max output, input $/M, output $/M
/// ("-" where the page shows nothing).
const SEED_TABLE: &str = "\
GPT 4o Mini | 128K | 16.4K | $0.15 | $0.60
GPT 3.5 Turbo | 16.4K | 4.1K | $0.50 | $1.50
GPT 4.1 | 1M | 32.8K | $2.00 | $8.00
GPT 4.1 Mini | 1M | 32.8K | $0.40 | $1.60
GPT 4.1 Nano | 1M | 32.8K | $0.10 | $0.40
GPT 4.1 Nano 2025 04 14 | 1M | 32.8K | $0.10 | $0.40
GPT 4o | 128K | 16.4K | $2.50 | $10.00
GPT 4o 2024 08 06 | 128K | 16.4K | $2.50 | $10.00
GPT 4o Mini 2024 07 18 | 128K | 16.4K | $0.15 | $0.60
GPT 4o Mini Audio Preview | - | - | $0.15 | $0.60
GPT 5 Mini | 272K | 128K | $0.25 | $2.00
GPT 5 Nano | 272K | 128K | $0.05 | $0.40
GPT 5.2 | 272K | 128K | $1.75 | $14.00
GPT 5.4 | 1.1M | 128K | $2.50 | $15.00
GPT 5.4 Mini | 272K | 128K | $0.75 | $4.50
GPT 5.4 Nano | 272K | 128K | $0.20 | $1.25
GPT 5.5 | 1.1M | 128K | $5.00 | $30.00
GPT Audio Mini | 128K | 16.4K | $0.60 | $2.40
Openai/gpt Oss 120b | 131.1K | 131.1K | $0.039 | $0.19
Openai/gpt Oss 120b Turbo | - | - | $0.15 | $0.60
Openai/gpt Oss 20b | 131.1K | 32.8K | $0.075 | $0.30
Openai/gpt Oss Safeguard 20b | 131.1K | 65.5K | $0.075 | $0.30";

/// The ids the catalog must use, in the table's order.
const SEED_IDS: [&str; 22] = [
    "openai/gpt-4o-mini",
    "openai/gpt-3.5-turbo",
    "openai/gpt-4.1",
    "openai/gpt-4.1-mini",
    "openai/gpt-4.1-nano",
    "openai/gpt-4.1-nano-2025-04-14",
    "openai/gpt-4o",
    "openai/gpt-4o-2024-08-06",
    "openai/gpt-4o-mini-2024-07-18",
    "openai/gpt-4o-mini-audio-preview",
    "openai/gpt-5-mini",
    "openai/gpt-5-nano",
    "openai/gpt-5.2",
    "openai/gpt-5.4",
    "openai/gpt-5.4-mini",
    "openai/gpt-5.4-nano",
    "openai/gpt-5.5",
    "openai/gpt-audio-mini",
    "openai/gpt-oss-120b",
    "openai/gpt-oss-120b-turbo",
    "openai/gpt-oss-20b",
    "openai/gpt-oss-safeguard-20b",
];

/// The documented reading of the page's rounded token counts (docs/catalog.md): a value that is
/// a power of two rounded to one decimal of K is that power of two; `1M` is GPT-4.1's documented
/// 1,047,576; `1.1M` is 1,050,000; other K values are thousands.
fn tokens(page: &str) -> Option<u64> {
    match page {
        "-" => None,
        "1M" => Some(1_047_576),
        "1.1M" => Some(1_050_000),
        k => {
            let thousands: f64 = k
                .strip_suffix('K')
                .and_then(|n| n.parse().ok())
                .expect("a number of K");
            let power = (10..=20)
                .map(|b| 1u64 << b)
                .find(|&p| ((p as f64 / 100.0).round() / 10.0 - thousands).abs() < 1e-9);
            Some(power.unwrap_or((thousands * 1000.0).round() as u64))
        }
    }
}

fn dollars(page: &str) -> Price {
    page.strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .and_then(|usd| Price::from_usd(usd).ok())
        .expect("a dollar amount")
}

#[test]
fn default_catalog_matches_the_seed_page_row_by_row() {
    let catalog = Catalog::default_openai();
    assert_eq!(catalog.len(), SEED_IDS.len());
    let rows: Vec<&str> = SEED_TABLE.lines().collect();
    assert_eq!(rows.len(), SEED_IDS.len());
    for (row, id) in rows.iter().zip(SEED_IDS) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let model = catalog.get(id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(model.display_name.as_deref(), Some(cells[0]), "{id}");
        assert_eq!(
            model.context_window,
            tokens(cells[1]),
            "{id} context window"
        );
        assert_eq!(model.max_output_tokens, tokens(cells[2]), "{id} max output");
        let price = model.price.unwrap_or_else(|| panic!("{id} has no price"));
        assert_eq!(price.input, dollars(cells[3]), "{id} input price");
        assert_eq!(price.output, dollars(cells[4]), "{id} output price");
        assert_eq!(model.provider(), "openai");
        assert_eq!(model.bare_name(), &id["openai/".len()..]);
    }
}

#[test]
fn the_reading_of_page_token_counts() {
    assert_eq!(tokens("128K"), Some(128_000));
    assert_eq!(tokens("16.4K"), Some(16_384));
    assert_eq!(tokens("4.1K"), Some(4_096));
    assert_eq!(tokens("32.8K"), Some(32_768));
    assert_eq!(tokens("65.5K"), Some(65_536));
    assert_eq!(tokens("131.1K"), Some(131_072));
    assert_eq!(tokens("272K"), Some(272_000));
    let mini = Catalog::default_openai_ref()
        .get("openai/gpt-4o-mini")
        .cloned()
        .unwrap();
    assert_eq!(mini.price.unwrap().input.micro_usd(), 150_000);
    assert_eq!(mini.price.unwrap().output.to_string(), "$0.60");
    assert_eq!(mini.blended_price_usd(), Some(0.2625));
}

#[test]
fn only_gpt_4o_mini_claims_capabilities() {
    let catalog = Catalog::default_openai();
    for model in &catalog {
        let text: BTreeSet<Modality> = [Modality::Text].into();
        assert_eq!(model.output_modalities, text, "{}", model.id);
        if model.id == "openai/gpt-4o-mini" {
            assert_eq!(model.capabilities, Capability::ALL.into_iter().collect());
            assert_eq!(
                model.input_modalities,
                [Modality::Text, Modality::Image].into()
            );
        } else {
            assert!(model.capabilities.is_empty(), "{}", model.id);
            assert_eq!(model.input_modalities, text, "{}", model.id);
        }
        assert!(model.scores.is_empty());
    }
}

#[test]
fn catalog_round_trips_through_json() {
    let catalog = Catalog::default_openai();
    let text = catalog.to_json_pretty();
    assert_eq!(Catalog::from_json(&text).unwrap(), catalog);
    assert!(text.contains("\"input\": 0.039"), "{text}");
    assert!(catalog.source().unwrap().contains("inworld.ai"));
}

// ---------------------------------------------------------------------------------------------
// Catalog errors
// ---------------------------------------------------------------------------------------------

fn err(json: &str) -> (String, String) {
    let e = Catalog::from_json(json).expect_err("the catalog is invalid");
    (e.path.to_string(), e.to_string())
}

#[test]
fn bad_catalogs_name_the_json_path() {
    let (path, msg) = err(
        r#"{"models":[{"id":"a/b"},{"id":"a/c","usd_per_million_tokens":{"input":-1,"output":1}}]}"#,
    );
    assert_eq!(path, "models[1].usd_per_million_tokens.input");
    assert!(
        msg.contains("invalid price -1: a price cannot be negative"),
        "{msg}"
    );

    let (path, msg) =
        err(r#"{"models":[{"id":"a/c","usd_per_million_tokens":{"input":0.0000001,"output":1}}]}"#);
    assert_eq!(path, "models[0].usd_per_million_tokens.input");
    assert!(msg.contains("at most six decimal places"), "{msg}");

    let (path, msg) = err(r#"{"models":[{"id":"a/b","contxt_window":5}]}"#);
    assert_eq!(path, "models[0].contxt_window");
    assert!(msg.contains("unknown field `contxt_window`"), "{msg}");

    let (path, msg) = err(r#"{"models":[{"id":"a/b","context_window":"128K"}]}"#);
    assert_eq!(path, "models[0].context_window");
    assert!(msg.contains("invalid type: string \"128K\""), "{msg}");

    let (path, msg) = err(r#"{"models":[{"id":"a/b","capabilities":["vision","vison"]}]}"#);
    assert_eq!(path, "models[0].capabilities[1]");
    assert!(msg.contains("unknown variant `vison`"), "{msg}");

    let (path, msg) = err(r#"{"models":[{"id":"a/b"},{"id":"c/d"},{"id":"a/b"}]}"#);
    assert_eq!(path, "models[2].id");
    assert!(msg.contains("already given at models[0].id"), "{msg}");

    let (path, msg) = err(r#"{"models":[{"id":"gpt-4o"}]}"#);
    assert_eq!(path, "models[0].id");
    assert!(msg.contains("must be `provider/model`"), "{msg}");

    let (path, _) = err(r#"{"models":[{"id":"/gpt-4o"}]}"#);
    assert_eq!(path, "models[0].id");

    let (path, msg) = err(r#"{"models":[{"id":"a/b","context_window":0}]}"#);
    assert_eq!(path, "models[0].context_window");
    assert!(msg.contains("must be positive"), "{msg}");

    let (path, msg) = err(r#"{"model":[]}"#);
    assert_eq!(path, "model");
    assert!(msg.contains("unknown field `model`"), "{msg}");

    let (path, msg) = err("{}");
    assert_eq!(path, "(root)");
    assert!(msg.starts_with("missing field `models`"), "{msg}");

    let (path, msg) = err(r#"{"models":[{"id":"a/b","scores":{"iq":3}}]}"#);
    assert_eq!(path, "models[0].scores.iq");
    assert!(msg.contains("unknown field `iq`"), "{msg}");
}

#[test]
fn syntax_errors_keep_line_and_column() {
    let e = Catalog::from_json("{\"models\": [\n  {\"id\": \"a/b\",}\n]}").unwrap_err();
    match &e.kind {
        CatalogErrorKind::Syntax { line, column, .. } => assert_eq!((*line, *column), (2, 16)),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("at line 2 column 16"), "{e}");
    let e = Catalog::from_json(r#"{"models":[]} x"#).unwrap_err();
    assert!(e.to_string().contains("trailing characters"), "{e}");
    assert!(Catalog::from_json(r#"{"models":[]}"#).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Editing and lookups
// ---------------------------------------------------------------------------------------------

#[test]
fn insert_remove_extend_and_lookups() {
    let mut catalog = Catalog::default_openai();
    let mut groq = ModelInfo::new("groq/gpt-oss-120b");
    groq.context_window = Some(131_072);
    groq.price = Some(Pricing {
        input: Price::from_usd(0.15).unwrap(),
        output: Price::from_usd(0.75).unwrap(),
        cached_input: None,
    });
    assert_eq!(catalog.insert(groq.clone()).unwrap(), None);
    let serving: Vec<&str> = catalog
        .by_name("gpt-oss-120b")
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(serving, ["groq/gpt-oss-120b", "openai/gpt-oss-120b"]);
    assert_eq!(catalog.insert(groq.clone()).unwrap(), Some(groq));

    let e = catalog.insert(ModelInfo::new("no-provider")).unwrap_err();
    assert_eq!(e.path.to_string(), "id");
    let mut bad = ModelInfo::new("a/b");
    bad.scores.math = Some(f64::NAN);
    assert!(matches!(
        catalog.insert(bad).unwrap_err().kind,
        CatalogErrorKind::NotFinite { field: "math" }
    ));

    assert!(catalog.remove("openai/gpt-3.5-turbo").is_some());
    assert!(!catalog.contains("openai/gpt-3.5-turbo"));
    assert_eq!(catalog.len(), 22);

    let mut vision = Catalog::new();
    let mut better = catalog.get("openai/gpt-4o").cloned().unwrap();
    better.capabilities.insert(Capability::Vision);
    vision.insert(better).unwrap();
    catalog.extend(vision);
    assert!(
        catalog
            .get("openai/gpt-4o")
            .unwrap()
            .supports(Capability::Vision)
    );

    catalog.retain(|m| m.provider() == "groq");
    assert_eq!(catalog.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// can_serve
// ---------------------------------------------------------------------------------------------

#[test]
fn can_serve_checks_capabilities_conservatively() {
    let catalog = Catalog::default_openai();
    let vision = Needs {
        vision: true,
        ..Needs::default()
    };
    let tools = Needs {
        tools: true,
        ..Needs::default()
    };
    let schema = Needs {
        response_schema: true,
        ..Needs::default()
    };
    for needs in [vision, tools, schema] {
        assert_eq!(catalog.can_serve("openai/gpt-4o-mini", &needs), Ok(()));
        let e = catalog.can_serve("openai/gpt-4.1", &needs).unwrap_err();
        assert!(matches!(e, Unsuitable::MissingCapability { .. }), "{e:?}");
        assert_eq!(e.model(), "openai/gpt-4.1");
        assert_eq!(e.code(), "missing_capability");
        let e = catalog.can_serve("acme/unknown", &needs).unwrap_err();
        assert!(matches!(e, Unsuitable::UnknownModel { .. }), "{e:?}");
    }
    assert_eq!(
        catalog
            .can_serve("openai/gpt-4.1", &tools)
            .unwrap_err()
            .to_string(),
        "openai/gpt-4.1 is not known to support function calling"
    );
    assert_eq!(
        catalog
            .can_serve("acme/unknown", &vision)
            .unwrap_err()
            .to_string(),
        "acme/unknown is not in the model catalog, so it is not known to support vision"
    );
    // The first missing capability is the reason, in the order vision, tools, schema.
    let all = Needs {
        vision: true,
        tools: true,
        response_schema: true,
        ..Needs::default()
    };
    assert_eq!(
        catalog.can_serve("openai/gpt-4o", &all),
        Err(Unsuitable::MissingCapability {
            model: "openai/gpt-4o".into(),
            capability: Capability::Vision
        })
    );
    // Nothing needed: every model, even unknown ones.
    assert!(Needs::default().is_empty());
    assert_eq!(catalog.can_serve("acme/unknown", &Needs::default()), Ok(()));
    // A bare name serves when one of its entries does.
    assert_eq!(catalog.can_serve("gpt-4o-mini", &vision), Ok(()));
    assert!(catalog.can_serve("gpt-4o", &vision).is_err());
}

#[test]
fn can_serve_checks_the_context_window_and_max_output() {
    let catalog = Catalog::default_openai();
    let needs = |input: u64, output: Option<u64>| Needs {
        input_tokens: Some(input),
        output_tokens: output,
        ..Needs::default()
    };
    let turbo = "openai/gpt-3.5-turbo";
    assert_eq!(catalog.can_serve(turbo, &needs(16_384, None)), Ok(()));
    assert_eq!(
        catalog.can_serve(turbo, &needs(12_288, Some(4_096))),
        Ok(())
    );
    let e = catalog.can_serve(turbo, &needs(16_385, None)).unwrap_err();
    assert_eq!(
        e,
        Unsuitable::ContextWindow {
            model: turbo.into(),
            input_tokens: 16_385,
            output_tokens: 0,
            window: 16_384
        }
    );
    assert_eq!(
        e.to_string(),
        "openai/gpt-3.5-turbo has a context window of 16384 tokens; the request needs 16385 \
         (16385 input + 0 output)"
    );
    let e = catalog
        .can_serve(turbo, &needs(15_000, Some(2_000)))
        .unwrap_err();
    assert_eq!(e.code(), "context_window");
    let e = catalog
        .can_serve(turbo, &needs(10, Some(5_000)))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "openai/gpt-3.5-turbo gives at most 4096 output tokens; the request asks for 5000"
    );
    // GPT-4.1's 1M window, read as 1,047,576.
    assert!(
        catalog
            .can_serve("openai/gpt-4.1", &needs(1_047_576, None))
            .is_ok()
    );
    assert!(
        catalog
            .can_serve("openai/gpt-4.1", &needs(1_047_577, None))
            .is_err()
    );
    // Unknown limits are not checked.
    let huge = needs(u64::MAX, Some(u64::MAX));
    assert_eq!(
        catalog.can_serve("openai/gpt-4o-mini-audio-preview", &huge),
        Ok(())
    );
    assert_eq!(catalog.can_serve("acme/unknown", &huge), Ok(()));
    // Overflowing sums do not wrap.
    assert!(catalog.can_serve(turbo, &needs(u64::MAX, Some(1))).is_err());
}

// ---------------------------------------------------------------------------------------------
// Ordering
// ---------------------------------------------------------------------------------------------

/// A catalog for ordering tests. `fast` has three providers; `alpha/fast` and `gamma/fast` have
/// the same blended price (7/4 = 1.75 per million), and the same math score.
const TEST_CATALOG: &str = r#"{ "models": [
  { "id": "alpha/fast", "usd_per_million_tokens": { "input": 1.0, "output": 4.0 },
    "scores": { "intelligence": 80, "math": 70, "coding": 90 } },
  { "id": "beta/fast", "usd_per_million_tokens": { "input": 0.5, "output": 2.0 },
    "scores": { "intelligence": 80, "math": 60, "coding": 85 } },
  { "id": "gamma/fast", "usd_per_million_tokens": { "input": 2.0, "output": 1.0 },
    "scores": { "intelligence": 75, "math": 70, "coding": 90 } },
  { "id": "alpha/smart", "usd_per_million_tokens": { "input": 3.0, "output": 15.0 },
    "scores": { "intelligence": 95, "math": 90, "coding": 95 } },
  { "id": "beta/cheap", "usd_per_million_tokens": { "input": 0.1, "output": 0.4 },
    "scores": { "intelligence": 50, "math": 40, "coding": 45 } },
  { "id": "gamma/noscore", "usd_per_million_tokens": { "input": 1.0, "output": 1.0 } },
  { "id": "delta/noprice", "scores": { "intelligence": 10, "math": 10, "coding": 10 } }
] }"#;

fn test_catalog() -> Catalog {
    Catalog::from_json(TEST_CATALOG).expect("the test catalog parses")
}

fn key(metric: SortMetric, direction: SortDirection) -> SortKey {
    SortKey { metric, direction }
}

fn asc(metric: SortMetric) -> SortKey {
    key(metric, SortDirection::Ascending)
}

fn desc(metric: SortMetric) -> SortKey {
    key(metric, SortDirection::Descending)
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

fn selection(models: &[&str], sort: &[SortKey], ignore: &[&str]) -> ModelSelection {
    ModelSelection {
        models: strings(models),
        sort: sort.to_vec(),
        ignore: strings(ignore),
        provider: None,
    }
}

const POOL: [&str; 5] = [
    "alpha/smart",
    "gamma/fast",
    "beta/cheap",
    "alpha/fast",
    "beta/fast",
];

fn auto(sort: &[SortKey], metrics: &ModelMetrics) -> Vec<String> {
    order_models(
        "auto",
        &selection(&POOL, sort, &[]),
        &test_catalog(),
        metrics,
    )
}

#[test]
fn auto_sorts_by_price_both_ways_with_ties_by_id() {
    let m = ModelMetrics::new();
    use SortMetric::Price;
    // Blends ×4: cheap 0.7, beta/fast 3.5, alpha/fast 7, gamma/fast 7, smart 24.
    assert_eq!(
        auto(&[asc(Price)], &m),
        [
            "beta/cheap",
            "beta/fast",
            "alpha/fast",
            "gamma/fast",
            "alpha/smart"
        ]
    );
    // The tie stays in id order whatever the direction.
    assert_eq!(
        auto(&[desc(Price)], &m),
        [
            "alpha/smart",
            "alpha/fast",
            "gamma/fast",
            "beta/fast",
            "beta/cheap"
        ]
    );
    // The next key breaks the tie.
    assert_eq!(
        auto(&[asc(Price), asc(SortMetric::Intelligence)], &m),
        [
            "beta/cheap",
            "beta/fast",
            "gamma/fast",
            "alpha/fast",
            "alpha/smart"
        ]
    );
    assert_eq!(
        auto(&[asc(Price), desc(SortMetric::Intelligence)], &m),
        [
            "beta/cheap",
            "beta/fast",
            "alpha/fast",
            "gamma/fast",
            "alpha/smart"
        ]
    );
}

#[test]
fn auto_sorts_by_scores() {
    let m = ModelMetrics::new();
    use SortMetric::{Coding, Intelligence, Math};
    assert_eq!(
        auto(&[desc(Intelligence)], &m),
        [
            "alpha/smart",
            "alpha/fast",
            "beta/fast",
            "gamma/fast",
            "beta/cheap"
        ]
    );
    assert_eq!(
        auto(&[asc(Intelligence)], &m),
        [
            "beta/cheap",
            "gamma/fast",
            "alpha/fast",
            "beta/fast",
            "alpha/smart"
        ]
    );
    // alpha/fast and gamma/fast tie on math; coding ties too; then price decides.
    assert_eq!(
        auto(&[desc(Math), desc(Coding), asc(SortMetric::Price)], &m),
        [
            "alpha/smart",
            "alpha/fast",
            "gamma/fast",
            "beta/fast",
            "beta/cheap"
        ]
    );
    assert_eq!(
        auto(&[desc(Math), desc(Coding), desc(SortMetric::Price)], &m),
        [
            "alpha/smart",
            "alpha/fast",
            "gamma/fast",
            "beta/fast",
            "beta/cheap"
        ]
    );
    assert_eq!(
        auto(&[asc(Coding)], &m),
        [
            "beta/cheap",
            "beta/fast",
            "alpha/fast",
            "gamma/fast",
            "alpha/smart"
        ]
    );
}

#[test]
fn auto_sorts_by_latency_and_throughput_from_reports() {
    let m = ModelMetrics::new();
    let now = Duration::from_secs(10);
    m.record("alpha/smart", Duration::from_millis(2_000), 400, now); // 200 tok/s
    m.record("beta/cheap", Duration::from_millis(300), 6, now); // 20 tok/s
    m.record("gamma/fast", Duration::from_millis(1_000), 50, now); // 50 tok/s: ties the prior
    use SortMetric::{Latency, Throughput};
    // alpha/fast and beta/fast have no reports: the 1,000 ms prior, which ties gamma/fast.
    assert_eq!(
        auto(&[asc(Latency)], &m),
        [
            "beta/cheap",
            "alpha/fast",
            "beta/fast",
            "gamma/fast",
            "alpha/smart"
        ]
    );
    assert_eq!(
        auto(&[desc(Latency)], &m),
        [
            "alpha/smart",
            "alpha/fast",
            "beta/fast",
            "gamma/fast",
            "beta/cheap"
        ]
    );
    assert_eq!(
        auto(&[desc(Throughput)], &m),
        [
            "alpha/smart",
            "alpha/fast",
            "beta/fast",
            "gamma/fast",
            "beta/cheap"
        ]
    );
    assert_eq!(
        auto(&[asc(Throughput), asc(SortMetric::Price)], &m),
        [
            "beta/cheap",
            "beta/fast",
            "alpha/fast",
            "gamma/fast",
            "alpha/smart"
        ]
    );
    // No sort: latency, fastest first (the default).
    assert_eq!(auto(&[], &m), auto(&[asc(Latency)], &m));
}

/// Checks `order` is sorted by `keys` then id, computing the keys independently.
fn assert_sorted(order: &[String], keys: &[SortKey], catalog: &Catalog, m: &ModelMetrics) {
    let value = |metric: SortMetric, id: &str| -> Option<f64> {
        let info = catalog.get(id);
        match metric {
            SortMetric::Price => info
                .and_then(|i| i.price)
                .map(|p| 3.0 * p.input.micro_usd() as f64 + p.output.micro_usd() as f64),
            SortMetric::Latency => Some(m.latency_ms(id)),
            SortMetric::Throughput => Some(m.throughput(id)),
            SortMetric::Intelligence => info.and_then(|i| i.scores.intelligence),
            SortMetric::Math => info.and_then(|i| i.scores.math),
            SortMetric::Coding => info.and_then(|i| i.scores.coding),
        }
    };
    for pair in order.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let mut decided = false;
        for k in keys {
            let (x, y) = (value(k.metric, a), value(k.metric, b));
            let ord = match (x, y) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => panic!("{a} has no value but sorts before {b}"),
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some(x), Some(y)) => {
                    let o = x.total_cmp(&y);
                    if k.direction == SortDirection::Descending {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            assert_ne!(ord, std::cmp::Ordering::Greater, "{a} before {b} by {k:?}");
            if ord == std::cmp::Ordering::Less {
                decided = true;
                break;
            }
        }
        if !decided {
            assert!(
                a < b,
                "{a} and {b} tie on every key but are not in id order"
            );
        }
    }
}

#[test]
fn auto_with_every_metric_and_direction() {
    let catalog = test_catalog();
    let m = ModelMetrics::new();
    m.record(
        "alpha/fast",
        Duration::from_millis(700),
        100,
        Duration::ZERO,
    );
    m.record("beta/fast", Duration::from_millis(700), 30, Duration::ZERO);
    for metric in SortMetric::ALL {
        for direction in SortDirection::ALL {
            let sort = [key(metric, direction)];
            let order = order_models("auto", &selection(&POOL, &sort, &[]), &catalog, &m);
            let mut sorted = order.clone();
            sorted.sort();
            let mut pool = strings(&POOL);
            pool.sort();
            assert_eq!(sorted, pool);
            assert_sorted(&order, &sort, &catalog, &m);
        }
    }
}

#[test]
fn auto_ignore_drops_providers_and_models() {
    let catalog = test_catalog();
    let m = ModelMetrics::new();
    let price = [asc(SortMetric::Price)];
    assert_eq!(
        order_models("auto", &selection(&POOL, &price, &["beta"]), &catalog, &m),
        ["alpha/fast", "gamma/fast", "alpha/smart"]
    );
    assert_eq!(
        order_models(
            "auto",
            &selection(&POOL, &price, &["alpha/smart", "gamma/fast"]),
            &catalog,
            &m
        ),
        ["beta/cheap", "beta/fast", "alpha/fast"]
    );
    // A bare name in `ignore` drops that model at every provider.
    assert_eq!(
        order_models("auto", &selection(&POOL, &price, &["fast"]), &catalog, &m),
        ["beta/cheap", "alpha/smart"]
    );
    // A bare name in the pool stands for every provider serving it; duplicates collapse.
    assert_eq!(
        order_models(
            "auto",
            &selection(&["fast", "beta/fast", "cheap"], &price, &["gamma"]),
            &catalog,
            &m
        ),
        ["beta/cheap", "beta/fast", "alpha/fast"]
    );
    assert!(is_ignored("beta/fast", &strings(&["beta"])));
}

#[test]
fn bare_names_follow_provider_order_and_allow_fallbacks() {
    let catalog = test_catalog();
    let m = ModelMetrics::new();
    let bare = |sort: &[SortKey], ignore: &[&str], order: &[&str], allow: Option<bool>| {
        let mut s = selection(&[], sort, ignore);
        if !order.is_empty() || allow.is_some() {
            s.provider = Some(ProviderPreferences {
                order: strings(order),
                allow_fallbacks: allow,
            });
        }
        order_models("fast", &s, &catalog, &m)
    };
    // No preferences: by latency (all at the prior here), then id.
    assert_eq!(
        bare(&[], &[], &[], None),
        ["alpha/fast", "beta/fast", "gamma/fast"]
    );
    m.record("gamma/fast", Duration::from_millis(200), 10, Duration::ZERO);
    assert_eq!(
        bare(&[], &[], &[], None),
        ["gamma/fast", "alpha/fast", "beta/fast"]
    );
    // By sort when given.
    let price = [asc(SortMetric::Price)];
    assert_eq!(
        bare(&price, &[], &[], None),
        ["beta/fast", "alpha/fast", "gamma/fast"]
    );
    // provider.order first, in that order; the rest by sort after.
    assert_eq!(
        bare(&price, &[], &["gamma", "nobody"], None),
        ["gamma/fast", "beta/fast", "alpha/fast"]
    );
    assert_eq!(
        bare(&price, &[], &["alpha", "gamma"], Some(true)),
        ["alpha/fast", "gamma/fast", "beta/fast"]
    );
    // allow_fallbacks false: only the listed providers...
    assert_eq!(
        bare(&price, &[], &["alpha", "gamma"], Some(false)),
        ["alpha/fast", "gamma/fast"]
    );
    // ...or, with no order, only the best one.
    assert_eq!(bare(&price, &[], &[], Some(false)), ["beta/fast"]);
    // ignore applies whatever the order.
    assert_eq!(
        bare(&price, &["alpha"], &["alpha", "gamma"], Some(true)),
        ["gamma/fast", "beta/fast"]
    );
    // Fallback models come after every provider of the primary.
    let mut s = selection(&["alpha/smart", "cheap", "beta/fast"], &[], &[]);
    s.provider = Some(ProviderPreferences {
        order: strings(&["beta"]),
        allow_fallbacks: Some(false),
    });
    assert_eq!(
        order_models("fast", &s, &catalog, &m),
        ["beta/fast", "alpha/smart", "beta/cheap"]
    );
}

#[test]
fn qualified_models_come_first_then_fallbacks() {
    let catalog = test_catalog();
    let m = ModelMetrics::new();
    let fallbacks = ["alpha/smart", "beta/cheap", "alpha/fast", "gamma/fast"];
    // No sort: configured order; the primary is not repeated.
    assert_eq!(
        order_models("gamma/fast", &selection(&fallbacks, &[], &[]), &catalog, &m),
        ["gamma/fast", "alpha/smart", "beta/cheap", "alpha/fast"]
    );
    // With sort: the fallbacks are sorted, the primary stays first.
    assert_eq!(
        order_models(
            "alpha/smart",
            &selection(&fallbacks, &[asc(SortMetric::Price)], &[]),
            &catalog,
            &m
        ),
        ["alpha/smart", "beta/cheap", "alpha/fast", "gamma/fast"]
    );
    // ignore never drops the explicit primary, only the fallbacks.
    assert_eq!(
        order_models(
            "alpha/smart",
            &selection(&fallbacks, &[], &["alpha"]),
            &catalog,
            &m
        ),
        ["alpha/smart", "beta/cheap", "gamma/fast"]
    );
    // Models outside the catalog are fine without catalog sorts.
    assert_eq!(
        order_models("acme/x", &selection(&["acme/y"], &[], &[]), &catalog, &m),
        ["acme/x", "acme/y"]
    );
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

fn check(model_id: &str, s: &ModelSelection) -> Result<(), (String, SelectionErrorKind, String)> {
    validate_selection(model_id, s, &test_catalog())
        .map_err(|e| (e.path.to_string(), e.kind.clone(), e.to_string()))
}

#[test]
fn validate_selection_rejects_what_cannot_be_ordered() {
    use SortMetric::{Intelligence, Latency, Price, Throughput};
    assert!(
        check(
            "auto",
            &selection(&POOL, &[asc(Price), desc(Intelligence)], &[])
        )
        .is_ok()
    );

    let (path, kind, msg) = check("auto", &selection(&[], &[], &[])).unwrap_err();
    assert_eq!(path, "model_selection.models");
    assert_eq!(kind, SelectionErrorKind::EmptyPool);
    assert!(msg.contains("`auto` picks from model_selection.models, which is empty"));

    let (path, kind, msg) =
        check("auto", &selection(&POOL, &[], &["alpha", "beta", "gamma"])).unwrap_err();
    assert_eq!(path, "model_selection.ignore");
    assert_eq!(kind, SelectionErrorKind::PoolAllIgnored { pool: 5 });
    assert!(msg.contains("drops all 5 models"), "{msg}");

    let pool = ["alpha/fast", "gamma/noscore"];
    let (path, kind, msg) =
        check("auto", &selection(&pool, &[desc(Intelligence)], &[])).unwrap_err();
    assert_eq!(path, "model_selection.models[1]");
    assert_eq!(
        kind,
        SelectionErrorKind::MissingMetric {
            model: "gamma/noscore".into(),
            metric: Intelligence
        }
    );
    assert_eq!(
        msg,
        "model_selection.models[1]: gamma/noscore has no intelligence score \
         (`scores.intelligence`) in the model catalog, needed to sort by \
         SORT_METRIC_INTELLIGENCE; add it to its catalog entry or remove the sort key"
    );
    // Ignoring the model that lacks the score makes the config valid.
    assert!(
        check(
            "auto",
            &selection(&pool, &[desc(Intelligence)], &["gamma/noscore"])
        )
        .is_ok()
    );

    let (path, kind, msg) = check(
        "auto",
        &selection(&["alpha/fast", "acme/x"], &[asc(Price)], &[]),
    )
    .unwrap_err();
    assert_eq!(path, "model_selection.models[1]");
    assert!(
        matches!(kind, SelectionErrorKind::UnknownModel { ref model, metric: Price } if model == "acme/x")
    );
    assert!(
        msg.contains("acme/x is not in the model catalog, so it has no price"),
        "{msg}"
    );
    let (_, kind, _) = check(
        "auto",
        &selection(&["alpha/fast", "delta/noprice"], &[asc(Price)], &[]),
    )
    .unwrap_err();
    assert!(matches!(
        kind,
        SelectionErrorKind::MissingMetric { metric: Price, .. }
    ));

    // Latency and throughput need nothing from the catalog.
    let unknown = ["acme/x", "acme/y"];
    assert!(
        check(
            "auto",
            &selection(&unknown, &[asc(Latency), desc(Throughput)], &[])
        )
        .is_ok()
    );

    // A bare name needs a provider in the catalog...
    let (path, kind, msg) = check("nothing", &selection(&[], &[], &[])).unwrap_err();
    assert_eq!(path, "model_id");
    assert_eq!(
        kind,
        SelectionErrorKind::NoProvider {
            model: "nothing".into()
        }
    );
    assert!(
        msg.contains("no provider in the model catalog serves \"nothing\""),
        "{msg}"
    );
    // ...and one that ignore and provider preferences leave.
    let mut s = selection(&[], &[], &[]);
    s.provider = Some(ProviderPreferences {
        order: strings(&["delta"]),
        allow_fallbacks: Some(false),
    });
    let (path, kind, msg) = check("fast", &s).unwrap_err();
    assert_eq!(path, "model_selection.provider");
    assert!(matches!(kind, SelectionErrorKind::NoAllowedProvider { .. }));
    assert!(
        msg.contains("served by alpha/fast, beta/fast, gamma/fast"),
        "{msg}"
    );
    let (path, _, _) = check("fast", &selection(&[], &[], &["fast"])).unwrap_err();
    assert_eq!(path, "model_selection.ignore");
    // Providers of a bare name sorted by a catalog metric need it.
    assert!(check("fast", &selection(&[], &[desc(Intelligence)], &[])).is_ok());
    assert!(check("noscore", &selection(&[], &[desc(Intelligence)], &[])).is_ok());

    // An explicit primary is never compared; its fallbacks are.
    assert!(
        check(
            "acme/x",
            &selection(&["alpha/fast", "beta/cheap"], &[asc(Price)], &[])
        )
        .is_ok()
    );
    let (path, _, _) = check(
        "alpha/fast",
        &selection(&["beta/cheap", "acme/y"], &[asc(Price)], &[]),
    )
    .unwrap_err();
    assert_eq!(path, "model_selection.models[1]");
}

#[test]
fn selection_errors_lists_every_problem_once() {
    let s = selection(
        &["acme/x", "gamma/noscore", "acme/x"],
        &[asc(SortMetric::Price), desc(SortMetric::Coding)],
        &[],
    );
    let errors = selection_errors("auto", &s, &test_catalog());
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 3, "{shown:#?}");
    assert_eq!(errors[0].path.to_string(), "model_selection.models[0]");
    assert!(shown[1].contains("acme/x") && shown[1].contains("SORT_METRIC_CODING"));
    assert!(shown[2].contains("gamma/noscore") && shown[2].contains("SORT_METRIC_CODING"));
    // Paths are relative to the variant, ready to be prefixed.
    let variant = abroute::JsonPath::root()
        .key("defaultRoute")
        .key("variants")
        .index(0)
        .key("variant");
    assert_eq!(
        errors[0].path.prefixed(&variant).to_string(),
        "defaultRoute.variants[0].variant.model_selection.models[0]"
    );
    // The default catalog has no scores: sorting by intelligence is rejected there.
    let s = selection(
        &["openai/gpt-4o", "openai/gpt-4.1"],
        &[desc(SortMetric::Intelligence)],
        &[],
    );
    let e = validate_selection("auto", &s, &Catalog::default_openai()).unwrap_err();
    assert!(
        e.to_string()
            .contains("openai/gpt-4o has no intelligence score"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

#[test]
fn ewma_priors_updates_and_resets() {
    let m = ModelMetrics::new();
    let s = m.get("a/b");
    assert_eq!((s.latency_ms, s.throughput, s.reports), (1_000.0, 50.0, 0));
    assert!(s.latency_is_prior && s.throughput_is_prior && s.last_report_ms.is_none());

    let t = Duration::from_secs;
    m.record("a/b", Duration::from_millis(400), 200, t(1)); // 500 tok/s
    m.record("a/b", Duration::from_millis(900), 0, t(2)); // no throughput sample
    m.record("a/b", Duration::from_millis(400), 20, t(3)); // 50 tok/s
    let s = m.get("a/b");
    // 400 → 400 + 0.2 (900 − 400) = 500 → 500 + 0.2 (400 − 500) = 480.
    assert!((s.latency_ms - 480.0).abs() < 1e-9, "{s:?}");
    // 500 → 500 + 0.2 (50 − 500) = 410.
    assert!((s.throughput - 410.0).abs() < 1e-9, "{s:?}");
    assert_eq!(s.reports, 3);
    assert_eq!(s.last_report_ms, Some(3_000));
    assert!(!s.latency_is_prior && !s.throughput_is_prior);
    // A zero latency records latency 0 but no throughput.
    m.record("z/z", Duration::ZERO, 10, t(3));
    assert_eq!(m.latency_ms("z/z"), 0.0);
    assert_eq!(m.throughput("z/z"), 50.0);

    // forget_older_than resets models without recent reports.
    m.record("c/d", Duration::from_millis(100), 10, t(100));
    assert_eq!(m.forget_older_than(t(110), t(60)), 2);
    assert_eq!(m.latency_ms("a/b"), 1_000.0);
    assert_eq!(m.latency_ms("c/d"), 100.0);
    m.reset("c/d");
    assert_eq!(m.get("c/d").reports, 0);
    let names: Vec<String> = m.snapshot().into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["a/b", "c/d", "z/z"]);
}

#[test]
fn metrics_config_is_checked_and_used() {
    let config = MetricsConfig {
        smoothing: 1.0,
        latency_prior: Duration::from_millis(250),
        throughput_prior: 80.0,
        max_models: 2,
    };
    let m = ModelMetrics::with_config(config).unwrap();
    assert_eq!(m.latency_ms("x/y"), 250.0);
    assert_eq!(m.throughput("x/y"), 80.0);
    m.record("x/y", Duration::from_millis(100), 1, Duration::ZERO);
    m.record("x/y", Duration::from_millis(300), 1, Duration::ZERO);
    assert_eq!(m.latency_ms("x/y"), 300.0); // smoothing 1: the last report
    m.record("x/z", Duration::from_millis(100), 1, Duration::ZERO);
    m.record("x/w", Duration::from_millis(100), 1, Duration::ZERO); // past max_models: dropped
    assert_eq!(m.latency_ms("x/w"), 250.0);
    assert!(m.handle("x/w").is_none());
    let h = m.handle("x/z").unwrap();
    h.record(Duration::from_millis(50), 0, Duration::ZERO);
    assert_eq!(m.latency_ms("x/z"), 50.0);

    for smoothing in [0.0, -0.1, 1.5, f64::NAN] {
        let c = MetricsConfig {
            smoothing,
            ..MetricsConfig::default()
        };
        assert_eq!(
            ModelMetrics::with_config(c).unwrap_err(),
            MetricsConfigError::Smoothing
        );
    }
    let c = MetricsConfig {
        throughput_prior: 0.0,
        ..MetricsConfig::default()
    };
    assert_eq!(
        ModelMetrics::with_config(c).unwrap_err(),
        MetricsConfigError::ThroughputPrior
    );
}

#[test]
fn concurrent_reports_and_reads() {
    let m = Arc::new(ModelMetrics::new());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for i in 0..5_000u64 {
                    let model = format!("p/m{}", (i + t) % 4);
                    m.record(
                        &model,
                        Duration::from_millis(250),
                        50,
                        Duration::from_millis(i),
                    );
                    let l = m.latency_ms(&model);
                    assert!(l == 250.0 || l == 1_000.0, "{l}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total: u64 = m.snapshot().iter().map(|(_, s)| s.reports).sum();
    assert_eq!(total, 40_000);
    for (_, s) in m.snapshot() {
        assert_eq!(s.latency_ms, 250.0);
        assert_eq!(s.throughput, 200.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Property: ordering is a deterministic permutation of the filtered pool
// ---------------------------------------------------------------------------------------------

const UNIVERSE: [&str; 10] = [
    "alpha/fast",
    "beta/fast",
    "gamma/fast",
    "alpha/smart",
    "beta/cheap",
    "gamma/noscore",
    "delta/noprice",
    "zeta/unknown",
    "fast",
    "cheap",
];
const IGNORES: [&str; 7] = [
    "alpha",
    "beta",
    "gamma/fast",
    "fast",
    "zeta/unknown",
    "cheap",
    "x",
];

fn sort_key() -> impl Strategy<Value = SortKey> {
    (0..SortMetric::ALL.len(), any::<bool>()).prop_map(|(m, d)| SortKey {
        metric: SortMetric::ALL[m],
        direction: if d {
            SortDirection::Descending
        } else {
            SortDirection::Ascending
        },
    })
}

proptest! {
    #[test]
    fn auto_order_is_a_deterministic_permutation_of_the_filtered_pool(
        pool in prop::collection::vec(0..UNIVERSE.len(), 0..14),
        ignore in prop::collection::vec(0..IGNORES.len(), 0..3),
        sort in prop::collection::vec(sort_key(), 0..4),
        latencies in prop::collection::vec((0..UNIVERSE.len(), 1u64..5), 0..8),
    ) {
        let catalog = test_catalog();
        let metrics = ModelMetrics::new();
        for (i, ms) in latencies {
            // Coarse values, so that ties happen.
            metrics.record(UNIVERSE[i], Duration::from_millis(ms * 100), ms * 10, Duration::ZERO);
        }
        let s = ModelSelection {
            models: pool.iter().map(|&i| UNIVERSE[i].to_owned()).collect(),
            sort: sort.clone(),
            ignore: ignore.iter().map(|&i| IGNORES[i].to_owned()).collect(),
            provider: None,
        };
        // The filtered pool, computed independently: bare names stand for their providers.
        let mut expected = BTreeSet::new();
        for m in &s.models {
            let ids: Vec<String> = if m.contains('/') {
                vec![m.clone()]
            } else {
                catalog.by_name(m).map(|i| i.id.clone()).collect()
            };
            for id in ids {
                if !is_ignored(&id, &s.ignore) {
                    expected.insert(id);
                }
            }
        }
        let order = order_models("auto", &s, &catalog, &metrics);
        let as_set: BTreeSet<String> = order.iter().cloned().collect();
        prop_assert_eq!(as_set.len(), order.len(), "duplicates in {:?}", order);
        prop_assert_eq!(&as_set, &expected);
        prop_assert_eq!(&order_models("auto", &s, &catalog, &metrics), &order);
        let effective = if sort.is_empty() { vec![asc(SortMetric::Latency)] } else { sort.clone() };
        assert_sorted(&order, &effective, &catalog, &metrics);
        // Validation accepts exactly the configs whose order it can compute as asked.
        let valid = validate_selection("auto", &s, &catalog).is_ok();
        let has_value = |metric: SortMetric, id: &str| {
            let info = catalog.get(id);
            match metric {
                SortMetric::Latency | SortMetric::Throughput => true,
                SortMetric::Price => info.is_some_and(|i| i.price.is_some()),
                SortMetric::Intelligence => info.is_some_and(|i| i.scores.intelligence.is_some()),
                SortMetric::Math => info.is_some_and(|i| i.scores.math.is_some()),
                SortMetric::Coding => info.is_some_and(|i| i.scores.coding.is_some()),
            }
        };
        let comparable = expected.len() < 2
            || effective.iter().all(|k| expected.iter().all(|id| has_value(k.metric, id)));
        prop_assert_eq!(valid, !expected.is_empty() && comparable);
    }

    #[test]
    fn qualified_and_bare_orders_never_repeat_a_model(
        primary in 0..UNIVERSE.len(),
        models in prop::collection::vec(0..UNIVERSE.len(), 0..8),
        ignore in prop::collection::vec(0..IGNORES.len(), 0..3),
        sort in prop::collection::vec(sort_key(), 0..3),
    ) {
        let catalog = test_catalog();
        let metrics = ModelMetrics::new();
        let s = ModelSelection {
            models: models.iter().map(|&i| UNIVERSE[i].to_owned()).collect(),
            sort,
            ignore: ignore.iter().map(|&i| IGNORES[i].to_owned()).collect(),
            provider: None,
        };
        let order = order_models(UNIVERSE[primary], &s, &catalog, &metrics);
        let as_set: BTreeSet<&String> = order.iter().collect();
        prop_assert_eq!(as_set.len(), order.len());
        if UNIVERSE[primary].contains('/') {
            prop_assert_eq!(order[0].as_str(), UNIVERSE[primary]);
        }
        for m in order.iter().skip(1) {
            prop_assert!(!is_ignored(m, &s.ignore) || m.as_str() == UNIVERSE[primary]);
        }
        prop_assert_eq!(&order_models(UNIVERSE[primary], &s, &catalog, &metrics), &order);
    }
}

#[test]
fn uses_metrics_tells_static_orders_apart() {
    use abroute::select::uses_metrics;
    let catalog = test_catalog();
    let price = [asc(SortMetric::Price)];
    assert!(!uses_metrics(
        "auto",
        &selection(&POOL, &price, &[]),
        &catalog
    ));
    assert!(uses_metrics("auto", &selection(&POOL, &[], &[]), &catalog));
    assert!(uses_metrics(
        "auto",
        &selection(
            &POOL,
            &[asc(SortMetric::Price), asc(SortMetric::Latency)],
            &[]
        ),
        &catalog
    ));
    // One candidate is never compared.
    assert!(!uses_metrics(
        "auto",
        &selection(&["alpha/fast"], &[], &[]),
        &catalog
    ));
    // Fallbacks without `sort` keep their order; a bare name's providers default to latency.
    assert!(!uses_metrics(
        "alpha/fast",
        &selection(&POOL, &[], &[]),
        &catalog
    ));
    assert!(uses_metrics("fast", &selection(&[], &[], &[]), &catalog));
    let mut s = selection(&[], &[], &[]);
    s.provider = Some(ProviderPreferences {
        order: strings(&["beta", "alpha"]),
        allow_fallbacks: Some(false),
    });
    assert!(!uses_metrics("fast", &s, &catalog));
}
