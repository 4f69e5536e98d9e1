//! Reading a [`RouterConfig`] out of a JSON value, collecting every problem with its path.
//!
//! serde's derive stops at the first problem and does not know the path. This reader walks a
//! `serde_json::Value` instead: it accepts both protobuf spellings of every field, reports each
//! unknown or missing field, wrong type and malformed weight, and keeps going.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::{
    Condition, ConditionalRoute, Failover, ModelSelection, ProviderPreferences, Route,
    RouterConfig, SortDirection, SortKey, SortMetric, Variant, WeightedVariant,
};
use crate::error::{ConfigError, ConfigErrorKind as K, ConfigErrors, JsonPath};

/// A field: its written (canonical) spelling and the other protobuf spelling, if any.
type Field = (&'static str, Option<&'static str>);

const NAME: Field = ("name", None);
const DISPLAY_NAME: Field = ("displayName", Some("display_name"));
const ROUTES: Field = ("routes", None);
const DEFAULT_ROUTE: Field = ("defaultRoute", Some("default_route"));
const DEFAULTS: Field = ("defaults", None);
/// Keys of `defaults` (and of a `text_generation_config`) that have two protobuf spellings.
const DEFAULTS_SPELLINGS: [(&str, &str); 11] = [
    ("text_generation_config", "textGenerationConfig"),
    ("message_templates", "messageTemplates"),
    ("web_search", "webSearch"),
    ("max_tokens", "maxTokens"),
    ("top_p", "topP"),
    ("frequency_penalty", "frequencyPenalty"),
    ("presence_penalty", "presencePenalty"),
    ("repetition_penalty", "repetitionPenalty"),
    ("stop_sequences", "stopSequences"),
    ("logit_bias", "logitBias"),
    ("optimize_prompt", "optimizePrompt"),
];
const ROUTER_FIELDS: &[Field] = &[NAME, DISPLAY_NAME, ROUTES, DEFAULT_ROUTE, DEFAULTS];

const ROUTE: Field = ("route", None);
const CONDITION: Field = ("condition", None);
const CONDITIONAL_FIELDS: &[Field] = &[ROUTE, CONDITION];

const CEL_EXPRESSION: Field = ("cel_expression", Some("celExpression"));
const CONDITION_FIELDS: &[Field] = &[CEL_EXPRESSION];

const ROUTE_ID: Field = ("route_id", Some("routeId"));
const VARIANTS: Field = ("variants", None);
const SALT: Field = ("salt", None);
const FAILOVER: Field = ("failover", None);
const ROUTE_FIELDS: &[Field] = &[ROUTE_ID, VARIANTS, SALT, FAILOVER];

const ACROSS_VARIANTS: Field = ("across_variants", Some("acrossVariants"));
const FAILOVER_FIELDS: &[Field] = &[ACROSS_VARIANTS];

const VARIANT: Field = ("variant", None);
const WEIGHT: Field = ("weight", None);
const WEIGHTED_FIELDS: &[Field] = &[VARIANT, WEIGHT];

const VARIANT_ID: Field = ("variant_id", Some("variantId"));
const MODEL_ID: Field = ("model_id", Some("modelId"));
const MODEL_SELECTION: Field = ("model_selection", Some("modelSelection"));
const TEXT_GENERATION_CONFIG: Field = ("text_generation_config", Some("textGenerationConfig"));
const MESSAGE_TEMPLATES: Field = ("message_templates", Some("messageTemplates"));
const WEB_SEARCH: Field = ("web_search", Some("webSearch"));
const COMPRESSION: Field = ("compression", None);
const VARIANT_FIELDS: &[Field] = &[
    VARIANT_ID,
    MODEL_ID,
    MODEL_SELECTION,
    TEXT_GENERATION_CONFIG,
    MESSAGE_TEMPLATES,
    WEB_SEARCH,
    COMPRESSION,
];

const MODELS: Field = ("models", None);
const SORT: Field = ("sort", None);
const IGNORE: Field = ("ignore", None);
const PROVIDER: Field = ("provider", None);
const SELECTION_FIELDS: &[Field] = &[MODELS, SORT, IGNORE, PROVIDER];

