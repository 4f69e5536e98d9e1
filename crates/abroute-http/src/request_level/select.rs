//! What a request-level call asks for, read and checked: `extra_body.sort` and
//! `extra_body.ignore` parsed, and the ordered candidates computed with the core's selection
//! code ([`abroute::select`]), the same that orders an `auto` variant's models.

use std::fmt::Write as _;

use abroute::Catalog;
use abroute::config::{ModelSelection, SortDirection, SortKey, SortMetric};
use abroute::plan::MAX_ATTEMPTS;
use abroute::select::{
    AUTO, DEFAULT_SORT, ModelMetrics, SelectionErrorKind, is_ignored, order_models,
    selection_errors,
};
use serde_json::Value;

use crate::error::ApiError;

/// The sort criteria a request may name, in Inworld's spelling, with the direction each ranks
/// in (cheapest, fastest first; highest throughput and scores first).
const CRITERIA: [(&str, SortMetric, SortDirection); 6] = [
    ("price", SortMetric::Price, SortDirection::Ascending),
    ("latency", SortMetric::Latency, SortDirection::Ascending),
    (
        "throughput",
        SortMetric::Throughput,
        SortDirection::Descending,
    ),
    (
        "intelligence",
        SortMetric::Intelligence,
        SortDirection::Descending,
    ),
    ("math", SortMetric::Math, SortDirection::Descending),
    ("coding", SortMetric::Coding, SortDirection::Descending),
];

/// `extra_body.sort`: a criterion or a list of them (`"price"`, `["price", "latency"]`),
/// the first ranking and the next breaking ties. The router config's spelling
/// (`SORT_METRIC_PRICE`) is accepted too.
///
/// # Errors
///
/// 400 naming `extra_body.sort` for anything else, an unknown criterion among them.
pub(crate) fn parse_sort(raw: Option<&[u8]>) -> Result<Vec<SortKey>, ApiError> {
    const PARAM: &str = "extra_body.sort";
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let shape = || {
        ApiError::invalid_param(
            PARAM,
            "extra_body.sort must be a criterion or a list of criteria among price, latency, \
             throughput, intelligence, math, coding",
        )
    };
    let items = match serde_json::from_slice::<Value>(raw).map_err(|_| shape())? {
        Value::String(s) => vec![s],
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(shape()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(shape()),
    };
    let mut keys = Vec::with_capacity(items.len());
    for item in &items {
        let lower = item.to_ascii_lowercase();
        let name = lower.strip_prefix("sort_metric_").unwrap_or(&lower);
        let Some(&(_, metric, direction)) = CRITERIA.iter().find(|(n, _, _)| *n == name) else {
            return Err(ApiError::invalid_param(
                PARAM,
                format!(
                    "extra_body.sort: unknown criterion {item:?}; expected one of price, \
                     latency, throughput, intelligence, math, coding"
                ),
            ));
        };
        if !keys.iter().any(|k: &SortKey| k.metric == metric) {
            keys.push(SortKey { metric, direction });
        }
    }
    Ok(keys)
}

/// `extra_body.ignore`: model ids, bare model names or providers to leave out.
///
/// # Errors
///
/// 400 naming `extra_body.ignore` for anything but a list of strings.
pub(crate) fn parse_ignore(raw: Option<&[u8]>) -> Result<Vec<String>, ApiError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    serde_json::from_slice::<Vec<String>>(raw).map_err(|_| {
        ApiError::invalid_param(
            "extra_body.ignore",
            "extra_body.ignore must be a list of model ids or providers (strings)",
        )
    })
}

/// What a request-level call asked for: `extra_body.models`, `sort` and `ignore`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked<'r> {
    /// `extra_body.models`: the fallbacks of a direct call, the pool of `auto`.
    pub(crate) requested: &'r [String],
    /// `extra_body.sort`, parsed.
    pub(crate) sort: &'r [SortKey],
    /// `extra_body.ignore`.
    pub(crate) ignore: &'r [String],
}

/// The models a request-level call tries, in order, and why the first was chosen.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidates {
    /// At most [`MAX_ATTEMPTS`], none twice.
    pub(crate) models: Vec<String>,
    /// For `auto`: the choice in a sentence.
    pub(crate) reasoning: Option<String>,
}

