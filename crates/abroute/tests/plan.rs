//! Attempt plans, passive health and decision records: bounded duplicate-free plans in the
//! configured order, ejection and recovery, fail-open, and a deterministic failure simulation.

use std::collections::HashSet;
use std::time::Duration;

use abroute::health::HealthState;
use abroute::plan::{AttemptSource, MAX_ATTEMPTS};
use abroute::{
    DecisionRecord, Engine, FailureClass, Health, HealthConfig, Outcome, RequestContext,
    RouterConfig,
};
use proptest::prelude::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A router with one route; each variant is (id, weight, models...) where the first model is
/// the variant's `model_id` and the rest its `model_selection.models`.
fn router(variants: &[(&str, u32, &[&str])]) -> RouterConfig {
    let vs: Vec<String> = variants
        .iter()
        .map(|(id, w, models)| {
            let fallbacks: Vec<String> = models[1..].iter().map(|m| format!("\"{m}\"")).collect();
            format!(
                r#"{{"variant":{{"variant_id":"{id}","model_id":"{}","model_selection":{{"models":[{}]}}}},"weight":{w}}}"#,
                models[0],
                fallbacks.join(",")
            )
        })
        .collect();
    RouterConfig::from_json(&format!(
        r#"{{"name":"r","defaultRoute":{{"route_id":"d","variants":[{}]}}}}"#,
        vs.join(",")
    ))
    .expect("test router parses")
}

#[test]
fn plan_is_the_variants_models_in_order_without_duplicates() {
    let engine = Engine::new();
    engine
        .upsert(router(&[
            (
                "a",
                1,
                &["openai/gpt-4.1", "openai/gpt-4o", "openai/gpt-4.1", "x/y"],
            ),
            ("b", 0, &["openai/gpt-3.5-turbo"]),
        ]))
        .unwrap();
    let snap = engine.load();
    let ctx = RequestContext::new().with_models(["x/y", "z/w", "z/w", "openai/gpt-4o-mini"]);
    let d = snap.route("r", &ctx).unwrap();
    let plan: Vec<(String, AttemptSource, bool)> = d
        .plan(&ctx, secs(0))
        .map(|a| (a.model_id().to_owned(), a.source(), a.is_assigned_variant()))
        .collect();
    assert_eq!(
        plan,
        vec![
            ("openai/gpt-4.1".into(), AttemptSource::Primary, true),
            ("openai/gpt-4o".into(), AttemptSource::ModelFallback, true),
            ("x/y".into(), AttemptSource::ModelFallback, true),
            ("z/w".into(), AttemptSource::Request, true),
            ("openai/gpt-4o-mini".into(), AttemptSource::Request, true),
        ]
    );
}

#[test]
fn ejected_models_are_skipped_and_all_ejected_fails_open() {
    let config = HealthConfig {
        consecutive_failures: 1,
        ..HealthConfig::default()
    };
    let engine = Engine::with_health(Default::default(), config);
    engine
        .upsert(router(&[("a", 1, &["p/m1", "q/m2"])]))
        .unwrap();
    let snap = engine.load();
    let ctx = RequestContext::new();
    let d = snap.route("r", &ctx).unwrap();

    engine.report("p/m1", Outcome::Failure(FailureClass::ServerError), secs(0));
    let models: Vec<&str> = d.plan(&ctx, secs(1)).map(|a| a.model_id()).collect();
    assert_eq!(models, vec!["q/m2"], "ejected primary skipped");

    engine.report("q/m2", Outcome::Failure(FailureClass::Timeout), secs(1));
    let mut plan = d.plan(&ctx, secs(2));
    let models: Vec<&str> = plan.by_ref().map(|a| a.model_id()).collect();
    assert_eq!(models, vec!["p/m1", "q/m2"], "fail open: configured order");
    assert!(plan.fail_open());
    assert!(plan.record().fail_open);
}

#[test]
fn provider_ejection_covers_its_models() {
    let config = HealthConfig {
        consecutive_failures: 2,
        ..HealthConfig::default()
    };
    let engine = Engine::with_health(Default::default(), config);
    engine
        .upsert(router(&[("a", 1, &["openai/a", "openai/b", "other/c"])]))
        .unwrap();
    // One failure on each of two openai models: neither model is ejected, the provider is.
    engine.report(
        "openai/a",
        Outcome::Failure(FailureClass::RateLimited),
        secs(0),
    );
    engine.report(
        "openai/b",
        Outcome::Failure(FailureClass::RateLimited),
        secs(0),
    );
    let snap = engine.load();
    let ctx = RequestContext::new();
    let d = snap.route("r", &ctx).unwrap();
    let models: Vec<&str> = d.plan(&ctx, secs(1)).map(|a| a.model_id()).collect();
    assert_eq!(models, vec!["other/c"]);
}