const METRIC: Field = ("metric", None);
const DIRECTION: Field = ("direction", None);
const SORT_FIELDS: &[Field] = &[METRIC, DIRECTION];

const ORDER: Field = ("order", None);
const ALLOW_FALLBACKS: Field = ("allow_fallbacks", Some("allowFallbacks"));
const PROVIDER_FIELDS: &[Field] = &[ORDER, ALLOW_FALLBACKS];

/// The canonical spellings of a field list, for "expected one of" messages.
macro_rules! expected {
    ($($f:expr),* $(,)?) => { &[$($f.0),*] };
}
const ROUTER_EXPECTED: &[&str] = expected!(NAME, DISPLAY_NAME, ROUTES, DEFAULT_ROUTE, DEFAULTS);
const CONDITIONAL_EXPECTED: &[&str] = expected!(ROUTE, CONDITION);
const CONDITION_EXPECTED: &[&str] = expected!(CEL_EXPRESSION);
const ROUTE_EXPECTED: &[&str] = expected!(ROUTE_ID, VARIANTS, SALT, FAILOVER);
const FAILOVER_EXPECTED: &[&str] = expected!(ACROSS_VARIANTS);
const WEIGHTED_EXPECTED: &[&str] = expected!(VARIANT, WEIGHT);
const VARIANT_EXPECTED: &[&str] = expected!(
    VARIANT_ID,
    MODEL_ID,
    MODEL_SELECTION,
    TEXT_GENERATION_CONFIG,
    MESSAGE_TEMPLATES,
    WEB_SEARCH,
    COMPRESSION,
);
const SELECTION_EXPECTED: &[&str] = expected!(MODELS, SORT, IGNORE, PROVIDER);
const SORT_EXPECTED: &[&str] = expected!(METRIC, DIRECTION);
const PROVIDER_EXPECTED: &[&str] = expected!(ORDER, ALLOW_FALLBACKS);

/// Formats a syntax error exactly as [`ConfigError`]'s `Display` does for
/// [`K::Syntax`]: `path: message at line L column C`, without the path at the root.
pub(super) struct SyntaxDisplay<'a, E>(pub &'a JsonPath, pub &'a E);

impl<E: fmt::Display> fmt::Display for SyntaxDisplay<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_root() {
            write!(f, "{}", self.1)
        } else {
            write!(f, "{}: {}", self.0, self.1)
        }
    }
}

fn syntax_error(path: JsonPath, e: &serde_json::Error) -> ConfigError {
    let (message, line, column) = crate::error::split_position(e);
    ConfigError::new(
        path,
        K::Syntax {
            message,
            line,
            column,
        },
    )
}

/// A JSON value read like `serde_json::Value`, except that an object repeating a key is an
/// error. `Value` silently keeps the last of two equal keys, so `{"weight": 34, "weight": 1}`
/// would read as weight 1 with no word about the 34.
pub(super) struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(d).map(|v| v.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// `RouterConfig::from_json`: the same steps, and so the same messages, as
/// `serde_json::from_str::<RouterConfig>`, with the errors kept structured, and the ids derived.
pub(super) fn from_str(text: &str) -> Result<(RouterConfig, Vec<super::DerivedId>), ConfigErrors> {
    let mut de = serde_json::Deserializer::from_str(text);
    let StrictValue(value) = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = JsonPath::from(e.path());
        ConfigErrors::from(syntax_error(path, e.inner()))
    })?;
    let config = router_derived(&value)?;
    de.end()
        .map_err(|e| ConfigErrors::from(syntax_error(JsonPath::root(), &e)))?;
    Ok(config)
}

/// Reads a router from a JSON value.
pub(super) fn router(value: &Value) -> Result<RouterConfig, ConfigErrors> {
    router_derived(value).map(|(config, _)| config)
}

/// Reads a router from a JSON value, its missing ids derived first ([`super::derive`]); gives
/// the ids derived too.
pub(super) fn router_derived(
    value: &Value,
) -> Result<(RouterConfig, Vec<super::DerivedId>), ConfigErrors> {
    match super::derive::fill(value) {
        Some((filled, derived)) => strict_router(&filled).map(|c| (c, derived)),
        None => strict_router(value).map(|c| (c, Vec::new())),
    }
}

