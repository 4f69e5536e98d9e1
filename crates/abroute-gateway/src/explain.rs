//! `abroute explain FILE --user U --metadata k=v`: which route matched, why each condition was
//! true or false, the variant (and how it was assigned), and the attempt plan.
//!
//! Conditions are evaluated in order up to the first that holds, as the gateway does; routes
//! after it are shown as not evaluated. The plan is the one a fresh gateway would make (every
//! model healthy): the assigned variant's models, the route's other variants when the route
//! fails over across variants, then the request's own models (`--model`).

use std::fmt::Write as _;
use std::time::Duration;

use abroute::{CompiledRouter, RequestContext};
use serde::Serialize;
use serde_json::Value;

/// What to explain.
#[derive(Debug, Clone, Default)]
pub struct ExplainInput {
    /// The sticky key (the body's `user`).
    pub user: Option<String>,
    /// Metadata (`extra_body.metadata`).
    pub metadata: Vec<(String, Value)>,
    /// A user message, for conditions over `messages`.
    pub message: Option<String>,
    /// The request's own fallback models (`extra_body.models`).
    pub models: Vec<String>,
    /// The random draw of a non-sticky pick (fixed so the answer is reproducible).
    pub random: u64,
}

/// One conditional route.
#[derive(Debug, Clone, Serialize)]
pub struct ConditionLine {
    /// The route.
    pub route_id: String,
    /// The CEL source.
    pub condition: String,
    /// `true`, `false`, `error (counted as false): ...`, or `not evaluated`.
    pub outcome: String,
    /// Whether the route was taken.
    pub matched: bool,
}

/// One attempt of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanLine {
    /// The model to call.
    pub model: String,
    /// The variant it serves.
    pub variant_id: String,
    /// `primary`, `model_fallback`, `other_variant` or `request`.
    pub source: abroute::plan::AttemptSource,
}

/// The explanation.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainOutput {
    /// The router.
    pub router: String,
    /// The inputs, as the conditions see them.
    pub user: Option<String>,
    /// The metadata.
    pub metadata: serde_json::Map<String, Value>,
    /// The conditional routes, in order.
    pub conditions: Vec<ConditionLine>,
    /// The route taken (`None`: no route matched).
    pub route_id: Option<String>,
    /// The variant assigned.
    pub variant_id: Option<String>,
    /// Its model.
    pub model_id: Option<String>,
    /// How it was assigned (`sticky, key hash ..., bucket ...` or `random, draw ...`).
    pub assignment: Option<String>,
    /// Why there is no decision, if there is none.
    pub error: Option<String>,
    /// The attempts, in order.
    pub plan: Vec<PlanLine>,
}