#[test]
fn health_survives_a_config_swap_for_models_that_remain() {
    let config = HealthConfig {
        consecutive_failures: 1,
        ..HealthConfig::default()
    };
    let engine = Engine::with_health(Default::default(), config);
    engine.upsert(router(&[("a", 1, &["p/keep"])])).unwrap();
    engine.report(
        "p/keep",
        Outcome::Failure(FailureClass::ServerError),
        secs(0),
    );
    // A new config naming the same model (in another variant) keeps the ejection.
    engine
        .upsert(router(&[("b", 1, &["p/keep"]), ("c", 1, &["p/new"])]))
        .unwrap();
    let h = engine.health().get_model("p/keep").unwrap();
    assert!(matches!(h.state(secs(1)), HealthState::Ejected { .. }));
    let fresh = engine.health().get_model("p/new").unwrap();
    assert_eq!(fresh.state(secs(1)), HealthState::Healthy);
}

#[test]
fn record_keeps_assigned_and_served_apart() {
    let config = HealthConfig {
        consecutive_failures: 1,
        ..HealthConfig::default()
    };
    let engine = Engine::with_health(Default::default(), config);
    engine
        .upsert(router(&[("a", 1, &["p/a"]), ("b", 1, &["q/b"])]))
        .unwrap();
    engine.report("p/a", Outcome::Failure(FailureClass::ServerError), secs(0));
    let snap = engine.load();
    // Draw 0 picks variant a (the first bucket), whose only model is ejected.
    let ctx = RequestContext::new().with_random(0);
    let d = snap.route("r", &ctx).unwrap();
    assert_eq!(d.variant_id(), "a");
    let mut plan = d.plan(&ctx, secs(1));
    let attempt = plan.next().unwrap();
    assert_eq!((attempt.variant_id(), attempt.model_id()), ("b", "q/b"));
    assert!(!attempt.is_assigned_variant());
    plan.report(
        &attempt,
        Outcome::Success,
        Duration::from_millis(120),
        Some(Duration::from_millis(40)),
        secs(1),
    );
    let record = plan.record();
    assert_eq!(record.assigned_variant_id, "a");
    assert_eq!(record.served_variant_id.as_deref(), Some("b"));
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(json["assignment"]["kind"], "random");
    assert_eq!(json["assignment"]["draw"], "0000000000000000");
    assert_eq!(json["attempts"][0]["outcome"], "success");
    assert_eq!(json["attempts"][0]["time_to_first_token_ms"], 40);
    let back: DecisionRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back, record);
    let stats = snap.stats("r");
    let a = &stats.iter().find(|(_, v, _)| v == "a").unwrap().2;
    assert_eq!((a.requests, a.failovers), (1, 1));
}

