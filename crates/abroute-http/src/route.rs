//! Routing one request without the layer: [`RouterOptions::route`], for hosts that make a
//! single upstream call.
//!
//! It runs the same way in as the layer ([`intake`](crate::intake): extract, find the router
//! once, build the context) and the same plan, then rewrites the body for the first attempt.

use std::time::Duration;

use abroute::Snapshot;
use bytes::Bytes;
use http::HeaderMap;

use crate::error::ApiError;
use crate::extract::Api;
use crate::intake::{Intake, Target};
use crate::options::RouterOptions;
use crate::plan::{Plan, RoutePlan};
use crate::rewrite::rewrite;

impl RouterOptions {
    /// Routes one request to its first attempt and rewrites the body for it: the whole hot
    /// path in one call, for hosts that make one upstream call and handle failover themselves
    /// (or not at all). The [`AbrouteLayer`](crate::AbrouteLayer) walks the whole plan instead.
    ///
    /// # Errors
    ///
    /// The [`ApiError`] to answer: 400 (bad JSON or router fields), 404 (unknown router), 422
    /// (no route matched).
    pub fn route(
        &self,
        snapshot: &Snapshot,
        api: Api,
        headers: &HeaderMap,
        body: &[u8],
        now: Duration,
    ) -> Result<Routing, ApiError> {
        let Some(intake) = Intake::new(self, snapshot, api, body)? else {
            return Ok(Routing::PassThrough);
        };
        let request = intake.request(headers)?;
        let Target::Router(router) = request.target else {
            return self.route_request_level(&intake, &request);
        };
        let mut plan = RoutePlan::new(router, &request, now)?;
        let decision = *plan.decision();
        let (model_id, variant_id, variant_index) = match plan.next_attempt() {
            Some(a) => (a.model_id(), a.variant_id(), a.variant_index()),
            None => (
                decision.model_id(),
                decision.variant_id(),
                decision.variant_index(),
            ),
        };
        let ex = intake.extracted();
        let out = rewrite(
            ex,
            &plan
                .settings_of(variant_index)
                .rewrite(self.body_model(model_id), self.get_precedence()),
        );
        Ok(Routing::Routed(Routed {
            body: Bytes::from(out),
            router: decision.router().to_owned(),
            route_id: decision.route_id().to_owned(),
            variant_id: variant_id.to_owned(),
            assigned_variant_id: decision.variant_id().to_owned(),
            model_id: model_id.to_owned(),
            version: decision.version(),
            ttft_timeout: request.ttft,
            stream: ex.is_stream(),
        }))
    }
}

impl RouterOptions {
    /// A request-level call without the layer: a direct model is rewritten for its first
    /// attempt (the model itself, `extra_body`'s router keys removed); `auto` needs the
    /// engine's catalog and metrics, which only the layer holds.
    fn route_request_level(
        &self,
        intake: &Intake<'_, '_>,
        request: &crate::intake::Request<'_, '_>,
    ) -> Result<Routing, ApiError> {
        let ex = intake.extracted();
        let model = match ex.model() {
            Some(abroute::select::AUTO) => {
                return Err(ApiError::invalid_param(
                    "model",
                    "\"model\": \"auto\" is chosen by the layer (AbrouteLayer), which holds \
                     the catalog and the observed metrics; RouterOptions::route cannot choose it",
                ));
            }
            Some(m) if !m.is_empty() => m,
            _ => {
                return Err(ApiError::invalid_param(
                    "model",
                    "model is required: a model id, \"auto\", or a router",
                ));
            }
        };
        let settings = crate::prepared::AttemptSettings::default();
        let out = rewrite(
            ex,
            &settings.rewrite(self.body_model(model), self.get_precedence()),
        );
        Ok(Routing::Routed(Routed {
            body: Bytes::from(out),
            router: crate::request_level::REQUEST_ROUTER.to_owned(),
            route_id: crate::request_level::DIRECT_ROUTE.to_owned(),
            variant_id: model.to_owned(),
            assigned_variant_id: model.to_owned(),
            model_id: model.to_owned(),
            version: 0,
            ttft_timeout: request.ttft,
            stream: ex.is_stream(),
        }))
    }
}

/// What [`RouterOptions::route`] decided.
#[derive(Debug, Clone)]
pub enum Routing {
    /// The model is not a router: send the original body unchanged.
    PassThrough,
    /// The body was rewritten for the first attempt.
    Routed(Routed),
}

/// A request routed to its first attempt.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The rewritten body.
    pub body: Bytes,
    /// The router's name.
    pub router: String,
    /// The route taken.
    pub route_id: String,
    /// The variant of the attempt (the assigned one unless it is ejected).
    pub variant_id: String,
    /// The variant the request was assigned to.
    pub assigned_variant_id: String,
    /// The model to call (full id, with its provider).
    pub model_id: String,
    /// The config version of the decision.
    pub version: u64,
    /// `extra_body.fallback.ttft_timeout`, if given.
    pub ttft_timeout: Option<Duration>,
    /// Whether the request asks for a stream.
    pub stream: bool,
}