/// Reads a router from a JSON value as written: every id must be there.
fn strict_router(value: &Value) -> Result<RouterConfig, ConfigErrors> {
    let mut r = Reader { errors: Vec::new() };
    let config = r.router(value, &JsonPath::root());
    match (ConfigErrors::from_vec(r.errors), config) {
        (None, Some(config)) => Ok(config),
        (Some(errors), _) => Err(errors),
        // A value that produced nothing always records why; keep a defensive message anyway.
        (None, None) => Err(ConfigErrors::from(ConfigError::new(
            JsonPath::root(),
            K::WrongType {
                expected: "a router object",
                found: kind_of(value),
            },
        ))),
    }
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Walks the value, collecting errors. Each method returns `None` when the value it reads is
/// unusable (its errors are recorded) so the caller can keep reading the siblings.
struct Reader {
    errors: Vec<ConfigError>,
}

/// One JSON object being read: which of its members were taken, for the unknown-field check.
struct Obj<'v> {
    map: &'v Map<String, Value>,
    path: JsonPath,
}

impl Reader {
    fn err(&mut self, path: JsonPath, kind: K) {
        self.errors.push(ConfigError::new(path, kind));
    }

    fn object<'v>(
        &mut self,
        v: &'v Value,
        path: &JsonPath,
        what: &'static str,
        fields: &[Field],
        expected: &'static [&'static str],
    ) -> Option<Obj<'v>> {
        let Value::Object(map) = v else {
            self.err(
                path.clone(),
                K::WrongType {
                    expected: what,
                    found: kind_of(v),
                },
            );
            return None;
        };
        for key in map.keys() {
            let known = fields
                .iter()
                .any(|(canon, alt)| key == canon || Some(key.as_str()) == *alt);
            if !known {
                self.err(
                    path.clone(),
                    K::UnknownField {
                        field: key.clone(),
                        expected,
                    },
                );
            }
        }
        Some(Obj {
            map,
            path: path.clone(),
        })
    }

    /// The value of `field` in either spelling, and its path. `null` counts as absent.
    fn get<'v>(&mut self, obj: &Obj<'v>, field: Field) -> Option<(&'v Value, JsonPath)> {
        let (canon, alt) = field;
        let a = obj.map.get(canon).map(|v| (v, canon));
        let b = alt.and_then(|alt| obj.map.get(alt).map(|v| (v, alt)));
        let (v, key) = match (a, b) {
            (Some(a), Some(_)) => {
                self.err(
                    obj.path.clone(),
                    K::BothSpellings {
                        first: canon,
                        second: alt.unwrap_or(canon),
                    },
                );
                a
            }
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => return None,
        };
        if v.is_null() {
            return None;
        }
        Some((v, obj.path.key(key)))
    }

    /// An optional member read with `f`: `Some(None)` when absent (or `null`), `None` when it is
    /// present but unusable (its errors are recorded). The caller applies `?` only when building
    /// its result, so an unusable member does not stop the reading of its siblings.
    fn optional<T>(
        &mut self,
        obj: &Obj<'_>,
        field: Field,
        f: impl FnOnce(&mut Self, &Value, &JsonPath) -> Option<T>,
    ) -> Option<Option<T>> {
        match self.get(obj, field) {
            Some((v, p)) => f(self, v, &p).map(Some),
            None => Some(None),
        }
    }

    fn required<'v>(&mut self, obj: &Obj<'v>, field: Field) -> Option<(&'v Value, JsonPath)> {
        let got = self.get(obj, field);
        if got.is_none() {
            self.err(obj.path.clone(), K::MissingField { field: field.0 });
        }
        got
    }

    fn string(&mut self, v: &Value, path: JsonPath) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.err(
                    path,
                    K::WrongType {
                        expected: "a string",
                        found: kind_of(other),
                    },
                );
                None
            }
        }
    }

    /// An optional boolean: `Some(None)` when absent, `None` (with an error) when not a boolean.
    fn opt_bool(&mut self, obj: &Obj<'_>, field: Field) -> Option<Option<bool>> {
        match self.get(obj, field) {
            Some((Value::Bool(b), _)) => Some(Some(*b)),
            Some((other, p)) => {
                self.err(
                    p,
                    K::WrongType {
                        expected: "a boolean",
                        found: kind_of(other),
                    },
                );
                None
            }
            None => Some(None),
        }
    }

    fn opt_string(&mut self, obj: &Obj<'_>, field: Field) -> Option<String> {
        let (v, path) = self.get(obj, field)?;
        self.string(v, path)
    }

    fn req_string(&mut self, obj: &Obj<'_>, field: Field) -> Option<String> {
        let (v, path) = self.required(obj, field)?;
        self.string(v, path)
    }

    fn array<'v>(&mut self, v: &'v Value, path: &JsonPath) -> Option<&'v [Value]> {
        match v {
            Value::Array(items) => Some(items),
            other => {
                self.err(
                    path.clone(),
                    K::WrongType {
                        expected: "an array",
                        found: kind_of(other),
                    },
                );
                None
            }
        }
    }

    /// Reads every element with `f`; `None` if any element (or the array) was unusable.
    fn list<T>(
        &mut self,
        obj: &Obj<'_>,
        field: Field,
        mut f: impl FnMut(&mut Self, &Value, JsonPath) -> Option<T>,
    ) -> Option<Vec<T>> {
        let Some((v, path)) = self.get(obj, field) else {
            return Some(Vec::new());
        };
        let items = self.array(v, &path)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match f(self, item, path.index(i)) {
                Some(x) => out.push(x),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn strings(&mut self, obj: &Obj<'_>, field: Field) -> Option<Vec<String>> {
        self.list(obj, field, |r, v, p| r.string(v, p))
    }

    /// A passthrough member, kept as given (any JSON but `null`).
    fn raw(&mut self, obj: &Obj<'_>, field: Field) -> Option<Value> {
        self.get(obj, field).map(|(v, _)| v.clone())
    }

    /// A passthrough member that must be an object (`defaults`, `text_generation_config`),
    /// kept as given. Inside it, a key in both protobuf spellings (`text_generation_config`
    /// and `textGenerationConfig`, ...) is refused as everywhere else.
    fn raw_object(&mut self, obj: &Obj<'_>, field: Field, what: &'static str) -> Option<Value> {
        let (v, path) = self.get(obj, field)?;
        let Value::Object(map) = v else {
            self.err(
                path,
                K::WrongType {
                    expected: what,
                    found: kind_of(v),
                },
            );
            return None;
        };
        for (first, second) in DEFAULTS_SPELLINGS {
            if map.contains_key(first) && map.contains_key(second) {
                self.err(path.clone(), K::BothSpellings { first, second });
            }
        }
        Some(v.clone())
    }

    fn router(&mut self, v: &Value, path: &JsonPath) -> Option<RouterConfig> {
        let obj = self.object(v, path, "a router object", ROUTER_FIELDS, ROUTER_EXPECTED)?;
        let display_name = self.opt_string(&obj, DISPLAY_NAME);
        let name = match self.get(&obj, NAME) {
            Some((v, p)) => self.string(v, p),
            None => {
                // A name is derived from the displayName when it has a letter or digit
                // (`derive::fill`): here there was none to derive from.
                self.err(
                    path.clone(),
                    K::Unnamed {
                        display_name: display_name.clone(),
                    },
                );
                None
            }
        }
        .map(|n| match n.strip_prefix("routers/") {
            Some(bare) => bare.to_owned(),
            None => n,
        });
        let routes = self.list(&obj, ROUTES, |r, v, p| r.conditional_route(v, &p));
        let default_route = self.optional(&obj, DEFAULT_ROUTE, Self::route);
        let defaults = self.raw_object(&obj, DEFAULTS, "a defaults object");
        if let Some(Value::Object(d)) = &defaults {
            for key in [TEXT_GENERATION_CONFIG.0, "textGenerationConfig"] {
                match d.get(key) {
                    None | Some(Value::Null | Value::Object(_)) => {}
                    Some(other) => self.err(
                        path.key(DEFAULTS.0).key(key),
                        K::WrongType {
                            expected: "a text_generation_config object",
                            found: kind_of(other),
                        },
                    ),
                }
            }
        }
        Some(RouterConfig {
            name: name?,
            display_name,
            routes: routes?,
            default_route: default_route?,
            defaults,
        })
    }

    fn conditional_route(&mut self, v: &Value, path: &JsonPath) -> Option<ConditionalRoute> {
        let obj = self.object(
            v,
            path,
            "a conditional route object ({\"route\": ..., \"condition\": ...})",
            CONDITIONAL_FIELDS,
            CONDITIONAL_EXPECTED,
        )?;
        let route = self
            .required(&obj, ROUTE)
            .and_then(|(v, p)| self.route(v, &p));
        let condition = self.optional(&obj, CONDITION, Self::condition);
        Some(ConditionalRoute {
            route: route?,
            condition: condition?,
        })
    }

    fn condition(&mut self, v: &Value, path: &JsonPath) -> Option<Condition> {
        let obj = self.object(
            v,
            path,
            "a condition object ({\"cel_expression\": ...})",
            CONDITION_FIELDS,
            CONDITION_EXPECTED,
        )?;
        Some(Condition {
            cel_expression: self.req_string(&obj, CEL_EXPRESSION)?,
        })
    }

    fn route(&mut self, v: &Value, path: &JsonPath) -> Option<Route> {
        let obj = self.object(v, path, "a route object", ROUTE_FIELDS, ROUTE_EXPECTED)?;
        let route_id = self.req_string(&obj, ROUTE_ID);
        let variants = match self.required(&obj, VARIANTS) {
            Some((v, p)) => {
                let items = self.array(v, &p);
                items.and_then(|items| {
                    let mut out = Vec::with_capacity(items.len());
                    let mut ok = true;
                    for (i, item) in items.iter().enumerate() {
                        match self.weighted_variant(item, &p.index(i)) {
                            Some(x) => out.push(x),
                            None => ok = false,
                        }
                    }
                    ok.then_some(out)
                })
            }
            None => None,
        };
        let salt = self.opt_string(&obj, SALT);
        let failover = self.optional(&obj, FAILOVER, Self::failover);
        Some(Route {
            route_id: route_id?,
            variants: variants?,
            salt,
            failover: failover?,
        })
    }

    fn failover(&mut self, v: &Value, path: &JsonPath) -> Option<Failover> {
        let obj = self.object(
            v,
            path,
            "a failover object ({\"across_variants\": true})",
            FAILOVER_FIELDS,
            FAILOVER_EXPECTED,
        )?;
        let across_variants = self.opt_bool(&obj, ACROSS_VARIANTS)?;
        Some(Failover {
            across_variants: across_variants.unwrap_or(false),
        })
    }

    fn weighted_variant(&mut self, v: &Value, path: &JsonPath) -> Option<WeightedVariant> {
        let obj = self.object(
            v,
            path,
            "a weighted variant object ({\"variant\": ..., \"weight\": ...})",
            WEIGHTED_FIELDS,
            WEIGHTED_EXPECTED,
        )?;
        let variant = self
            .required(&obj, VARIANT)
            .and_then(|(v, p)| self.variant(v, &p));
        let weight = self
            .required(&obj, WEIGHT)
            .and_then(|(v, p)| self.weight(v, p));
        Some(WeightedVariant {
            variant: variant?,
            weight: weight?,
        })
    }

    fn weight(&mut self, v: &Value, path: JsonPath) -> Option<u32> {
        let reason = match v {
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    match u32::try_from(u) {
                        Ok(w) => return Some(w),
                        Err(_) => "it is larger than 4294967295, the largest weight",
                    }
                } else if n.as_i64().is_some() {
                    "a weight must not be negative"
                } else {
                    match n.as_f64() {
                        Some(f) if f < 0.0 => "a weight must not be negative",
                        Some(f) if f.fract() == 0.0 && f <= f64::from(u32::MAX) => {
                            return Some(f as u32);
                        }
                        Some(f) if f.fract() == 0.0 || !f.is_finite() => {
                            "it is larger than 4294967295, the largest weight"
                        }
                        _ => "a weight must be a whole number",
                    }
                }
            }
            Value::String(_) => "a weight must be a JSON number, not a string",
            _ => "a weight must be a non-negative whole number",
        };
        self.err(
            path,
            K::InvalidWeight {
                value: v.to_string(),
                reason,
            },
        );
        None
    }

    fn variant(&mut self, v: &Value, path: &JsonPath) -> Option<Variant> {
        let obj = self.object(
            v,
            path,
            "a variant object",
            VARIANT_FIELDS,
            VARIANT_EXPECTED,
        )?;
        let variant_id = self.req_string(&obj, VARIANT_ID);
        let model_id = self.req_string(&obj, MODEL_ID);
        let model_selection = self.optional(&obj, MODEL_SELECTION, Self::model_selection);
        let text_generation_config = self.raw_object(
            &obj,
            TEXT_GENERATION_CONFIG,
            "a text_generation_config object",
        );
        let message_templates = self.raw(&obj, MESSAGE_TEMPLATES);
        let web_search = self.raw(&obj, WEB_SEARCH);
        let compression = self.raw(&obj, COMPRESSION);
        Some(Variant {
            variant_id: variant_id?,
            model_id: model_id?,
            model_selection: model_selection?,
            text_generation_config,
            message_templates,
            web_search,
            compression,
        })
    }

    fn model_selection(&mut self, v: &Value, path: &JsonPath) -> Option<ModelSelection> {
        let obj = self.object(
            v,
            path,
            "a model_selection object",
            SELECTION_FIELDS,
            SELECTION_EXPECTED,
        )?;
        let models = self.strings(&obj, MODELS);
        let sort = self.list(&obj, SORT, |r, v, p| r.sort_key(v, &p));
        let ignore = self.strings(&obj, IGNORE);
        let provider = self.optional(&obj, PROVIDER, Self::provider);
        Some(ModelSelection {
            models: models?,
            sort: sort?,
            ignore: ignore?,
            provider: provider?,
        })
    }

    fn sort_key(&mut self, v: &Value, path: &JsonPath) -> Option<SortKey> {
        let obj = self.object(v, path, "a sort object", SORT_FIELDS, SORT_EXPECTED)?;
        let metric = self
            .required(&obj, METRIC)
            .and_then(|(v, p)| self.enum_value(v, p, &SortMetric::ALL, &SortMetric::NAMES));
        let direction = match self.get(&obj, DIRECTION) {
            Some((v, p)) => {
                Some(self.enum_value(v, p, &SortDirection::ALL, &SortDirection::NAMES)?)
            }
            None => Some(SortDirection::default()),
        };
        Some(SortKey {
            metric: metric?,
            direction: direction?,
        })
    }

    fn enum_value<T: Copy>(
        &mut self,
        v: &Value,
        path: JsonPath,
        values: &[T],
        names: &'static [&'static str],
    ) -> Option<T> {
        let s = self.string(v, path.clone())?;
        if let Some(i) = names.iter().position(|name| *name == s) {
            return values.get(i).copied();
        }
        self.err(
            path,
            K::UnknownValue {
                value: s,
                expected: names,
            },
        );
        None
    }

    fn provider(&mut self, v: &Value, path: &JsonPath) -> Option<ProviderPreferences> {
        let obj = self.object(
            v,
            path,
            "a provider object",
            PROVIDER_FIELDS,
            PROVIDER_EXPECTED,
        )?;
        let order = self.strings(&obj, ORDER);
        let allow_fallbacks = self.opt_bool(&obj, ALLOW_FALLBACKS);
        Some(ProviderPreferences {
            order: order?,
            allow_fallbacks: allow_fallbacks?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_display() {
        let p = JsonPath::root()
            .key("defaultRoute")
            .key("variants")
            .index(2)
            .key("weight");
        assert_eq!(p.to_string(), "defaultRoute.variants[2].weight");
        assert_eq!(JsonPath::root().to_string(), "(root)");
        assert_eq!(
            JsonPath::root().key("a b").to_string(),
            "[\"a b\"]",
            "keys that are not identifiers are quoted"
        );
    }
}
