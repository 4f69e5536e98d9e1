//! Routing one request without the layer: options, the generation config of a variant, and a
//! one-call helper for hosts that make a single upstream call.

use std::time::Duration;

use abroute::{RouteError, RouterConfig, Snapshot};
use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use serde_json::Value;

use crate::error::ApiError;
use crate::extract::{Api, extract};
use crate::rewrite::{GenerationParams, Precedence, RenderedGeneration, Rewrite, rewrite};
use crate::template::MessageTemplates;

/// The default model prefix that names a router: `inworld/<router>`.
pub const DEFAULT_MODEL_PREFIX: &str = "inworld/";
/// The default body limit: 32 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How requests are read, routed and rewritten. Every setting has a default.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    model_prefix: String,
    user_header: Option<HeaderName>,
    max_body_bytes: usize,
    precedence: Precedence,
    strip_provider: bool,
    merge_metadata: bool,
    record_extension: bool,
    attempt_timeout: Option<Duration>,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            model_prefix: DEFAULT_MODEL_PREFIX.to_owned(),
            user_header: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            precedence: Precedence::Router,
            strip_provider: false,
            merge_metadata: false,
            record_extension: false,
            attempt_timeout: None,
        }
    }
}

impl RouterOptions {
    /// The defaults: prefix `inworld/`, no user header, 32 MiB, the router's generation config
    /// wins, model ids sent whole, no metadata merge, no record extension, no attempt timeout.
    pub fn new() -> RouterOptions {
        RouterOptions::default()
    }

    /// The prefix that makes a model a router (`abroute/`, say). Other models pass through.
    pub fn model_prefix(mut self, prefix: impl Into<String>) -> RouterOptions {
        self.model_prefix = prefix.into();
        self
    }

    /// A header whose value is the sticky key; it wins over the body's `user`. Set it when a
    /// trusted gateway in front knows the caller better than the body does.
    pub fn user_header(mut self, name: HeaderName) -> RouterOptions {
        self.user_header = Some(name);
        self
    }

    /// The largest request body accepted; a larger one gets 413.
    pub fn max_body_bytes(mut self, limit: usize) -> RouterOptions {
        self.max_body_bytes = limit;
        self
    }

    /// Who wins when the body and the generation config both set a parameter.
    pub fn precedence(mut self, precedence: Precedence) -> RouterOptions {
        self.precedence = precedence;
        self
    }

    /// Write `gpt-4.1` rather than `openai/gpt-4.1` into the body (for upstreams that take bare
    /// model names). The attempt's full id is always in [`UpstreamAttempt`](crate::UpstreamAttempt).
    pub fn strip_provider(mut self, strip: bool) -> RouterOptions {
        self.strip_provider = strip;
        self
    }

    /// Merge Inworld-style `metadata` into non-streaming JSON responses (the layer only).
    pub fn merge_metadata(mut self, merge: bool) -> RouterOptions {
        self.merge_metadata = merge;
        self
    }

    /// Put the [`DecisionRecord`](abroute::DecisionRecord) into each routed response's
    /// extensions, for the host to log (the layer only).
    pub fn record_extension(mut self, on: bool) -> RouterOptions {
        self.record_extension = on;
        self
    }

    /// Give up on an attempt after this long without a response head and first body frame
    /// (the layer only; needs a [`Timer`](crate::Timer)).
    pub fn attempt_timeout(mut self, timeout: Duration) -> RouterOptions {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// The model prefix.
    pub fn get_model_prefix(&self) -> &str {
        &self.model_prefix
    }

    /// The sticky-key header, if set.
    pub fn get_user_header(&self) -> Option<&HeaderName> {
        self.user_header.as_ref()
    }

    /// The body limit.
    pub fn get_max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The precedence.
    pub fn get_precedence(&self) -> Precedence {
        self.precedence
    }

    /// Whether provider prefixes are stripped.
    pub fn get_strip_provider(&self) -> bool {
        self.strip_provider
    }

    /// Whether metadata is merged.
    pub fn get_merge_metadata(&self) -> bool {
        self.merge_metadata
    }

    /// Whether records go into response extensions.
    pub fn get_record_extension(&self) -> bool {
        self.record_extension
    }

    /// The attempt timeout, if any.
    pub fn get_attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// The sticky key from the configured header, if set and present.
    pub fn header_user<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let name = self.user_header.as_ref()?;
        headers.get(name)?.to_str().ok().filter(|s| !s.is_empty())
    }

