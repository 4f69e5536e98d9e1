//! Request-level routing: requests that name no router but ask for routing themselves.
//!
//! Inworld's chat endpoint routes requests without a router (docs/http.md, "Request-level
//! routing"):
//!
//! - a direct `"model": "provider/model"` with `extra_body.models` (an ordered fallback list)
//!   and `extra_body.fallback.ttft_timeout` fails over as a router's variant does;
//! - `"model": "auto"` ranks a pool (`extra_body.models`, or the whole catalog) by
//!   `extra_body.sort` (price, latency, throughput, intelligence, math, coding; the first
//!   ranks, the next break ties) without `extra_body.ignore`'s models and providers, with the
//!   core's `auto` ordering ([`abroute::select::order_models`]), and explains the choice in
//!   `metadata.reasoning`.
//!
//! A request is routed here when its model names no router and it is `auto` or its
//! `extra_body` holds any of the router's keys; so none of those keys ever reaches an upstream
//! (the rewrite removes them, as for a router). A request with neither is passed through byte
//! for byte, as before.
//!
//! `RequestPlan` implements the attempt loop's `Plan` like a router's plan: the same
//! failover (429, 5xx, timeouts, slow first token), passive health (pinned in the layer,
//! `health`), latency and throughput reports for `auto`'s latency and throughput sorts,
//! decision headers and a [`DecisionRecord`] (so `metadata.attempts` and the gateway's
//! metrics), under the router label [`REQUEST_ROUTER`], which no router can be named (a
//! router's name matches `^[a-z0-9][a-z0-9-]*$`).
//!
//! Cost: unlike a router's plan, made once at publish time, a request-level plan is made per
//! request: the candidate list is allocated, `auto` sorts its pool, and each model's pinned
//! health is found under one short lock. Routed calls and pass-through calls do none of it.

mod either;
pub(crate) mod health;
mod select;

use std::time::Duration;

use abroute::health::Outcome;
use abroute::record::{AssignmentRecord, AttemptRecord, AttemptSource};
use abroute::{DecisionRecord, Engine};

use crate::error::ApiError;
use crate::intake::Request;
use crate::plan::{Plan, UpstreamAttempt};
use crate::prepared::AttemptSettings;
use crate::response::DecisionHeaders;
pub(crate) use either::EitherPlan;
use health::{Pinned, PinnedHealth};

/// The router label of request-level calls: in the `x-abroute-router` header, the record's
/// `router` and the metrics' `router` label. No router can have it as its name.
pub const REQUEST_ROUTER: &str = "_request";
/// The route label of a direct call (`"model": "provider/model"`).
pub const DIRECT_ROUTE: &str = "direct";
/// The route label of `"model": "auto"`.
pub const AUTO_ROUTE: &str = "auto";

/// What request-level routing keeps between requests: the pinned health of the models it
/// called. One per layer.
#[derive(Debug, Default)]
pub(crate) struct RequestLevel {
    health: PinnedHealth,
}

/// One attempt of a request-level plan: its candidate's index.
pub(crate) type Candidate = usize;

#[derive(Debug, Clone, Copy)]
struct Logged {
    index: usize,
    outcome: Outcome,
    latency: Duration,
    ttft: Option<Duration>,
}

/// The plan of a request-level call.
#[derive(Debug)]
pub(crate) struct RequestPlan<'a> {
    engine: &'a Engine,
    /// `direct` or `auto`.
    route: &'static str,
    models: Vec<String>,
    health: Vec<Pinned>,
    now: Duration,
    next: usize,
    check_health: bool,
    fail_open: bool,
    yielded: usize,
    log: Vec<Logged>,
    served: Option<usize>,
    reasoning: Option<String>,
    ttft: Option<Duration>,
    stream: bool,
}

