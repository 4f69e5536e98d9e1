//! The fast path: a subset of CEL compiled from the `cel` crate's AST into a small tree that is
//! evaluated directly over the request's borrowed variables.
//!
//! The subset is what routing conditions are made of: literals (null, bool, int, uint, double,
//! string, and lists of literals), identifiers and qualified names, field selection, `has()`,
//! indexing by a literal int or string, `!`, `&&`, `||`, `? :`, `==`, `!=`, `<`, `<=`, `>`,
//! `>=`, `in`, `size()`, `startsWith()`, `endsWith()`, `contains()`, `matches()` with a literal
//! pattern (compiled once), and `last()`. [`compile`] returns `None` for anything else, and the
//! condition is left to the interpreter.
//!
//! Every operation follows the `cel` crate's semantics (version 0.15), which the tests check
//! case by case against its interpreter:
//!
//! - numbers compare across `int`, `uint` and `double` (`12 > 10.5`, `1 == 1u`, `1 == 1.0`);
//!   a comparison with NaN is an error, an equality with NaN is false;
//! - `==` between different types is `false`, never an error; `<` between them is an error;
//! - `&&` / `||` evaluate left to right and absorb an error (or a non-bool) on either side when
//!   the other side decides the result;
//! - a name `a.b.c` is looked up as the variable `a.b.c`, then `a.b` (selecting `c`), then `a`
//!   (selecting `b`, then `c`), as `cel` resolves qualified names.
//!
//! Nothing is allocated while evaluating, and errors borrow their names from the tree.

use std::borrow::Cow;
use std::cmp::Ordering;

use cel::common::ast::{Expr, IdedExpr, ListExpr, LiteralValue, operators};
use regex::Regex;
use serde_json::{Map, Value as Json};

use super::interp::{Root, literal_matches};
use super::{EvalError, Var, Variables};
use crate::context::MetadataValue;

/// A compiled condition, or a part of one.
#[derive(Debug)]
pub(crate) enum Node {
    /// A literal.
    Lit(Lit),
    /// An identifier or a qualified name.
    Name(Box<Name>),
    /// `operand.field`, on an operand that is not a name.
    Select(Box<Node>, Box<str>),
    /// `has(operand.field)`.
    Has(Box<Node>, Box<str>),
    /// `operand[index]`, with a literal `int` or `string` index.
    Index(Box<Node>, Lit),
    /// `!operand`.
    Not(Box<Node>),
    /// `left && right`.
    And(Box<[Node; 2]>),
    /// `left || right`.
    Or(Box<[Node; 2]>),
    /// `condition ? then : else`.
    Cond(Box<[Node; 3]>),
    /// `left == right`.
    Eq(Box<[Node; 2]>),
    /// `left != right`.
    Ne(Box<[Node; 2]>),
    /// `<`, `<=`, `>` or `>=`.
    Cmp(Cmp, Box<[Node; 2]>),
    /// `element in container`.
    In(Box<[Node; 2]>),
    /// `size(x)` or `x.size()`.
    Size(Box<Node>),
    /// `s.startsWith(t)`, `s.endsWith(t)` or `s.contains(t)`: receiver, argument.
    Str(StrOp, Box<[Node; 2]>),
    /// `s.matches("pattern")` or `matches(s, "pattern")`, the pattern compiled once.
    Matches(Box<Node>, Box<Regex>),
    /// `list.last()`.
    Last(Box<Node>),
}

/// A literal value of the expression.
#[derive(Debug)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(Box<str>),
    List(Box<[Lit]>),
}

/// An identifier or qualified name, with the variable names it may resolve to.
#[derive(Debug)]
pub(crate) struct Name {
    /// `a.b.c` is `["a", "b", "c"]`.
    segments: Box<[Box<str>]>,
    /// The variable names to try, longest first: `["a.b.c", "a.b", "a"]`. Candidate `i` leaves
    /// the last `i` segments to select.
    candidates: Box<[Box<str>]>,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn symbol(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }

    fn holds(self, o: Ordering) -> bool {
        match self {
            Cmp::Lt => o == Ordering::Less,
            Cmp::Le => o != Ordering::Greater,
            Cmp::Gt => o == Ordering::Greater,
            Cmp::Ge => o != Ordering::Less,
        }
    }
}

/// A string predicate.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StrOp {
    StartsWith,
    EndsWith,
    Contains,
}

