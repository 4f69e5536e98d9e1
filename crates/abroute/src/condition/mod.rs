//! CEL route conditions: compiled once per config, evaluated per request without building a
//! CEL context.
//!
//! A conditional route carries `condition.cel_expression`, a [CEL] expression over the request.
//! [`Condition::compile`] parses it once with the `cel` crate (its parser is the reference; this
//! module writes none) and checks every literal `matches()` pattern. [`Condition::evaluate`] then
//! answers `true`, `false` or an [`EvalError`] for one request's [`Variables`]:
//!
//! - every metadata key of the [`RequestContext`] is a top-level identifier, typed as given
//!   (`string`, `int`, `uint`, `double`, `bool`, `null`; JSON lists and objects are CEL lists and
//!   maps, and numbers inside them stay numbers);
//! - `user` is the request's sticky key, a `string`;
//! - `messages` is the request's OpenAI-style list of `{role, content}` maps, so
//!   `messages.last().content.matches("(?i).*refund.*")` works: `last()` is added to CEL's
//!   standard library, and returns the last element of a list (an error for an empty one).
//!
//! **An error is false.** A missing identifier or key, or an operator applied to types it is not
//! defined for (`seats > "10"`), makes the condition evaluate to an [`EvalError`]; the router
//! treats that as *not matched* and goes on to the next route rather than failing the request.
//! The error is returned, not swallowed, so that counters can count it and
//! [`Condition::explain`] can say why. CEL's `&&` and `||` absorb an error when the other side
//! decides the result on its own: `false && error` is `false` and `true || error` is `true`, in
//! either order.
//!
//! **Evaluation strategy.** Most conditions are compiled a second time, from the `cel` crate's
//! AST into a small tree ([`Strategy::Fast`]) evaluated directly over the borrowed metadata:
//! no CEL context, no allocation, regular expressions compiled once. An expression that uses
//! anything outside that subset (arithmetic, macros such as `exists`, map literals, ...) is
//! evaluated by the `cel` interpreter instead ([`Strategy::Interpreter`]), in a child scope of a
//! root context made at compile time over an environment built once per process, whose variable
//! resolver borrows the request; its literal `matches()` patterns are compiled once too. Both
//! give the same results: the tests check every case of their table against the interpreter
//! with a fresh context per request. Expressions are limited to [`MAX_SOURCE_BYTES`],
//! [`MAX_OPERATOR_RUNS`], [`MAX_NESTING`] (checked on the source, before parsing) and
//! [`MAX_DEPTH`] (checked on the tree), which bounds the stack that parsing and evaluating can
//! use on the caller's thread: the core starts no thread. See
//! `docs/conditions.md` for the subset, the limits and the measurements.
//!
//! ```
//! use abroute::condition::{Condition, Variables};
//! use abroute::RequestContext;
//!
//! let condition = Condition::compile(r#"tier == "gold" && seats > 10"#)?;
//! let ctx = RequestContext::new().with_metadata("tier", "gold").with_metadata("seats", 12);
//! assert_eq!(condition.evaluate(Variables::new(&ctx)), Ok(true));
//!
//! // `seats` is missing: an error, which routing treats as false.
//! let ctx = RequestContext::new().with_metadata("tier", "gold");
//! assert!(condition.evaluate(Variables::new(&ctx)).is_err());
//! assert!(!condition.matches(Variables::new(&ctx)));
//! assert_eq!(
//!     condition.explain(Variables::new(&ctx)).to_string(),
//!     "error (counted as false): undeclared variable `seats`"
//! );
//! # Ok::<(), abroute::condition::ConditionError>(())
//! ```
//!
//! [CEL]: https://github.com/google/cel-spec

mod fast;
mod interp;

pub use interp::{MAX_NESTING, MAX_OPERATOR_RUNS};

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::context::{MetadataValue, RequestContext};

/// The variables one request gives its conditions: metadata and `user` from a
/// [`RequestContext`], and the `messages` of the request body.
///
/// Building one copies nothing: it is two references.
#[derive(Debug, Clone, Copy)]
pub struct Variables<'r, 'a> {
    ctx: &'r RequestContext<'a>,
    messages: Option<&'r Json>,
}

