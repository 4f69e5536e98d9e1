//! Validation: whether a well-formed [`RouterConfig`] makes sense as a router.
//!
//! Reading ([`RouterConfig::from_json`]) checks shape and types. Validation checks meaning and
//! reports every problem at once, each with the JSON path of the value at fault and a sentence a
//! user understands: the name, empty or duplicate ids, routes without variants or with all
//! weights 0, weight sums past the limit, conditional routes without a condition or with one that
//! is not valid CEL, message templates that are not messages, a router with no route at all, and
//! the documented size limits ([`limits`](crate::limits), re-exported here).
//! [`RouterConfig::compile`] runs it first, so nothing invalid is ever compiled.

use rustc_hash::FxHashMap as HashMap;

use crate::condition::Condition;
use crate::config::{Route, RouterConfig};
use crate::error::{ConfigError, ConfigErrorKind as K, ConfigErrors, JsonPath};
use serde_json::Value;

pub use crate::limits::{
    MAX_CONDITION_BYTES, MAX_ID_BYTES, MAX_ROUTES, MAX_VARIANTS, MAX_WEIGHT_SUM,
};

/// How strict validation is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValidationOptions {
    /// Require every route's weights to add up to exactly 100, as the hosted Inworld Router does.
    /// Off by default: abroute normalizes weights by their sum.
    pub require_sum_100: bool,
}

impl ValidationOptions {
    /// Inworld's rules: weights sum to exactly 100 in every route.
    pub fn strict() -> ValidationOptions {
        ValidationOptions {
            require_sum_100: true,
        }
    }
}

/// True when `name` matches `^[a-z0-9][a-z0-9-]*$`.
pub fn is_valid_router_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

/// Checks `config`, returning every problem found.
///
/// # Errors
///
/// All problems at once, in document order, each with its path.
pub fn validate(config: &RouterConfig, options: &ValidationOptions) -> Result<(), ConfigErrors> {
    validate_and_compile_conditions(config, options).map(drop)
}

/// [`validate`], keeping what it had to compile to check the conditions: one compiled
/// condition per conditional route, in order (for [`RouterConfig::compile`]).
pub(crate) fn validate_and_compile_conditions(
    config: &RouterConfig,
    options: &ValidationOptions,
) -> Result<Vec<Condition>, ConfigErrors> {
    let mut conditions = Vec::with_capacity(config.routes.len());
    let mut errors = Vec::new();
    let root = JsonPath::root();
    let name_path = root.key("name");
    if config.name.len() > MAX_ID_BYTES {
        errors.push(ConfigError::new(
            name_path,
            K::TooLong {
                what: "the router name",
                len: config.name.len(),
                max: MAX_ID_BYTES,
            },
        ));
    } else if !is_valid_router_name(&config.name) {
        errors.push(ConfigError::new(
            name_path,
            K::InvalidName {
                name: config.name.clone(),
            },
        ));
    }
    if config.routes.len() > MAX_ROUTES {
        errors.push(ConfigError::new(
            root.key("routes"),
            K::TooMany {
                what: "conditional routes",
                count: config.routes.len(),
                max: MAX_ROUTES,
            },
        ));
    }
    if config.routes.is_empty() && config.default_route.is_none() {
        errors.push(ConfigError::new(root.clone(), K::NoRoutes));
    }

    let mut route_ids: HashMap<&str, JsonPath> = HashMap::default();
    for (i, (r, path)) in config.routes_with_paths().enumerate() {
        route(r, &path, options, &mut route_ids, &mut errors);
        // A conditional route's condition comes right after its route, in document order.
        if let Some(item) = config.routes.get(i) {
            let path = root.key("routes").index(i);
            conditions.extend(compile_condition(
                item.condition.as_ref(),
                path,
                &mut errors,
            ));
        }
    }
    if let Some(Value::Object(defaults)) = &config.defaults {
        for name in crate::config::MESSAGE_TEMPLATES {
            if let Some(t) = defaults.get(name) {
                message_templates(t, &root.key("defaults").key(name), &mut errors);
            }
        }
    }
    match ConfigErrors::from_vec(errors) {
        None => Ok(conditions),
        Some(e) => Err(e),
    }
}

/// Checks and compiles the condition of the conditional route at `path` (`routes[i]`).
fn compile_condition(
    condition: Option<&crate::config::Condition>,
    path: JsonPath,
    errors: &mut Vec<ConfigError>,
) -> Option<Condition> {
    let Some(c) = condition else {
        errors.push(ConfigError::new(path, K::MissingCondition));
        return None;
    };
    let cpath = path.key("condition").key("cel_expression");
    if c.cel_expression.trim().is_empty() {
        errors.push(ConfigError::new(cpath, K::MissingCondition));
    } else if c.cel_expression.len() > MAX_CONDITION_BYTES {
        errors.push(ConfigError::new(
            cpath,
            K::TooLong {
                what: "cel_expression",
                len: c.cel_expression.len(),
                max: MAX_CONDITION_BYTES,
            },
        ));
    } else {
        match Condition::compile(&c.cel_expression) {
            Ok(compiled) => return Some(compiled),
            Err(e) => errors.push(ConfigError::new(
                cpath,
                K::InvalidCondition {
                    message: e.to_string(),
                },
            )),
        }
    }
    None
}