impl StrOp {
    fn name(self) -> &'static str {
        match self {
            StrOp::StartsWith => "startsWith",
            StrOp::EndsWith => "endsWith",
            StrOp::Contains => "contains",
        }
    }
}

/// A value while evaluating, borrowed from the request or from the tree. Three words.
#[derive(Debug, Clone, Copy)]
enum Val<'e> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(&'e str),
    /// A JSON array from the request.
    JsonList(&'e [Json]),
    /// A list literal.
    LitList(&'e [Lit]),
    Map(&'e Map<String, Json>),
}

/// A list, seen element by element.
#[derive(Debug, Clone, Copy)]
enum List<'e> {
    Json(&'e [Json]),
    Lit(&'e [Lit]),
}

impl<'e> List<'e> {
    fn len(self) -> usize {
        match self {
            List::Json(items) => items.len(),
            List::Lit(items) => items.len(),
        }
    }

    fn get(self, i: usize) -> Option<Val<'e>> {
        match self {
            List::Json(items) => items.get(i).map(Val::from_json),
            List::Lit(items) => items.get(i).map(Val::from_lit),
        }
    }

    fn iter(self) -> impl Iterator<Item = Val<'e>> {
        (0..self.len()).filter_map(move |i| self.get(i))
    }
}

/// A CEL type, for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Null,
    Bool,
    Int,
    UInt,
    Double,
    String,
    List,
    Map,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Null => "null_type",
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::UInt => "uint",
            Ty::Double => "double",
            Ty::String => "string",
            Ty::List => "list",
            Ty::Map => "map",
        }
    }
}

impl<'e> Val<'e> {
    fn ty(self) -> Ty {
        match self {
            Val::Null => Ty::Null,
            Val::Bool(_) => Ty::Bool,
            Val::Int(_) => Ty::Int,
            Val::UInt(_) => Ty::UInt,
            Val::Double(_) => Ty::Double,
            Val::Str(_) => Ty::String,
            Val::JsonList(_) | Val::LitList(_) => Ty::List,
            Val::Map(_) => Ty::Map,
        }
    }

    fn list(self) -> Option<List<'e>> {
        match self {
            Val::JsonList(items) => Some(List::Json(items)),
            Val::LitList(items) => Some(List::Lit(items)),
            _ => None,
        }
    }

    /// A JSON value, with numbers typed as [`MetadataValue`] types them.
    fn from_json(json: &'e Json) -> Val<'e> {
        match json {
            Json::Null => Val::Null,
            Json::Bool(b) => Val::Bool(*b),
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Val::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Val::UInt(u)
                } else {
                    Val::Double(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Json::String(s) => Val::Str(s),
            Json::Array(items) => Val::JsonList(items),
            Json::Object(members) => Val::Map(members),
        }
    }

    fn from_metadata(value: &'e MetadataValue<'e>) -> Val<'e> {
        match value {
            MetadataValue::Null => Val::Null,
            MetadataValue::Bool(b) => Val::Bool(*b),
            MetadataValue::Int(i) => Val::Int(*i),
            MetadataValue::UInt(u) => Val::UInt(*u),
            MetadataValue::Float(x) => Val::Double(*x),
            MetadataValue::Str(s) => Val::Str(s),
            MetadataValue::Json(json) => Val::from_json(json),
        }
    }

    fn from_var(var: Var<'e>) -> Val<'e> {
        match var {
            Var::Str(s) => Val::Str(s),
            Var::Json(json) => Val::from_json(json),
            Var::Metadata(value) => Val::from_metadata(value),
        }
    }

    fn from_lit(lit: &'e Lit) -> Val<'e> {
        match lit {
            Lit::Null => Val::Null,
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Int(i) => Val::Int(*i),
            Lit::UInt(u) => Val::UInt(*u),
            Lit::Double(x) => Val::Double(*x),
            Lit::Str(s) => Val::Str(s),
            Lit::List(items) => Val::LitList(items),
        }
    }
}

/// Why evaluation failed, kept to three words while it travels up the tree; turned into an
/// [`EvalError`] once, at the top.
#[derive(Debug, Clone, Copy)]
enum Fail<'c> {
    Undeclared(&'c str),
    NoSuchKey(&'c str),
    NoSuchIntKey(i64),
    OutOfBounds(i64),
    Overload {
        function: &'static str,
        first: Ty,
        second: Option<Ty>,
    },
    NotABool(Ty),
}

impl<'c> Fail<'c> {
    fn into_error(self) -> EvalError<'c> {
        match self {
            Fail::Undeclared(name) => EvalError::UndeclaredVariable(Cow::Borrowed(name)),
            Fail::NoSuchKey(key) => EvalError::NoSuchKey(Cow::Borrowed(key)),
            Fail::NoSuchIntKey(key) => EvalError::NoSuchKey(Cow::Owned(key.to_string())),
            Fail::OutOfBounds(i) => EvalError::IndexOutOfBounds(i),
            Fail::Overload {
                function,
                first,
                second,
            } => EvalError::NoMatchingOverload {
                function,
                first: first.name(),
                second: second.map(Ty::name),
            },
            Fail::NotABool(found) => EvalError::NotABool {
                found: found.name(),
            },
        }
    }
}

/// The order of two numbers of any numeric types, exactly as `cel`'s `Comparer`s compute it:
/// `None` if either is not a number, `Some(None)` if they are not ordered (NaN).
fn numeric_order(a: Val<'_>, b: Val<'_>) -> Option<Option<Ordering>> {
    Some(match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(&y)),
        (Val::UInt(x), Val::UInt(y)) => Some(x.cmp(&y)),
        (Val::Double(x), Val::Double(y)) => x.partial_cmp(&y),
        // An int that does not fit a u64 is negative, so less than every uint, and a uint
        // that does not fit an i64 is greater than every int.
        (Val::Int(x), Val::UInt(y)) => Some(u64::try_from(x).map_or(Ordering::Less, |x| x.cmp(&y))),
        (Val::UInt(x), Val::Int(y)) => {
            Some(i64::try_from(x).map_or(Ordering::Greater, |x| x.cmp(&y)))
        }
        (Val::Int(x), Val::Double(y)) => (x as f64).partial_cmp(&y),
        (Val::Double(x), Val::Int(y)) => x.partial_cmp(&(y as f64)),
        (Val::UInt(x), Val::Double(y)) => (x as f64).partial_cmp(&y),
        (Val::Double(x), Val::UInt(y)) => x.partial_cmp(&(y as f64)),
        _ => return None,
    })
}

