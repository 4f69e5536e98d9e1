//! CEL conditions: a semantics table checked three ways, compile errors, explanations, and
//! "deterministic, never panics, both paths agree" over arbitrary metadata.
//!
//! Every case of the table is evaluated by:
//!
//! 1. [`Condition::evaluate`] (the fast path when the condition is in its subset);
//! 2. [`Condition::evaluate_interpreted`] (the `cel` interpreter in a child scope of the shared
//!    root context, variables from a resolver);
//! 3. [`naive`]: the plain `cel` interpreter with a fresh `cel::Context` per request, every
//!    variable added with `add_variable_from_value`, and `last()` added as a context function.
//!
//! and all three must give the expected outcome (true, false, or an error). A case also states
//! which strategy it compiles to, so the fast path cannot silently shrink.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use abroute::condition::{
    Condition, ConditionError, ConditionOutcome, EvalError, MAX_DEPTH, MAX_NESTING,
    MAX_OPERATOR_RUNS, MAX_SOURCE_BYTES, Strategy as Path, Variables,
};
use abroute::{MetadataValue, RequestContext};
use cel::extractors::This;
use cel::objects::{Key, Map};
use cel::{ExecutionError, Value as CelValue};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The request every case starts from

/// The metadata of the base request. A case's own metadata is merged over it.
fn base_metadata() -> Value {
    json!({
        "tier": "gold",
        "seats": 12,
        "region": "eu-west",
        "beta": true,
        "score": 0.75,
        "big": 18446744073709551615u64,
        "neg": -3,
        "nothing": null,
        "tags": ["a", "beta", "eu"],
        "nums": [1, 2.5, 3],
        "empty": [],
        "plan": {
            "tier": "gold",
            "seats": 50,
            "limits": { "rpm": 100 },
            "regions": ["eu", "us"]
        },
        "quote": "say \"hi\"\n\tbye",
        "unicode": "πέντε",
        "seats_str": "12"
    })
}

/// The base request's `messages`.
fn base_messages() -> Value {
    json!([
        { "role": "system", "content": "You are a support bot." },
        { "role": "user", "content": "Hi! I want a REFUND for order 7." }
    ])
}

const BASE_USER: &str = "user-42";

/// What a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    T,
    F,
    /// An error (which routing counts as false).
    E,
}
use Expect::{E, F, T};

fn outcome(r: &Result<bool, impl std::fmt::Debug>) -> Expect {
    match r {
        Ok(true) => T,
        Ok(false) => F,
        Err(_) => E,
    }
}

/// One row of the table.
struct Case {
    expr: &'static str,
    /// Metadata merged over [`base_metadata`].
    metadata: Value,
    user: Option<&'static str>,
    messages: Option<Value>,
    expect: Expect,
    strategy: Path,
}

/// A fast-path case on the base request plus `metadata`.
fn case(expr: &'static str, metadata: Value, expect: Expect) -> Case {
    Case {
        expr,
        metadata,
        user: Some(BASE_USER),
        messages: Some(base_messages()),
        expect,
        strategy: Path::Fast,
    }
}

/// A fast-path case on the base request.
fn base(expr: &'static str, expect: Expect) -> Case {
    case(expr, json!({}), expect)
}

impl Case {
    fn interpreted(mut self) -> Case {
        self.strategy = Path::Interpreter;
        self
    }

    fn without_user(mut self) -> Case {
        self.user = None;
        self
    }

    fn without_messages(mut self) -> Case {
        self.messages = None;
        self
    }

    fn metadata(&self) -> Value {
        let mut m = base_metadata();
        if let (Value::Object(m), Value::Object(extra)) = (&mut m, &self.metadata) {
            for (k, v) in extra {
                m.insert(k.clone(), v.clone());
            }
        }
        m
    }
}

/// A request context with every member of the JSON object `metadata` as a metadata key,
/// typed by [`MetadataValue`]'s conversion from JSON (strings borrowed).
fn context<'a>(metadata: &'a Value, user: Option<&'a str>) -> RequestContext<'a> {
    let mut ctx = RequestContext::new();
    if let Value::Object(members) = metadata {
        for (k, v) in members {
            ctx = ctx.with_metadata(k.as_str(), v);
        }
    }
    if let Some(user) = user {
        ctx = ctx.with_user(user);
    }
    ctx
}

fn variables<'r>(ctx: &'r RequestContext<'r>, messages: Option<&'r Value>) -> Variables<'r, 'r> {
    let vars = Variables::new(ctx);
    match messages {
        Some(m) => vars.with_messages(m),
        None => vars,
    }
}

