//! The model catalog: what each model can do and what it costs.
//!
//! A [`Catalog`] holds one [`ModelInfo`] per model id (`provider/model`): its context window,
//! maximum output tokens, input and output price per million tokens ([`Pricing`]), the
//! [`Capability`]s it is known to have, its input and output [`Modality`]s, and optional
//! benchmark [`Scores`]. Routing reads it in two places: [`select`](crate::select) sorts
//! `auto` pools and provider lists by price or score, and [`Catalog::can_serve`] tells whether a
//! model can take a request that needs vision, tools, a response schema or a long context.
//!
//! The crate ships the OpenAI models of the Inworld Router model pages as a JSON data file
//! embedded at compile time ([`DEFAULT_OPENAI_JSON`]) and parsed on first use:
//! [`Catalog::default_openai`]. Hosts extend it ([`Catalog::insert`], [`Catalog::extend`]),
//! trim it ([`Catalog::remove`], [`Catalog::retain`]) or replace it ([`Catalog::from_json`]).
//! Nothing here reads a file or a clock. The format, the table as shipped and the rules are in
//! `docs/catalog.md`.
//!
//! **Prices** are integers: micro-dollars (10⁻⁶ USD) per million tokens ([`Price`]), so that
//! sums, blends and ties are exact. The JSON writes them in dollars (`0.15`); reading rounds to
//! the micro-dollar and rejects anything finer.
//!
//! **Capabilities are claims.** A capability is listed only where the source shows it; a model
//! without it listed is treated as not having it. Capability routing therefore never sends a
//! vision request to a model not known to support vision.
//!
//! ```
//! use abroute::catalog::{Capability, Catalog, Needs};
//!
//! let catalog = Catalog::default_openai();
//! let mini = catalog.get("openai/gpt-4o-mini").unwrap();
//! assert_eq!(mini.context_window, Some(128_000));
//! assert_eq!(mini.price.unwrap().input.to_string(), "$0.15");
//! assert!(mini.supports(Capability::Vision));
//!
//! let needs = Needs { vision: true, ..Needs::default() };
//! assert!(catalog.can_serve("openai/gpt-4o-mini", &needs).is_ok());
//! let why = catalog.can_serve("openai/gpt-3.5-turbo", &needs).unwrap_err();
//! assert_eq!(why.to_string(), "openai/gpt-3.5-turbo is not known to support vision");
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::JsonPath;

/// The default catalog's JSON text: the OpenAI models of the Inworld Router model pages.
pub const DEFAULT_OPENAI_JSON: &str = include_str!("../data/openai.json");

/// A price in micro-dollars (10⁻⁶ USD) per million tokens; `Price::from_micro_usd(150_000)` is
/// $0.15 per million tokens.
///
/// Integers keep blends and comparisons exact: two models priced alike in the source compare
/// equal, so sorting by price falls through to the next key as documented, never on float noise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(u64);

/// Why a dollar amount is not a [`Price`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PriceError {
    /// Below zero.
    Negative,
    /// Infinite or not a number.
    NotFinite,
    /// Finer than a micro-dollar (more than six decimal places).
    TooPrecise,
    /// More than [`Price::MAX`].
    TooLarge,
}

impl fmt::Display for PriceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PriceError::Negative => "a price cannot be negative",
            PriceError::NotFinite => "a price must be a finite number",
            PriceError::TooPrecise => {
                "prices have micro-dollar resolution: at most six decimal places"
            }
            PriceError::TooLarge => "a price cannot exceed $1,000,000 per million tokens",
        })
    }
}

impl std::error::Error for PriceError {}

impl Price {
    /// The largest price: $1,000,000 per million tokens.
    pub const MAX: Price = Price(1_000_000_000_000);

    /// A price of `micro_usd` micro-dollars per million tokens, capped at [`Price::MAX`].
    pub const fn from_micro_usd(micro_usd: u64) -> Price {
        if micro_usd > Self::MAX.0 {
            Self::MAX
        } else {
            Price(micro_usd)
        }
    }

