//! The serde model of an Inworld router object.
//!
//! [`RouterConfig`] reads the router JSON of Inworld's routerAPI verbatim, in both protobuf JSON
//! spellings (`defaultRoute` or `default_route`, `variant_id` or `variantId`, ...), and writes the
//! spelling of Inworld's documented examples: `displayName` and `defaultRoute` at the top,
//! `route_id`, `variant_id`, `model_id` and `cel_expression` inside.
//!
//! Reading rejects unknown fields and keys repeated within one object (a typo in `weight`, or
//! a second `weight`, must never be ignored) and reports every structural problem at once,
//! each with its JSON path. The same errors come out of `serde_json::from_str::<RouterConfig>`
//! and of [`RouterConfig::from_json`]; the latter keeps them structured ([`ConfigErrors`]).
//!
//! Reading checks shape and types only. Whether the config makes sense as a router (unique ids,
//! positive weight sums, limits) is [`validate`](crate::validate)'s job, which
//! [`RouterConfig::compile`] runs first.
//!
//! ```
//! use abroute::RouterConfig;
//!
//! let json = r#"{ "name": "routers/demo", "defaultRoute": { "route_id": "default", "variants": [
//!     { "variant": { "variant_id": "a", "model_id": "openai/gpt-4o-mini" }, "weight": 50 },
//!     { "variant": { "variantId": "b", "modelId": "openai/gpt-4.1" }, "weight": 50 } ] } }"#;
//! let config = RouterConfig::from_json(json).unwrap();
//! assert_eq!(config.name, "demo"); // `routers/` is accepted and removed
//! let err = RouterConfig::from_json(&json.replace("\"weight\": 50 }", "\"wieght\": 50 }"))
//!     .unwrap_err();
//! assert!(err.to_string().contains("defaultRoute.variants[0]: unknown field `wieght`"));
//! ```

mod derive;
mod parse;
mod template;
pub use derive::{DerivedId, name_from_display};
pub(crate) use parse::kind_of;
pub(crate) use template::message_templates;
pub use template::{MessageTemplate, TemplateProblem, TemplateProblemKind};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::{ConfigErrors, JsonPath};

/// The two spellings of `message_templates` in a router's `defaults`.
pub(crate) const MESSAGE_TEMPLATES: [&str; 2] = ["message_templates", "messageTemplates"];
/// The two spellings of `text_generation_config` in a router's `defaults`.
pub(crate) const GENERATION_CONFIG: [&str; 2] = ["text_generation_config", "textGenerationConfig"];

/// A router: conditional routes tried in order, and a default route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouterConfig {
    /// The router's id, bare (`compare-frontier-models`); a `routers/` prefix is removed on read.
    pub name: String,
    /// A human-readable name.
    #[serde(rename = "displayName", skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Conditional routes, tried in order; the first whose condition holds wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<ConditionalRoute>,
    /// The route used when no conditional route matches.
    #[serde(rename = "defaultRoute", skip_serializing_if = "Option::is_none")]
    pub default_route: Option<Route>,
    /// Router-wide defaults (`text_generation_config`, `message_templates`, ...), kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Value>,
}

/// A route guarded by a condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionalRoute {
    /// The route taken when the condition holds.
    pub route: Route,
    /// The condition; required (validation reports a missing one with its path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

/// A CEL condition over request metadata and messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// The CEL source text, for example `tier == "premium"`.
    pub cel_expression: String,
}

/// A weighted split across variants.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    /// The route's id, unique within its router.
    pub route_id: String,
    /// The variants and their weights. Each variant gets `weight / sum` of the route: abroute
    /// accepts any positive sum, where Inworld requires exactly 100 (as
    /// [`ValidationOptions::strict`](crate::ValidationOptions::strict) does).
    pub variants: Vec<WeightedVariant>,
    /// Sticky-assignment salt (an abroute extension of the Inworld schema); by default the router
    /// name plus the route_id. Routes with the same salt share a population of users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// Failover settings (an abroute extension of the Inworld schema).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
}

/// How a route fails over (an abroute extension of the Inworld schema).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Failover {
    /// After the assigned variant's models, try the route's other variants (in the request's
    /// fallback order) with their own models. Default false: only the assigned variant's models
    /// (and the request's own) are tried, unless every one of them is ejected.
    pub across_variants: bool,
}

/// A variant and its share of a route's traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightedVariant {
    /// The variant.
    pub variant: Variant,
    /// A non-negative integer; the variant gets `weight / sum` of the route. 0 means never.
    pub weight: u32,
}

