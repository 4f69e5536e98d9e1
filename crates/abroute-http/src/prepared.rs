//! What the rewrite takes from a router, prepared once per loaded router.
//!
//! [`Prepared`] holds, for every variant of every route of one router, its effective generation
//! parameters mapped and rendered for each API ([`GenerationParams`]) and its effective message
//! templates as ready-made bytes ([`MessageTemplates`]). It is built from what the core compiled
//! ([`CompiledVariant::generation_config`](abroute::CompiledVariant::generation_config) and
//! [`CompiledVariant::message_templates`](abroute::CompiledVariant::message_templates): the
//! variant's own, else the router's `defaults`, checked once by validation), so the adapter
//! has no rule of its own to disagree with. It is indexed by position
//! ([`CompiledRoute::index`](abroute::CompiledRoute::index), then the variant's position in its
//! route), so an attempt finds its data with two bounds checks.
//!
//! **When it is built.** A host that gives the engine [`Prepared::preparer`]
//! (`EngineConfig::prepare`, as the gateway does) has it built when a router is published, off
//! the request path. Otherwise [`Prepared::of`] builds it on the first request after the router
//! changed, in the router's extension slot ([`LoadedRouter::extension`]). The rewrite
//! ([`crate::rewrite()`]) takes plain data ([`Rewrite`]) and knows nothing of this.
//!
//! When the slot holds something else, [`AttemptSettings::of`] falls back to the config values
//! ([`RouterConfig::effective_generation_config`](abroute::RouterConfig::effective_generation_config),
//! [`RouterConfig::effective_message_templates`](abroute::RouterConfig::effective_message_templates));
//! the rewrite writes the same bytes either way.

use std::any::Any;
use std::sync::Arc;

use abroute::{Decision, LoadedRouter, Prepare};
use serde_json::Value;

use crate::extract::Api;
use crate::rewrite::{GenerationParams, Precedence, Rewrite};
use crate::template::MessageTemplates;

/// Every variant's generation parameters (mapped and rendered for each API) and message
/// templates (as bytes) of one router, prepared once per loaded router ([`Prepared::of`]).
///
/// Indexed by position: routes by [`CompiledRoute::index`](abroute::CompiledRoute::index) (the
/// conditional routes in order, then the default route), variants as each route lists them (an
/// attempt's [`variant_index`](abroute::Attempt::variant_index)). [`AttemptSettings::of`] finds
/// an attempt's data in it; the rewrite ([`crate::rewrite()`]) takes plain data and knows nothing
/// of it.
#[derive(Debug, Default)]
pub struct Prepared {
    /// By route index, then by variant index.
    routes: Vec<Box<[PreparedVariant]>>,
}

/// One variant's parameters for chat completions, responses and messages, and its templates.
#[derive(Debug, Default)]
struct PreparedVariant {
    params: [GenerationParams; 3],
    templates: Option<MessageTemplates>,
}

impl PreparedVariant {
    fn params(&self, api: Api) -> &GenerationParams {
        match api {
            Api::ChatCompletions => &self.params[0],
            Api::Responses => &self.params[1],
            Api::Messages => &self.params[2],
        }
    }
}

/// The engine hook that builds [`Prepared`] when a router is published
/// ([`Prepared::preparer`]).
#[derive(Debug, Clone, Copy, Default)]
struct Preparer;

impl Prepare for Preparer {
    fn prepare(&self, router: &LoadedRouter) -> Box<dyn Any + Send + Sync> {
        Box::new(Prepared::new(router))
    }
}

impl Prepared {
    /// Prepares every variant of `router`, from its compiled settings.
    pub fn new(router: &LoadedRouter) -> Prepared {
        let routes = router
            .compiled()
            .routes()
            .map(|route| {
                route
                    .variants()
                    .iter()
                    .map(|v| {
                        let g = v.generation_config();
                        PreparedVariant {
                            params: [Api::ChatCompletions, Api::Responses, Api::Messages].map(
                                |api| g.map(|g| GenerationParams::new(api, g)).unwrap_or_default(),
                            ),
                            templates: v.message_templates().map(MessageTemplates::from_messages),
                        }
                    })
                    .collect()
            })
            .collect();
        Prepared { routes }
    }