/// CEL equality: numbers by value across types, lists element-wise, maps key by key; values of
/// different types are not equal.
fn equals(a: Val<'_>, b: Val<'_>) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Map(x), Val::Map(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.get(k)
                        .is_some_and(|w| equals(Val::from_json(v), Val::from_json(w)))
                })
        }
        _ => match (a.list(), b.list()) {
            (Some(x), Some(y)) => {
                x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| equals(p, q))
            }
            _ => numeric_order(a, b) == Some(Some(Ordering::Equal)),
        },
    }
}

fn no_overload<'c>(function: &'static str, first: Val<'_>, second: Option<Val<'_>>) -> Fail<'c> {
    Fail::Overload {
        function,
        first: first.ty(),
        second: second.map(Val::ty),
    }
}

/// The bool of `v`, as `cel` requires it of an operand of `&&`, `||` and `? :`.
fn as_bool<'c>(function: &'static str, v: Val<'_>) -> Result<bool, Fail<'c>> {
    match v {
        Val::Bool(b) => Ok(b),
        other => Err(no_overload(function, other, None)),
    }
}

/// `value.field`.
fn select<'e, 'c>(value: Val<'e>, field: &'c str) -> Result<Val<'e>, Fail<'c>> {
    match value {
        Val::Map(members) => members
            .get(field)
            .map(Val::from_json)
            .ok_or(Fail::NoSuchKey(field)),
        other => Err(no_overload(".", other, Some(Val::Str(field)))),
    }
}

impl Name {
    fn eval<'e, 'c: 'e>(&'c self, vars: Variables<'e, '_>) -> Result<Val<'e>, Fail<'c>> {
        for (left, candidate) in self.candidates.iter().enumerate() {
            if let Some(var) = vars.lookup(candidate) {
                let mut value = Val::from_var(var);
                for field in &self.segments[self.segments.len() - left..] {
                    value = select(value, field)?;
                }
                return Ok(value);
            }
        }
        Err(Fail::Undeclared(self.segments.first().map_or("", |s| s)))
    }
}