fn models_strategy() -> impl Strategy<Value = Vec<Vec<String>>> {
    // Up to 5 variants, each with 1..6 models from a small pool (so duplicates happen).
    prop::collection::vec(
        prop::collection::vec((0u8..6).prop_map(|m| format!("p{}/m{}", m % 3, m)), 1..6),
        1..5,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Plans are bounded, duplicate-free, never empty, start with the primary unless it is
    /// ejected, and keep the configured order of what they yield.
    #[test]
    fn plans_are_bounded_ordered_and_never_empty(
        variants in models_strategy(),
        failing in prop::collection::vec(0u8..6, 0..6),
        request in prop::collection::vec((0u8..8).prop_map(|m| format!("p{}/m{}", m % 3, m)), 0..20),
        draw in any::<u64>(),
    ) {
        let ids: Vec<String> = (0..variants.len()).map(|i| format!("v{i}")).collect();
        let spec: Vec<(&str, u32, Vec<&str>)> = variants
            .iter()
            .zip(&ids)
            .map(|(ms, id)| (id.as_str(), 1, ms.iter().map(String::as_str).collect()))
            .collect();
        let spec_refs: Vec<(&str, u32, &[&str])> =
            spec.iter().map(|(i, w, m)| (*i, *w, m.as_slice())).collect();
        let config = HealthConfig { consecutive_failures: 1, ..HealthConfig::default() };
        let engine = Engine::with_health(Default::default(), config);
        engine.upsert(router(&spec_refs)).unwrap();
        for m in &failing {
            engine.report(&format!("p{}/m{}", m % 3, m), Outcome::Failure(FailureClass::Timeout), secs(0));
        }
        let snap = engine.load();
        let ctx = RequestContext::new().with_random(draw).with_models(request.iter().map(String::as_str));
        let d = snap.route("r", &ctx).unwrap();
        let plan = d.plan(&ctx, secs(1));
        let attempts: Vec<_> = plan.collect();
        prop_assert!(!attempts.is_empty(), "a plan is never empty");
        prop_assert!(attempts.len() <= MAX_ATTEMPTS);
        let mut seen = HashSet::new();
        for a in &attempts {
            prop_assert!(seen.insert((a.variant_index(), a.model_id())), "duplicate {:?}", a.model_id());
        }
        let primary = d.model_id();
        let target = &d.variant().targets()[0];
        let primary_ejected = target.health().is_ejected(secs(1))
            || target.provider_health().is_some_and(|p| p.is_ejected(secs(1)));
        if !primary_ejected {
            prop_assert_eq!(attempts[0].model_id(), primary);
        }
        // The assigned variant's attempts come in its configured order.
        let configured: Vec<&str> = d.variant().targets().iter().map(|t| t.id()).collect();
        let yielded: Vec<&str> = attempts
            .iter()
            .filter(|a| a.is_assigned_variant() && a.source() != AttemptSource::Request)
            .map(|a| a.model_id())
            .collect();
        let mut pos = 0;
        for m in yielded {
            let at = configured[pos..].iter().position(|c| *c == m);
            prop_assert!(at.is_some(), "{} out of order in {:?}", m, configured);
            pos += at.unwrap_or(0) + 1;
        }
    }

    /// Under random outcomes at random times, a model is never ejected forever and never
    /// restored without a success after its cooldown.
    #[test]
    fn health_state_machine(events in prop::collection::vec((any::<bool>(), 0u64..5_000), 1..300)) {
        let config = HealthConfig { consecutive_failures: 3, ..HealthConfig::default() };
        let h = Health::new(config);
        let mut now = 0u64;
        for (fail, step) in events {
            now += step;
            let t = Duration::from_millis(now);
            let before = h.state(t);
            let outcome = if fail { Outcome::Failure(FailureClass::ServerError) } else { Outcome::Success };
            h.report(outcome, t);
            let after = h.state(t);
            if !matches!(before, abroute::health::HealthState::Healthy)
                && matches!(after, abroute::health::HealthState::Healthy)
            {
                prop_assert!(!fail, "restored by a failure");
                prop_assert!(!matches!(before, abroute::health::HealthState::Ejected { .. }),
                    "restored before the cooldown ended");
            }
            if let abroute::health::HealthState::Ejected { until_ms } = after {
                prop_assert!(until_ms <= now + config.max_ejection.as_millis() as u64);
            }
        }
        // Never stuck: once the longest cooldown and a probe timeout pass, a probe is allowed.
        let later = Duration::from_millis(now) + config.max_ejection + config.probe_timeout + secs(1);
        prop_assert!(h.is_available(later));
    }
}

/// Three variants, one model failing 100% between t = 100 s and t = 200 s. One request a
/// second per variant slot, deterministic draws. Shows the ejection, where the traffic went,
/// the recovery, and that no request got an empty plan.
#[test]
fn simulation_one_model_down_for_a_while() {
    let engine = Engine::new();
    engine
        .upsert(router(&[
            ("a", 1, &["openai/gpt-4o-mini"]),
            ("b", 1, &["anthropic/claude"]),
            ("c", 1, &["google/gemini"]),
        ]))
        .unwrap();
    // served[phase][variant]: phase 0 before, 1 during, 2 after the outage.
    let mut served = [[0u32; 3]; 3];
    let mut first_ejected_at = None;
    let mut recovered_at = None;
    let mut x = 0u64;
    for tick in 0..3_000u64 {
        let now = Duration::from_millis(tick * 100); // 10 requests a second for 300 s
        let down = (100..200).contains(&(tick / 10));
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let snap = engine.load();
        let ctx = RequestContext::new().with_random(x);
        let d = snap.route("r", &ctx).unwrap();
        let mut plan = d.plan(&ctx, now);
        let mut any = false;
        while let Some(attempt) = plan.next() {
            any = true;
            let fails = down && attempt.model_id() == "openai/gpt-4o-mini";
            let outcome = if fails {
                Outcome::Failure(FailureClass::ServerError)
            } else {
                Outcome::Success
            };
            plan.report(&attempt, outcome, Duration::from_millis(50), None, now);
            if !fails {
                let phase = if tick < 1000 {
                    0
                } else if tick < 2000 {
                    1
                } else {
                    2
                };
                served[phase][attempt.variant_index()] += 1;
                break;
            }
        }
        assert!(any, "empty plan at tick {tick}");
        let h = engine.health().get_model("openai/gpt-4o-mini").unwrap();
        if h.is_ejected(now) && first_ejected_at.is_none() {
            first_ejected_at = Some(tick);
        }
        if first_ejected_at.is_some()
            && !down
            && recovered_at.is_none()
            && h.state(now) == HealthState::Healthy
        {
            recovered_at = Some(tick);
        }
    }
    println!("served per variant before / during / after: {served:?}");
    println!("ejected at tick {first_ejected_at:?}, recovered at tick {recovered_at:?}");
    let ejected = first_ejected_at.expect("the failing model is ejected");
    assert!(
        (1000..1100).contains(&ejected),
        "ejected soon after the outage began"
    );
    let recovered = recovered_at.expect("the model recovers");
    assert!(
        (2000..2000 + 3100).contains(&recovered),
        "recovers after the outage ends"
    );
    // Before: an even split. During: a gets (almost) nothing, b and c share its traffic.
    for v in 0..3 {
        assert!((250..420).contains(&served[0][v]), "before {served:?}");
    }
    assert!(served[1][0] < 20, "during {served:?}");
    assert!(
        served[1][1] > 400 && served[1][2] > 400,
        "during {served:?}"
    );
    assert!(served[2][0] > 150, "after {served:?}");
}

/// A sticky user whose variant is ejected goes to their own deterministic second choice, and
/// comes back to the assigned variant once it recovers.
#[test]
fn sticky_user_fails_over_to_their_own_second_choice_and_returns() {
    let config = HealthConfig {
        consecutive_failures: 1,
        ..HealthConfig::default()
    };
    let engine = Engine::with_health(Default::default(), config);
    engine
        .upsert(router(&[
            ("a", 1, &["pa/m"]),
            ("b", 1, &["pb/m"]),
            ("c", 1, &["pc/m"]),
        ]))
        .unwrap();
    let snap = engine.load();
    for (i, user) in ["alice", "bob", "carol", "dave"].into_iter().enumerate() {
        // Each user's story starts well after the last one's: past the longest cooldown, so
        // earlier ejections are forgotten.
        let at = |s: u64| secs(1_000 * i as u64 + s);
        let ctx = RequestContext::new().with_user(user);
        let d = snap.route("r", &ctx).unwrap();
        let second = d
            .fallbacks()
            .next()
            .expect("a second choice")
            .1
            .id()
            .to_owned();
        let first_attempt = |now| {
            d.plan(&ctx, now)
                .next()
                .map(|a| a.variant_id().to_owned())
                .expect("never empty")
        };
        assert_eq!(first_attempt(at(0)), d.variant_id());
        // Eject the assigned variant's only model.
        d.variant().targets()[0].report(Outcome::Failure(FailureClass::ServerError), at(0));
        for t in 1..5 {
            assert_eq!(first_attempt(at(t)), second, "{user} at {t}s");
        }
        // After the cooldown the probe goes through, succeeds, and the user is back.
        let mut plan = d.plan(&ctx, at(11));
        let probe = plan.next().unwrap();
        assert_eq!(probe.variant_id(), d.variant_id());
        plan.report(
            &probe,
            Outcome::Success,
            Duration::from_millis(30),
            None,
            at(11),
        );
        assert_eq!(first_attempt(at(12)), d.variant_id());
    }
}

/// Successful attempts feed the latency (and, when told, throughput) averages that latency and
/// throughput sorting read.
#[test]
fn reports_feed_the_model_metrics() {
    let engine = Engine::new();
    engine.upsert(router(&[("a", 1, &["p/fast"])])).unwrap();
    let snap = engine.load();
    let ctx = RequestContext::new();
    let d = snap.route("r", &ctx).unwrap();
    let mut plan = d.plan(&ctx, secs(1));
    let a = plan.next().unwrap();
    plan.report(
        &a,
        Outcome::Success,
        Duration::from_millis(50),
        None,
        secs(1),
    );
    plan.report_output_tokens(&a, 100, Duration::from_millis(50));
    assert_eq!(engine.metrics().latency_ms("p/fast"), 50.0);
    assert_eq!(engine.metrics().throughput("p/fast"), 2_000.0);
}
