//! The interpreter path: the `cel` crate's own evaluation, without a fresh context per request.
//!
//! The environment (the standard library plus `last()`) is built once per process. Each
//! condition gets its own root [`Context`] over that shared environment, made at compile time,
//! and a request evaluates in a child scope of it whose [`VariableResolver`] borrows the
//! request's [`Variables`]: a metadata string becomes a `CelString` borrowing the request's
//! bytes, a number a `CelInt` / `CelUInt` / `CelDouble`, and JSON lists and maps (metadata or
//! `messages`) are converted when, and only when, the expression looks them up.
//!
//! `cel`'s own `matches()` compiles its pattern on every call (about 0.2 ms for
//! `(?i).*refund.*`). So, at compile time, every `matches()` whose pattern is a string literal
//! is rewritten into a call to a function of the condition's root context that holds the
//! compiled [`Regex`]: `s.matches("p")` and `matches(s, "p")` become `s.@matches0()`. `@` cannot
//! start a name written in CEL, so the rewrite cannot clash with a user's name. A pattern that
//! is not a literal still goes through `cel`'s `matches()`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::common::ast::{CallExpr, EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt, LIST_TYPE,
};
use cel::common::value::{Builtin, BuiltinRef, CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError, FunctionContext, Program, Value};
use regex::Regex;
use serde_json::Value as Json;

use super::{
    ConditionError, EvalError, MAX_DEPTH, MAX_SOURCE_BYTES, SyntaxError, Var, Variables,
    static_type_name,
};
use crate::context::MetadataValue;

/// The most operator runs (maximal sequences of `&|=!<>+-*/%.`, each of which the parser may
/// nest one level deeper, as in `1*1*1*…`) a source may hold. `&&` and `||` are not counted:
/// the grammar reads their chains in a loop and the parser balances them.
pub const MAX_OPERATOR_RUNS: usize = 96;

/// The deepest a source may nest `(`, `[` and `{`, plus every `?` it holds (a level of brackets
/// or of `? :` costs the parser about 10 KiB of stack in a release build, ten times that in a
/// debug build).
pub const MAX_NESTING: usize = 8;

/// Bounds the parser's recursion before it runs, so that parsing never needs more stack than
/// any thread has (the core starts no thread of its own). Counts string contents too, which
/// can only overestimate: well within the limits for real routing conditions, and a source past
/// them is refused with [`ConditionError::TooComplex`].
fn check_parse_bounds(source: &str) -> Result<(), ConditionError> {
    let (mut runs, mut depth, mut deepest, mut questions) = (0usize, 0usize, 0usize, 0usize);
    let bytes = source.as_bytes();
    let is_op = |b: u8| {
        matches!(
            b,
            b'&' | b'|' | b'=' | b'!' | b'<' | b'>' | b'+' | b'-' | b'*' | b'/' | b'%' | b'.'
        )
    };
    let mut i = 0;
    while i < bytes.len() {
        if is_op(bytes[i]) {
            let start = i;
            while i < bytes.len() && is_op(bytes[i]) {
                i += 1;
            }
            if !matches!(&bytes[start..i], b"&&" | b"||") {
                runs += 1;
            }
            continue;
        }
        i += 1;
    }
    for b in source.bytes() {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth + questions);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'?' => {
                questions += 1;
                deepest = deepest.max(depth + questions);
            }
            _ => {}
        }
    }
    if runs > MAX_OPERATOR_RUNS || deepest > MAX_NESTING {
        return Err(ConditionError::TooComplex {
            operators: runs,
            max_operators: MAX_OPERATOR_RUNS,
            nesting: deepest,
            max_nesting: MAX_NESTING,
        });
    }
    Ok(())
}

/// The environment every condition is compiled and evaluated in, built once per process, with
/// a root context that has no function or variable of its own.
pub(crate) struct Root {
    env: Arc<Env>,
    context: Context<'static, 'static>,
}