/// Explains how `router` decides `input`.
pub fn explain(router: &CompiledRouter, input: &ExplainInput) -> ExplainOutput {
    let messages = input
        .message
        .as_ref()
        .map(|m| serde_json::json!([{ "role": "user", "content": m }]));
    let mut ctx = RequestContext::new().with_random(input.random);
    if let Some(u) = &input.user {
        ctx = ctx.with_user(u);
    }
    for (k, v) in &input.metadata {
        ctx = ctx.with_metadata(k.as_str(), v);
    }
    if let Some(m) = &messages {
        ctx = ctx.with_messages(m);
    }
    ctx = ctx.with_models(input.models.iter().map(String::as_str));
    let explanation = router.explain(&ctx);
    let mut conditions: Vec<ConditionLine> = explanation
        .conditions
        .iter()
        .map(|c| ConditionLine {
            route_id: c.route_id.to_owned(),
            condition: c.condition.to_owned(),
            outcome: c.outcome.clone(),
            matched: c.matched,
        })
        .collect();
    for route in router.conditional_routes().iter().skip(conditions.len()) {
        conditions.push(ConditionLine {
            route_id: route.id().to_owned(),
            condition: route.condition().unwrap_or("").to_owned(),
            outcome: "not evaluated (an earlier route matched)".to_owned(),
            matched: false,
        });
    }
    let mut out = ExplainOutput {
        router: router.name().to_owned(),
        user: input.user.clone(),
        metadata: input.metadata.iter().cloned().collect(),
        conditions,
        route_id: None,
        variant_id: None,
        model_id: None,
        assignment: None,
        error: None,
        plan: Vec::new(),
    };
    match &explanation.decision {
        Ok(d) => {
            out.route_id = Some(d.route_id().to_owned());
            out.variant_id = Some(d.variant_id().to_owned());
            out.model_id = Some(d.model_id().to_owned());
            out.assignment = Some(d.assignment().to_string());
            out.plan = d
                .plan(&ctx, Duration::ZERO)
                .map(|a| PlanLine {
                    model: a.model_id().to_owned(),
                    variant_id: a.variant_id().to_owned(),
                    source: a.source(),
                })
                .collect();
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

fn source_text(s: abroute::plan::AttemptSource) -> &'static str {
    use abroute::plan::AttemptSource as S;
    match s {
        S::Primary => "the variant's model_id",
        S::ModelFallback => "the variant's model_selection.models",
        S::OtherVariant => "another variant of the route (failover.across_variants)",
        S::Request => "the request's extra_body.models",
    }
}

/// The terminal report.
pub fn render(e: &ExplainOutput) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "router {}", e.router);
    let _ = writeln!(
        out,
        "user: {}",
        e.user
            .as_deref()
            .map_or("(none: a random pick)".to_owned(), |u| format!("{u:?}"))
    );
    if e.metadata.is_empty() {
        let _ = writeln!(out, "metadata: (none)");
    } else {
        let _ = writeln!(out, "metadata:");
        for (k, v) in &e.metadata {
            let kind = match v {
                Value::String(_) => "string",
                Value::Number(n) if n.is_f64() => "float",
                Value::Number(_) => "int",
                Value::Bool(_) => "bool",
                Value::Null => "null",
                Value::Array(_) => "list",
                Value::Object(_) => "map",
            };
            let _ = writeln!(out, "  {k} = {v} ({kind})");
        }
    }
    let _ = writeln!(out, "\nconditions, in order:");
    if e.conditions.is_empty() {
        let _ = writeln!(out, "  (none: the router has only a default route)");
    }
    for (i, c) in e.conditions.iter().enumerate() {
        let mark = if c.matched { "→" } else { " " };
        let _ = writeln!(
            out,
            "{mark} {}. route {}: {}\n       {}",
            i + 1,
            c.route_id,
            c.condition,
            c.outcome
        );
    }
    let _ = writeln!(out);
    match (&e.route_id, &e.error) {
        (Some(route), _) => {
            let matched = e.conditions.iter().any(|c| c.matched);
            let _ = writeln!(
                out,
                "route: {route}{}",
                if matched {
                    ""
                } else {
                    " (the default route: no condition held)"
                }
            );
            let _ = writeln!(
                out,
                "variant: {} → model {}",
                e.variant_id.as_deref().unwrap_or(""),
                e.model_id.as_deref().unwrap_or("")
            );
            let _ = writeln!(out, "assigned: {}", e.assignment.as_deref().unwrap_or(""));
            let _ = writeln!(out, "\nattempt plan (every model healthy):");
            for (i, a) in e.plan.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  {}. {} (variant {}, {})",
                    i + 1,
                    a.model,
                    a.variant_id,
                    source_text(a.source)
                );
            }
        }
        (None, Some(err)) => {
            let _ = writeln!(out, "no decision: {err}");
        }
        (None, None) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use abroute::RouterConfig;

    #[test]
    fn explains_conditions_and_plan() {
        let r = RouterConfig::from_json(
            r#"{"name": "e", "routes": [
              {"route": {"route_id": "premium", "variants": [
                {"variant": {"variant_id": "big", "model_id": "openai/gpt-4.1",
                  "model_selection": {"models": ["openai/gpt-4o"]}}, "weight": 100}]},
               "condition": {"cel_expression": "tier == \"premium\""}},
              {"route": {"route_id": "support", "variants": [
                {"variant": {"variant_id": "s", "model_id": "openai/gpt-4o-mini"}, "weight": 100}]},
               "condition": {"cel_expression": "use_case == 'support'"}}],
             "defaultRoute": {"route_id": "default", "variants": [
                {"variant": {"variant_id": "d", "model_id": "openai/gpt-4o-mini"}, "weight": 100}]}}"#,
        )
        .unwrap()
        .compile()
        .unwrap();
        let out = explain(
            &r,
            &ExplainInput {
                user: Some("u1".into()),
                metadata: vec![("tier".into(), Value::from("premium"))],
                models: vec!["x/extra".into()],
                ..ExplainInput::default()
            },
        );
        assert_eq!(out.route_id.as_deref(), Some("premium"));
        assert_eq!(out.conditions[0].outcome, "true");
        assert!(out.conditions[1].outcome.starts_with("not evaluated"));
        let models: Vec<&str> = out.plan.iter().map(|p| p.model.as_str()).collect();
        assert_eq!(models, ["openai/gpt-4.1", "openai/gpt-4o", "x/extra"]);
        let text = render(&out);
        assert!(text.contains("→ 1. route premium"), "{text}");
        let out = explain(&r, &ExplainInput::default());
        assert_eq!(out.route_id.as_deref(), Some("default"));
        assert!(
            out.conditions[0].outcome.contains("error"),
            "{:?}",
            out.conditions[0]
        );
    }
}