impl Node {
    /// Evaluates to the condition's bool.
    #[inline]
    pub(crate) fn evaluate<'c>(&'c self, vars: Variables<'_, '_>) -> Result<bool, EvalError<'c>> {
        match self.operand(vars) {
            Ok(Val::Bool(b)) => Ok(b),
            Ok(other) => Err(Fail::NotABool(other.ty()).into_error()),
            Err(fail) => Err(fail.into_error()),
        }
    }

    /// Evaluates an operand: literals and names inline (most operands are one or the other),
    /// anything else through [`eval`](Self::eval).
    #[inline(always)]
    fn operand<'e, 'c: 'e>(&'c self, vars: Variables<'e, '_>) -> Result<Val<'e>, Fail<'c>> {
        match self {
            Node::Lit(lit) => Ok(Val::from_lit(lit)),
            Node::Name(name) => name.eval(vars),
            _ => self.eval(vars),
        }
    }

    fn eval<'e, 'c: 'e>(&'c self, vars: Variables<'e, '_>) -> Result<Val<'e>, Fail<'c>> {
        match self {
            Node::Lit(lit) => Ok(Val::from_lit(lit)),
            Node::Name(name) => name.eval(vars),
            Node::Select(operand, field) => select(operand.operand(vars)?, field),
            Node::Has(operand, field) => match operand.operand(vars)? {
                Val::Map(members) => Ok(Val::Bool(members.contains_key(&**field))),
                other => Err(no_overload("has", other, None)),
            },
            Node::Index(operand, index) => {
                let value = operand.operand(vars)?;
                match (value, index) {
                    (Val::Map(members), Lit::Str(key)) => members
                        .get(&**key)
                        .map(Val::from_json)
                        .ok_or(Fail::NoSuchKey(key)),
                    (Val::Map(_), Lit::Int(i)) => Err(Fail::NoSuchIntKey(*i)),
                    (value, Lit::Int(i)) => match value.list() {
                        Some(list) => usize::try_from(*i)
                            .ok()
                            .and_then(|u| list.get(u))
                            .ok_or(Fail::OutOfBounds(*i)),
                        None => Err(no_overload("[]", value, Some(Val::Int(*i)))),
                    },
                    (value, index) => Err(no_overload("[]", value, Some(Val::from_lit(index)))),
                }
            }
            Node::Not(operand) => match operand.operand(vars)? {
                Val::Bool(b) => Ok(Val::Bool(!b)),
                other => Err(no_overload("!", other, None)),
            },
            Node::And(n) => {
                let left = n[0].operand(vars).and_then(|v| as_bool("&&", v));
                if let Ok(false) = left {
                    return Ok(Val::Bool(false));
                }
                let right = n[1].operand(vars)?;
                match (left, right) {
                    (Ok(_), Val::Bool(r)) => Ok(Val::Bool(r)),
                    (Err(_), Val::Bool(false)) => Ok(Val::Bool(false)),
                    (Err(e), _) => Err(e),
                    (Ok(_), other) => Err(no_overload("&&", Val::Bool(true), Some(other))),
                }
            }
            Node::Or(n) => {
                let left = n[0].operand(vars).and_then(|v| as_bool("||", v));
                if let Ok(true) = left {
                    return Ok(Val::Bool(true));
                }
                let right = n[1].operand(vars)?;
                match (left, right) {
                    (Ok(_), Val::Bool(r)) => Ok(Val::Bool(r)),
                    (Err(_), Val::Bool(true)) => Ok(Val::Bool(true)),
                    (Err(e), _) => Err(e),
                    (Ok(_), other) => Err(no_overload("||", Val::Bool(false), Some(other))),
                }
            }
            Node::Cond(n) => {
                if as_bool("?:", n[0].operand(vars)?)? {
                    n[1].operand(vars)
                } else {
                    n[2].operand(vars)
                }
            }
            Node::Eq(n) => {
                let (a, b) = (n[0].operand(vars)?, n[1].operand(vars)?);
                Ok(Val::Bool(equals(a, b)))
            }
            Node::Ne(n) => {
                let (a, b) = (n[0].operand(vars)?, n[1].operand(vars)?);
                Ok(Val::Bool(!equals(a, b)))
            }
            Node::Cmp(op, n) => {
                let (a, b) = (n[0].operand(vars)?, n[1].operand(vars)?);
                let order = match (a, b) {
                    (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
                    (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(&y)),
                    _ => numeric_order(a, b).flatten(),
                };
                match order {
                    Some(o) => Ok(Val::Bool(op.holds(o))),
                    None => Err(no_overload(op.symbol(), a, Some(b))),
                }
            }
            Node::In(n) => {
                let (element, container) = (n[0].operand(vars)?, n[1].operand(vars)?);
                match (element, container) {
                    (Val::Str(key), Val::Map(members)) => Ok(Val::Bool(members.contains_key(key))),
                    // JSON keys are strings: no number or bool is a key of a JSON object.
                    (Val::Int(_) | Val::UInt(_) | Val::Double(_) | Val::Bool(_), Val::Map(_)) => {
                        Ok(Val::Bool(false))
                    }
                    _ => match container.list() {
                        Some(list) => Ok(Val::Bool(list.iter().any(|e| equals(e, element)))),
                        None => Err(no_overload("in", element, Some(container))),
                    },
                }
            }
            Node::Size(operand) => {
                let value = operand.operand(vars)?;
                match (value, value.list()) {
                    (Val::Str(s), _) => Ok(Val::Int(s.chars().count() as i64)),
                    (Val::Map(members), _) => Ok(Val::Int(members.len() as i64)),
                    (_, Some(list)) => Ok(Val::Int(list.len() as i64)),
                    (other, None) => Err(no_overload("size", other, None)),
                }
            }
            Node::Str(op, n) => {
                // `cel` evaluates the argument before the receiver.
                let argument = n[1].operand(vars)?;
                let receiver = n[0].operand(vars)?;
                match (receiver, argument) {
                    (Val::Str(s), Val::Str(t)) => Ok(Val::Bool(match op {
                        StrOp::StartsWith => s.starts_with(t),
                        StrOp::EndsWith => s.ends_with(t),
                        StrOp::Contains => s.contains(t),
                    })),
                    (receiver, argument) => Err(no_overload(op.name(), receiver, Some(argument))),
                }
            }
            Node::Matches(operand, regex) => match operand.operand(vars)? {
                Val::Str(s) => Ok(Val::Bool(regex.is_match(s))),
                other => Err(no_overload("matches", other, Some(Val::Str("")))),
            },
            Node::Last(operand) => {
                let value = operand.operand(vars)?;
                match value.list() {
                    Some(list) => list
                        .len()
                        .checked_sub(1)
                        .and_then(|i| list.get(i))
                        .ok_or(Fail::OutOfBounds(-1)),
                    None => Err(no_overload("last", value, None)),
                }
            }
        }
    }
}