/// The process-wide root context.
pub(crate) fn root() -> &'static Root {
    static ROOT: OnceLock<Root> = OnceLock::new();
    ROOT.get_or_init(|| {
        let mut env = Env::stdlib();
        // A fixed declaration on a fresh standard library: it cannot clash.
        env.add_member_overload("last", "list_last", LIST_TYPE, Vec::new(), list_last)
            .expect("`last` is declared once, on a list");
        let env = Arc::new(env);
        Root {
            context: Context::with_env(Arc::clone(&env)),
            env,
        }
    })
}

impl Root {
    /// Parses `source` with this environment's parser and macros, and checks its depth.
    ///
    /// The parser, and every walk of the tree it builds, recurses once per level of nesting,
    /// and a left-deep chain such as `1*1*1*…` nests one level per two bytes. So the source is
    /// first checked against [`MAX_OPERATOR_RUNS`] and [`MAX_NESTING`] (see
    /// [`check_parse_bounds`]), which bounds the parser's stack on the caller's thread; a tree
    /// deeper than [`MAX_DEPTH`] is refused, which bounds all later recursion, evaluation
    /// included.
    pub(crate) fn compile(&self, source: &str) -> Result<Program, ConditionError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(ConditionError::TooLong {
                len: source.len(),
                max: MAX_SOURCE_BYTES,
            });
        }
        check_parse_bounds(source)?;
        self.parse(source)
    }

    fn parse(&self, source: &str) -> Result<Program, ConditionError> {
        let program = self.env.compile(source).map_err(|errors| {
            ConditionError::Syntax(
                errors
                    .errors
                    .iter()
                    .map(|e| SyntaxError {
                        message: e.msg.clone(),
                        line: usize::try_from(e.pos.0).unwrap_or(0),
                        column: usize::try_from(e.pos.1).unwrap_or(0),
                    })
                    .collect(),
            )
        })?;
        if depth_exceeds(program.expression(), MAX_DEPTH) {
            return Err(ConditionError::TooDeep { max: MAX_DEPTH });
        }
        Ok(program)
    }

    /// Whether `expr` (an identifier or a qualified name) means something without any request
    /// variable: a type name such as `int`. The fast path leaves those to the interpreter.
    pub(crate) fn resolves(&self, expr: &cel::parser::Expression) -> bool {
        Value::resolve_val(expr, &self.context).is_ok()
    }
}

/// Whether the tree under `expr` has more than `max` levels. Iterative: the tree may be deep.
fn depth_exceeds(expr: &IdedExpr, max: usize) -> bool {
    let mut pending = vec![(expr, 1usize)];
    while let Some((expr, depth)) = pending.pop() {
        if depth > max {
            return true;
        }
        let below = depth + 1;
        match &expr.expr {
            Expr::Call(call) => {
                pending.extend(call.target.as_deref().map(|t| (t, below)));
                pending.extend(call.args.iter().map(|a| (a, below)));
            }
            Expr::Select(select) => pending.push((&select.operand, below)),
            Expr::List(list) => pending.extend(list.elements.iter().map(|e| (e, below))),
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(e) = &entry.expr {
                        pending.push((&e.key, below));
                        pending.push((&e.value, below));
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        pending.push((&f.value, below));
                    }
                }
            }
            Expr::Comprehension(c) => pending.extend(
                [
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ]
                .map(|e| (e, below)),
            ),
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    false
}

/// `list.last()`: the last element; an error for an empty list.
fn list_last<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let count = args.len();
    let mut args = args.into_iter();
    let (Some(list), None) = (args.next(), args.next()) else {
        return Err(ExecutionError::invalid_argument_count(1, count));
    };
    let type_name = list.get_type().name().to_owned();
    let no_overload = || ExecutionError::no_such_member_overload("last", vec![type_name.clone()]);
    let empty = || ExecutionError::IndexOutOfBounds(Value::Int(-1));
    match list {
        CowVal::Borrowed(v) => match v.as_builtin() {
            BuiltinRef::List(l) => l
                .inner()
                .last()
                .map(|e| CowVal::Borrowed(e.as_ref()))
                .ok_or_else(empty),
            _ => Err(no_overload()),
        },
        CowVal::Owned(b) => match b.into_builtin() {
            Some(Builtin::List(l)) => l.into_inner().pop().map(CowVal::Owned).ok_or_else(empty),
            _ => Err(no_overload()),
        },
    }
}