impl<'a> RequestPlan<'a> {
    /// The plan of `request`, whose model names no router, at `now`.
    ///
    /// # Errors
    ///
    /// 400 naming the field: no `model`, a `sort` or `ignore` of the wrong shape, an unknown
    /// sort criterion, an `auto` pool the catalog knows nothing of or `ignore` empties.
    pub(crate) fn new(
        engine: &'a Engine,
        state: &RequestLevel,
        request: &Request<'_, '_>,
        now: Duration,
    ) -> Result<RequestPlan<'a>, ApiError> {
        let ex = request.ex;
        let Some(model) = ex.model().filter(|m| !m.is_empty()) else {
            return Err(ApiError::invalid_param(
                "model",
                "model is required: a model id, \"auto\", or a router",
            ));
        };
        let sort = select::parse_sort(ex.sort_raw())?;
        let ignore = select::parse_ignore(ex.ignore_raw())?;
        let requested: Vec<String> = request
            .ctx
            .models()
            .iter()
            .map(|m| m.as_ref().to_owned())
            .collect();
        let asked = select::Asked {
            requested: &requested,
            sort: &sort,
            ignore: &ignore,
        };
        let (catalog, metrics) = (engine.catalog(), engine.metrics());
        let (route, candidates) = if model == abroute::select::AUTO {
            (AUTO_ROUTE, select::auto(&asked, catalog, metrics)?)
        } else {
            (
                DIRECT_ROUTE,
                select::direct(model, &asked, catalog, metrics)?,
            )
        };
        let health = candidates
            .models
            .iter()
            .map(|m| state.health.get(engine.health(), m))
            .collect();
        Ok(RequestPlan {
            engine,
            route,
            models: candidates.models,
            health,
            now,
            next: 0,
            check_health: true,
            fail_open: false,
            yielded: 0,
            log: Vec::new(),
            served: None,
            reasoning: candidates.reasoning,
            ttft: request.ttft,
            stream: ex.is_stream(),
        })
    }

    fn model(&self, index: usize) -> &str {
        self.models.get(index).map_or("", String::as_str)
    }
}

impl Plan for RequestPlan<'_> {
    type Attempt = Candidate;

    fn next_attempt(&mut self) -> Option<Candidate> {
        loop {
            let Some(pinned) = self.health.get(self.next) else {
                if self.yielded == 0 && self.check_health {
                    // Every candidate is ejected: fail open to the order as computed.
                    self.check_health = false;
                    self.fail_open = true;
                    self.next = 0;
                    continue;
                }
                return None;
            };
            let index = self.next;
            self.next += 1;
            if self.check_health && !pinned.is_available(self.now) {
                continue;
            }
            self.yielded += 1;
            return Some(index);
        }
    }

    fn settings(&self, _: &Candidate) -> AttemptSettings<'_> {
        AttemptSettings::default()
    }

    fn upstream(&self, attempt: &Candidate, number: usize) -> UpstreamAttempt {
        let model = self.model(*attempt).to_owned();
        UpstreamAttempt {
            router: REQUEST_ROUTER.to_owned(),
            route_id: self.route.to_owned(),
            variant_id: model.clone(),
            model_id: model,
            attempt: number,
            assigned_variant: *attempt == 0,
            ttft_timeout: self.ttft,
            stream: self.stream,
        }
    }

    fn report(
        &mut self,
        attempt: &Candidate,
        outcome: Outcome,
        latency: Duration,
        time_to_first_token: Option<Duration>,
        now: Duration,
    ) {
        if let Some(h) = self.health.get(*attempt) {
            h.report(outcome, now);
        }
        if outcome == Outcome::Success {
            self.engine
                .metrics()
                .record(self.model(*attempt), latency, 0, now);
            if self.served.is_none() {
                self.served = Some(*attempt);
            }
        }
        self.log.push(Logged {
            index: *attempt,
            outcome,
            latency,
            ttft: time_to_first_token,
        });
    }

    fn report_output_tokens(&self, attempt: &Candidate, output_tokens: u64, latency: Duration) {
        self.engine
            .metrics()
            .record_throughput(self.model(*attempt), output_tokens, latency);
    }

    fn record(&self) -> DecisionRecord {
        let first = self.model(0).to_owned();
        let served = self.served.map(|i| self.model(i).to_owned());
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        DecisionRecord {
            router: REQUEST_ROUTER.to_owned(),
            route_id: self.route.to_owned(),
            assigned_variant_id: first.clone(),
            assigned_model_id: first,
            served_variant_id: served.clone(),
            served_model_id: served,
            version: 0,
            assignment: AssignmentRecord::Request,
            attempts: self
                .log
                .iter()
                .map(|l| AttemptRecord {
                    variant_id: self.model(l.index).to_owned(),
                    model: self.model(l.index).to_owned(),
                    assigned_variant: l.index == 0,
                    source: if l.index == 0 {
                        AttemptSource::Primary
                    } else {
                        AttemptSource::Request
                    },
                    outcome: l.outcome,
                    latency_ms: millis(l.latency),
                    time_to_first_token_ms: l.ttft.map(millis),
                })
                .collect(),
            fail_open: self.fail_open,
            skipped: Vec::new(),
            reasoning: self.reasoning.clone(),
        }
    }

    fn headers(&self, attempt: &Candidate) -> DecisionHeaders<'_> {
        DecisionHeaders {
            router: REQUEST_ROUTER,
            route_id: self.route,
            variant_id: self.model(*attempt),
            assigned_variant_id: self.model(0),
            model_id: self.model(*attempt),
            version: 0,
        }
    }
}
