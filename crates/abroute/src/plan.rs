//! Attempt plans: which model to call first, and what to try next when it fails.
//!
//! The engine does no I/O: the host makes the calls. [`Decision::plan`](crate::Decision::plan)
//! gives an [`AttemptPlan`], an iterator of [`Attempt`]s; the host tries them in order, reports
//! each outcome with [`AttemptPlan::report`] (which feeds health and stats), stops at the first
//! success, and finally takes a [`DecisionRecord`] for its logs.
//!
//! The order is the configured one, with ejected models skipped:
//!
//! 1. the assigned variant's `model_id`, then its `model_selection.models` in order, without
//!    duplicates;
//! 2. the route's other variants in [`fallbacks`](crate::Decision::fallbacks) order, each with its
//!    own models, when the route opts in with `"failover": {"across_variants": true}`, and also,
//!    whatever the opt-in, when every model of the assigned variant is ejected (so a sticky user
//!    whose variant is down goes to their own deterministic second choice, and a weighted split
//!    rebalances away from a dead backend);
//! 3. the per-request models ([`RequestContext::with_models`](crate::RequestContext::with_models),
//!    Inworld's `extra_body.models`), attributed to the assigned variant.
//!
//! A plan never yields the same (variant, model) twice and never more than [`MAX_ATTEMPTS`]
//! attempts: no loops, whatever the config. It never comes back empty: if health would skip every
//! candidate, it yields the configured order regardless of health (*fail open*) and
//! [`AttemptPlan::fail_open`] says so.

use std::borrow::Cow;
use std::time::Duration;

use crate::compiled::{CompiledVariant, ModelTarget};
use crate::context::RequestContext;
use crate::decision::Decision;
use crate::fallback::Fallbacks;
use crate::health::Outcome;
use crate::record::{AttemptRecord, DecisionRecord, SkippedVariant};

pub use crate::record::AttemptSource;

/// The most attempts a plan yields.
pub const MAX_ATTEMPTS: usize = 16;

/// One model to call, and which variant it is for.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    variant_index: usize,
    variant: &'a CompiledVariant,
    model: &'a str,
    target: Option<&'a ModelTarget>,
    assigned: bool,
    source: AttemptSource,
}

impl<'a> Attempt<'a> {
    /// The model to call.
    pub fn model_id(&self) -> &'a str {
        self.model
    }

    /// The variant this attempt serves.
    pub fn variant(&self) -> &'a CompiledVariant {
        self.variant
    }

    /// The variant's `variant_id`.
    pub fn variant_id(&self) -> &'a str {
        self.variant.id()
    }

    /// The variant's position in its route.
    pub fn variant_index(&self) -> usize {
        self.variant_index
    }

    /// True when the attempt belongs to the assigned variant (its models or the request's).
    pub fn is_assigned_variant(&self) -> bool {
        self.assigned
    }

    /// Where in the plan the attempt comes from.
    pub fn source(&self) -> AttemptSource {
        self.source
    }
}

/// Where the plan's cursor is.
#[derive(Debug)]
enum Stage<'a> {
    /// The assigned variant's models, from this index.
    Assigned(usize),
    /// Other variants: the fallback iterator, and the current variant with its next model index.
    Others(Fallbacks<'a>, Option<(usize, &'a CompiledVariant, usize)>),
    /// The request's own models, from this index.
    Request(usize),
    /// Nothing left.
    Done,
}

/// The log of one attempt, kept inline.
#[derive(Debug, Clone, Copy)]
struct Logged<'a> {
    attempt: Attempt<'a>,
    outcome: Outcome,
    latency: Duration,
    ttft: Option<Duration>,
}

impl<'a> Decision<'a> {
    /// The attempt plan at `now`: the models to try in order, with ejected ones skipped (see
    /// [`plan`](crate::plan)). `ctx` supplies the request's own fallback models.
    pub fn plan<'p>(&self, ctx: &'p RequestContext<'_>, now: Duration) -> AttemptPlan<'p>
    where
        'a: 'p,
    {
        AttemptPlan::new(*self, ctx.models(), now)
    }
}