/// The request's variables, as the `cel` interpreter asks for them.
struct Resolver<'r> {
    vars: Variables<'r, 'r>,
    /// `messages`, converted on first use and kept for the rest of the evaluation.
    messages: OnceLock<Box<dyn Val + 'r>>,
}

impl VariableResolver for Resolver<'_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        match self.vars.lookup(name)? {
            Var::Str(s) => Some(CowVal::owned(CelString::from(s))),
            Var::Json(json) => Some(CowVal::Borrowed(
                self.messages.get_or_init(|| json_to_val(json)).as_ref(),
            )),
            Var::Metadata(value) => Some(CowVal::Owned(metadata_to_val(value))),
        }
    }
}

/// A metadata value as a CEL value; strings are borrowed, not copied.
pub(crate) fn metadata_to_val<'r>(value: &'r MetadataValue<'r>) -> Box<dyn Val + 'r> {
    match value {
        MetadataValue::Null => Box::new(CelNull),
        MetadataValue::Bool(b) => Box::new(CelBool::from(*b)),
        MetadataValue::Int(i) => Box::new(CelInt::from(*i)),
        MetadataValue::UInt(u) => Box::new(CelUInt::from(*u)),
        MetadataValue::Float(x) => Box::new(CelDouble::from(*x)),
        MetadataValue::Str(s) => Box::new(CelString::from(s.as_ref())),
        MetadataValue::Json(json) => json_to_val(json),
    }
}

/// A JSON value as a CEL value. Numbers map as in [`MetadataValue`]: an integer that fits `i64`
/// is an `int`, a larger one a `uint`, anything else a `double`.
pub(crate) fn json_to_val(json: &Json) -> Box<dyn Val + '_> {
    match json {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Json::String(s) => Box::new(CelString::from(s.as_str())),
        Json::Array(items) => Box::new(CelList::from(
            items.iter().map(json_to_val).collect::<Vec<_>>(),
        )),
        Json::Object(members) => Box::new(CelMap::from(
            members
                .iter()
                .map(|(k, v)| {
                    (
                        CelMapKey::String(CelString::from(k.as_str())),
                        json_to_val(v),
                    )
                })
                .collect::<HashMap<_, _>>(),
        )),
    }
}

/// A condition prepared for the interpreter: its expression with literal `matches()` patterns
/// compiled, and its own root context, which holds them.
pub(crate) struct Interpreted {
    expr: IdedExpr,
    context: Context<'static, 'static>,
}

impl Interpreted {
    /// Prepares `program`'s expression.
    ///
    /// # Errors
    ///
    /// [`ConditionError::InvalidRegex`] for a literal `matches()` pattern that does not compile,
    /// wherever it is in the expression.
    pub(crate) fn new(program: &Program, root: &Root) -> Result<Interpreted, ConditionError> {
        let mut expr = program.expression().clone();
        let mut regexes = Vec::new();
        precompile_matches(&mut expr, &mut regexes)?;
        let mut context = Context::with_env(Arc::clone(&root.env));
        for (i, regex) in regexes.into_iter().enumerate() {
            context
                .add_function(&matches_name(i), matches_function(regex))
                .expect("`@matches{i}` is no overload of the environment: it cannot clash");
        }
        Ok(Interpreted { expr, context })
    }

    /// Evaluates in a child scope of this condition's root context, with `vars` as variables.
    pub(crate) fn evaluate<'c>(&self, vars: Variables<'_, '_>) -> Result<bool, EvalError<'c>> {
        let resolver = Resolver {
            vars,
            messages: OnceLock::new(),
        };
        let context: &Context<'_, '_> = &self.context;
        let mut scope = context.new_inner_scope();
        scope.set_variable_resolver(&resolver);
        let value = Value::resolve_val(&self.expr, &scope).map_err(from_cel)?;
        match value.downcast_ref::<CelBool>() {
            Some(b) => Ok(*b.inner()),
            None => Err(EvalError::NotABool {
                found: static_type_name(value.get_type().name()),
            }),
        }
    }
}