    /// A price of `usd` dollars per million tokens, rounded to the micro-dollar.
    ///
    /// # Errors
    ///
    /// Negative, non-finite or too large amounts, and amounts with more than six decimal places
    /// (beyond the rounding noise of an `f64`, which is far below a micro-dollar up to
    /// [`Price::MAX`]).
    pub fn from_usd(usd: f64) -> Result<Price, PriceError> {
        if !usd.is_finite() {
            return Err(PriceError::NotFinite);
        }
        if usd < 0.0 {
            return Err(PriceError::Negative);
        }
        let scaled = usd * 1e6;
        let rounded = scaled.round();
        if rounded > Self::MAX.0 as f64 {
            return Err(PriceError::TooLarge);
        }
        // An amount written with at most six decimals lands within ~2e-4 of an integer here.
        if (scaled - rounded).abs() > 1e-3 {
            return Err(PriceError::TooPrecise);
        }
        Ok(Price(rounded as u64))
    }

    /// Micro-dollars per million tokens.
    pub const fn micro_usd(self) -> u64 {
        self.0
    }

    /// Dollars per million tokens (the nearest `f64`; `0.15` for $0.15).
    pub fn usd(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl fmt::Display for Price {
    /// Dollars with two to six decimals: `$0.15`, `$0.039`, `$10.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frac = format!("{:06}", self.0 % 1_000_000);
        let trimmed = frac.trim_end_matches('0');
        let shown = if trimmed.len() < 2 {
            &frac[..2]
        } else {
            trimmed
        };
        write!(f, "${}.{shown}", self.0 / 1_000_000)
    }
}

impl Serialize for Price {
    /// As dollars per million tokens, a JSON number (`0.15`).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.usd())
    }
}

impl<'de> Deserialize<'de> for Price {
    /// From dollars per million tokens, a JSON number; see [`Price::from_usd`].
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let usd = f64::deserialize(d)?;
        Price::from_usd(usd).map_err(|e| D::Error::custom(format_args!("invalid price {usd}: {e}")))
    }
}

/// Input and output prices of a model, per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// Per million input (prompt) tokens.
    pub input: Price,
    /// Per million output (completion) tokens.
    pub output: Price,
    /// Per million prompt tokens read from the provider's cache, when the provider prices
    /// them apart; absent, cached tokens cost the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Price>,
}

/// The weight of the input price in [`Pricing::blended`].
pub const BLEND_INPUT_WEIGHT: u64 = 3;
/// The weight of the output price in [`Pricing::blended`].
pub const BLEND_OUTPUT_WEIGHT: u64 = 1;

impl Pricing {
    /// The blended price, `(3 × input + 1 × output) / 4`, in micro-dollars per million tokens
    /// (exact, so possibly fractional). This is what `SORT_METRIC_PRICE` sorts by: the 3:1
    /// input:output blend of common price indexes, which assumes prompts three times as long as
    /// answers.
    pub fn blended(self) -> f64 {
        self.blend_numerator() as f64 / (BLEND_INPUT_WEIGHT + BLEND_OUTPUT_WEIGHT) as f64
    }

    /// `3 × input + 1 × output` in micro-dollars: the blend times 4, an exact integer to compare.
    pub fn blend_numerator(self) -> u64 {
        // Both prices are at most `Price::MAX` (1e12), so this cannot overflow.
        BLEND_INPUT_WEIGHT * self.input.0 + BLEND_OUTPUT_WEIGHT * self.output.0
    }
}

/// Something a model can do that a request may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Tool (function) calls.
    FunctionCalling,
    /// Prompt caching.
    PromptCaching,
    /// Structured output against a JSON schema (`response_format: json_schema`).
    ResponseSchema,
    /// Image inputs.
    Vision,
}

impl Capability {
    /// Every capability, in the order of [`NAMES`](Self::NAMES).
    pub const ALL: [Capability; 4] = [
        Capability::FunctionCalling,
        Capability::PromptCaching,
        Capability::ResponseSchema,
        Capability::Vision,
    ];
    /// The JSON spelling of each capability in [`ALL`](Self::ALL).
    pub const NAMES: [&'static str; 4] = [
        "function_calling",
        "prompt_caching",
        "response_schema",
        "vision",
    ];