/// An iterator of attempts with their outcomes. Lives as long as the request.
#[derive(Debug)]
pub struct AttemptPlan<'a> {
    decision: Decision<'a>,
    request_models: &'a [Cow<'a, str>],
    now: Duration,
    stage: Stage<'a>,
    check_health: bool,
    fail_open: bool,
    yielded: usize,
    /// Whether any attempt of stage 1 (the assigned variant) was available.
    assigned_available: bool,
    log: [Option<Logged<'a>>; MAX_ATTEMPTS],
    served: Option<usize>,
}

impl<'a> AttemptPlan<'a> {
    fn new(
        decision: Decision<'a>,
        request_models: &'a [Cow<'a, str>],
        now: Duration,
    ) -> AttemptPlan<'a> {
        AttemptPlan {
            decision,
            request_models,
            now,
            stage: Stage::Assigned(0),
            check_health: true,
            fail_open: false,
            yielded: 0,
            assigned_available: false,
            log: [None; MAX_ATTEMPTS],
            served: None,
        }
    }

    /// The decision this plan serves.
    pub fn decision(&self) -> &Decision<'a> {
        &self.decision
    }

    /// True when health would have skipped every candidate and the plan yields the configured
    /// order regardless (fail open).
    pub fn fail_open(&self) -> bool {
        self.fail_open
    }

    /// Whether a candidate may be yielded: its model (and provider) is not ejected and, with
    /// capability routing, the model can serve the request. Both checks are off in fail-open mode.
    fn available(&self, target: Option<&ModelTarget>) -> bool {
        if !self.check_health {
            return true;
        }
        let Some(target) = target else {
            return true;
        };
        let capable = match (
            self.decision.compiled_router().capability_catalog(),
            self.decision.needs(),
        ) {
            (Some(catalog), Some(needs)) => catalog.can_serve(target.id(), needs).is_ok(),
            _ => true,
        };
        capable && target.is_available(self.now)
    }

    /// The next candidate in configured order, health aside; advances the cursor.
    fn next_candidate(&mut self) -> Option<Attempt<'a>> {
        let decision = self.decision;
        let assigned = decision.variant();
        let assigned_index = decision.variant_index();
        loop {
            match &mut self.stage {
                Stage::Assigned(i) => {
                    let targets = assigned.targets();
                    if let Some(target) = targets.get(*i) {
                        *i += 1;
                        return Some(Attempt {
                            variant_index: assigned_index,
                            variant: assigned,
                            model: target.id(),
                            target: Some(target),
                            assigned: true,
                            source: if *i == 1 {
                                AttemptSource::Primary
                            } else {
                                AttemptSource::ModelFallback
                            },
                        });
                    }
                    let others = decision.route().across_variants()
                        || (self.check_health && !self.assigned_available);
                    self.stage = if others {
                        Stage::Others(decision.fallbacks(), None)
                    } else {
                        Stage::Request(0)
                    };
                }
                Stage::Others(fallbacks, current) => {
                    if let Some((index, variant, m)) = current
                        && let Some(target) = variant.targets().get(*m)
                    {
                        *m += 1;
                        return Some(Attempt {
                            variant_index: *index,
                            variant,
                            model: target.id(),
                            target: Some(target),
                            assigned: false,
                            source: AttemptSource::OtherVariant,
                        });
                    }
                    match fallbacks.next() {
                        Some((index, variant)) => *current = Some((index, variant, 0)),
                        None => self.stage = Stage::Request(0),
                    }
                }
                Stage::Request(j) => {
                    let Some(model) = self.request_models.get(*j) else {
                        self.stage = Stage::Done;
                        continue;
                    };
                    *j += 1;
                    let model: &'a str = model.as_ref();
                    let seen = assigned.targets().iter().any(|t| t.id() == model)
                        || self.request_models[..*j - 1]
                            .iter()
                            .any(|m| m.as_ref() == model);
                    if seen || model.is_empty() {
                        continue;
                    }
                    return Some(Attempt {
                        variant_index: assigned_index,
                        variant: assigned,
                        model,
                        target: assigned.targets().iter().find(|t| t.id() == model),
                        assigned: true,
                        source: AttemptSource::Request,
                    });
                }
                Stage::Done => return None,
            }
        }
    }

    /// Records the outcome of `attempt` at `now`: updates the model's and its provider's health,
    /// the variant's counters, and this plan's log.
    pub fn report(
        &mut self,
        attempt: &Attempt<'a>,
        outcome: Outcome,
        latency: Duration,
        time_to_first_token: Option<Duration>,
        now: Duration,
    ) {
        if let Some(target) = attempt.target {
            target.report(outcome, now);
        }
        if let Some(stats) = attempt.variant.stats() {
            stats.record_outcome(outcome, latency);
        }
        if let Some(slot) = self.log.iter_mut().find(|s| s.is_none()) {
            *slot = Some(Logged {
                attempt: *attempt,
                outcome,
                latency,
                ttft: time_to_first_token,
            });
        }
        if outcome == Outcome::Success {
            self.decision
                .compiled_router()
                .metrics()
                .record(attempt.model, latency, 0, now);
        }
        if outcome == Outcome::Success && self.served.is_none() {
            self.served = Some(self.log.iter().flatten().count() - 1);
            if !attempt.assigned
                && let Some(stats) = self.decision.variant().stats()
            {
                stats.record_failover();
            }
        }
    }

    /// Reports how many tokens a successful attempt produced (when the host knows, from the
    /// response's `usage`), for throughput sorting. Latency is already recorded by
    /// [`report`](Self::report).
    pub fn report_output_tokens(
        &self,
        attempt: &Attempt<'a>,
        output_tokens: u64,
        latency: Duration,
    ) {
        self.decision.compiled_router().metrics().record_throughput(
            attempt.model,
            output_tokens,
            latency,
        );
    }

    /// The attempt that succeeded, if one did.
    pub fn served(&self) -> Option<Attempt<'a>> {
        self.served
            .and_then(|i| self.log.get(i).copied().flatten())
            .map(|l| l.attempt)
    }

    /// An owned record of the decision and every reported attempt, for logs and exports.
    pub fn record(&self) -> DecisionRecord {
        let served = self.served();
        let mut record = DecisionRecord::from_decision(&self.decision);
        record.served_variant_id = served.map(|a| a.variant_id().to_owned());
        record.served_model_id = served.map(|a| a.model_id().to_owned());
        record.fail_open = self.fail_open;
        record.skipped = self
            .decision
            .skipped_variants()
            .into_iter()
            .map(|(v, why)| SkippedVariant {
                variant_id: v.id().to_owned(),
                reason: why.code().to_owned(),
                message: why.to_string(),
            })
            .collect();
        record.attempts = self
            .log
            .iter()
            .flatten()
            .map(|l| AttemptRecord {
                variant_id: l.attempt.variant_id().to_owned(),
                model: l.attempt.model_id().to_owned(),
                assigned_variant: l.attempt.assigned,
                source: l.attempt.source,
                outcome: l.outcome,
                latency_ms: u64::try_from(l.latency.as_millis()).unwrap_or(u64::MAX),
                time_to_first_token_ms: l
                    .ttft
                    .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            })
            .collect();
        record
    }
}

impl<'a> Iterator for AttemptPlan<'a> {
    type Item = Attempt<'a>;

    fn next(&mut self) -> Option<Attempt<'a>> {
        if self.yielded >= MAX_ATTEMPTS {
            return None;
        }
        loop {
            let Some(attempt) = self.next_candidate() else {
                if self.yielded == 0 && self.check_health {
                    // Every candidate is ejected: fail open to the configured order.
                    self.check_health = false;
                    self.fail_open = true;
                    self.stage = Stage::Assigned(0);
                    continue;
                }
                return None;
            };
            if !self.available(attempt.target) {
                continue;
            }
            if matches!(self.stage, Stage::Assigned(_)) {
                self.assigned_available = true;
            }
            self.yielded += 1;
            return Some(attempt);
        }
    }
}