// ---------------------------------------------------------------------------------------------
// The naive reference: a fresh cel::Context per request

fn json_to_cel(v: &Value) -> CelValue {
    match v {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                CelValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                CelValue::UInt(u)
            } else {
                CelValue::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Array(items) => CelValue::List(Arc::new(items.iter().map(json_to_cel).collect())),
        Value::Object(members) => CelValue::Map(Map::from(
            members
                .iter()
                .map(|(k, v)| (Key::from(k.clone()), json_to_cel(v)))
                .collect::<HashMap<Key, CelValue>>(),
        )),
    }
}

fn metadata_to_cel(v: &MetadataValue<'_>) -> CelValue {
    match v {
        MetadataValue::Null => CelValue::Null,
        MetadataValue::Bool(b) => CelValue::Bool(*b),
        MetadataValue::Int(i) => CelValue::Int(*i),
        MetadataValue::UInt(u) => CelValue::UInt(*u),
        MetadataValue::Float(x) => CelValue::Float(*x),
        MetadataValue::Str(s) => CelValue::String(Arc::new(s.to_string())),
        MetadataValue::Json(j) => json_to_cel(j),
        other => panic!("a metadata value this test does not know: {other:?}"),
    }
}

/// Evaluates `expr` the plain way: a fresh `cel::Context` for this one request.
fn naive(
    program: &cel::Program,
    ctx: &RequestContext<'_>,
    messages: Option<&Value>,
) -> Result<bool, ExecutionError> {
    let mut context = cel::Context::default();
    context
        .add_function("last", |This(list): This<Arc<Vec<CelValue>>>| {
            list.last()
                .cloned()
                .ok_or_else(|| ExecutionError::function_error("last", "empty list"))
        })
        .expect("`last` is not a standard function");
    for (key, value) in ctx.metadata_entries() {
        // `user` and `messages` are the request's own, never metadata.
        if key != "user" && key != "messages" {
            context.add_variable_from_value(key, metadata_to_cel(value));
        }
    }
    if let Some(user) = ctx.user() {
        context.add_variable_from_value("user", user);
    }
    if let Some(messages) = messages {
        context.add_variable_from_value("messages", json_to_cel(messages));
    }
    match program.execute(&context)? {
        CelValue::Bool(b) => Ok(b),
        other => Err(ExecutionError::UnexpectedType {
            got: format!("{other:?}"),
            want: "bool".into(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// The table

fn table() -> Vec<Case> {
    vec![
        // Strings, equality, lists of literals.
        base(r#"tier == "gold""#, T),
        base("tier == 'gold'", T),
        base(r#"tier != "gold""#, F),
        base(r#"tier == "silver" || tier == "gold""#, T),
        base(r#"tier in ["gold", "platinum"]"#, T),
        base("tier in []", F),
        base(r#"region.startsWith("eu-") && region.endsWith("west")"#, T),
        base(r#"region.contains("-we")"#, T),
        base(r#"tier < "silver""#, T),
        // Missing keys: an error, whatever the operator.
        base(r#"missing == "x""#, E),
        base(r#"missing != "x""#, E),
        base(r#"!(missing == "x")"#, E),
        base("missing in tags", E),
        base("has(plan.tier)", T),
        base("has(plan.missing)", F),
        base("has(missing.tier)", E),
        base("has(tier.length)", E),
        base("plan.missing == 1", E),
        base("plan.limits.rpm >= 100", T),
        base("tier.length == 4", E),
        // Wrong types: `==` is false, ordering is an error.
        base("tier > 10", E),
        base(r#"seats == "12""#, F),
        base("seats_str == 12", F),
        base("seats_str > 10", E),
        base(r#"seats > "10""#, E),
        base("tier == 1", F),
        base("beta == true", T),
        base("beta", T),
        base("!beta", F),
        base("!tier", E),
        base("tier", E),
        base("seats", E),
        base("size(seats) == 2", E),
        base("tier.startsWith(1)", E),
        base("seats.matches('1')", E),
        // Numbers: int vs double vs uint compare by value.
        case("seats > 10", json!({"seats": 12}), T),
        case("seats > 10", json!({"seats": 12.5}), T),
        case("seats > 12", json!({"seats": 12.5}), T),
        case("seats > 12.5", json!({"seats": 12}), F),
        case("seats > 10", json!({"seats": 9.99}), F),
        base("seats == 12.0", T),
        base("seats == 12u", T),
        base("seats != 12.5", T),
        base("big > seats", T),
        base("big == 18446744073709551615u", T),
        base("neg < 0u", T),
        base("neg < -2.5", T),
        base("score < 1", T),
        base("score >= 0.75", T),
        base("seats >= 12 && seats <= 12", T),
        base(r#"seats > 10 && tier == "gold" && "a" in tags"#, T),
        // Lists.
        base(r#""a" in tags"#, T),
        base(r#""z" in tags"#, F),
        base("1 in tags", F),
        base("2.5 in nums", T),
        base("1.0 in nums", T),
        base("3u in nums", T),
        base("size(tags) == 3", T),
        base("tags.size() == 3", T),
        base(r#"tags[0] == "a""#, T),
        base(r#"tags[5] == "a""#, E),
        base(r#"tags[-1] == "a""#, E),
        base(r#"tags == ["a", "beta", "eu"]"#, T),
        base(r#"tags == ["a"]"#, F),
        base("nums == [1, 2.5, 3.0]", T),
        base(r#""a" in tier"#, E),
        base("size(empty) == 0", T),
        base("empty.last() == 1", E),
        base(r#"tags.last() == "eu""#, T),
        base("tier.last() == 1", E),
        base(r#"tags["a"] == 1"#, E),
        // Maps.
        base(r#"plan.tier == "gold""#, T),
        base(r#"plan["tier"] == "gold""#, T),
        base(r#""tier" in plan"#, T),
        base(r#""nope" in plan"#, F),
        base("1 in plan", F),
        base("nothing in plan", E),
        base("size(plan) == 4", T),
        base(r#"plan.regions[1] == "us""#, T),
        base(r#""us" in plan.regions"#, T),
        base("plan.seats > seats", T),
        base("plan[0] == 1", E),
        base("tier.size() == 4", T),
        base(r#"plan == {"tier": "gold"}"#, F).interpreted(),
        // A metadata key with a dot is the longest name that matches, as CEL resolves names.
        case(
            r#"plan.tier == "dotted""#,
            json!({"plan.tier": "dotted"}),
            T,
        ),
        case(r#"plan.tier == "gold""#, json!({"plan.tier": "dotted"}), F),
        // Regular expressions (`matches` is a search, as RE2's partial match).
        base(r#"messages.last().content.matches("(?i).*refund.*")"#, T),
        base(r#"messages.last().content.matches("refund")"#, F),
        base(r#"matches(tier, "^go")"#, T),
        base(r#"region.matches("^eu-[a-z]+$")"#, T),
        base(r#"region.matches('\\d')"#, F),
        base(r#"tier.matches(region)"#, F).interpreted(),
        // Messages.
        base(r#"messages[0].role == "system""#, T),
        base("size(messages) == 2", T),
        base(r#"messages.last().role == "user""#, T),
        base(r#"messages.last().role == "user""#, E).without_messages(),
        base(r#"messages.exists(m, m.content.contains("REFUND"))"#, T).interpreted(),
        base(r#"messages.map(m, m.role) == ["system", "user"]"#, T).interpreted(),
        // Literal patterns are compiled once on the interpreter path too, wherever they are.
        base(r#"messages.exists(m, m.content.matches("(?i)refund"))"#, T).interpreted(),
        base(r#"messages.all(m, matches(m.content, "^[A-Z]"))"#, T).interpreted(),
        base(r#"tags.exists(t, t.matches("^b") && t.size() == 4)"#, T).interpreted(),
        base(r#"tags.exists(t, t.matches(tier))"#, F).interpreted(),
        base(r#"[seats].exists(s, s.matches("1"))"#, E).interpreted(),
        // User.
        base(r#"user == "user-42""#, T),
        base(r#"user.startsWith("user-")"#, T),
        base(r#"user == "user-42""#, E).without_user(),
        base(r#"user != "user-42""#, E).without_user(),
        // `user` and `messages` are the request's own: a metadata key does not shadow them.
        case(r#"user == "user-42""#, json!({"user": "from-metadata"}), T),
        case(
            r#"user == "from-metadata""#,
            json!({"user": "from-metadata"}),
            E,
        )
        .without_user(),
        // && and || absorb an error when the other side decides, in either order.
        base("false && missing", F),
        base("missing && false", F),
        base("true || missing", T),
        base("missing || true", T),
        base("true && missing", E),
        base("missing && true", E),
        base("missing || false", E),
        base("false || missing", E),
        base("tier && false", F),
        base("tier || true", T),
        base("tier && true", E),
        base(r#"seats > "1" || tier == "gold""#, T),
        base(r#"seats > "1" && tier == "gold""#, E),
        base(r#"tier == "gold" || seats > "1""#, T),
        base(r#"tier != "gold" && seats > "1""#, F),
        // Conditional operator.
        base(r#"beta ? tier == "gold" : false"#, T),
        base("seats ? true : false", E),
        base("missing ? true : true", E),
        // String literals and escapes.
        base(r#"quote == "say \"hi\"\n\tbye""#, T),
        base(r#"quote == 'say "hi"\n\tbye'"#, T),
        base(r#"quote.contains("\"hi\"")"#, T),
        base(r#"quote.endsWith("\tbye")"#, T),
        base(r#"unicode == "\u03c0\u03ad\u03bd\u03c4\u03b5""#, T),
        base(r#"unicode == "\xcf\x80έντε""#, F),
        base(r#"r"\d" == "\\d""#, T),
        base(
            r#""""triple "quoted" string""" == 'triple "quoted" string'"#,
            T,
        ),
        // size() counts code points in strings.
        base("size(unicode) == 5", T),
        base("unicode.size() == 5", T),
        base(r#"size("") == 0"#, T),
        // null.
        base("nothing == null", T),
        base("nothing != null", F),
        base("tier == null", F),
        base("nothing < 1", E),
        // Type names resolve to types: left to the interpreter.
        base("type(seats) == int", T).interpreted(),
        case("int == 1", json!({"int": 1}), T).interpreted(),
        // Outside the fast subset: arithmetic, map literals, bytes, macros.
        base("seats + 1 > 12", T).interpreted(),
        base("seats * 2 == 24 && tier == 'gold'", T).interpreted(),
        base(r#"{"a": 1}.a == 1"#, T).interpreted(),
        base(r#"b"ab" == b"ab""#, T).interpreted(),
        base(r#"tags.all(t, size(t) >= 1)"#, T).interpreted(),
        base("tags.exists(t, t == missing)", E).interpreted(),
    ]
}

#[test]
fn the_table_has_at_least_thirty_cases_on_each_path() {
    let cases = table();
    let fast = cases.iter().filter(|c| c.strategy == Path::Fast).count();
    assert!(fast >= 30, "{fast} fast-path cases");
    assert!(cases.len() - fast >= 10);
}

#[test]
fn table_fast_path_interpreter_and_naive_agree() {
    let mut failures = Vec::new();
    for c in table() {
        let condition = match Condition::compile(c.expr) {
            Ok(condition) => condition,
            Err(e) => {
                failures.push(format!("{}: does not compile: {e}", c.expr));
                continue;
            }
        };
        let metadata = c.metadata();
        let ctx = context(&metadata, c.user);
        let vars = variables(&ctx, c.messages.as_ref());
        let program = cel::Program::compile(c.expr).expect("it compiled above");

        let evaluated = outcome(&condition.evaluate(vars));
        let interpreted = outcome(&condition.evaluate_interpreted(vars));
        let plain = outcome(&naive(&program, &ctx, c.messages.as_ref()));
        if condition.strategy() != c.strategy {
            failures.push(format!(
                "{}: strategy {:?}, expected {:?}",
                c.expr,
                condition.strategy(),
                c.strategy
            ));
        }
        if (evaluated, interpreted, plain) != (c.expect, c.expect, c.expect) {
            failures.push(format!(
                "{} (metadata {}): evaluate {evaluated:?}, interpreter {interpreted:?}, \
                 naive {plain:?}; expected {:?} ({})",
                c.expr,
                c.metadata,
                c.expect,
                condition.explain(vars)
            ));
        }
        // An error is false.
        if condition.matches(vars) != (c.expect == T) {
            failures.push(format!("{}: matches() disagrees with evaluate()", c.expr));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Numbers that JSON cannot carry

#[test]
fn nan_equals_nothing_and_orders_with_nothing() {
    for (expr, expect, path) in [
        ("x == x", F, Path::Fast),
        ("x != x", T, Path::Fast),
        ("x < 1", E, Path::Fast),
        ("x >= 1.0", E, Path::Fast),
        ("x in [1.0, 2.0]", F, Path::Fast),
        ("x in [x]", F, Path::Interpreter),
        ("1 < x || true", T, Path::Fast),
    ] {
        let condition = Condition::compile(expr).expect("valid CEL");
        assert_eq!(condition.strategy(), path, "{expr}");
        let ctx = RequestContext::new().with_metadata("x", f64::NAN);
        let vars = Variables::new(&ctx);
        assert_eq!(outcome(&condition.evaluate(vars)), expect, "{expr}");
        assert_eq!(
            outcome(&condition.evaluate_interpreted(vars)),
            expect,
            "{expr}"
        );
        let program = cel::Program::compile(expr).expect("valid CEL");
        assert_eq!(outcome(&naive(&program, &ctx, None)), expect, "{expr}");
    }
}

#[test]
fn integers_at_the_edges_of_i64_and_u64() {
    let ctx = RequestContext::new()
        .with_metadata("min", i64::MIN)
        .with_metadata("max", u64::MAX)
        .with_metadata("two53", 9_007_199_254_740_993i64);
    for (expr, expect) in [
        ("min < 0u", T),
        ("max > min", T),
        ("max == 18446744073709551615u", T),
        ("max > 9223372036854775807", T),
        ("min == -9223372036854775808", T),
        // 2^53 + 1 is not a double: compared as a double it equals 2^53, as in `cel`.
        ("two53 == 9007199254740992.0", T),
        ("two53 > 9007199254740992.0", F),
    ] {
        let condition = Condition::compile(expr).expect("valid CEL");
        let vars = Variables::new(&ctx);
        assert_eq!(outcome(&condition.evaluate(vars)), expect, "{expr}");
        assert_eq!(
            outcome(&condition.evaluate_interpreted(vars)),
            expect,
            "{expr}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Compile errors

#[test]
fn a_syntax_error_gives_the_cel_message_with_its_position() {
    let err = Condition::compile("tier == ").expect_err("not CEL");
    let ConditionError::Syntax(errors) = &err else {
        panic!("expected a syntax error, got {err:?}");
    };
    assert_eq!((errors[0].line, errors[0].column), (1, 9));
    let text = err.to_string();
    assert!(
        text.starts_with("Syntax error: mismatched input '<EOF>'"),
        "{text}"
    );
    assert!(text.ends_with("at line 1 column 9"), "{text}");

    let err = Condition::compile("tier == 'gold' &&\n  seats >").expect_err("not CEL");
    assert!(err.to_string().contains("at line 2 column 10"), "{err}");

    let err = Condition::compile("\"unterminated").expect_err("not CEL");
    let ConditionError::Syntax(errors) = &err else {
        panic!("expected a syntax error, got {err:?}");
    };
    assert!(errors.len() >= 2, "{err}");
    assert!(err.to_string().contains("; "), "{err}");
}

#[test]
fn a_literal_regex_that_does_not_compile_is_a_compile_error() {
    for expr in [
        r#"tier.matches("(")"#,
        r#"matches(tier, "[a-")"#,
        r#"tags.exists(t, t.matches("(?<"))"#,
    ] {
        match Condition::compile(expr) {
            Err(ConditionError::InvalidRegex { pattern, message }) => {
                assert!(!pattern.is_empty() && !message.is_empty(), "{expr}");
            }
            other => panic!("{expr}: expected an invalid-regex error, got {other:?}"),
        }
    }
    let err = Condition::compile(r#"tier.matches("(")"#).expect_err("bad regex");
    assert_eq!(
        err.to_string(),
        "invalid regular expression \"(\" in matches(): unclosed group"
    );
}

#[test]
fn deep_nesting_is_refused_when_compiled_never_overflows() {
    // Deep brackets are refused before parsing: the parser never sees them.
    let deep = format!("{}true{}", "(".repeat(500), ")".repeat(500));
    assert!(matches!(
        Condition::compile(&deep),
        Err(ConditionError::TooComplex { nesting: 500, .. })
    ));
    let nested = |n: usize| format!("{}true{}", "(".repeat(n), ")".repeat(n));
    assert!(Condition::compile(&nested(MAX_NESTING)).is_ok());
    assert!(matches!(
        Condition::compile(&nested(MAX_NESTING + 1)),
        Err(ConditionError::TooComplex { .. })
    ));
    // A chain of `*` nests one level per operator: 16 KiB of it would be 8,000 levels, refused
    // before parsing, on this 2 MiB test thread.
    let chain = |n: usize| format!("1{} == 1", "*1".repeat(n));
    let longest = chain((MAX_SOURCE_BYTES - 6) / 2);
    assert!(longest.len() <= MAX_SOURCE_BYTES);
    assert!(matches!(
        Condition::compile(&longest),
        Err(ConditionError::TooComplex { .. })
    ));
    // Under the operator limit but over the tree depth limit: parsed, then refused.
    const { assert!(MAX_DEPTH + 10 < MAX_OPERATOR_RUNS) };
    assert_eq!(
        Condition::compile(&chain(MAX_DEPTH + 10)).map(|_| ()),
        Err(ConditionError::TooDeep { max: MAX_DEPTH })
    );
    let too_long = format!("{} == 1", " ".repeat(MAX_SOURCE_BYTES));
    assert_eq!(
        Condition::compile(&too_long).map(|_| ()),
        Err(ConditionError::TooLong {
            len: MAX_SOURCE_BYTES + 5,
            max: MAX_SOURCE_BYTES
        })
    );
    // A long but shallow source is fine.
    let wide = format!("tier in [{}'gold']", "'x', ".repeat(400));
    assert!(wide.len() > 1024);
    assert_eq!(
        Condition::compile(&wide).map(|c| c.strategy()),
        Ok(Path::Fast)
    );
    // Chains of `&&` are balanced by the parser and not counted: 90 clauses are fine.
    let long = format!("{}tier == 'gold'", "seats > 1 && ".repeat(90));
    let condition = Condition::compile(&long).expect("a long chain is fine");
    let metadata = base_metadata();
    let ctx = context(&metadata, None);
    assert_eq!(condition.strategy(), Path::Fast);
    assert_eq!(condition.evaluate(Variables::new(&ctx)), Ok(true));
    assert_eq!(
        condition.evaluate_interpreted(Variables::new(&ctx)),
        Ok(true)
    );
}

#[test]
fn the_deepest_accepted_condition_evaluates_on_a_small_stack() {
    // Just under the depth limit, on both paths, on a 256 KiB thread (release): evaluation
    // recursion is bounded by MAX_DEPTH.
    let fast = format!("seats == 12{}", " == true".repeat(MAX_DEPTH - 2));
    let interpreted = format!("1{} == seats", " + 1".repeat(MAX_DEPTH - 3));
    // Debug builds use many times the stack of release builds.
    let stack = if cfg!(debug_assertions) {
        16 << 20
    } else {
        256 << 10
    };
    for (source, path) in [(fast, Path::Fast), (interpreted, Path::Interpreter)] {
        let condition = Condition::compile(&source).expect("under the depth limit");
        assert_eq!(condition.strategy(), path);
        std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || {
                let metadata = base_metadata();
                let ctx = context(&metadata, None);
                let vars = Variables::new(&ctx);
                let expect = condition.evaluate_interpreted(vars);
                assert!(expect.is_ok(), "{expect:?}");
                assert_eq!(condition.evaluate(vars), expect);
            })
            .expect("a thread")
            .join()
            .expect("no stack overflow");
    }
}

#[test]
fn compiling_keeps_the_source() {
    let c = Condition::compile(" tier == 'gold' ").expect("valid CEL");
    assert_eq!(c.source(), " tier == 'gold' ");
    assert!(format!("{c:?}").contains("Fast"));
}

// ---------------------------------------------------------------------------------------------
// Errors and explanations

#[test]
fn errors_name_what_is_missing_and_what_does_not_fit() {
    let metadata = base_metadata();
    let ctx = context(&metadata, None);
    let vars = Variables::new(&ctx);
    let cases: &[(&str, &str)] = &[
        ("missing == 1", "undeclared variable `missing`"),
        ("plan.nope == 1", "no such key `nope`"),
        ("tags[7] == 1", "index 7 out of bounds"),
        (r#"seats > "10""#, "no `>` for (int, string)"),
        ("seats", "the condition gave a int, not a bool"),
        ("user == 'x'", "undeclared variable `user`"),
        ("messages.size() > 0", "undeclared variable `messages`"),
    ];
    for (expr, message) in cases {
        let condition = Condition::compile(expr).expect("valid CEL");
        let err = condition.evaluate(vars).expect_err(expr);
        assert_eq!(err.to_string(), *message, "{expr}");
        // The interpreter gives an error too, with cel's own message.
        assert!(condition.evaluate_interpreted(vars).is_err(), "{expr}");
    }

    let condition = Condition::compile("missing == 1").expect("valid CEL");
    assert_eq!(
        condition.evaluate_interpreted(vars),
        Err(EvalError::UndeclaredVariable("missing".into()))
    );
    let owned: EvalError<'static> = condition.evaluate(vars).expect_err("missing").into_owned();
    assert_eq!(owned, EvalError::UndeclaredVariable("missing".into()));
}

#[test]
fn explain_says_true_false_or_why_not() {
    let metadata = base_metadata();
    let ctx = context(&metadata, Some(BASE_USER));
    let vars = Variables::new(&ctx);
    let explain = |expr: &str| {
        Condition::compile(expr)
            .expect("valid CEL")
            .explain(vars)
            .to_string()
    };
    assert_eq!(explain("tier == 'gold'"), "true");
    assert_eq!(explain("tier == 'silver'"), "false");
    assert_eq!(
        explain("region == 'eu' && missing"),
        "false",
        "the left side decides"
    );
    assert_eq!(
        explain("region == 'eu-west' && missing"),
        "error (counted as false): undeclared variable `missing`"
    );

    let condition = Condition::compile("missing").expect("valid CEL");
    let outcome = condition.explain(vars);
    assert!(!outcome.matched());
    assert!(matches!(
        outcome.error(),
        Some(EvalError::UndeclaredVariable(_))
    ));
    assert_eq!(
        ConditionOutcome::from(Ok::<bool, EvalError<'_>>(true)),
        ConditionOutcome::True
    );
}

// ---------------------------------------------------------------------------------------------
// Borrowing

#[test]
fn variables_borrow_and_copy_nothing() {
    // Building the variables is two references; evaluation reads the request in place.
    let tier = String::from("gold");
    let messages = base_messages();
    let ctx = RequestContext::new().with_metadata("tier", tier.as_str());
    let vars = Variables::new(&ctx).with_messages(&messages);
    assert!(std::ptr::eq(vars.context(), &ctx));
    assert!(std::ptr::eq(vars.messages().expect("set"), &messages));
    match ctx.metadata("tier") {
        Some(MetadataValue::Str(s)) => assert!(std::ptr::eq(s.as_ptr(), tier.as_ptr())),
        other => panic!("expected a borrowed string, got {other:?}"),
    }
    let c = Condition::compile("tier == 'gold' && size(messages) == 2").expect("valid CEL");
    assert_eq!(c.evaluate(vars), Ok(true));
    assert_eq!(c.evaluate_interpreted(vars), Ok(true));
}

// ---------------------------------------------------------------------------------------------
// Arbitrary metadata: deterministic, never panics, both paths agree

/// Expressions over the keys `a`, `b`, `c`, `tags` and `plan`, fast-path and not.
const PROPERTY_EXPRESSIONS: &[&str] = &[
    "a == b",
    "a != b",
    "a < b",
    "a >= b || c",
    "a > 10 && b == 'x'",
    "!c",
    "c ? a : b",
    "a in tags",
    "b in plan",
    "size(a) > 1",
    "a.size() == b",
    "has(plan.a)",
    "plan.a == a",
    "plan[\"b\"] != null",
    "tags[0] == a",
    "tags.last() == b",
    "a.startsWith(b)",
    "a.endsWith('x') || a.contains('y')",
    "a.matches('^[a-z]+$')",
    "matches(b, '(?i)X')",
    "a in [1, 'x', 2.5, null, true]",
    "tags == [a, b]",
    "plan == tags",
    "user == a",
    "messages.last().content == a",
    "size(messages) >= 1 && messages[0].role == 'user'",
    "a == 1u || b <= -2.5",
    "a + 1 > b",
    "tags.exists(t, t == a)",
    "tags.exists(t, matches(t, '^[ax]'))",
];

/// [`PROPERTY_EXPRESSIONS`], compiled once, with the plain `cel` program of each.
static PROPERTY_CONDITIONS: LazyLock<Vec<(Condition, cel::Program)>> = LazyLock::new(|| {
    PROPERTY_EXPRESSIONS
        .iter()
        .map(|e| {
            (
                Condition::compile(e).expect("valid CEL"),
                cel::Program::compile(e).expect("valid CEL"),
            )
        })
        .collect()
});

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|u| json!(u)),
        (-1e6f64..1e6).prop_map(|x| json!(x)),
        prop_oneof![Just(-0.0f64), Just(1e300), Just(0.5)].prop_map(|x| json!(x)),
        "[a-zA-Z0-9 ]{0,6}".prop_map(Value::String),
        prop_oneof![Just("x"), Just("y"), Just("a"), Just("user"), Just("πέ")]
            .prop_map(|s| Value::String(s.to_owned())),
        (-3i64..12).prop_map(|i| json!(i)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![Just("a".to_owned()), Just("b".to_owned()), "[a-z]{1,3}"],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_metadata_value() -> impl Strategy<Value = MetadataValue<'static>> {
    prop_oneof![
        arb_json().prop_map(|v| match MetadataValue::from(&v) {
            // Scalars come back typed; lists and maps as owned JSON.
            MetadataValue::Json(_) => MetadataValue::Json(std::borrow::Cow::Owned(v)),
            MetadataValue::Str(s) => MetadataValue::Str(std::borrow::Cow::Owned(s.into_owned())),
            MetadataValue::Null => MetadataValue::Null,
            MetadataValue::Bool(b) => MetadataValue::Bool(b),
            MetadataValue::Int(i) => MetadataValue::Int(i),
            MetadataValue::UInt(u) => MetadataValue::UInt(u),
            MetadataValue::Float(x) => MetadataValue::Float(x),
            other => panic!("unexpected metadata value {other:?}"),
        }),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            any::<f64>()
        ]
        .prop_map(MetadataValue::Float),
        // A JSON scalar given as `Json`: the fast path and the interpreter must type it alike.
        any::<i64>().prop_map(|i| MetadataValue::Json(std::borrow::Cow::Owned(json!(i)))),
    ]
}

fn arb_metadata() -> impl Strategy<Value = Vec<(String, MetadataValue<'static>)>> {
    prop::collection::vec(
        (
            prop_oneof![
                Just("a"),
                Just("b"),
                Just("c"),
                Just("tags"),
                Just("plan"),
                Just("plan.a"),
                Just("user")
            ]
            .prop_map(str::to_owned),
            arb_metadata_value(),
        ),
        0..7,
    )
}

fn fixed(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x0ab0_07e5_0ce1),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(fixed(400))]

    #[test]
    fn conditions_are_deterministic_never_panic_and_both_paths_agree(
        metadata in arb_metadata(),
        user in prop::option::of(prop_oneof![Just("x"), Just("user-1")]),
        messages in prop::option::of(arb_json()),
    ) {
        let mut ctx = RequestContext::new();
        for (k, v) in &metadata {
            ctx = ctx.with_metadata(k.as_str(), v.clone());
        }
        if let Some(user) = user {
            ctx = ctx.with_user(user);
        }
        let vars = variables(&ctx, messages.as_ref());
        for (expr, (condition, program)) in PROPERTY_EXPRESSIONS.iter().zip(PROPERTY_CONDITIONS.iter()) {
            let first = condition.evaluate(vars);
            let second = condition.evaluate(vars);
            if condition.strategy() == Path::Fast {
                prop_assert_eq!(&first, &second, "{} is not deterministic", expr);
            } else {
                // cel's messages may print a map's entries in any order: compare outcomes.
                prop_assert_eq!(outcome(&first), outcome(&second), "{} is not deterministic", expr);
            }
            let interpreted = condition.evaluate_interpreted(vars);
            prop_assert_eq!(
                outcome(&first),
                outcome(&interpreted),
                "{}: evaluate {:?}, interpreter {:?}, metadata {:?}, messages {:?}",
                expr, first, interpreted, metadata, messages
            );
            let plain = naive(program, &ctx, messages.as_ref());
            prop_assert_eq!(
                outcome(&first),
                outcome(&plain),
                "{}: evaluate {:?}, naive {:?}, metadata {:?}, messages {:?}",
                expr, first, plain, metadata, messages
            );
            prop_assert_eq!(condition.matches(vars), first == Ok(true));
        }
    }
}

#[test]
fn the_property_expressions_cover_the_fast_path() {
    let fast = PROPERTY_EXPRESSIONS
        .iter()
        .filter(|e| Condition::compile(e).expect("valid CEL").strategy() == Path::Fast)
        .count();
    assert!(
        fast >= PROPERTY_EXPRESSIONS.len() - 4,
        "{fast} on the fast path"
    );
}

/// The worst source the bounds let through (every operator run in one chain, nested as deep as
/// allowed) parses on an ordinary 2 MiB test thread, debug build included, and is then refused
/// for its tree depth: the limits keep the parser's stack bounded.
#[test]
fn the_worst_source_within_bounds_parses_on_a_small_stack() {
    let chain = format!("1{} == 1", "*1".repeat(MAX_OPERATOR_RUNS - 1));
    let worst = format!(
        "{}{chain}{}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    let result = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || Condition::compile(&worst).map(|_| ()))
        .expect("thread starts")
        .join()
        .expect("no stack overflow");
    assert_eq!(result, Err(ConditionError::TooDeep { max: MAX_DEPTH }));
}