/// The candidates of a direct call to `model`: the model itself (never ignored, as an
/// explicit `model_id` is not), then the request's `models` without the ignored ones, in
/// order, or sorted by `sort` when it is given.
///
/// # Errors
///
/// 400 naming `extra_body.sort` when a sort by a catalog value compares a model the catalog
/// has no value for.
pub(crate) fn direct(
    model: &str,
    asked: &Asked<'_>,
    catalog: &Catalog,
    metrics: &ModelMetrics,
) -> Result<Candidates, ApiError> {
    let Asked {
        requested,
        sort,
        ignore,
    } = *asked;
    let fallbacks: Vec<String> = requested
        .iter()
        .filter(|m| !is_ignored(m, ignore))
        .cloned()
        .collect();
    let fallbacks = if sort.is_empty() || fallbacks.len() < 2 {
        fallbacks
    } else {
        let selection = ModelSelection {
            models: fallbacks,
            sort: sort.to_vec(),
            ..ModelSelection::default()
        };
        check(&selection, catalog)?;
        order_models(AUTO, &selection, catalog, metrics)
    };
    let mut models = vec![model.to_owned()];
    for m in fallbacks {
        if models.len() >= MAX_ATTEMPTS {
            break;
        }
        if !models.contains(&m) {
            models.push(m);
        }
    }
    Ok(Candidates {
        models,
        reasoning: None,
    })
}

/// The candidates of `"model": "auto"`: the pool (the request's `models`, or else every
/// catalog model), without the ignored ones, ranked by `sort` (default: latency, fastest
/// first) with the core's `auto` ordering.
///
/// # Errors
///
/// 400 naming `extra_body.models` for a pool with nothing the catalog knows,
/// `extra_body.ignore` when it leaves no candidate, `extra_body.sort` when a sort by a
/// catalog value compares a model the catalog has no value for.
pub(crate) fn auto(
    asked: &Asked<'_>,
    catalog: &Catalog,
    metrics: &ModelMetrics,
) -> Result<Candidates, ApiError> {
    let Asked {
        requested,
        sort,
        ignore,
    } = *asked;
    let pool: Vec<String> = if requested.is_empty() {
        catalog.iter().map(|m| m.id.clone()).collect()
    } else {
        let known = |m: &String| catalog.contains(m) || catalog.by_name(m).next().is_some();
        if !requested.iter().any(known) {
            return Err(ApiError::invalid_param(
                "extra_body.models",
                format!(
                    "\"model\": \"auto\" picks from extra_body.models, and the catalog knows \
                     none of {}",
                    requested.join(", ")
                ),
            ));
        }
        requested.iter().filter(|m| known(m)).cloned().collect()
    };
    if pool.is_empty() {
        return Err(ApiError::invalid_param(
            "extra_body.models",
            "\"model\": \"auto\" needs a pool: the catalog is empty, list extra_body.models",
        ));
    }
    let selection = ModelSelection {
        models: pool,
        sort: sort.to_vec(),
        ignore: ignore.to_vec(),
        provider: None,
    };
    check(&selection, catalog)?;
    let mut models = order_models(AUTO, &selection, catalog, metrics);
    models.truncate(MAX_ATTEMPTS);
    let reasoning = models
        .first()
        .map(|first| reasoning(first, models.len(), sort, catalog, metrics));
    Ok(Candidates { models, reasoning })
}

/// The core's selection errors of an `auto` pool as 400s naming the request's fields.
fn check(selection: &ModelSelection, catalog: &Catalog) -> Result<(), ApiError> {
    let Some(e) = selection_errors(AUTO, selection, catalog)
        .into_iter()
        .next()
    else {
        return Ok(());
    };
    Err(match e.kind {
        SelectionErrorKind::EmptyPool => {
            ApiError::invalid_param("extra_body.models", "extra_body.models is empty")
        }
        SelectionErrorKind::PoolAllIgnored { pool } => ApiError::invalid_param(
            "extra_body.ignore",
            format!("extra_body.ignore leaves none of the {pool} candidate model(s)"),
        ),
        kind => ApiError::invalid_param("extra_body.sort", format!("extra_body.sort: {kind}")),
    })
}