/// One arm of an experiment: a model and how to call it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    /// The variant's id, unique within its route; the identity used for sticky assignment.
    pub variant_id: String,
    /// `provider/model`, a bare model name, or `auto`.
    pub model_id: String,
    /// Fallback models and automatic selection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_selection: Option<ModelSelection>,
    /// Generation settings; replace the router's `defaults.text_generation_config` as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_generation_config: Option<Value>,
    /// Message templates, kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_templates: Option<Value>,
    /// Web search settings, kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_search: Option<Value>,
    /// Context compression settings, kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<Value>,
}

/// Inworld's `model_selection`: a pool and fallback list, sorting and provider preferences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelSelection {
    /// The pool for `auto`, and the ordered fallback list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Sort keys, most significant first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sort: Vec<SortKey>,
    /// Providers or models to leave out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    /// Provider order for a bare model name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderPreferences>,
}

/// One sort key of a [`ModelSelection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SortKey {
    /// What to sort by.
    pub metric: SortMetric,
    /// Which way.
    pub direction: SortDirection,
}

/// A metric models can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SortMetric {
    /// Price per token (`SORT_METRIC_PRICE`).
    #[serde(rename = "SORT_METRIC_PRICE")]
    Price,
    /// Observed latency (`SORT_METRIC_LATENCY`).
    #[serde(rename = "SORT_METRIC_LATENCY")]
    Latency,
    /// Observed throughput (`SORT_METRIC_THROUGHPUT`).
    #[serde(rename = "SORT_METRIC_THROUGHPUT")]
    Throughput,
    /// Intelligence score (`SORT_METRIC_INTELLIGENCE`).
    #[serde(rename = "SORT_METRIC_INTELLIGENCE")]
    Intelligence,
    /// Math score (`SORT_METRIC_MATH`).
    #[serde(rename = "SORT_METRIC_MATH")]
    Math,
    /// Coding score (`SORT_METRIC_CODING`).
    #[serde(rename = "SORT_METRIC_CODING")]
    Coding,
}

impl SortMetric {
    /// Every metric, in the order of [`NAMES`](Self::NAMES).
    pub const ALL: [SortMetric; 6] = [
        SortMetric::Price,
        SortMetric::Latency,
        SortMetric::Throughput,
        SortMetric::Intelligence,
        SortMetric::Math,
        SortMetric::Coding,
    ];
    /// The JSON spelling of each metric in [`ALL`](Self::ALL).
    pub const NAMES: [&'static str; 6] = [
        "SORT_METRIC_PRICE",
        "SORT_METRIC_LATENCY",
        "SORT_METRIC_THROUGHPUT",
        "SORT_METRIC_INTELLIGENCE",
        "SORT_METRIC_MATH",
        "SORT_METRIC_CODING",
    ];
}

/// The direction of a [`SortKey`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub enum SortDirection {
    /// Smallest first (`SORT_DIRECTION_ASCENDING`), the default.
    #[default]
    #[serde(rename = "SORT_DIRECTION_ASCENDING")]
    Ascending,
    /// Largest first (`SORT_DIRECTION_DESCENDING`).
    #[serde(rename = "SORT_DIRECTION_DESCENDING")]
    Descending,
}

impl SortDirection {
    /// Both directions, in the order of [`NAMES`](Self::NAMES).
    pub const ALL: [SortDirection; 2] = [SortDirection::Ascending, SortDirection::Descending];
    /// The JSON spelling of each direction in [`ALL`](Self::ALL).
    pub const NAMES: [&'static str; 2] = ["SORT_DIRECTION_ASCENDING", "SORT_DIRECTION_DESCENDING"];
}

/// Provider preferences for a bare model name served by several providers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProviderPreferences {
    /// Providers in the order to try.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<String>,
    /// Whether providers outside `order` may be used when those fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_fallbacks: Option<bool>,
}

impl RouterConfig {
    /// Reads a router from JSON text, reporting every structural problem at once.
    ///
    /// Gives the same errors, message for message, as `serde_json::from_str::<RouterConfig>`,
    /// but structured. Malformed JSON is reported with serde_json's line and column.
    ///
    /// # Errors
    ///
    /// Every unknown field, missing field, wrong type and malformed weight, each with its path.
    pub fn from_json(text: &str) -> Result<RouterConfig, ConfigErrors> {
        parse::from_str(text).map(|(config, _)| config)
    }

