//! The token counters (`abroute_input_tokens_total`, `abroute_output_tokens_total`), shared by
//! the request log ([`telemetry`](crate::telemetry)) and the stream observer
//! ([`experiment`](crate::experiment)), with their handles cached per label set.

use std::collections::HashMap;
use std::sync::OnceLock;

use abroute::DecisionRecord;
use abroute_http::Usage;

/// The label names of the token counters, in the order [`token_counters`] takes the values.
const TOKEN_LABELS: [&str; 5] = ["router", "route", "variant", "served_variant", "model"];

/// At most this many label sets keep cached counter handles; beyond, each request registers
/// its counters again (correct, only slower).
const MAX_CACHED_TOKEN_LABELS: usize = 10_000;

/// The input and output token counters for these label values. Registering a counter clones
/// its labels and looks the key up in the recorder; a request would pay that twice. The
/// handles are cached by label set instead: one hash and an uncontended read lock. (A handle
/// taken before [`prometheus`] installs the recorder would count nowhere; the gateway installs
/// it at start, before any request.)
fn token_counters(labels: [&str; 5]) -> [metrics::Counter; 2] {
    use std::hash::BuildHasher;
    type Cache = std::sync::RwLock<HashMap<u64, ([String; 5], [metrics::Counter; 2])>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let register = || {
        let owned = labels.map(str::to_owned);
        ["abroute_input_tokens_total", "abroute_output_tokens_total"].map(|name| {
            let pairs: Vec<metrics::Label> = TOKEN_LABELS
                .iter()
                .zip(&owned)
                .map(|(k, v)| metrics::Label::new(*k, v.clone()))
                .collect();
            metrics::counter!(name, pairs)
        })
    };
    let cache = CACHE.get_or_init(Cache::default);
    let key = rustc_hash::FxBuildHasher.hash_one(labels);
    let read = cache
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match read.get(&key) {
        Some((stored, counters)) if stored.iter().zip(labels).all(|(a, b)| a == b) => {
            return counters.clone();
        }
        // Another label set with the same hash: registered each time, never cached.
        Some(_) => return register(),
        None => {}
    }
    drop(read);
    let counters = register();
    let mut write = cache
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if write.len() < MAX_CACHED_TOKEN_LABELS {
        write
            .entry(key)
            .or_insert_with(|| (labels.map(str::to_owned), counters.clone()));
    }
    counters
}

/// Adds an answer's tokens to the token counters of its arm.
pub fn count_tokens(record: &DecisionRecord, usage: Usage) {
    if usage.input_tokens.is_none() && usage.output_tokens.is_none() {
        return;
    }
    let model = record
        .served_model_id
        .as_deref()
        .or_else(|| record.attempts.last().map(|a| a.model.as_str()))
        .unwrap_or(&record.assigned_model_id);
    let labels = [
        record.router.as_str(),
        record.route_id.as_str(),
        record.assigned_variant_id.as_str(),
        record.served_variant_id.as_deref().unwrap_or(""),
        model,
    ];
    let [input, output] = token_counters(labels);
    input.increment(usage.input_tokens.unwrap_or(0));
    output.increment(usage.output_tokens.unwrap_or(0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_counters_are_cached_per_label_set_and_add_up() {
        // The recorder first, as the gateway installs it at start: handles taken before it
        // would count nowhere.
        let render = || crate::telemetry::prometheus().render();
        render();
        let a = ["tok-test", "r", "v", "v", "m"];
        let b = ["tok-test", "r", "v", "w", "m"];
        for _ in 0..3 {
            let [input, output] = token_counters(a);
            input.increment(10);
            output.increment(2);
        }
        token_counters(b)[1].increment(5);
        let text = render();
        let line = |name: &str, served: &str| {
            format!(
                "{name}{{router=\"tok-test\",route=\"r\",variant=\"v\",served_variant=\"{served}\",model=\"m\"}}"
            )
        };
        assert!(
            text.contains(&format!("{} 30", line("abroute_input_tokens_total", "v"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 6", line("abroute_output_tokens_total", "v"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 5", line("abroute_output_tokens_total", "w"))),
            "{text}"
        );
    }
}