/// The name of the function that holds the `i`-th literal pattern of a condition.
fn matches_name(i: usize) -> String {
    format!("@matches{i}")
}

/// The literal pattern of a `matches()` call, and the string it is applied to.
pub(crate) fn literal_matches(call: &CallExpr) -> Option<(&IdedExpr, &str)> {
    let (subject, pattern) = match (call.func_name.as_str(), &call.target, call.args.as_slice()) {
        ("matches", Some(subject), [pattern]) => (&**subject, pattern),
        ("matches", None, [subject, pattern]) => (subject, pattern),
        _ => return None,
    };
    match &pattern.expr {
        Expr::Literal(LiteralValue::String(p)) => Some((subject, p.inner())),
        _ => None,
    }
}

/// Compiles every literal `matches()` pattern in `expr` into `regexes`, and rewrites its call
/// into `subject.@matches{i}()`.
fn precompile_matches(expr: &mut IdedExpr, regexes: &mut Vec<Regex>) -> Result<(), ConditionError> {
    match &mut expr.expr {
        Expr::Call(call) => {
            if let Some((_, pattern)) = literal_matches(call) {
                let regex = Regex::new(pattern).map_err(|e| ConditionError::InvalidRegex {
                    pattern: pattern.to_owned(),
                    message: e.to_string(),
                })?;
                let subject = match call.target.take() {
                    Some(subject) => *subject,
                    None => call.args.swap_remove(0),
                };
                *call = CallExpr {
                    func_name: matches_name(regexes.len()),
                    target: Some(Box::new(subject)),
                    args: Vec::new(),
                };
                regexes.push(regex);
            }
            if let Some(target) = call.target.as_deref_mut() {
                precompile_matches(target, regexes)?;
            }
            for arg in &mut call.args {
                precompile_matches(arg, regexes)?;
            }
        }
        Expr::Select(select) => precompile_matches(&mut select.operand, regexes)?,
        Expr::List(list) => {
            for e in &mut list.elements {
                precompile_matches(e, regexes)?;
            }
        }
        Expr::Map(map) => {
            for entry in &mut map.entries {
                if let EntryExpr::MapEntry(e) = &mut entry.expr {
                    precompile_matches(&mut e.key, regexes)?;
                    precompile_matches(&mut e.value, regexes)?;
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &mut s.entries {
                if let EntryExpr::StructField(f) = &mut entry.expr {
                    precompile_matches(&mut f.value, regexes)?;
                }
            }
        }
        Expr::Comprehension(c) => {
            for e in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                precompile_matches(e, regexes)?;
            }
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
    Ok(())
}

/// The function behind `@matches{i}`: `cel`'s `matches()` with its pattern compiled once.
type MatchesFunction = Box<
    dyn for<'c, 'v> Fn(&mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError>
        + Send
        + Sync,
>;

fn matches_function(regex: Regex) -> MatchesFunction {
    Box::new(move |ftx: &mut FunctionContext<'_, '_>| {
        let subject = ftx
            .this
            .as_ref()
            .ok_or_else(ExecutionError::missing_argument_or_target)?;
        match subject.downcast_ref::<CelString>() {
            Some(s) => Ok(CowVal::owned(CelBool::from(regex.is_match(s.inner())))),
            None => Err(ExecutionError::no_such_member_overload(
                "matches",
                vec![subject.get_type().name().to_owned(), "string".to_owned()],
            )),
        }
    })
}

/// A `cel` runtime error as an [`EvalError`].
fn from_cel(e: ExecutionError) -> EvalError<'static> {
    match e {
        ExecutionError::UndeclaredReference(name) => {
            EvalError::UndeclaredVariable(name.as_str().to_owned().into())
        }
        ExecutionError::NoSuchKey(key) => EvalError::NoSuchKey(key.as_str().to_owned().into()),
        other => EvalError::Cel(other.to_string()),
    }
}