    /// The JSON spelling.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl fmt::Display for Capability {
    /// In words: `function calling`, `vision`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::FunctionCalling => "function calling",
            Capability::PromptCaching => "prompt caching",
            Capability::ResponseSchema => "response schemas",
            Capability::Vision => "vision",
        })
    }
}

/// A kind of content a model takes in or gives out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Text.
    Text,
    /// Images.
    Image,
    /// Audio.
    Audio,
    /// Video.
    Video,
    /// Files such as PDFs.
    File,
}

/// Benchmark scores, higher is better. Any scale, as long as it is the same for every model of
/// the catalog. Absent scores make `auto` configs that sort by them invalid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scores {
    /// General intelligence (`SORT_METRIC_INTELLIGENCE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intelligence: Option<f64>,
    /// Mathematical reasoning (`SORT_METRIC_MATH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub math: Option<f64>,
    /// Coding (`SORT_METRIC_CODING`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coding: Option<f64>,
}

impl Scores {
    /// True when no score is given.
    pub fn is_empty(&self) -> bool {
        self.intelligence.is_none() && self.math.is_none() && self.coding.is_none()
    }
}

/// The facts about one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// `provider/model`, as requests name it (`openai/gpt-4o-mini`). The provider is the part
    /// before the first `/`; the bare model name is the rest.
    pub id: String,
    /// A human-readable name (`GPT 4o Mini`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The most tokens a request may hold, input and output together; `None` when unknown (not
    /// checked then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// The most output tokens a request may ask for; `None` when unknown (not checked then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Prices per million tokens; `None` when unknown. JSON: `usd_per_million_tokens`, in dollars.
    #[serde(
        rename = "usd_per_million_tokens",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub price: Option<Pricing>,
    /// The capabilities the model is known to have. Anything not listed counts as absent.
    #[serde(default)]
    pub capabilities: BTreeSet<Capability>,
    /// What the model takes in.
    #[serde(default)]
    pub input_modalities: BTreeSet<Modality>,
    /// What the model gives out.
    #[serde(default)]
    pub output_modalities: BTreeSet<Modality>,
    /// Benchmark scores, for sorting by intelligence, math or coding.
    #[serde(default, skip_serializing_if = "Scores::is_empty")]
    pub scores: Scores,
}

impl ModelInfo {
    /// A model with this id and no other facts (every capability absent, limits and prices
    /// unknown).
    pub fn new(id: impl Into<String>) -> ModelInfo {
        ModelInfo {
            id: id.into(),
            display_name: None,
            context_window: None,
            max_output_tokens: None,
            price: None,
            capabilities: BTreeSet::new(),
            input_modalities: BTreeSet::new(),
            output_modalities: BTreeSet::new(),
            scores: Scores::default(),
        }
    }

    /// The provider: the part of the id before the first `/` (`openai`).
    pub fn provider(&self) -> &str {
        split_id(&self.id).0
    }

    /// The bare model name: the part of the id after the first `/` (`gpt-4o-mini`).
    pub fn bare_name(&self) -> &str {
        split_id(&self.id).1
    }

    /// Whether the model is known to have `capability`.
    pub fn supports(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    /// The blended price (see [`Pricing::blended`]) in dollars per million tokens.
    pub fn blended_price_usd(&self) -> Option<f64> {
        self.price.map(|p| p.blended() / 1e6)
    }

    /// Checks the entry: a `provider/model` id, positive limits, finite scores.
    fn check(&self) -> Result<(), (&'static str, CatalogErrorKind)> {
        if let Some(reason) = id_problem(&self.id) {
            return Err((
                "id",
                CatalogErrorKind::InvalidId {
                    id: self.id.clone(),
                    reason,
                },
            ));
        }
        for (field, value) in [
            ("context_window", self.context_window),
            ("max_output_tokens", self.max_output_tokens),
        ] {
            if value == Some(0) {
                return Err((field, CatalogErrorKind::Zero { field }));
            }
        }
        for (field, value) in [
            ("intelligence", self.scores.intelligence),
            ("math", self.scores.math),
            ("coding", self.scores.coding),
        ] {
            if value.is_some_and(|v| !v.is_finite()) {
                return Err(("scores", CatalogErrorKind::NotFinite { field }));
            }
        }
        Ok(())
    }
}

/// `(provider, bare name)` of an id; the provider is empty when there is no `/`.
fn split_id(id: &str) -> (&str, &str) {
    let id = crate::model::ModelId::new(id);
    (id.provider().unwrap_or(""), id.name())
}

fn id_problem(id: &str) -> Option<&'static str> {
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("it must not contain whitespace");
    }
    let id = crate::model::ModelId::new(id);
    match (id.provider(), id.name()) {
        (None, _) => Some("it must be `provider/model`"),
        (Some(""), _) => Some("the provider (before the `/`) is empty"),
        (Some(_), "") => Some("the model name (after the `/`) is empty"),
        (Some(_), _) => None,
    }
}