    /// The model to write into the body for `model_id`.
    pub fn body_model<'m>(&self, model_id: &'m str) -> &'m str {
        if self.strip_provider {
            strip_provider(model_id)
        } else {
            model_id
        }
    }

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
        let ex = extract(api, body)?;
        let Some(router) = ex.router_name(&self.model_prefix) else {
            return Ok(Routing::PassThrough);
        };
        // Messages are parsed only for routers whose conditions read them.
        let messages = match snapshot.router(router) {
            Some(r) if r.compiled().uses_messages() => ex.messages_json()?,
            _ => None,
        };
        let ctx = ex
            .context(self.header_user(headers))?
            .with_needs(ex.needs());
        let ctx = match &messages {
            Some(m) => ctx.with_messages(m),
            None => ctx,
        };
        let ttft_timeout = ex.ttft_timeout()?;
        let decision = snapshot.route(router, &ctx).map_err(route_error)?;
        let loaded = snapshot.router(router);
        let mut plan = decision.plan(&ctx, now);
        let (model_id, variant_id, variant_index) = match plan.next() {
            Some(a) => (a.model_id(), a.variant_id(), a.variant_index()),
            None => (
                decision.model_id(),
                decision.variant_id(),
                decision.variant_index(),
            ),
        };
        let settings = AttemptSettings::of(loaded, decision.route_id(), variant_index, ex.api());
        let out = rewrite(
            &ex,
            &settings.rewrite(self.body_model(model_id), self.precedence),
        );
        Ok(Routing::Routed(Routed {
            body: Bytes::from(out),
            router: decision.router().to_owned(),
            route_id: decision.route_id().to_owned(),
            variant_id: variant_id.to_owned(),
            assigned_variant_id: decision.variant_id().to_owned(),
            model_id: model_id.to_owned(),
            version: decision.version(),
            ttft_timeout,
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

/// The [`ApiError`] for a [`RouteError`]: 404 for an unknown router, 422 for no route matched.
pub fn route_error(e: RouteError) -> ApiError {
    match e {
        RouteError::UnknownRouter(name) => ApiError::router_not_found(&name),
        _ => ApiError::no_route_matched(),
    }
}

/// The effective `text_generation_config` of variant `variant_index` of route `route_id`: the
/// variant's own, or else the router's `defaults.text_generation_config`. The variant's replaces
/// the default as a whole; they are not merged (as in Inworld).
pub fn generation_config<'c>(
    config: &'c RouterConfig,
    route_id: &str,
    variant_index: usize,
) -> Option<&'c Value> {
    let route = config
        .routes
        .iter()
        .map(|r| &r.route)
        .chain(config.default_route.as_ref())
        .find(|r| r.route_id == route_id)?;
    variant_generation(config, &route.variants.get(variant_index)?.variant)
}

/// The effective `text_generation_config` of `variant`, a variant of `config` (see
/// [`generation_config`]).
pub(crate) fn variant_generation<'c>(
    config: &'c RouterConfig,
    variant: &'c abroute::config::Variant,
) -> Option<&'c Value> {
    own_or_default(
        config,
        variant.text_generation_config.as_ref(),
        ["text_generation_config", "textGenerationConfig"],
    )
}

/// A variant's own value of a field, or else the router's `defaults` value of it (in either
/// spelling): the variant's replaces the default as a whole.
fn own_or_default<'c>(
    config: &'c RouterConfig,
    own: Option<&'c Value>,
    spellings: [&str; 2],
) -> Option<&'c Value> {
    own.or_else(|| {
        let defaults = config.defaults.as_ref()?;
        spellings.iter().find_map(|k| defaults.get(*k))
    })
}