impl<'r, 'a> Variables<'r, 'a> {
    /// The variables of `ctx`: its metadata keys, its `user` and its `messages`.
    pub fn new(ctx: &'r RequestContext<'a>) -> Variables<'r, 'a> {
        Variables {
            ctx,
            messages: ctx.messages(),
        }
    }

    /// Sets `messages`: the request's `messages` array, borrowed (overriding the context's).
    pub fn with_messages(mut self, messages: &'r Json) -> Variables<'r, 'a> {
        self.messages = Some(messages);
        self
    }

    /// The request context the metadata and `user` come from.
    pub fn context(&self) -> &'r RequestContext<'a> {
        self.ctx
    }

    /// `messages`, if set.
    pub fn messages(&self) -> Option<&'r Json> {
        self.messages
    }

    /// What an identifier names: `user` and `messages` are the request's own (and only theirs:
    /// a metadata key of that name is not visible); any other name is a metadata key.
    pub(crate) fn lookup(&self, name: &str) -> Option<Var<'r>> {
        match name {
            "user" => self.ctx.user().map(Var::Str),
            "messages" => self.messages.map(Var::Json),
            _ => self.ctx.metadata(name).map(Var::Metadata),
        }
    }
}

impl<'r, 'a> From<&'r RequestContext<'a>> for Variables<'r, 'a> {
    fn from(ctx: &'r RequestContext<'a>) -> Self {
        Variables::new(ctx)
    }
}

/// A variable found by [`Variables::lookup`], still borrowed from the request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Var<'r> {
    /// `user`.
    Str(&'r str),
    /// `messages`.
    Json(&'r Json),
    /// A metadata value.
    Metadata(&'r MetadataValue<'r>),
}

/// How a [`Condition`] is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// The compiled subset, evaluated directly over the borrowed request.
    Fast,
    /// The `cel` crate's interpreter, in a child scope of a shared root context.
    Interpreter,
}

/// A compiled CEL condition. Immutable and cheap to clone (one reference count).
#[derive(Clone)]
pub struct Condition {
    inner: Arc<Inner>,
}

struct Inner {
    source: Box<str>,
    interpreted: interp::Interpreted,
    fast: Option<fast::Node>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("source", &self.inner.source)
            .field("strategy", &self.strategy())
            .finish()
    }
}

impl Condition {
    /// Parses `source` and prepares it for evaluation.
    ///
    /// # Errors
    ///
    /// [`ConditionError::Syntax`] when `source` is not CEL (with the line and column of each
    /// problem); [`ConditionError::TooLong`] / [`ConditionError::TooDeep`] past
    /// [`MAX_SOURCE_BYTES`] / [`MAX_DEPTH`]; and [`ConditionError::InvalidRegex`] when a
    /// `matches()` pattern written as a literal is not a valid regular expression: such a
    /// condition could never match, so it is refused with the config rather than counted as an
    /// error on every request.
    pub fn compile(source: &str) -> Result<Condition, ConditionError> {
        let root = interp::root();
        let program = root.compile(source)?;
        let interpreted = interp::Interpreted::new(&program, root)?;
        let fast = fast::compile(program.expression(), root);
        Ok(Condition {
            inner: Arc::new(Inner {
                source: source.into(),
                interpreted,
                fast,
            }),
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Whether this condition runs on the fast path or in the interpreter.
    pub fn strategy(&self) -> Strategy {
        if self.inner.fast.is_some() {
            Strategy::Fast
        } else {
            Strategy::Interpreter
        }
    }

    /// Evaluates the condition for one request.
    ///
    /// # Errors
    ///
    /// An [`EvalError`] when CEL evaluation fails (a missing variable or key, an operator on the
    /// wrong types) or gives something else than a bool. Routing treats it as `false`; see
    /// [`matches`](Self::matches).
    #[inline]
    pub fn evaluate(&self, vars: Variables<'_, '_>) -> Result<bool, EvalError<'_>> {
        match &self.inner.fast {
            Some(node) => node.evaluate(vars),
            None => self.evaluate_interpreted(vars),
        }
    }

    /// Evaluates with the `cel` interpreter, even when the fast path could: what the tests
    /// compare the fast path with.
    ///
    /// # Errors
    ///
    /// As [`evaluate`](Self::evaluate).
    pub fn evaluate_interpreted(&self, vars: Variables<'_, '_>) -> Result<bool, EvalError<'_>> {
        self.inner.interpreted.evaluate(vars)
    }

    /// Whether the request matches: [`evaluate`](Self::evaluate), with an error counted as
    /// `false`.
    #[inline]
    pub fn matches(&self, vars: Variables<'_, '_>) -> bool {
        matches!(self.evaluate(vars), Ok(true))
    }

    /// The outcome for one request, for explanations: true, false, or the error (which counts
    /// as false).
    pub fn explain(&self, vars: Variables<'_, '_>) -> ConditionOutcome<'_> {
        ConditionOutcome::from(self.evaluate(vars))
    }
}