    /// [`from_json`](Self::from_json), with the ids the router left out and reading derived
    /// (a `name` from the `displayName`, `route_id`s, `variant_id`s: see
    /// `docs/config.md`, "Routers without ids"), in document order. `abroute check` warns with
    /// them; the management API stores them.
    ///
    /// ```
    /// use abroute::RouterConfig;
    ///
    /// let (config, derived) = RouterConfig::from_json_derived(r#"{ "displayName": "User-Aware",
    ///     "defaultRoute": { "variants": [ { "variant": { "modelId": "openai/gpt-5.2" }, "weight": 100 } ] } }"#)
    ///     .unwrap();
    /// assert_eq!(config.name, "user-aware");
    /// let paths: Vec<String> = derived.iter().map(|d| format!("{}={}", d.path, d.value)).collect();
    /// assert_eq!(paths, ["name=user-aware", "defaultRoute.route_id=default",
    ///     "defaultRoute.variants[0].variant.variant_id=openai/gpt-5.2"]);
    /// ```
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json).
    pub fn from_json_derived(text: &str) -> Result<(RouterConfig, Vec<DerivedId>), ConfigErrors> {
        parse::from_str(text)
    }

    /// Reads a router from an already parsed JSON value (as a management API body is).
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json), without syntax errors.
    pub fn from_value(value: &Value) -> Result<RouterConfig, ConfigErrors> {
        parse::router(value)
    }

    /// The config as JSON in the canonical spelling.
    pub fn to_json(&self) -> String {
        // Serializing plain structs, strings and `Value`s to a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The config as indented JSON in the canonical spelling.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Every route in order: the conditional routes, then the default route.
    pub fn all_routes(&self) -> impl Iterator<Item = &Route> {
        self.routes
            .iter()
            .map(|r| &r.route)
            .chain(self.default_route.as_ref())
    }

    /// [`all_routes`](Self::all_routes), each with its JSON path: `routes[i].route`, then
    /// `defaultRoute`.
    pub(crate) fn routes_with_paths(&self) -> impl Iterator<Item = (&Route, JsonPath)> {
        let conditional = self.routes.len();
        self.all_routes().enumerate().map(move |(i, route)| {
            let path = if i < conditional {
                JsonPath::root().key("routes").index(i).key("route")
            } else {
                JsonPath::root().key("defaultRoute")
            };
            (route, path)
        })
    }

    /// The effective `message_templates` of `variant`, one of this router's variants: its own,
    /// or else the router's `defaults.message_templates` (in either spelling). The variant's
    /// list replaces the default as a whole. Compiled, typed:
    /// [`CompiledVariant::message_templates`](crate::CompiledVariant::message_templates).
    pub fn effective_message_templates<'c>(&'c self, variant: &'c Variant) -> Option<&'c Value> {
        variant
            .message_templates
            .as_ref()
            .or_else(|| Some(self.default_member(MESSAGE_TEMPLATES)?.1))
    }

    /// The effective `text_generation_config` of `variant`, one of this router's variants: its
    /// own, or else the router's `defaults.text_generation_config` (in either spelling). The
    /// variant's replaces the default as a whole; they are not merged (as in Inworld). Compiled:
    /// [`CompiledVariant::generation_config`](crate::CompiledVariant::generation_config).
    pub fn effective_generation_config<'c>(&'c self, variant: &'c Variant) -> Option<&'c Value> {
        variant
            .text_generation_config
            .as_ref()
            .or_else(|| Some(self.default_member(GENERATION_CONFIG)?.1))
    }

    /// A member of `defaults` in the first of its `spellings` present, with that spelling.
    pub(crate) fn default_member(
        &self,
        spellings: [&'static str; 2],
    ) -> Option<(&'static str, &Value)> {
        let defaults = self.defaults.as_ref()?;
        spellings
            .into_iter()
            .find_map(|k| Some((k, defaults.get(k)?)))
    }
}

impl<'de> Deserialize<'de> for RouterConfig {
    /// Reads a router through any self-describing format (JSON, TOML, YAML, ...).
    ///
    /// Every error names its JSON path; see [`RouterConfig::from_json`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = match serde_path_to_error::deserialize(deserializer) {
            Ok(parse::StrictValue(v)) => v,
            Err(e) => {
                let path = crate::error::JsonPath::from(e.path());
                let inner = e.into_inner();
                return Err(D::Error::custom(parse::SyntaxDisplay(&path, &inner)));
            }
        };
        parse::router(&value).map_err(D::Error::custom)
    }
}
