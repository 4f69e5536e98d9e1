//! Errors: what went wrong in a config (with its JSON path) and why a request could not be routed.
//!
//! Building (parse, validate, compile) returns rich errors; running ([`route`]) fails only for
//! the two reasons a valid snapshot can give: the router does not exist, or no route matched.
//!
//! [`route`]: crate::engine::Snapshot::route

use std::fmt;

/// One step of a [`JsonPath`]: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// An object member, by the key as written in the input.
    Key(String),
    /// An array element, from 0.
    Index(usize),
}

/// Where in a JSON document a value sits, written like `defaultRoute.variants[2].weight`.
///
/// The empty path is the document itself and displays as `(root)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct JsonPath(Vec<PathSegment>);

impl JsonPath {
    /// The path of the whole document.
    pub fn root() -> JsonPath {
        JsonPath(Vec::new())
    }

    /// This path extended by an object key.
    pub fn key(&self, key: &str) -> JsonPath {
        let mut v = self.0.clone();
        v.push(PathSegment::Key(key.to_owned()));
        JsonPath(v)
    }

    /// This path extended by an array index.
    pub fn index(&self, index: usize) -> JsonPath {
        let mut v = self.0.clone();
        v.push(PathSegment::Index(index));
        JsonPath(v)
    }

    /// `prefix` followed by this path (used to place a router's errors inside a list).
    pub fn prefixed(&self, prefix: &JsonPath) -> JsonPath {
        let mut v = prefix.0.clone();
        v.extend(self.0.iter().cloned());
        JsonPath(v)
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[PathSegment] {
        &self.0
    }

    /// True for the path of the whole document.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&serde_path_to_error::Path> for JsonPath {
    /// The path serde_path_to_error tracked while deserializing.
    fn from(path: &serde_path_to_error::Path) -> JsonPath {
        use serde_path_to_error::Segment;
        let mut out = JsonPath::root();
        for seg in path.iter() {
            out = match seg {
                Segment::Seq { index } => out.index(*index),
                Segment::Map { key } => out.key(key),
                Segment::Enum { variant } => out.key(variant),
                Segment::Unknown => out,
            };
        }
        out
    }
}

/// serde_json's message without the ` at line L column C` it appends, and that position.
pub(crate) fn split_position(e: &serde_json::Error) -> (String, usize, usize) {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    (message, e.line(), e.column())
}

fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'$')
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(root)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                PathSegment::Key(k) if is_plain_key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                PathSegment::Key(k) => write!(f, "[{k:?}]")?,
                PathSegment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// What is wrong with one value of a router config.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The text is not JSON (or ends early, or repeats a key within one object); serde_json's
    /// message with its line and column.
    Syntax {
        /// serde_json's description, without the position.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// An object member that the schema does not have (often a typo).
    UnknownField {
        /// The member as written.
        field: String,
        /// The members allowed here, in their written spelling.
        expected: &'static [&'static str],
    },
    /// The same member written in both protobuf spellings (`defaultRoute` and `default_route`).
    BothSpellings {
        /// The first spelling.
        first: &'static str,
        /// The second spelling.
        second: &'static str,
    },
    /// A required member is absent.
    MissingField {
        /// The member, in its written spelling.
        field: &'static str,
    },
    /// A router without `name` whose `displayName` gives none to derive (absent, or without an
    /// ASCII letter or digit once folded).
    Unnamed {
        /// The `displayName`, if there was one.
        display_name: Option<String>,
    },
    /// A string that is not one of the allowed values (an enum such as a sort metric).
    UnknownValue {
        /// The value as given.
        value: String,
        /// The allowed values.
        expected: &'static [&'static str],
    },
    /// A value of the wrong JSON type.
    WrongType {
        /// What the schema wants here.
        expected: &'static str,
        /// What the input had (`a string`, `null`, ...).
        found: &'static str,
    },
    /// A weight that is not a non-negative integer of at most `u32::MAX`.
    InvalidWeight {
        /// The value as it appeared in the input.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A router name that does not match `^[a-z0-9][a-z0-9-]*$`.
    InvalidName {
        /// The name as given (after removing a `routers/` prefix).
        name: String,
    },
    /// An id or model that is the empty string.
    Empty {
        /// What it is (`route_id`, `model_id`, ...).
        what: &'static str,
    },
    /// A string longer than its documented limit.
    TooLong {
        /// What it is.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A list longer than its documented limit.
    TooMany {
        /// What the list holds.
        what: &'static str,
        /// How many there are.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A `route_id` used twice in one router.
    DuplicateRouteId {
        /// The repeated id.
        id: String,
        /// Where it was first used.
        first: JsonPath,
    },
    /// A `variant_id` used twice in one route.
    DuplicateVariantId {
        /// The repeated id.
        id: String,
        /// Where it was first used.
        first: JsonPath,
    },
    /// A router name used twice in one set of routers.
    DuplicateRouterName {
        /// The repeated name.
        name: String,
    },
    /// A route with an empty `variants` list.
    NoVariants,
    /// A route whose weights are all 0.
    AllWeightsZero,
    /// A route whose weights add up to more than the limit.
    WeightSumTooLarge {
        /// The sum.
        sum: u64,
        /// The limit ([`MAX_WEIGHT_SUM`](crate::limits::MAX_WEIGHT_SUM)).
        max: u64,
    },
    /// Strict mode only: a route whose weights do not add up to exactly 100 (as Inworld requires).
    SumNot100 {
        /// The sum.
        sum: u64,
    },
    /// A conditional route without `condition.cel_expression`.
    MissingCondition,
    /// A `model_selection` the catalog cannot satisfy (an empty `auto` pool, a sort metric no
    /// catalog score covers, ...).
    Selection {
        /// What is wrong, in a sentence.
        message: String,
    },
    /// A `cel_expression` that does not compile.
    InvalidCondition {
        /// The CEL compiler's message, with its position in the expression.
        message: String,
    },
    /// A router with neither a `defaultRoute` nor any conditional route.
    NoRoutes,
    /// A batch to publish at a version that is not ahead of the engine's
    /// ([`Engine::apply_at`](crate::Engine::apply_at)): versions only grow.
    VersionNotAhead {
        /// The version asked for.
        version: u64,
        /// The engine's version.
        current: u64,
    },
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigErrorKind as K;
        match self {
            K::Syntax {
                message,
                line,
                column,
            } => write!(f, "{message} at line {line} column {column}"),
            K::UnknownField { field, expected } => {
                write!(f, "unknown field `{field}`, expected ")?;
                match expected {
                    [] => f.write_str("no fields"),
                    [one] => write!(f, "`{one}`"),
                    _ => {
                        f.write_str("one of ")?;
                        for (i, e) in expected.iter().enumerate() {
                            if i > 0 {
                                f.write_str(", ")?;
                            }
                            write!(f, "`{e}`")?;
                        }
                        Ok(())
                    }
                }
            }
            K::UnknownValue { value, expected } => {
                write!(f, "unknown value {value:?}, expected one of ")?;
                for (i, e) in expected.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{e}`")?;
                }
                Ok(())
            }
            K::BothSpellings { first, second } => write!(
                f,
                "`{first}` and `{second}` are two spellings of the same field; give only one"
            ),
            K::MissingField { field } => write!(f, "missing field `{field}`"),
            K::Unnamed { display_name: None } => write!(
                f,
                "missing field `name`, and no `displayName` to derive it from"
            ),
            K::Unnamed {
                display_name: Some(d),
            } => write!(
                f,
                "missing field `name`, and the displayName {d:?} has no letter or digit to \
                 derive it from"
            ),
            K::WrongType { expected, found } => write!(f, "expected {expected}, found {found}"),
            K::InvalidWeight { value, reason } => write!(f, "invalid weight {value}: {reason}"),
            K::InvalidName { name } => write!(
                f,
                "invalid router name {name:?}: it must start with a lowercase letter or digit and \
                 hold only lowercase letters, digits and '-' (^[a-z0-9][a-z0-9-]*$)"
            ),
            K::Empty { what } => write!(f, "{what} must not be empty"),
            K::TooLong { what, len, max } => {
                write!(f, "{what} is {len} bytes long; the limit is {max}")
            }
            K::TooMany { what, count, max } => {
                write!(f, "{count} {what} is more than the limit of {max}")
            }
            K::DuplicateRouteId { id, first } => {
                write!(f, "route_id {id:?} is already used at {first}")
            }
            K::DuplicateVariantId { id, first } => {
                write!(
                    f,
                    "variant_id {id:?} is already used in this route at {first}"
                )
            }
            K::DuplicateRouterName { name } => {
                write!(f, "router name {name:?} appears more than once")
            }
            K::NoVariants => f.write_str("a route needs at least one variant"),
            K::AllWeightsZero => f.write_str(
                "every weight in this route is 0, so no variant could ever be picked; \
                 give at least one variant a positive weight",
            ),
            K::WeightSumTooLarge { sum, max } => {
                write!(
                    f,
                    "the weights add up to {sum}, more than the limit of {max}"
                )
            }
            K::SumNot100 { sum } => write!(
                f,
                "the weights add up to {sum}; strict mode (as in Inworld) requires exactly 100"
            ),
            K::MissingCondition => f.write_str(
                "a conditional route needs `condition.cel_expression`; \
                 use `defaultRoute` for the route without a condition",
            ),
            K::Selection { message } => f.write_str(message),
            K::InvalidCondition { message } => write!(f, "invalid CEL condition: {message}"),
            K::NoRoutes => f.write_str(
                "the router has neither a `defaultRoute` nor any conditional route, \
                 so no request could be routed",
            ),
            K::VersionNotAhead { version, current } => write!(
                f,
                "version {version} is not ahead of the engine's version {current}"
            ),
        }
    }
}

/// One problem in a router config: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the offending value sits.
    pub path: JsonPath,
    /// What is wrong with it.
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    /// A new error at `path`.
    pub fn new(path: JsonPath, kind: ConfigErrorKind) -> ConfigError {
        ConfigError { path, kind }
    }
}

impl fmt::Display for ConfigError {
    /// `path: message`. A syntax error at the document root prints without a path, exactly as
    /// serde_json prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_root() && matches!(self.kind, ConfigErrorKind::Syntax { .. }) {
            return write!(f, "{}", self.kind);
        }
        write!(f, "{}: {}", self.path, self.kind)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config, in document order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// Wraps a list of errors; `None` when the list is empty (there is no error).
    pub fn from_vec(errors: Vec<ConfigError>) -> Option<ConfigErrors> {
        if errors.is_empty() {
            None
        } else {
            Some(ConfigErrors(errors))
        }
    }

    /// The errors, in document order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// The errors, owned.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }

    /// How many errors there are (at least 1).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false; present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The same errors with `prefix` put in front of every path.
    pub fn prefixed(self, prefix: &JsonPath) -> ConfigErrors {
        ConfigErrors(
            self.0
                .into_iter()
                .map(|e| ConfigError::new(e.path.prefixed(prefix), e.kind))
                .collect(),
        )
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> ConfigErrors {
        ConfigErrors(vec![e])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line, `path: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Why a request could not be routed. Running cannot fail in any other way.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteError {
    /// No router by this name is loaded (the name as asked for).
    UnknownRouter(String),
    /// No conditional route matched and the router has no default route.
    NoRouteMatched,
}

impl RouteError {
    /// Inworld's message for [`RouteError::NoRouteMatched`].
    pub const NO_ROUTE_MATCHED: &'static str =
        "No route matched. Configure a default route or adjust conditions.";
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::UnknownRouter(name) => write!(f, "unknown router {name:?}"),
            RouteError::NoRouteMatched => f.write_str(Self::NO_ROUTE_MATCHED),
        }
    }
}

impl std::error::Error for RouteError {}