/// The longest source [`Condition::compile`] accepts, in bytes: the validator's limit for
/// `cel_expression`.
pub const MAX_SOURCE_BYTES: usize = crate::limits::MAX_CONDITION_BYTES;

/// The deepest expression tree [`Condition::compile`] accepts. Brackets add no level; each
/// operator of a chain such as `a + b + c + …` does (but `&&` and `||` chains are balanced, so
/// a thousand clauses are ten levels). This bounds the stack evaluation can use: the deepest
/// condition evaluates on a 40 KiB thread stack on the fast path, 128 KiB in the interpreter
/// (release build).
pub const MAX_DEPTH: usize = 64;

/// Why a condition does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConditionError {
    /// The expression is not CEL: one entry per problem the parser found.
    Syntax(Vec<SyntaxError>),
    /// The source is longer than [`MAX_SOURCE_BYTES`].
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The expression nests deeper than [`MAX_DEPTH`].
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The source holds more operators or nests deeper than the parser may be given (see
    /// [`MAX_OPERATOR_RUNS`] and [`MAX_NESTING`]): refused before parsing, so that parsing never
    /// needs more stack than the caller's thread has.
    TooComplex {
        /// Operator runs counted (string contents included).
        operators: usize,
        /// The limit on operator runs.
        max_operators: usize,
        /// Nesting counted: brackets plus every `?`.
        nesting: usize,
        /// The limit on nesting.
        max_nesting: usize,
    },
    /// A `matches()` pattern written as a string literal is not a valid regular expression.
    InvalidRegex {
        /// The pattern as the expression spells it (after CEL unescaping).
        pattern: String,
        /// The regex crate's description of the problem.
        message: String,
    },
}

/// One problem the CEL parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// The parser's message.
    pub message: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.message, self.line, self.column
        )
    }
}

impl fmt::Display for ConditionError {
    /// The CEL message with its position; several problems are separated by `; `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConditionError::Syntax(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
            ConditionError::TooLong { len, max } => {
                write!(f, "the expression is {len} bytes long; the limit is {max}")
            }
            ConditionError::TooDeep { max } => write!(
                f,
                "the expression nests more than {max} levels deep \
                 (each bracket, `? :` and operator of a chain other than `&&` / `||` is a level)"
            ),
            ConditionError::TooComplex {
                operators,
                max_operators,
                nesting,
                max_nesting,
            } => write!(
                f,
                "the expression is too complex to parse safely: {operators} operator runs \
                 (limit {max_operators}) and nesting {nesting} (limit {max_nesting}; brackets \
                 plus every `?`, string contents included)"
            ),
            ConditionError::InvalidRegex { pattern, message } => {
                // The regex crate's message spans several lines (pattern, caret, reason).
                let reason = message.lines().last().unwrap_or(message).trim();
                let reason = reason.strip_prefix("error: ").unwrap_or(reason);
                write!(
                    f,
                    "invalid regular expression {pattern:?} in matches(): {reason}"
                )
            }
        }
    }
}

impl std::error::Error for ConditionError {}