/// What a request needs from the model that serves it, as the host estimates it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Needs {
    /// The request holds an image part.
    pub vision: bool,
    /// The request offers tools.
    pub tools: bool,
    /// The request asks for a response schema (`response_format: json_schema`).
    pub response_schema: bool,
    /// The estimated number of input tokens.
    pub input_tokens: Option<u64>,
    /// The output tokens the request asks for (`max_tokens`, `max_completion_tokens`).
    pub output_tokens: Option<u64>,
}

impl Needs {
    /// True when the request needs nothing in particular (every model can serve it).
    pub fn is_empty(&self) -> bool {
        *self == Needs::default()
    }

    /// The capabilities needed, in the order they are checked: vision, function calling,
    /// response schemas.
    pub fn capabilities(&self) -> impl Iterator<Item = Capability> + use<> {
        [
            (self.vision, Capability::Vision),
            (self.tools, Capability::FunctionCalling),
            (self.response_schema, Capability::ResponseSchema),
        ]
        .into_iter()
        .filter_map(|(needed, c)| needed.then_some(c))
    }
}

/// Why a model cannot serve a request ([`Catalog::can_serve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unsuitable {
    /// The request needs a capability and the catalog has no entry for the model.
    UnknownModel {
        /// The model id.
        model: String,
        /// The first capability needed.
        capability: Capability,
    },
    /// The catalog does not list a capability the request needs.
    MissingCapability {
        /// The model id.
        model: String,
        /// The capability.
        capability: Capability,
    },
    /// The request asks for more output tokens than the model gives.
    MaxOutput {
        /// The model id.
        model: String,
        /// The output tokens asked for.
        requested: u64,
        /// The model's maximum.
        max: u64,
    },
    /// Input and output tokens together exceed the model's context window.
    ContextWindow {
        /// The model id.
        model: String,
        /// The estimated input tokens.
        input_tokens: u64,
        /// The output tokens asked for (0 when not given).
        output_tokens: u64,
        /// The model's context window.
        window: u64,
    },
}

impl Unsuitable {
    /// The model that cannot serve.
    pub fn model(&self) -> &str {
        match self {
            Unsuitable::UnknownModel { model, .. }
            | Unsuitable::MissingCapability { model, .. }
            | Unsuitable::MaxOutput { model, .. }
            | Unsuitable::ContextWindow { model, .. } => model,
        }
    }

    /// A short machine-readable reason: `unknown_model`, `missing_capability`, `max_output`
    /// or `context_window`.
    pub fn code(&self) -> &'static str {
        match self {
            Unsuitable::UnknownModel { .. } => "unknown_model",
            Unsuitable::MissingCapability { .. } => "missing_capability",
            Unsuitable::MaxOutput { .. } => "max_output",
            Unsuitable::ContextWindow { .. } => "context_window",
        }
    }
}

impl fmt::Display for Unsuitable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsuitable::UnknownModel { model, capability } => write!(
                f,
                "{model} is not in the model catalog, so it is not known to support {capability}"
            ),
            Unsuitable::MissingCapability { model, capability } => {
                write!(f, "{model} is not known to support {capability}")
            }
            Unsuitable::MaxOutput {
                model,
                requested,
                max,
            } => write!(
                f,
                "{model} gives at most {max} output tokens; the request asks for {requested}"
            ),
            Unsuitable::ContextWindow {
                model,
                input_tokens,
                output_tokens,
                window,
            } => write!(
                f,
                "{model} has a context window of {window} tokens; the request needs {} \
                 ({input_tokens} input + {output_tokens} output)",
                input_tokens.saturating_add(*output_tokens)
            ),
        }
    }
}