/// Why `first` leads: its value of each sort key, from the catalog or the observed metrics.
fn reasoning(
    first: &str,
    candidates: usize,
    sort: &[SortKey],
    catalog: &Catalog,
    metrics: &ModelMetrics,
) -> String {
    let keys: &[SortKey] = if sort.is_empty() { &DEFAULT_SORT } else { sort };
    let mut s = format!("auto chose {first} of {candidates} candidate(s), ranked by ");
    for (i, key) in keys.iter().enumerate() {
        let name = CRITERIA
            .iter()
            .find(|(_, m, _)| *m == key.metric)
            .map_or("?", |(n, _, _)| *n);
        if i > 0 {
            s.push_str(", then ");
        }
        s.push_str(name);
    }
    s.push_str(": ");
    let info = catalog.get(first);
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = match key.metric {
            SortMetric::Price => match info.and_then(|m| m.blended_price_usd()) {
                Some(p) => write!(s, "blended price ${p:.4} per million tokens"),
                None => write!(s, "price unknown"),
            },
            SortMetric::Latency => {
                write!(s, "observed latency {:.0} ms", metrics.latency_ms(first))
            }
            SortMetric::Throughput => write!(
                s,
                "observed throughput {:.1} tokens/s",
                metrics.throughput(first)
            ),
            SortMetric::Intelligence | SortMetric::Math | SortMetric::Coding => {
                let scores = info.map(|m| &m.scores);
                let v = scores.and_then(|sc| match key.metric {
                    SortMetric::Intelligence => sc.intelligence,
                    SortMetric::Math => sc.math,
                    _ => sc.coding,
                });
                match v {
                    Some(v) => write!(s, "score {v}"),
                    None => write!(s, "score unknown"),
                }
            }
        };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn sort_criteria() {
        let keys = parse_sort(Some(br#"["price", "LATENCY", "SORT_METRIC_CODING"]"#)).unwrap();
        let metrics: Vec<SortMetric> = keys.iter().map(|k| k.metric).collect();
        assert_eq!(
            metrics,
            [SortMetric::Price, SortMetric::Latency, SortMetric::Coding]
        );
        assert_eq!(keys[2].direction, SortDirection::Descending);
        assert_eq!(parse_sort(Some(br#""price""#)).unwrap().len(), 1);
        let e = parse_sort(Some(br#"["price", "speed"]"#)).unwrap_err();
        assert_eq!(e.param(), Some("extra_body.sort"));
        assert!(e.message().contains("\"speed\""), "{}", e.message());
        let e = parse_sort(Some(b"7")).unwrap_err();
        assert_eq!(e.param(), Some("extra_body.sort"));
    }

    #[test]
    fn ignore_list() {
        assert_eq!(
            parse_ignore(Some(br#"["openai"]"#)).unwrap(),
            strings(&["openai"])
        );
        let e = parse_ignore(Some(br#""openai""#)).unwrap_err();
        assert_eq!(e.param(), Some("extra_body.ignore"));
    }

    #[test]
    fn auto_by_price_and_its_errors() {
        let catalog = Catalog::default_openai();
        let metrics = ModelMetrics::new();
        let price = parse_sort(Some(br#"["price"]"#)).unwrap();
        let pool = strings(&["openai/gpt-4.1", "openai/gpt-4o-mini", "openai/gpt-5-nano"]);
        let asked = |requested, sort, ignore| Asked {
            requested,
            sort,
            ignore,
        };
        let c = auto(&asked(&pool, &price, &[]), &catalog, &metrics).unwrap();
        assert_eq!(
            c.models,
            ["openai/gpt-5-nano", "openai/gpt-4o-mini", "openai/gpt-4.1"]
        );
        let why = c.reasoning.unwrap();
        assert!(
            why.starts_with("auto chose openai/gpt-5-nano of 3 candidate(s), ranked by price"),
            "{why}"
        );
        let nope = strings(&["nope/x"]);
        let e = auto(&asked(&nope, &price, &[]), &catalog, &metrics).unwrap_err();
        assert_eq!(e.param(), Some("extra_body.models"));
        let openai = strings(&["openai"]);
        let e = auto(&asked(&pool, &price, &openai), &catalog, &metrics).unwrap_err();
        assert_eq!(e.param(), Some("extra_body.ignore"));
        // Without a pool, the whole catalog, at most 16.
        let c = auto(&asked(&[], &price, &[]), &catalog, &metrics).unwrap();
        assert!(!c.models.is_empty() && c.models.len() <= MAX_ATTEMPTS);
    }

    #[test]
    fn direct_keeps_the_model_first_and_the_order_unless_sorted() {
        let catalog = Catalog::default_openai();
        let metrics = ModelMetrics::new();
        let requested = strings(&["openai/gpt-4.1", "anthropic/x", "openai/gpt-5-nano"]);
        let anthropic = strings(&["anthropic"]);
        let asked = Asked {
            requested: &requested,
            sort: &[],
            ignore: &anthropic,
        };
        let c = direct("openai/gpt-4o", &asked, &catalog, &metrics).unwrap();
        assert_eq!(
            c.models,
            ["openai/gpt-4o", "openai/gpt-4.1", "openai/gpt-5-nano"]
        );
        // Ignoring the model's own provider leaves the model (it was named explicitly).
        let openai = strings(&["openai"]);
        let asked = Asked {
            requested: &[],
            sort: &[],
            ignore: &openai,
        };
        let c = direct("openai/gpt-4o", &asked, &catalog, &metrics).unwrap();
        assert_eq!(c.models, ["openai/gpt-4o"]);
        // Sorted by price when asked: the cheaper fallback first.
        let price = parse_sort(Some(br#"["price"]"#)).unwrap();
        let requested = strings(&["openai/gpt-4.1", "openai/gpt-5-nano"]);
        let asked = Asked {
            requested: &requested,
            sort: &price,
            ignore: &[],
        };
        let c = direct("openai/gpt-4o", &asked, &catalog, &metrics).unwrap();
        assert_eq!(
            c.models,
            ["openai/gpt-4o", "openai/gpt-5-nano", "openai/gpt-4.1"]
        );
    }
}