/// Compiles `expr` for the fast path; `None` if it uses anything outside the subset.
pub(crate) fn compile(expr: &IdedExpr, root: &Root) -> Option<Node> {
    match &expr.expr {
        Expr::Literal(literal) => lit(literal).map(Node::Lit),
        Expr::List(list) => list_lit(list).map(Node::Lit),
        Expr::Ident(_) => name(expr, root),
        Expr::Select(select) if !select.test => {
            if qualified_name(expr).is_some() {
                name(expr, root)
            } else {
                let operand = compile(&select.operand, root)?;
                Some(Node::Select(
                    Box::new(operand),
                    select.field.as_str().into(),
                ))
            }
        }
        Expr::Select(select) => {
            // `has(a.b.c)` looks up the name `a.b`, then tests for `c`.
            let operand = if qualified_name(&select.operand).is_some() {
                name(&select.operand, root)?
            } else {
                compile(&select.operand, root)?
            };
            Some(Node::Has(Box::new(operand), select.field.as_str().into()))
        }
        Expr::Call(call) => {
            let two =
                |a: &IdedExpr, b: &IdedExpr| Some(Box::new([compile(a, root)?, compile(b, root)?]));
            let one = |a: &IdedExpr| compile(a, root).map(Box::new);
            match (
                call.func_name.as_str(),
                call.target.as_deref(),
                call.args.as_slice(),
            ) {
                (operators::LOGICAL_AND, None, [a, b]) => two(a, b).map(Node::And),
                (operators::LOGICAL_OR, None, [a, b]) => two(a, b).map(Node::Or),
                (operators::LOGICAL_NOT, None, [a]) => one(a).map(Node::Not),
                (operators::CONDITIONAL, None, [c, a, b]) => Some(Node::Cond(Box::new([
                    compile(c, root)?,
                    compile(a, root)?,
                    compile(b, root)?,
                ]))),
                (operators::EQUALS, None, [a, b]) => two(a, b).map(Node::Eq),
                (operators::NOT_EQUALS, None, [a, b]) => two(a, b).map(Node::Ne),
                (operators::LESS, None, [a, b]) => two(a, b).map(|n| Node::Cmp(Cmp::Lt, n)),
                (operators::LESS_EQUALS, None, [a, b]) => two(a, b).map(|n| Node::Cmp(Cmp::Le, n)),
                (operators::GREATER, None, [a, b]) => two(a, b).map(|n| Node::Cmp(Cmp::Gt, n)),
                (operators::GREATER_EQUALS, None, [a, b]) => {
                    two(a, b).map(|n| Node::Cmp(Cmp::Ge, n))
                }
                (operators::IN, None, [a, b]) => two(a, b).map(Node::In),
                (operators::INDEX, None, [a, index]) => match &index.expr {
                    Expr::Literal(LiteralValue::Int(i)) => {
                        Some(Node::Index(one(a)?, Lit::Int(*i.inner())))
                    }
                    Expr::Literal(LiteralValue::String(s)) => {
                        Some(Node::Index(one(a)?, Lit::Str(s.inner().into())))
                    }
                    _ => None,
                },
                ("size", Some(a), []) | ("size", None, [a]) => one(a).map(Node::Size),
                ("startsWith", Some(s), [t]) => two(s, t).map(|n| Node::Str(StrOp::StartsWith, n)),
                ("endsWith", Some(s), [t]) => two(s, t).map(|n| Node::Str(StrOp::EndsWith, n)),
                ("contains", Some(s), [t]) => two(s, t).map(|n| Node::Str(StrOp::Contains, n)),
                ("matches", _, _) => {
                    let (subject, pattern) = literal_matches(call)?;
                    let regex = Regex::new(pattern).ok()?;
                    Some(Node::Matches(one(subject)?, Box::new(regex)))
                }
                ("last", Some(list), []) => one(list).map(Node::Last),
                _ => None,
            }
        }
        _ => None,
    }
}