impl std::error::Error for Unsuitable {}

/// What is wrong with a catalog, or with an entry given to [`Catalog::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CatalogErrorKind {
    /// The text is not JSON (or ends early).
    Syntax {
        /// serde_json's description, without the position.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// Well-formed JSON that does not fit the format: an unknown or missing field, a wrong type,
    /// an unknown capability or modality, an invalid price.
    Invalid {
        /// serde's description, without the position.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// An id that is not `provider/model`.
    InvalidId {
        /// The id as given.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An id given twice.
    DuplicateId {
        /// The id.
        id: String,
        /// Where it was first given.
        first: JsonPath,
    },
    /// A token limit of 0 (leave the field out when unknown).
    Zero {
        /// The field.
        field: &'static str,
    },
    /// A score that is infinite or not a number.
    NotFinite {
        /// The score.
        field: &'static str,
    },
}

impl fmt::Display for CatalogErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogErrorKind::Syntax {
                message,
                line,
                column,
            }
            | CatalogErrorKind::Invalid {
                message,
                line,
                column,
            } => write!(f, "{message} at line {line} column {column}"),
            CatalogErrorKind::InvalidId { id, reason } => {
                write!(f, "invalid model id {id:?}: {reason}")
            }
            CatalogErrorKind::DuplicateId { id, first } => {
                write!(f, "model id {id:?} is already given at {first}")
            }
            CatalogErrorKind::Zero { field } => write!(
                f,
                "{field} must be positive; leave it out when it is not known"
            ),
            CatalogErrorKind::NotFinite { field } => {
                write!(f, "the {field} score must be a finite number")
            }
        }
    }
}

/// A problem in a catalog: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    /// Where the offending value sits (`models[3].usd_per_million_tokens.input`); for
    /// [`Catalog::insert`], relative to the entry (`id`).
    pub path: JsonPath,
    /// What is wrong with it.
    pub kind: CatalogErrorKind,
}

impl fmt::Display for CatalogError {
    /// `path: message`; a syntax error at the root prints without a path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_root() {
            return write!(f, "{}", self.kind);
        }
        write!(f, "{}: {}", self.path, self.kind)
    }
}

impl std::error::Error for CatalogError {}

/// The JSON document: an optional source note and the models.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    source: Option<String>,
    models: Vec<ModelInfo>,
}

/// The JSON document, for writing.
#[derive(Serialize)]
struct CatalogFileRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    models: Vec<&'a ModelInfo>,
}

/// Models by id. Cheap to clone for the sizes catalogs have (hundreds of entries); read-only
/// while routing, so share it behind an `Arc`.
///
/// `Catalog::default()` is empty; [`Catalog::default_openai`] is the shipped one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    source: Option<String>,
    models: BTreeMap<String, ModelInfo>,
}

