//! `conditions`: deciding between 3 conditional routes (2 to 3 clauses each, 4 metadata keys,
//! `user` and `messages`), the way a router evaluates them per request, three ways:
//!
//! - `abroute`: [`Condition::matches`], i.e. the fast path (all three conditions are in its
//!   subset);
//! - `interpreter`: [`Condition::evaluate_interpreted`], the `cel` interpreter in a child scope of
//!   abroute's shared root context, variables from a resolver that borrows the request;
//! - `naive`: the baseline, per request a fresh `cel::Context` (standard library + `last()`),
//!   `add_variable` for each metadata key, `user` and `messages`, then `Program::execute` for
//!   each condition.
//!
//! The request is built once, outside the timed loop, as a gateway hands a parsed request to
//! the router. It matches only the third route, so every implementation evaluates all three
//! conditions (the first two each fail on their last clause). `decide` is the time for the
//! whole decision; `route-N` the time for condition N alone (for `naive`, a fresh context and
//! that one condition). `compile` is `Condition::compile` of the three conditions (config
//! time, not request time).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use abroute::condition::{Condition, Strategy, Variables};
use abroute::{MetadataValue, RequestContext};
use cel::extractors::This;
use cel::objects::{Key, Map};
use cel::{ExecutionError, Value as CelValue};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

/// The three routes' conditions, in route order.
const CONDITIONS: [&str; 3] = [
    r#"tier == "gold" && seats >= 100"#,
    r#""beta" in tags && plan.region == "eu" && user.startsWith("vip-")"#,
    r#"seats > 10 && messages.last().content.matches("(?i).*refund.*")"#,
];

fn metadata() -> Value {
    json!({
        "tier": "gold",
        "seats": 12,
        "tags": ["beta", "eu"],
        "plan": { "region": "eu", "tier": "gold" }
    })
}

fn messages() -> Value {
    json!([
        { "role": "system", "content": "You are the support assistant of an online shop." },
        { "role": "user", "content": "Hello! My order #4411 arrived broken and I would like a Refund, please." }
    ])
}

const USER: &str = "user-42";

fn request(metadata: &Value) -> RequestContext<'_> {
    let mut ctx = RequestContext::new().with_user(USER);
    if let Value::Object(members) = metadata {
        for (k, v) in members {
            ctx = ctx.with_metadata(k.as_str(), v);
        }
    }
    ctx
}

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
        _ => CelValue::Null,
    }
}

/// The naive decision: a fresh context for this request, then each condition in turn.
fn naive_decide(
    programs: &[cel::Program],
    ctx: &RequestContext<'_>,
    messages: &Value,
) -> Option<usize> {
    let mut context = cel::Context::default();
    context
        .add_function("last", |This(list): This<Arc<Vec<CelValue>>>| {
            list.last()
                .cloned()
                .ok_or_else(|| ExecutionError::function_error("last", "empty list"))
        })
        .ok()?;
    for (key, value) in ctx.metadata_entries() {
        context.add_variable_from_value(key, metadata_to_cel(value));
    }
    if let Some(user) = ctx.user() {
        context.add_variable_from_value("user", user);
    }
    context.add_variable_from_value("messages", json_to_cel(messages));
    programs
        .iter()
        .position(|p| matches!(p.execute(&context), Ok(CelValue::Bool(true))))
}

fn conditions(c: &mut Criterion) {
    let metadata = metadata();
    let messages = messages();
    let ctx = request(&metadata);
    let compiled: Vec<Condition> = CONDITIONS
        .iter()
        .map(|s| Condition::compile(s).expect("the bench conditions compile"))
        .collect();
    let programs: Vec<cel::Program> = CONDITIONS
        .iter()
        .map(|s| cel::Program::compile(s).expect("the bench conditions compile"))
        .collect();

    // The three implementations must agree before they are timed.
    let vars = Variables::new(&ctx).with_messages(&messages);
    for (condition, source) in compiled.iter().zip(CONDITIONS) {
        assert_eq!(condition.strategy(), Strategy::Fast, "{source}");
        assert_eq!(
            condition.evaluate(vars),
            condition.evaluate_interpreted(vars),
            "{source}"
        );
    }
    let fast_decide = || {
        let vars = Variables::new(black_box(&ctx)).with_messages(black_box(&messages));
        compiled.iter().position(|c| c.matches(vars))
    };
    let interpreted_decide = || {
        let vars = Variables::new(black_box(&ctx)).with_messages(black_box(&messages));
        compiled
            .iter()
            .position(|c| c.evaluate_interpreted(vars) == Ok(true))
    };
    let naive = || naive_decide(&programs, black_box(&ctx), black_box(&messages));
    assert_eq!(fast_decide(), Some(2));
    assert_eq!(interpreted_decide(), Some(2));
    assert_eq!(naive(), Some(2));

    let mut group = c.benchmark_group("conditions");
    group.bench_function(BenchmarkId::new("abroute", "decide"), |b| {
        b.iter(fast_decide)
    });
    group.bench_function(BenchmarkId::new("interpreter", "decide"), |b| {
        b.iter(interpreted_decide)
    });
    group.bench_function(BenchmarkId::new("naive", "decide"), |b| b.iter(naive));

    for (i, condition) in compiled.iter().enumerate() {
        let route = format!("route-{}", i + 1);
        group.bench_function(BenchmarkId::new("abroute", &route), |b| {
            b.iter(|| {
                let vars = Variables::new(black_box(&ctx)).with_messages(black_box(&messages));
                condition.evaluate(vars)
            })
        });
        group.bench_function(BenchmarkId::new("interpreter", &route), |b| {
            b.iter(|| {
                let vars = Variables::new(black_box(&ctx)).with_messages(black_box(&messages));
                condition.evaluate_interpreted(vars).is_ok()
            })
        });
        let program = std::slice::from_ref(&programs[i]);
        group.bench_function(BenchmarkId::new("naive", &route), |b| {
            b.iter(|| naive_decide(program, black_box(&ctx), black_box(&messages)))
        });
    }

    group.bench_function(BenchmarkId::new("abroute", "compile"), |b| {
        b.iter(|| {
            CONDITIONS
                .iter()
                .map(|s| Condition::compile(black_box(s)).map(|c| c.strategy()))
                .collect::<Vec<_>>()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = conditions
}
criterion_main!(benches);
