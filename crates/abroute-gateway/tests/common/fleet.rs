//! What the fleet tests (in-process replicas and `abroute serve` processes) share: a router of
//! two variants whose first model a PATCH changes, and the figures they print.

use std::time::Duration;

use serde_json::Value;

/// Router `name`: variant `a` on `model`, variant `b` on `openai/other`, half each.
pub fn router(name: &str, model: &str) -> String {
    format!(
        r#"{{ "name": "{name}", "defaultRoute": {{ "route_id": "default", "variants": [
        {{ "variant": {{ "variant_id": "a", "model_id": "{model}" }}, "weight": 50 }},
        {{ "variant": {{ "variant_id": "b", "model_id": "openai/other" }}, "weight": 50 }} ] }} }}"#
    )
}

/// The body of a PATCH with `update_mask=defaultRoute` moving variant `a` to `model`.
pub fn default_route(model: &str) -> String {
    format!(
        r#"{{ "defaultRoute": {{ "route_id": "default", "variants": [
        {{ "variant": {{ "variant_id": "a", "model_id": "{model}" }}, "weight": 50 }},
        {{ "variant": {{ "variant_id": "b", "model_id": "openai/other" }}, "weight": 50 }} ] }} }}"#
    )
}

/// The model of variant `a` of a router's JSON.
pub fn model_of(r: &Value) -> String {
    r["defaultRoute"]["variants"][0]["variant"]["model_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The `p` quantile (0 to 1) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Sorts the propagation lags and write latencies of a run and says their p50, p99 and max.
pub fn propagation_summary(what: &str, lags: &mut [Duration], writes: &mut [Duration]) -> String {
    lags.sort();
    writes.sort();
    format!(
        "{what}: propagation over {} PATCHes: p50 {:?}, p99 {:?}, max {:?}; the PATCH (store write and own apply): p50 {:?}, p99 {:?}",
        lags.len(),
        percentile(lags, 0.5),
        percentile(lags, 0.99),
        lags[lags.len() - 1],
        percentile(writes, 0.5),
        percentile(writes, 0.99),
    )
}
