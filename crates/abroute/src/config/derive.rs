//! Ids a router may leave out, derived the same way every time.
//!
//! Inworld's own pages create routers with a `displayName` and no `name`, routes with no
//! `route_id` and variants with no `variant_id`. Reading fills each one in before the strict
//! reader runs, so everything after (validation, compile, the store, the management API's
//! answers) sees explicit ids, and a router created this way is stored and returned with them:
//! later edits that reorder routes or variants keep every id, and so every sticky salt.
//!
//! The rules (docs/config.md, "Routers without ids"):
//!
//! - `name`: the `displayName` folded to ASCII (Unicode NFKD, combining marks dropped),
//!   lowercased, every run of characters other than `a-z` and `0-9` replaced by one `-`, `-`
//!   trimmed from both ends, cut to [`MAX_ID_BYTES`]. `"User-Aware"` gives `user-aware`, `"Café
//!   Ünïcode: v2!"` gives `cafe-unicode-v2`. With no `displayName`, or one without a letter or
//!   digit, nothing is derived and reading reports the missing name.
//! - a route's `route_id`: `default` for the default route, `route-N` for the N-th conditional
//!   route (from 1);
//! - a variant's `variant_id`: its `model_id` (`openai/gpt-5.2`), or `variant-N` for the N-th
//!   variant (from 1) when the model id is missing too;
//! - an id already taken in its scope (route ids in the router, variant ids in the route),
//!   explicitly or by an earlier derived id, gets the first free suffix `-2`, `-3`, ...
//!   Explicit ids are never changed; two equal explicit ids stay an error of validation.

use std::collections::HashSet;

use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::error::JsonPath;
use crate::limits::MAX_ID_BYTES;

/// An id that a router left out and reading filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedId {
    /// Where the id now is: `name`, `routes[0].route.route_id`,
    /// `defaultRoute.variants[1].variant.variant_id`.
    pub path: JsonPath,
    /// The id derived.
    pub value: String,
}

/// `value` with every missing id filled in, and the ids derived; `None` when nothing is missing
/// (or `value` is not shaped like a router: the strict reader then says what is wrong).
pub(super) fn fill(value: &Value) -> Option<(Value, Vec<DerivedId>)> {
    let Value::Object(router) = value else {
        return None;
    };
    if !needs_ids(router) {
        return None;
    }
    let mut router = router.clone();
    let mut derived = Vec::new();
    let root = JsonPath::root();
    if absent(&router, "name", None)
        && let Some(name) = get(&router, "displayName", Some("display_name"))
            .and_then(Value::as_str)
            .and_then(name_from_display)
    {
        derived.push(DerivedId {
            path: root.key("name"),
            value: name.clone(),
        });
        router.insert("name".into(), Value::String(name));
    }
    let mut routes: Vec<(&mut Map<String, Value>, JsonPath, String)> = Vec::new();
    let (conditional, default) = split_routes(&mut router);
    if let Some(items) = conditional {
        for (i, item) in items.iter_mut().enumerate() {
            if let Some(Value::Object(route)) =
                item.as_object_mut().and_then(|o| o.get_mut("route"))
            {
                let path = root.key("routes").index(i).key("route");
                routes.push((route, path, format!("route-{}", i + 1)));
            }
        }
    }
    if let Some((key, route)) = default {
        routes.push((route, root.key(key), "default".to_owned()));
    }
    let mut taken: HashSet<String> = routes
        .iter()
        .filter_map(|(r, _, _)| explicit(r, "route_id", "routeId"))
        .collect();
    for (route, path, base) in routes {
        if absent(route, "route_id", Some("routeId")) {
            let id = free(&mut taken, base);
            derived.push(DerivedId {
                path: path.key("route_id"),
                value: id.clone(),
            });
            route.insert("route_id".into(), Value::String(id));
        }
        fill_variants(route, &path, &mut derived);
    }
    Some((Value::Object(router), derived))
}

