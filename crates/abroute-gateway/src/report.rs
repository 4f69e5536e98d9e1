//! `abroute report`: a running gateway's experiment readout of one router
//! (`GET /router/v1/routers/{name}/experiment`), as a table with bars or as JSON.
//!
//! The readout is one replica's: a fleet combines the replicas' figures from Prometheus
//! instead (docs/experiments.md has the PromQL).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Reads router `name`'s readout from the gateway at `base` (`http://host:port`), with an API
/// key that may read routers, if the gateway checks keys.
pub async fn fetch(base: &str, name: &str, key: Option<&str>) -> Result<Value, String> {
    let base = base.trim_end_matches('/');
    let url = format!("{base}/router/v1/routers/{name}/experiment");
    let mut req = http::Request::get(&url);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("{url}: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = tokio::time::timeout(std::time::Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| format!("{url}: no answer within 30 s"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "{url}: {status}, not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    if !status.is_success() {
        let message = value["error"]["message"].as_str().unwrap_or("");
        return Err(format!("{url}: {status}: {message}"));
    }
    Ok(value)
}

fn bar(share: f64, width: usize) -> String {
    let n = (share.clamp(0.0, 1.0) * width as f64).round() as usize;
    format!("{}{}", "█".repeat(n), "·".repeat(width - n))
}

fn pct(v: &Value) -> String {
    match v
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
    {
        Some(a) if a.len() == 3 => format!(
            "{:.1}% [{:.1}, {:.1}]",
            a[0] * 100.0,
            a[1] * 100.0,
            a[2] * 100.0
        ),
        _ => "-".to_owned(),
    }
}

fn mean(v: &Value, digits: usize) -> String {
    match v
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
    {
        Some(a) if a.len() == 3 && a[2].is_finite() => {
            format!("{:.digits$} ±{:.digits$}", a[0], (a[2] - a[0]))
        }
        Some(a) if !a.is_empty() => format!("{:.digits$}", a[0]),
        _ => "-".to_owned(),
    }
}

fn ms(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |x| format!("{x:.0}"))
}

/// The readout as a terminal table: per route and version, the SRM line, then a row per arm
/// with assigned and served shares (bars) beside the weight.
pub fn render(readout: &Value) -> String {
    let mut out = String::new();
    let router = readout["router"].as_str().unwrap_or("?");
    for route in readout["routes"].as_array().into_iter().flatten() {
        let srm = &route["srm"];
        let p = srm["p_value"]
            .as_f64()
            .map_or_else(|| "-".to_owned(), |p| format!("{p:.4}"));
        let verdict = if srm["alarm"].as_bool() == Some(true) {
            "  SAMPLE RATIO MISMATCH: read nothing else until it is explained"
        } else {
            ""
        };
        out.push_str(&format!(
            "{router} / {} (version {})  SRM p = {p} over {} assignments, {} excluded{verdict}\n",
            route["route"].as_str().unwrap_or("?"),
            route["version"],
            srm["assignments"],
            srm["excluded"],
        ));
        out.push_str(&format!(
            "  {:<12} {:>6} {:>8} {:<22} {:>8} {:<22} {:>22} {:>22} {:>14} {:>14} {:>14} {:>18}\n",
            "variant",
            "weight",
            "assigned",
            "",
            "served",
            "",
            "failover",
            "errors",
            "p50/p95 ms",
            "ttft p50/p95",
            "tokens/req",
            "cost $/req"
        ));
        for arm in route["arms"].as_array().into_iter().flatten() {
            let share = |k: &str| arm[k].as_f64().unwrap_or(0.0);
            out.push_str(&format!(
                "  {:<12} {:>5.1}% {:>8} {} {:>8} {} {:>22} {:>22} {:>14} {:>14} {:>14} {:>18}\n",
                arm["variant"].as_str().unwrap_or("?"),
                share("weight_share") * 100.0,
                arm["assigned"],
                bar(share("assigned_share"), 22),
                arm["served"],
                bar(share("served_share"), 22),
                pct(&arm["failover_rate"]),
                pct(&arm["error_rate"]),
                format!(
                    "{}/{}",
                    ms(&arm["latency_ms"]["p50"]),
                    ms(&arm["latency_ms"]["p95"])
                ),
                format!(
                    "{}/{}",
                    ms(&arm["ttft_ms"]["p50"]),
                    ms(&arm["ttft_ms"]["p95"])
                ),
                mean(&arm["tokens_per_request"], 0),
                mean(&arm["cost_usd_per_request"], 6),
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_shows_each_arm_with_its_bars_and_the_srm_verdict() {
        let r = json!({ "router": "r", "routes": [{ "route": "default", "version": 3,
            "srm": { "p_value": 0.0001, "assignments": 2000, "excluded": 4, "alarm": true },
            "arms": [
                { "variant": "a", "weight": 50, "weight_share": 0.5, "assigned": 1100,
                  "assigned_share": 0.55, "served": 1000, "served_share": 0.5,
                  "failover_rate": [0.01, 0.005, 0.02], "error_rate": [0.0, 0.0, 0.003],
                  "latency_ms": { "p50": 120.0, "p95": 800.0 }, "ttft_ms": {},
                  "tokens_per_request": [300.0, 290.0, 310.0], "cost_usd_per_request": null },
                { "variant": "b", "weight": 50, "weight_share": 0.5, "assigned": 900,
                  "assigned_share": 0.45, "served": 1000, "served_share": 0.5 } ] }] });
        let t = render(&r);
        assert!(
            t.contains("SRM p = 0.0001 over 2000 assignments, 4 excluded"),
            "{t}"
        );
        assert!(t.contains("SAMPLE RATIO MISMATCH"), "{t}");
        assert!(
            t.contains(&bar(0.55, 22)) && t.contains(&bar(0.45, 22)),
            "{t}"
        );
        assert!(t.contains("1.0% [0.5, 2.0]"), "{t}");
        assert!(t.contains("120/800"), "{t}");
        assert!(t.contains("300 ±10"), "{t}");
        assert_eq!(t.lines().count(), 5, "{t}");
    }
}