/// What one attempt's [`Rewrite`] takes from its router, found with one lookup: the variant's
/// generation parameters and message templates as prepared once per loaded router
/// ([`RenderedGeneration`], the fast path), or the config values when the router's extension
/// slot holds something else. [`generation_for`] and [`templates_for`] give each half alone.
/// The rewritten body is the same either way.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttemptSettings<'r> {
    /// The effective `text_generation_config`, when not prepared.
    pub generation: Option<&'r Value>,
    /// The generation parameters, prepared.
    pub rendered: Option<&'r GenerationParams>,
    /// The effective `message_templates`, when not prepared.
    pub message_templates: Option<&'r Value>,
    /// The message templates, prepared.
    pub templates: Option<&'r MessageTemplates>,
}

impl<'r> AttemptSettings<'r> {
    /// The settings of variant `variant_index` of route `route_id` of `router`, for `api`.
    /// Empty without a router.
    pub fn of(
        router: Option<&'r abroute::LoadedRouter>,
        route_id: &str,
        variant_index: usize,
        api: Api,
    ) -> AttemptSettings<'r> {
        let Some(r) = router else {
            return AttemptSettings::default();
        };
        match RenderedGeneration::of(r).and_then(|g| g.variant(route_id, variant_index)) {
            Some(v) => AttemptSettings {
                rendered: Some(v.params(api)),
                templates: v.templates.as_ref(),
                ..AttemptSettings::default()
            },
            None => AttemptSettings {
                generation: generation_config(r.config(), route_id, variant_index),
                message_templates: templates_for(router, route_id, variant_index).0,
                ..AttemptSettings::default()
            },
        }
    }

    /// The [`Rewrite`] for `model` with these settings.
    pub fn rewrite(&self, model: &'r str, precedence: Precedence) -> Rewrite<'r> {
        Rewrite {
            model,
            generation: self.generation,
            rendered: self.rendered,
            precedence,
            message_templates: self.message_templates,
            templates: self.templates,
        }
    }
}

/// An attempt's generation settings as a [`Rewrite`] takes them: the parameters rendered once
/// per loaded router ([`RenderedGeneration`], the fast path), or the config value when the
/// router's extension slot holds something else. The rewritten body is the same either way.
pub fn generation_for<'r>(
    router: Option<&'r abroute::LoadedRouter>,
    route_id: &str,
    variant_index: usize,
    api: Api,
) -> (Option<&'r Value>, Option<&'r GenerationParams>) {
    let Some(r) = router else {
        return (None, None);
    };
    match RenderedGeneration::of(r).and_then(|g| g.get(route_id, variant_index, api)) {
        Some(params) => (None, Some(params)),
        None => (generation_config(r.config(), route_id, variant_index), None),
    }
}

/// The effective `message_templates` of `variant`, a variant of `config`: the variant's own,
/// or else the router's `defaults.message_templates` (the variant's replaces the default as a
/// whole).
pub(crate) fn variant_templates<'c>(
    config: &'c RouterConfig,
    variant: &'c abroute::config::Variant,
) -> Option<&'c Value> {
    own_or_default(
        config,
        variant.message_templates.as_ref(),
        ["message_templates", "messageTemplates"],
    )
}

/// An attempt's message templates as a [`Rewrite`] takes them: parsed once per loaded router
/// ([`RenderedGeneration::templates`], the fast path), or the config value (the variant's
/// `message_templates`, else the router's `defaults.message_templates`) when the router's
/// extension slot holds something else. `(None, None)` when the variant has no templates.
pub fn templates_for<'r>(
    router: Option<&'r abroute::LoadedRouter>,
    route_id: &str,
    variant_index: usize,
) -> (Option<&'r Value>, Option<&'r MessageTemplates>) {
    let Some(r) = router else {
        return (None, None);
    };
    match RenderedGeneration::of(r) {
        Some(g) => (None, g.templates(route_id, variant_index)),
        None => {
            let config = r.config();
            let variant = config
                .routes
                .iter()
                .map(|r| &r.route)
                .chain(config.default_route.as_ref())
                .find(|r| r.route_id == route_id)
                .and_then(|r| r.variants.get(variant_index));
            (
                variant.and_then(|v| variant_templates(config, &v.variant)),
                None,
            )
        }
    }
}

/// `gpt-4.1` for `openai/gpt-4.1`; a model without a provider is returned as is.
pub fn strip_provider(model_id: &str) -> &str {
    abroute::ModelId::new(model_id).name()
}