fn serde_error(path: JsonPath, e: &serde_json::Error) -> CatalogError {
    let (message, line, column) = crate::error::split_position(e);
    let kind = match e.classify() {
        serde_json::error::Category::Data => CatalogErrorKind::Invalid {
            message,
            line,
            column,
        },
        _ => CatalogErrorKind::Syntax {
            message,
            line,
            column,
        },
    };
    CatalogError { path, kind }
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// The shipped catalog: the OpenAI models of the Inworld Router model pages (see
    /// `docs/catalog.md` for the table). Parsed once, on first use; each call clones it.
    pub fn default_openai() -> Catalog {
        Self::default_openai_ref().clone()
    }

    /// The shipped catalog behind a shared `Arc` (what an engine uses unless given another).
    pub fn default_openai_shared() -> std::sync::Arc<Catalog> {
        static SHARED: OnceLock<std::sync::Arc<Catalog>> = OnceLock::new();
        std::sync::Arc::clone(
            SHARED.get_or_init(|| std::sync::Arc::new(Self::default_openai_ref().clone())),
        )
    }

    /// The shipped catalog, shared.
    pub fn default_openai_ref() -> &'static Catalog {
        static DEFAULT: OnceLock<Catalog> = OnceLock::new();
        DEFAULT.get_or_init(|| match Catalog::from_json(DEFAULT_OPENAI_JSON) {
            Ok(c) => c,
            // The file is part of the crate and a test parses it: this cannot happen in a
            // released build.
            Err(e) => panic!("the embedded data/openai.json is invalid: {e}"),
        })
    }

    /// Reads a catalog from JSON (the format of `data/openai.json`, see `docs/catalog.md`).
    ///
    /// # Errors
    ///
    /// The first problem found, with its JSON path: malformed JSON, an unknown or missing field,
    /// a wrong type, an invalid price, an id that is not `provider/model`, a duplicate id, a
    /// zero token limit.
    pub fn from_json(text: &str) -> Result<Catalog, CatalogError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let file: CatalogFile = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| serde_error(JsonPath::from(e.path()), e.inner()))?;
        de.end().map_err(|e| serde_error(JsonPath::root(), &e))?;
        let mut models = BTreeMap::new();
        let mut first_at: BTreeMap<String, usize> = BTreeMap::new();
        let root = JsonPath::root().key("models");
        for (i, model) in file.models.into_iter().enumerate() {
            let at = root.index(i);
            model.check().map_err(|(field, kind)| CatalogError {
                path: at.key(field),
                kind,
            })?;
            if let Some(&j) = first_at.get(&model.id) {
                return Err(CatalogError {
                    path: at.key("id"),
                    kind: CatalogErrorKind::DuplicateId {
                        id: model.id,
                        first: root.index(j).key("id"),
                    },
                });
            }
            first_at.insert(model.id.clone(), i);
            models.insert(model.id.clone(), model);
        }
        Ok(Catalog {
            source: file.source,
            models,
        })
    }

    /// The catalog as indented JSON, models in id order; [`from_json`](Self::from_json) reads
    /// it back to an equal catalog.
    pub fn to_json_pretty(&self) -> String {
        let file = CatalogFileRef {
            source: self.source.as_deref(),
            models: self.models.values().collect(),
        };
        // Plain structs, strings, integers and finite floats always serialize.
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// The `source` note of the JSON document, if any.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// The model with this exact id.
    pub fn get(&self, id: &str) -> Option<&ModelInfo> {
        self.models.get(id)
    }

    /// Whether the catalog has this exact id.
    pub fn contains(&self, id: &str) -> bool {
        self.models.contains_key(id)
    }

    /// Every entry serving the bare model name `name` (`gpt-oss-120b`), one per provider, in id
    /// order. A linear scan: catalogs are small, and routing calls this at compile time.
    pub fn by_name<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ModelInfo> + 'a {
        self.models.values().filter(move |m| m.bare_name() == name)
    }

    /// Every model, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &ModelInfo> {
        self.models.values()
    }

    /// How many models there are.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Adds a model, replacing (and returning) the entry with the same id.
    ///
    /// # Errors
    ///
    /// An id that is not `provider/model`, a zero token limit or a non-finite score; the path is
    /// relative to the entry. The catalog is unchanged then.
    pub fn insert(&mut self, model: ModelInfo) -> Result<Option<ModelInfo>, CatalogError> {
        model.check().map_err(|(field, kind)| CatalogError {
            path: JsonPath::root().key(field),
            kind,
        })?;
        Ok(self.models.insert(model.id.clone(), model))
    }

    /// Removes the model with this id.
    pub fn remove(&mut self, id: &str) -> Option<ModelInfo> {
        self.models.remove(id)
    }

    /// Keeps only the models for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&ModelInfo) -> bool) {
        self.models.retain(|_, m| keep(m));
    }

    /// Adds every model of `other`; its entries replace those with the same id.
    pub fn extend(&mut self, other: Catalog) {
        self.models.extend(other.models);
        if self.source.is_none() {
            self.source = other.source;
        }
    }

    /// Whether `model_id` can serve a request with these needs, and if not, why.
    ///
    /// Rules, checked in this order (the first failing one is the reason):
    ///
    /// 1. Each needed capability (vision, then tools, then response schema) must be listed for
    ///    the model. A model the catalog does not have is not known to support anything.
    /// 2. `output_tokens`, when given, must be at most `max_output_tokens`, when known.
    /// 3. `input_tokens + output_tokens` (either may be absent, counting 0) must be at most
    ///    `context_window`, when known.
    ///
    /// Unknown limits are not checked: a model the catalog does not have can serve any request
    /// that needs no capability. A bare name (no `/`) can serve when any catalog entry serving
    /// it can; the reason given is the first entry's.
    ///
    /// # Errors
    ///
    /// [`Unsuitable`], saying which rule failed.
    pub fn can_serve(&self, model_id: &str, needs: &Needs) -> Result<(), Unsuitable> {
        if let Some(model) = self.models.get(model_id) {
            return model_can_serve(model, needs);
        }
        if !model_id.contains('/') {
            let mut first_reason = None;
            for model in self.by_name(model_id) {
                match model_can_serve(model, needs) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        first_reason.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_reason {
                return Err(e);
            }
        }
        match needs.capabilities().next() {
            Some(capability) => Err(Unsuitable::UnknownModel {
                model: model_id.to_owned(),
                capability,
            }),
            None => Ok(()),
        }
    }
}