fn lit(literal: &LiteralValue) -> Option<Lit> {
    Some(match literal {
        LiteralValue::Null => Lit::Null,
        LiteralValue::Boolean(b) => Lit::Bool(*b.inner()),
        LiteralValue::Int(i) => Lit::Int(*i.inner()),
        LiteralValue::UInt(u) => Lit::UInt(*u.inner()),
        LiteralValue::Double(x) => Lit::Double(*x.inner()),
        LiteralValue::String(s) => Lit::Str(s.inner().into()),
        LiteralValue::Bytes(_) => return None,
    })
}

fn list_lit(list: &ListExpr) -> Option<Lit> {
    if !list.optional_indices.is_empty() {
        return None;
    }
    let items = list
        .elements
        .iter()
        .map(|e| match &e.expr {
            Expr::Literal(literal) => lit(literal),
            Expr::List(inner) => list_lit(inner),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Lit::List(items.into_boxed_slice()))
}

/// The segments of the qualified name `expr` spells (`a.b.c`), if it is one.
fn qualified_name(expr: &IdedExpr) -> Option<Vec<&str>> {
    let mut segments = Vec::new();
    let mut expr = expr;
    loop {
        match &expr.expr {
            Expr::Ident(name) => {
                segments.push(name.as_str());
                segments.reverse();
                return Some(segments);
            }
            Expr::Select(select) if !select.test => {
                segments.push(select.field.as_str());
                expr = &select.operand;
            }
            _ => return None,
        }
    }
}

/// A name node for the identifier or qualified name `expr`; `None` for a name that means
/// something without request variables (a type such as `int`) or an absolute name (`.a`),
/// which the interpreter resolves differently.
fn name(expr: &IdedExpr, root: &Root) -> Option<Node> {
    let segments = qualified_name(expr)?;
    if segments.first()?.starts_with('.') || root.resolves(expr) {
        return None;
    }
    let candidates = (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join(".").into_boxed_str())
        .collect();
    Some(Node::Name(Box::new(Name {
        segments: segments.iter().map(|s| Box::from(*s)).collect(),
        candidates,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values and failures travel up the tree by value: keep them small.
    #[test]
    fn values_and_failures_are_three_words() {
        assert!(std::mem::size_of::<Val<'_>>() <= 24);
        assert!(std::mem::size_of::<Fail<'_>>() <= 24);
        assert!(std::mem::size_of::<Result<Val<'_>, Fail<'_>>>() <= 32);
    }
}