/// Why a condition could not be evaluated for one request. Routing counts it as `false`.
///
/// Errors of the fast path borrow names from the [`Condition`] (`'c`) and allocate nothing;
/// [`into_owned`](Self::into_owned) detaches one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvalError<'c> {
    /// An identifier that is not a metadata key of the request, or `user` / `messages` when the
    /// request has none.
    UndeclaredVariable(Cow<'c, str>),
    /// A field or key that the map does not have: `plan.tier` when `plan` has no `tier`.
    NoSuchKey(Cow<'c, str>),
    /// A list index out of range, or `last()` of an empty list.
    IndexOutOfBounds(i64),
    /// An operator or function applied to types it is not defined for: `seats > "10"`.
    NoMatchingOverload {
        /// The operator or function, as written in CEL (`>`, `in`, `size`, `startsWith`).
        function: &'static str,
        /// The type of the first operand (the receiver of a method).
        first: &'static str,
        /// The type of the second operand, if any.
        second: Option<&'static str>,
    },
    /// The condition gave a value that is not a bool.
    NotABool {
        /// The CEL type it gave.
        found: &'static str,
    },
    /// Any other error of the CEL interpreter, with its message.
    Cel(String),
}

impl EvalError<'_> {
    /// The same error, owning its strings.
    pub fn into_owned(self) -> EvalError<'static> {
        match self {
            EvalError::UndeclaredVariable(n) => {
                EvalError::UndeclaredVariable(n.into_owned().into())
            }
            EvalError::NoSuchKey(k) => EvalError::NoSuchKey(k.into_owned().into()),
            EvalError::IndexOutOfBounds(i) => EvalError::IndexOutOfBounds(i),
            EvalError::NoMatchingOverload {
                function,
                first,
                second,
            } => EvalError::NoMatchingOverload {
                function,
                first,
                second,
            },
            EvalError::NotABool { found } => EvalError::NotABool { found },
            EvalError::Cel(m) => EvalError::Cel(m),
        }
    }
}

impl fmt::Display for EvalError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::UndeclaredVariable(name) => write!(f, "undeclared variable `{name}`"),
            EvalError::NoSuchKey(key) => write!(f, "no such key `{key}`"),
            EvalError::IndexOutOfBounds(i) => write!(f, "index {i} out of bounds"),
            EvalError::NoMatchingOverload {
                function,
                first,
                second: Some(second),
            } => write!(f, "no `{function}` for ({first}, {second})"),
            EvalError::NoMatchingOverload {
                function,
                first,
                second: None,
            } => write!(f, "no `{function}` for ({first})"),
            EvalError::NotABool { found } => {
                write!(f, "the condition gave a {found}, not a bool")
            }
            EvalError::Cel(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for EvalError<'_> {}

/// One condition's outcome for one request, for explanations and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionOutcome<'c> {
    /// The condition holds: the route matches.
    True,
    /// The condition does not hold.
    False,
    /// The condition could not be evaluated; the route does not match.
    Error(EvalError<'c>),
}

impl ConditionOutcome<'_> {
    /// Whether the route matches (only for [`True`](Self::True)).
    pub fn matched(&self) -> bool {
        matches!(self, ConditionOutcome::True)
    }

    /// The error, if evaluation failed.
    pub fn error(&self) -> Option<&EvalError<'_>> {
        match self {
            ConditionOutcome::Error(e) => Some(e),
            _ => None,
        }
    }
}

impl<'c> From<Result<bool, EvalError<'c>>> for ConditionOutcome<'c> {
    fn from(r: Result<bool, EvalError<'c>>) -> Self {
        match r {
            Ok(true) => ConditionOutcome::True,
            Ok(false) => ConditionOutcome::False,
            Err(e) => ConditionOutcome::Error(e),
        }
    }
}

impl fmt::Display for ConditionOutcome<'_> {
    /// `true`, `false`, or `error (counted as false): <reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConditionOutcome::True => f.write_str("true"),
            ConditionOutcome::False => f.write_str("false"),
            ConditionOutcome::Error(e) => write!(f, "error (counted as false): {e}"),
        }
    }
}

/// The CEL name of a type, for error messages.
pub(crate) fn static_type_name(name: &str) -> &'static str {
    match name {
        "null_type" => "null_type",
        "bool" => "bool",
        "int" => "int",
        "uint" => "uint",
        "double" => "double",
        "string" => "string",
        "bytes" => "bytes",
        "list" => "list",
        "map" => "map",
        "type" => "type",
        "optional_type" => "optional_type",
        _ => "dyn",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn condition_is_send_and_sync() {
        assert_send_sync::<Condition>();
        assert_send_sync::<Variables<'_, '_>>();
    }
}