fn model_can_serve(model: &ModelInfo, needs: &Needs) -> Result<(), Unsuitable> {
    if let Some(capability) = needs.capabilities().find(|&c| !model.supports(c)) {
        return Err(Unsuitable::MissingCapability {
            model: model.id.clone(),
            capability,
        });
    }
    if let (Some(requested), Some(max)) = (needs.output_tokens, model.max_output_tokens)
        && requested > max
    {
        return Err(Unsuitable::MaxOutput {
            model: model.id.clone(),
            requested,
            max,
        });
    }
    if let Some(window) = model.context_window {
        let input_tokens = needs.input_tokens.unwrap_or(0);
        let output_tokens = needs.output_tokens.unwrap_or(0);
        if input_tokens.saturating_add(output_tokens) > window {
            return Err(Unsuitable::ContextWindow {
                model: model.id.clone(),
                input_tokens,
                output_tokens,
                window,
            });
        }
    }
    Ok(())
}

impl<'a> IntoIterator for &'a Catalog {
    type Item = &'a ModelInfo;
    type IntoIter = std::collections::btree_map::Values<'a, String, ModelInfo>;
    fn into_iter(self) -> Self::IntoIter {
        self.models.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_parses() {
        let c = Catalog::from_json(DEFAULT_OPENAI_JSON).unwrap();
        assert_eq!(c.len(), 22);
        assert_eq!(&c, Catalog::default_openai_ref());
    }

    #[test]
    fn price_display_and_rounding() {
        assert_eq!(Price::from_usd(0.15).unwrap().micro_usd(), 150_000);
        assert_eq!(Price::from_usd(0.039).unwrap().to_string(), "$0.039");
        assert_eq!(Price::from_usd(10.0).unwrap().to_string(), "$10.00");
        assert_eq!(Price::from_usd(0.000001).unwrap().to_string(), "$0.000001");
        assert_eq!(Price::from_usd(0.0000001), Err(PriceError::TooPrecise));
        assert_eq!(Price::from_usd(-1.0), Err(PriceError::Negative));
        assert_eq!(Price::from_usd(f64::NAN), Err(PriceError::NotFinite));
        assert_eq!(Price::from_usd(2e6), Err(PriceError::TooLarge));
        assert_eq!(
            Price::from_usd(999_999.999_999).unwrap().micro_usd(),
            999_999_999_999
        );
        assert_eq!(Price::from_micro_usd(u64::MAX), Price::MAX);
        for m in [0, 1, 39_000, 150_000, 1_250_000, 30_000_000, Price::MAX.0] {
            assert_eq!(Price::from_usd(Price(m).usd()), Ok(Price(m)));
        }
    }
}
