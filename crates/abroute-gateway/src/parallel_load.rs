//! Loading many routers on every core: the start's `replace_all`, compiled on several threads.
//!
//! The core starts no threads; it offers [`Engine::stage`] (validate, compile and prepare one
//! router, no lock) and [`Engine::replace_all_staged`] (publish them all as one snapshot). This
//! module splits the routers into one contiguous chunk per available core, stages each chunk
//! on its own scoped thread (`std::thread::scope`: the threads end before it returns), and
//! publishes the result, so the engine ends up exactly as `Engine::replace_all` would leave it,
//! with the same errors, in index order (`[i].path`). Blocking: call it off the async threads.

use std::num::NonZeroUsize;

use abroute::{ConfigError, ConfigErrorKind, ConfigErrors, Engine, JsonPath, RouterConfig};

/// Below this many routers, one thread: spawning costs more than it saves.
const MIN_PER_THREAD: usize = 256;

/// [`Engine::replace_all`] with the compiling spread over the available cores.
///
/// # Errors
///
/// Every problem of every router and every name given twice, each prefixed with the router's
/// index; the engine is then unchanged.
pub fn replace_all(engine: &Engine, configs: Vec<RouterConfig>) -> Result<u64, ConfigErrors> {
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(configs.len() / MIN_PER_THREAD)
        .max(1);
    if threads == 1 {
        return engine.replace_all(configs);
    }
    let names: Vec<String> = configs.iter().map(|c| c.name.clone()).collect();
    let chunk = configs.len().div_ceil(threads);
    let mut configs = configs;
    let mut chunks: Vec<Vec<RouterConfig>> = Vec::with_capacity(threads);
    while configs.len() > chunk {
        let rest = configs.split_off(chunk);
        chunks.push(std::mem::replace(&mut configs, rest));
    }
    chunks.push(configs);
    let staged = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .enumerate()
            .map(|(k, part)| {
                s.spawn(move || {
                    part.into_iter()
                        .enumerate()
                        .map(|(j, c)| (k * chunk + j, engine.stage(c)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect::<Vec<_>>()
    });
    let mut errors: Vec<(usize, ConfigError)> = Vec::new();
    let mut ready = Vec::with_capacity(staged.len());
    for (i, result) in staged {
        match result {
            Ok(router) => ready.push(router),
            Err(e) => {
                let prefix = JsonPath::root().index(i);
                errors.extend(e.prefixed(&prefix).into_iter().map(|e| (i, e)));
            }
        }
    }
    if errors.is_empty() {
        return engine.replace_all_staged(ready);
    }
    // Invalid routers: report names given twice too, as `replace_all` does, in index order.
    let mut seen = std::collections::HashSet::new();
    for (i, name) in names.iter().enumerate() {
        if !seen.insert(name.as_str()) {
            let kind = ConfigErrorKind::DuplicateRouterName { name: name.clone() };
            errors.push((
                i,
                ConfigError::new(JsonPath::root().index(i).key("name"), kind),
            ));
        }
    }
    errors.sort_by_key(|&(i, _)| i);
    let errors: Vec<ConfigError> = errors.into_iter().map(|(_, e)| e).collect();
    match ConfigErrors::from_vec(errors) {
        Some(errors) => Err(errors),
        None => engine.replace_all_staged(ready),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(name: &str, weight: u32) -> RouterConfig {
        RouterConfig::from_json(&format!(
            r#"{{"name":"{name}","defaultRoute":{{"route_id":"d","variants":[{{"variant":{{"variant_id":"v","model_id":"openai/gpt-4.1"}},"weight":{weight}}}]}}}}"#
        ))
        .expect("parses")
    }

    /// Many routers load as `replace_all` loads them; errors are the same, in the same order.
    #[test]
    fn loads_and_fails_as_replace_all_does() {
        let good: Vec<RouterConfig> = (0..2_000).map(|i| router(&format!("r{i}"), 1)).collect();
        let engine = Engine::new();
        assert_eq!(replace_all(&engine, good.clone()), Ok(1));
        assert_eq!(engine.load().len(), 2_000);

        let mut bad = good;
        bad[1_500] = router("r1500", 0);
        bad[1_700] = router("r3", 1);
        let reference = Engine::new().replace_all(bad.clone()).expect_err("invalid");
        let errors = replace_all(&engine, bad).expect_err("invalid");
        assert_eq!(errors.to_string(), reference.to_string());
        assert_eq!(engine.version(), 1, "the engine is unchanged");
    }
}
