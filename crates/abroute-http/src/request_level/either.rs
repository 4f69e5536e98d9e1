//! [`EitherPlan`]: a router's plan or a request-level one behind one [`Plan`] type, so the
//! layer's request future stays one function with the attempt loop inline. (Awaiting a generic
//! helper per plan type instead nests a second future of several KiB that is built and then
//! moved into the first: measured at about 1,300 more instructions a routed request.)

use std::time::Duration;

use abroute::{Attempt, DecisionRecord, Outcome};

use super::{Candidate, RequestPlan};
use crate::plan::{Plan, RoutePlan, UpstreamAttempt};
use crate::prepared::AttemptSettings;
use crate::response::DecisionHeaders;

/// A router's plan, or a request-level plan.
// The router's plan (its attempt log inline) is the large one; boxing it would add an
// allocation to every routed request, and the plan lives in the request's future anyway.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum EitherPlan<'a> {
    /// A router's.
    Route(RoutePlan<'a>),
    /// A request-level call's.
    Request(RequestPlan<'a>),
}

/// An attempt of an [`EitherPlan`]: always of the plan's own kind.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EitherAttempt<'a> {
    /// A router plan's attempt.
    Route(Attempt<'a>),
    /// A request-level plan's candidate.
    Request(Candidate),
}

impl<'a> Plan for EitherPlan<'a> {
    type Attempt = EitherAttempt<'a>;

    fn next_attempt(&mut self) -> Option<EitherAttempt<'a>> {
        match self {
            EitherPlan::Route(p) => p.next_attempt().map(EitherAttempt::Route),
            EitherPlan::Request(p) => p.next_attempt().map(EitherAttempt::Request),
        }
    }

    fn settings(&self, attempt: &EitherAttempt<'a>) -> AttemptSettings<'_> {
        match (self, attempt) {
            (EitherPlan::Route(p), EitherAttempt::Route(a)) => p.settings(a),
            (EitherPlan::Request(p), EitherAttempt::Request(a)) => p.settings(a),
            // An attempt is always its own plan's (`next_attempt`).
            _ => AttemptSettings::default(),
        }
    }

    fn upstream(&self, attempt: &EitherAttempt<'a>, number: usize) -> UpstreamAttempt {
        match (self, attempt) {
            (EitherPlan::Route(p), EitherAttempt::Route(a)) => p.upstream(a, number),
            (EitherPlan::Request(p), EitherAttempt::Request(a)) => p.upstream(a, number),
            (EitherPlan::Route(p), EitherAttempt::Request(_)) => decision_upstream(p, number),
            (EitherPlan::Request(p), EitherAttempt::Route(_)) => p.upstream(&0, number),
        }
    }

    fn report(
        &mut self,
        attempt: &EitherAttempt<'a>,
        outcome: Outcome,
        latency: Duration,
        time_to_first_token: Option<Duration>,
        now: Duration,
    ) {
        match (self, attempt) {
            (EitherPlan::Route(p), EitherAttempt::Route(a)) => {
                p.report(a, outcome, latency, time_to_first_token, now);
            }
            (EitherPlan::Request(p), EitherAttempt::Request(a)) => {
                p.report(a, outcome, latency, time_to_first_token, now);
            }
            _ => {}
        }
    }

    fn report_output_tokens(
        &self,
        attempt: &EitherAttempt<'a>,
        output_tokens: u64,
        latency: Duration,
    ) {
        match (self, attempt) {
            (EitherPlan::Route(p), EitherAttempt::Route(a)) => {
                p.report_output_tokens(a, output_tokens, latency);
            }
            (EitherPlan::Request(p), EitherAttempt::Request(a)) => {
                p.report_output_tokens(a, output_tokens, latency);
            }
            _ => {}
        }
    }

    fn record(&self) -> DecisionRecord {
        match self {
            EitherPlan::Route(p) => p.record(),
            EitherPlan::Request(p) => p.record(),
        }
    }

    fn headers(&self, attempt: &EitherAttempt<'a>) -> DecisionHeaders<'_> {
        match (self, attempt) {
            (EitherPlan::Route(p), EitherAttempt::Route(a)) => p.headers(a),
            (EitherPlan::Request(p), EitherAttempt::Request(a)) => p.headers(a),
            (EitherPlan::Route(p), EitherAttempt::Request(_)) => decision_headers(p),
            (EitherPlan::Request(p), EitherAttempt::Route(_)) => p.headers(&0),
        }
    }
}

// Never called: an attempt is always its own plan's (`next_attempt`). What a mismatched pair
// answers, rather than a panic: the decision's own variant and model.

fn decision_upstream(p: &RoutePlan<'_>, number: usize) -> UpstreamAttempt {
    let d = p.decision();
    UpstreamAttempt {
        router: d.router().to_owned(),
        route_id: d.route_id().to_owned(),
        variant_id: d.variant_id().to_owned(),
        model_id: d.model_id().to_owned(),
        attempt: number,
        assigned_variant: true,
        ttft_timeout: None,
        stream: false,
    }
}

fn decision_headers<'p>(p: &'p RoutePlan<'_>) -> DecisionHeaders<'p> {
    let d = p.decision();
    DecisionHeaders {
        router: d.router(),
        route_id: d.route_id(),
        variant_id: d.variant_id(),
        assigned_variant_id: d.variant_id(),
        model_id: d.model_id(),
        version: d.version(),
    }
}