    /// The engine hook that builds it when a router is published, off the request path: give it
    /// to `abroute::EngineConfig::prepare`.
    pub fn preparer() -> Arc<dyn Prepare> {
        Arc::new(Preparer)
    }

    /// The data prepared for `router`: built when it was published ([`Prepared::preparer`]),
    /// else on first use. `None` only when the router's extension slot holds something else.
    pub fn of(router: &LoadedRouter) -> Option<&Prepared> {
        router.extension(|_| Prepared::new(router))
    }

    fn variant(&self, route: usize, variant: usize) -> Option<&PreparedVariant> {
        self.routes.get(route)?.get(variant)
    }

    /// The parameters of variant `variant` of route `route` (by index: see [`Prepared`]) for
    /// `api`.
    pub fn params(&self, route: usize, variant: usize, api: Api) -> Option<&GenerationParams> {
        Some(self.variant(route, variant)?.params(api))
    }

    /// The message templates of variant `variant` of route `route`, if it has any. `None` too
    /// for an unknown route or variant.
    pub fn templates(&self, route: usize, variant: usize) -> Option<&MessageTemplates> {
        self.variant(route, variant)?.templates.as_ref()
    }
}

/// What one attempt's [`Rewrite`] takes from its router: the variant's generation parameters
/// and message templates as [`Prepared`] keeps them (the fast path), or the config values when
/// the router's extension slot holds something else. The rewritten body is the same either
/// way.
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
    /// The settings of variant `variant_index` (an attempt's
    /// [`variant_index`](abroute::Attempt::variant_index)) of the route `decision` took, in
    /// `router` (the router `decision` came from), for `api`. Empty without a router.
    pub fn of(
        router: Option<&'r LoadedRouter>,
        decision: &Decision<'_>,
        variant_index: usize,
        api: Api,
    ) -> AttemptSettings<'r> {
        let Some(r) = router else {
            return AttemptSettings::default();
        };
        let route = decision.route().index();
        AttemptSettings::at(r, Prepared::of(r), route, variant_index, api)
    }

    /// The settings of variant `variant` of route `route` (by index) of `router`, whose
    /// prepared data is `prepared` (what [`Prepared::of`] gave; `None` for the config values).
    pub(crate) fn at(
        router: &'r LoadedRouter,
        prepared: Option<&'r Prepared>,
        route: usize,
        variant: usize,
        api: Api,
    ) -> AttemptSettings<'r> {
        match prepared {
            Some(p) => match p.variant(route, variant) {
                Some(v) => AttemptSettings {
                    rendered: Some(v.params(api)),
                    templates: v.templates.as_ref(),
                    ..AttemptSettings::default()
                },
                None => AttemptSettings::default(),
            },
            None => {
                let config = router.config();
                let variant = config
                    .all_routes()
                    .nth(route)
                    .and_then(|r| r.variants.get(variant));
                match variant {
                    Some(v) => AttemptSettings {
                        generation: config.effective_generation_config(&v.variant),
                        message_templates: config.effective_message_templates(&v.variant),
                        ..AttemptSettings::default()
                    },
                    None => AttemptSettings::default(),
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::extract;
    use crate::rewrite::rewrite;

    #[test]
    fn prepared_per_route_variant_and_api() {
        let config = abroute::RouterConfig::from_json(
            r#"{ "name": "r", "routes": [ { "route": { "route_id": "own", "variants": [
              { "variant": { "variant_id": "a", "model_id": "p/a",
                "text_generation_config": { "maxTokens": 7, "seed": 3 } }, "weight": 1 },
              { "variant": { "variant_id": "b", "model_id": "p/b" }, "weight": 1 } ] },
              "condition": { "cel_expression": "true" } } ],
              "defaultRoute": { "route_id": "d", "variants": [
              { "variant": { "variant_id": "c", "model_id": "p/c" }, "weight": 1 } ] },
              "defaults": { "text_generation_config": { "temperature": 0.5 } } }"#,
        )
        .unwrap();
        let engine = abroute::Engine::new();
        engine.upsert(config).unwrap();
        let snapshot = engine.load();
        let g = Prepared::new(snapshot.router("r").unwrap());
        let body = r#"{"model":"x"}"#;
        let with = |params: Option<&GenerationParams>, api: Api| {
            let ex = extract(api, body.as_bytes()).unwrap();
            String::from_utf8(rewrite(
                &ex,
                &Rewrite {
                    model: "m",
                    generation: None,
                    rendered: params,
                    precedence: Precedence::Router,
                    ..Default::default()
                },
            ))
            .unwrap()
        };
        let chat = Api::ChatCompletions;
        // Route 0 is `own`, route 1 the default route `d`.
        assert_eq!(
            with(g.params(0, 0, chat), chat),
            r#"{"model":"m","max_tokens":7,"seed":3}"#
        );
        // Responses has no `seed`, and calls max_tokens `max_output_tokens`.
        assert_eq!(
            with(g.params(0, 0, Api::Responses), Api::Responses),
            r#"{"model":"m","max_output_tokens":7}"#
        );
        // No config of its own: the router's default, as a whole.
        assert_eq!(
            with(g.params(0, 1, chat), chat),
            r#"{"model":"m","temperature":0.5}"#
        );
        assert_eq!(
            with(g.params(1, 0, chat), chat),
            r#"{"model":"m","temperature":0.5}"#
        );
        assert!(g.params(1, 1, chat).is_none());
        assert!(g.params(2, 0, chat).is_none());
        assert_eq!(g.params(0, 0, chat).map(GenerationParams::len), Some(2));
    }

    #[test]
    fn the_config_fallback_writes_the_same_bytes() {
        let config = r#"{ "name": "r", "routes": [ { "route": { "route_id": "own", "variants": [
              { "variant": { "variant_id": "a", "model_id": "p/a",
                "text_generation_config": { "maxTokens": 7, "stop_sequences": ["x"] },
                "message_templates": [ { "role": "system", "content": "Hi {{n}}." } ] },
                "weight": 1 },
              { "variant": { "variant_id": "b", "model_id": "p/b" }, "weight": 1 } ] },
              "condition": { "cel_expression": "tier == 'gold'" } } ],
              "defaultRoute": { "route_id": "d", "variants": [
              { "variant": { "variant_id": "c", "model_id": "p/c" }, "weight": 1 } ] },
              "defaults": { "text_generation_config": { "temperature": 0.5 },
                "message_templates": [ { "role": "developer", "content": "{{n}}!" } ] } }"#;
        let engines = [abroute::Engine::new(), abroute::Engine::new()];
        for e in &engines {
            e.upsert(abroute::RouterConfig::from_json(config).unwrap())
                .unwrap();
        }
        let fast = engines[0].load();
        let slow = engines[1].load();
        // The slot holds something else: the settings come from the config.
        assert!(slow.router("r").unwrap().extension(|_| 7u32).is_some());
        let body = |api: Api, tier: &str| match api {
            Api::Responses => format!(
                r#"{{"model":"inworld/r","input":"q","extra_body":{{"metadata":{{"tier":"{tier}"}},"prompt_variables":{{"n":"Ava"}}}}}}"#
            ),
            _ => format!(
                r#"{{"model":"inworld/r","messages":[],"extra_body":{{"metadata":{{"tier":"{tier}"}},"prompt_variables":{{"n":"Ava"}}}}}}"#
            ),
        };
        for api in [Api::ChatCompletions, Api::Responses, Api::Messages] {
            for tier in ["gold", "silver"] {
                let body = body(api, tier);
                let ex = extract(api, body.as_bytes()).unwrap();
                let ctx = ex.context(None).unwrap();
                let mut out = Vec::new();
                for snapshot in [&fast, &slow] {
                    let router = snapshot.router("r");
                    let decision = snapshot.route("r", &ctx).unwrap();
                    for variant in 0..decision.route().variants().len() {
                        let settings = AttemptSettings::of(router, &decision, variant, api);
                        assert_eq!(
                            settings.rendered.is_some(),
                            std::ptr::eq(snapshot, &fast),
                            "prepared only where the slot is ours"
                        );
                        out.push(rewrite(&ex, &settings.rewrite("m", Precedence::Router)));
                    }
                }
                let (fast, slow) = out.split_at(out.len() / 2);
                assert_eq!(fast, slow, "{api:?} {tier}");
                if tier == "gold" {
                    assert_ne!(fast[0], fast[1], "the variants' settings differ");
                }
            }
        }
    }
}
