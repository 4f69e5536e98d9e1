//! What the attempt loop walks: the [`Plan`] interface, and the plan a router gives
//! ([`RoutePlan`]).
//!
//! The attempt loop ([`attempts`](crate::attempts)) and the answer
//! ([`answer`](crate::answer)) see a request's attempts only through [`Plan`]: the next
//! attempt, what its body is rewritten with, what the inner service is told
//! ([`UpstreamAttempt`]), where its outcome goes, and what the answer's headers and record say.
//! [`RoutePlan`] implements it over the core's [`AttemptPlan`] for a router's
//! [`Decision`]; a plan that comes from elsewhere (request-level routing: a direct model and
//! the request's fallbacks) implements it too, and the loop and the answer take it unchanged.

use std::time::Duration;

use abroute::{Attempt, AttemptPlan, Decision, DecisionRecord, LoadedRouter, Outcome};

use crate::error::ApiError;
use crate::extract::Api;
use crate::intake::Request;
use crate::prepared::{AttemptSettings, Prepared};
use crate::response::DecisionHeaders;

/// What the inner service is asked to do, in its request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAttempt {
    /// The router's name.
    pub router: String,
    /// The route taken.
    pub route_id: String,
    /// The variant this attempt serves.
    pub variant_id: String,
    /// The model to call, in full (`openai/gpt-4.1`): pick the provider from it.
    pub model_id: String,
    /// 0 for the first attempt, then 1, 2, ...
    pub attempt: usize,
    /// True when the attempt belongs to the assigned variant.
    pub assigned_variant: bool,
    /// The request's `extra_body.fallback.ttft_timeout`, for inner services that enforce it.
    pub ttft_timeout: Option<Duration>,
    /// Whether the request asks for a stream.
    pub stream: bool,
}

/// A request's attempts in order, and where their outcomes go.
pub(crate) trait Plan {
    /// One attempt.
    type Attempt: Copy;

    /// The next attempt to make; `None` when none is left.
    fn next_attempt(&mut self) -> Option<Self::Attempt>;

    /// What the body is rewritten with for `attempt`.
    fn settings(&self, attempt: &Self::Attempt) -> AttemptSettings<'_>;

    /// What the inner service is told for `attempt`, the `number`th (from 0).
    fn upstream(&self, attempt: &Self::Attempt, number: usize) -> UpstreamAttempt;

    /// Records the outcome of `attempt` at `now`.
    fn report(
        &mut self,
        attempt: &Self::Attempt,
        outcome: Outcome,
        latency: Duration,
        time_to_first_token: Option<Duration>,
        now: Duration,
    );

    /// Records how many tokens a successful `attempt` produced in `latency`.
    fn report_output_tokens(&self, attempt: &Self::Attempt, output_tokens: u64, latency: Duration);

    /// The decision and every reported attempt, owned.
    fn record(&self) -> DecisionRecord;

    /// The decision headers of an answer from `attempt`.
    fn headers(&self, attempt: &Self::Attempt) -> DecisionHeaders<'_>;
}

/// The plan of a request routed by a router: the core's [`AttemptPlan`], with each variant's
/// prepared data found by index.
#[derive(Debug)]
pub(crate) struct RoutePlan<'a> {
    plan: AttemptPlan<'a>,
    router: &'a LoadedRouter,
    prepared: Option<&'a Prepared>,
    /// The decision's route, by index (see [`prepared`](crate::prepared)).
    route: usize,
    api: Api,
    ttft: Option<Duration>,
    stream: bool,
}

impl<'a> RoutePlan<'a> {
    /// Decides where the request goes in `router` and makes its plan at `now`.
    ///
    /// # Errors
    ///
    /// 422 when no route matched.
    pub(crate) fn new(
        router: &'a LoadedRouter,
        request: &'a Request<'a, 'a>,
        now: Duration,
    ) -> Result<RoutePlan<'a>, ApiError> {
        let decision = router.compiled().decide(&request.ctx)?;
        let route = decision.route().index();
        Ok(RoutePlan {
            plan: decision.plan(&request.ctx, now),
            router,
            prepared: Prepared::of(router),
            route,
            api: request.ex.api(),
            ttft: request.ttft,
            stream: request.ex.is_stream(),
        })
    }

    /// The decision.
    pub(crate) fn decision(&self) -> &Decision<'a> {
        self.plan.decision()
    }

    /// What the body is rewritten with for the variant at `variant_index` of the route taken.
    pub(crate) fn settings_of(&self, variant_index: usize) -> AttemptSettings<'a> {
        AttemptSettings::at(
            self.router,
            self.prepared,
            self.route,
            variant_index,
            self.api,
        )
    }
}

impl<'a> Plan for RoutePlan<'a> {
    type Attempt = Attempt<'a>;

    fn next_attempt(&mut self) -> Option<Attempt<'a>> {
        self.plan.next()
    }

    fn settings(&self, attempt: &Attempt<'a>) -> AttemptSettings<'_> {
        self.settings_of(attempt.variant_index())
    }

    fn upstream(&self, attempt: &Attempt<'a>, number: usize) -> UpstreamAttempt {
        let d = self.plan.decision();
        UpstreamAttempt {
            router: d.router().to_owned(),
            route_id: d.route_id().to_owned(),
            variant_id: attempt.variant_id().to_owned(),
            model_id: attempt.model_id().to_owned(),
            attempt: number,
            assigned_variant: attempt.is_assigned_variant(),
            ttft_timeout: self.ttft,
            stream: self.stream,
        }
    }

    fn report(
        &mut self,
        attempt: &Attempt<'a>,
        outcome: Outcome,
        latency: Duration,
        time_to_first_token: Option<Duration>,
        now: Duration,
    ) {
        self.plan
            .report(attempt, outcome, latency, time_to_first_token, now);
    }

    fn report_output_tokens(&self, attempt: &Attempt<'a>, output_tokens: u64, latency: Duration) {
        self.plan
            .report_output_tokens(attempt, output_tokens, latency);
    }

    fn record(&self) -> DecisionRecord {
        self.plan.record()
    }

    fn headers(&self, attempt: &Attempt<'a>) -> DecisionHeaders<'_> {
        let d = self.plan.decision();
        DecisionHeaders {
            router: d.router(),
            route_id: d.route_id(),
            variant_id: attempt.variant_id(),
            assigned_variant_id: d.variant_id(),
            model_id: attempt.model_id(),
            version: d.version(),
        }
    }
}