/// The conditional routes' array and the default route's object (with the key it is under).
#[allow(clippy::type_complexity)]
fn split_routes(
    router: &mut Map<String, Value>,
) -> (
    Option<&mut Vec<Value>>,
    Option<(&'static str, &mut Map<String, Value>)>,
) {
    let mut conditional = None;
    let mut default = None;
    for (key, v) in router.iter_mut() {
        match (key.as_str(), v) {
            ("routes", Value::Array(items)) => conditional = Some(items),
            ("defaultRoute", Value::Object(r)) => default = Some(("defaultRoute", r)),
            ("default_route", Value::Object(r)) if default.is_none() => {
                default = Some(("default_route", r));
            }
            _ => {}
        }
    }
    (conditional, default)
}

fn fill_variants(route: &mut Map<String, Value>, path: &JsonPath, derived: &mut Vec<DerivedId>) {
    let Some(Value::Array(items)) = route.get_mut("variants") else {
        return;
    };
    let mut variants: Vec<(usize, &mut Map<String, Value>)> = items
        .iter_mut()
        .enumerate()
        .filter_map(
            |(i, item)| match item.as_object_mut()?.get_mut("variant")? {
                Value::Object(v) => Some((i, v)),
                _ => None,
            },
        )
        .collect();
    if variants
        .iter()
        .all(|(_, v)| !absent(v, "variant_id", Some("variantId")))
    {
        return;
    }
    let mut taken: HashSet<String> = variants
        .iter()
        .filter_map(|(_, v)| explicit(v, "variant_id", "variantId"))
        .collect();
    for (i, variant) in &mut variants {
        if !absent(variant, "variant_id", Some("variantId")) {
            continue;
        }
        let base = match get(variant, "model_id", Some("modelId")).and_then(Value::as_str) {
            Some(model) if !model.is_empty() => model.to_owned(),
            _ => format!("variant-{}", *i + 1),
        };
        let id = free(&mut taken, base);
        derived.push(DerivedId {
            path: path
                .key("variants")
                .index(*i)
                .key("variant")
                .key("variant_id"),
            value: id.clone(),
        });
        variant.insert("variant_id".into(), Value::String(id));
    }
}

/// Whether any id is missing: the common case (every id given) costs one walk, no copy.
fn needs_ids(router: &Map<String, Value>) -> bool {
    let route_needs = |r: &Value| {
        let Value::Object(r) = r else { return false };
        absent(r, "route_id", Some("routeId"))
            || r.get("variants")
                .and_then(Value::as_array)
                .is_some_and(|vs| {
                    vs.iter().any(|wv| {
                        wv.get("variant")
                            .and_then(Value::as_object)
                            .is_some_and(|v| absent(v, "variant_id", Some("variantId")))
                    })
                })
    };
    absent(router, "name", None)
        || router
            .get("routes")
            .and_then(Value::as_array)
            .is_some_and(|items| items.iter().filter_map(|i| i.get("route")).any(route_needs))
        || get(router, "defaultRoute", Some("default_route")).is_some_and(route_needs)
}

fn get<'m>(map: &'m Map<String, Value>, key: &str, alt: Option<&str>) -> Option<&'m Value> {
    map.get(key)
        .or_else(|| alt.and_then(|a| map.get(a)))
        .filter(|v| !v.is_null())
}

fn absent(map: &Map<String, Value>, key: &str, alt: Option<&str>) -> bool {
    get(map, key, alt).is_none()
}

fn explicit(map: &Map<String, Value>, key: &str, alt: &str) -> Option<String> {
    get(map, key, Some(alt))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// `base`, or `base-2`, `base-3`, ... : the first not in `taken`, which it joins.
fn free(taken: &mut HashSet<String>, base: String) -> String {
    let id = if taken.contains(&base) {
        (2u64..)
            .map(|n| format!("{base}-{n}"))
            .find(|id| !taken.contains(id))
            .unwrap_or(base)
    } else {
        base
    };
    taken.insert(id.clone());
    id
}

/// The router name derived from a display name, if it has a letter or digit: the display name
/// folded to ASCII (Unicode NFKD, combining marks dropped), lowercased, each run of characters
/// other than `a-z` and `0-9` one `-`, trimmed, cut to 256 bytes (docs/config.md, "Routers
/// without ids").
///
/// ```
/// use abroute::name_from_display;
///
/// assert_eq!(name_from_display("User-Aware").as_deref(), Some("user-aware"));
/// assert_eq!(name_from_display("Crème brûlée!").as_deref(), Some("creme-brulee"));
/// assert_eq!(name_from_display("日本語"), None);
/// ```
pub fn name_from_display(display: &str) -> Option<String> {
    let mut out = String::with_capacity(display.len());
    let mut dash = false;
    for c in display.nfkd().filter(|c| !is_combining_mark(*c)) {
        for c in c.to_lowercase() {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                if dash && !out.is_empty() {
                    out.push('-');
                }
                dash = false;
                out.push(c);
            } else {
                dash = true;
            }
        }
        if out.len() >= MAX_ID_BYTES {
            break;
        }
    }
    out.truncate(MAX_ID_BYTES);
    let trimmed = out.trim_end_matches('-');
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        let cases = [
            ("User-Aware", Some("user-aware")),
            ("Compare frontier models", Some("compare-frontier-models")),
            ("  --Hello,  World!!  ", Some("hello-world")),
            ("Café Ünïcode: v2!", Some("cafe-unicode-v2")),
            ("ｆｕｌｌｗｉｄｔｈ ＡＢＣ", Some("fullwidth-abc")),
            ("GPT-5.2 vs Claude 4.6", Some("gpt-5-2-vs-claude-4-6")),
            ("日本語", None),
            ("日本語 router", Some("router")),
            ("!!!", None),
            ("", None),
            ("a_b__c", Some("a-b-c")),
        ];
        for (display, want) in cases {
            assert_eq!(name_from_display(display).as_deref(), want, "{display:?}");
        }
    }

    #[test]
    fn long_display_names_are_cut_to_the_id_limit() {
        let display = "ab ".repeat(400);
        let name = name_from_display(&display).unwrap();
        assert!(name.len() <= MAX_ID_BYTES);
        assert!(!name.ends_with('-'));
    }

    #[test]
    fn suffixes_skip_taken_ids() {
        let mut taken: HashSet<String> = ["a".into(), "a-2".into()].into_iter().collect();
        assert_eq!(free(&mut taken, "a".into()), "a-3");
        assert_eq!(free(&mut taken, "a".into()), "a-4");
        assert_eq!(free(&mut taken, "b".into()), "b");
        assert_eq!(free(&mut taken, "b".into()), "b-2");
    }
}