/// Checks one id. `path` is only called on error: building a `JsonPath` allocates, and a
/// route may have a million variants.
fn id(
    value: &str,
    what: &'static str,
    path: impl FnOnce() -> JsonPath,
    errors: &mut Vec<ConfigError>,
) -> bool {
    if value.is_empty() {
        errors.push(ConfigError::new(path(), K::Empty { what }));
        false
    } else if value.len() > MAX_ID_BYTES {
        errors.push(ConfigError::new(
            path(),
            K::TooLong {
                what,
                len: value.len(),
                max: MAX_ID_BYTES,
            },
        ));
        false
    } else {
        true
    }
}

fn route<'c>(
    route: &'c Route,
    path: &JsonPath,
    options: &ValidationOptions,
    route_ids: &mut HashMap<&'c str, JsonPath>,
    errors: &mut Vec<ConfigError>,
) {
    let id_path = path.key("route_id");
    if id(&route.route_id, "route_id", || id_path.clone(), errors) {
        if let Some(first) = route_ids.get(route.route_id.as_str()) {
            errors.push(ConfigError::new(
                id_path,
                K::DuplicateRouteId {
                    id: route.route_id.clone(),
                    first: first.clone(),
                },
            ));
        } else {
            route_ids.insert(&route.route_id, id_path);
        }
    }
    if let Some(salt) = &route.salt {
        id(salt, "salt", || path.key("salt"), errors);
    }
    let vpath = path.key("variants");
    if route.variants.is_empty() {
        errors.push(ConfigError::new(vpath, K::NoVariants));
        return;
    }
    if route.variants.len() > MAX_VARIANTS {
        errors.push(ConfigError::new(
            vpath,
            K::TooMany {
                what: "variants",
                count: route.variants.len(),
                max: MAX_VARIANTS,
            },
        ));
        return;
    }
    // Paths are built only for errors. Duplicates are found by sorting (hash, index) pairs,
    // which for a million variants costs a fraction of a hash map's scattered inserts; equal
    // hashes are confirmed by comparing the ids.
    let field = |i: usize, name: &str| vpath.index(i).key("variant").key(name);
    let first_use = duplicate_variant_ids(route);
    for (i, wv) in route.variants.iter().enumerate() {
        if id(
            &wv.variant.variant_id,
            "variant_id",
            || field(i, "variant_id"),
            errors,
        ) && let Some(&first) = first_use.get(&i)
        {
            errors.push(ConfigError::new(
                field(i, "variant_id"),
                K::DuplicateVariantId {
                    id: wv.variant.variant_id.clone(),
                    first: field(first, "variant_id"),
                },
            ));
        }
        id(
            &wv.variant.model_id,
            "model_id",
            || field(i, "model_id"),
            errors,
        );
        if let Some(t) = &wv.variant.message_templates {
            message_templates(t, &field(i, "message_templates"), errors);
        }
    }
    // At most 1,000,000 weights below 2^32: the sum fits in u64 with room to spare.
    let sum: u64 = route.variants.iter().map(|v| u64::from(v.weight)).sum();
    if sum == 0 {
        errors.push(ConfigError::new(vpath, K::AllWeightsZero));
    } else if sum > MAX_WEIGHT_SUM {
        errors.push(ConfigError::new(
            vpath,
            K::WeightSumTooLarge {
                sum,
                max: MAX_WEIGHT_SUM,
            },
        ));
    } else if options.require_sum_100 && sum != 100 {
        errors.push(ConfigError::new(vpath, K::SumNot100 { sum }));
    }
}

/// Checks a `message_templates` value: what an HTTP adapter can put in front of a request's
/// messages (read by [`MessageTemplate::parse_list`](crate::config::MessageTemplate::parse_list),
/// the one reading of templates, which compiling uses too).
fn message_templates(value: &Value, path: &JsonPath, errors: &mut Vec<ConfigError>) {
    if let Err(problems) = crate::config::message_templates(value, path) {
        errors.extend(problems);
    }
}

/// For each variant whose `variant_id` repeats an earlier one in the route: its index, mapped
/// to the index of the id's first use. Usually empty.
fn duplicate_variant_ids(route: &Route) -> HashMap<usize, usize> {
    use std::hash::BuildHasher;
    let hasher = rustc_hash::FxBuildHasher;
    let mut keyed: Vec<(u64, u32)> = route
        .variants
        .iter()
        .enumerate()
        .map(|(i, wv)| (hasher.hash_one(wv.variant.variant_id.as_str()), i as u32))
        .collect();
    keyed.sort_unstable();
    let mut out = HashMap::default();
    let id = |i: u32| route.variants[i as usize].variant.variant_id.as_str();
    for run in keyed
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|run| run.len() > 1)
    {
        // Within a run the indices are ascending: the first of each distinct id is its first use.
        for (k, &(_, i)) in run.iter().enumerate() {
            if let Some(&(_, first)) = run[..k].iter().find(|&&(_, j)| id(j) == id(i)) {
                out.insert(i as usize, first as usize);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "0", "compare-frontier-models", "a-", "9x"] {
            assert!(is_valid_router_name(ok), "{ok}");
        }
        for bad in ["", "-a", "A", "a_b", "a b", "é", "routers/a"] {
            assert!(!is_valid_router_name(bad), "{bad}");
        }
    }
}
