//! Deciding: where one request goes, and why.
//!
//! [`CompiledRouter::decide`] is a handful of steps over the compiled tables: evaluate the
//! conditions in order (the first true one wins, else the default route), then either hash the
//! request's sticky key into the route's sticky table or draw one `u64` for its alias table
//! ([`Assignment`]). A [`Decision`] borrows from the compiled router; it allocates nothing. With
//! capability routing on, a variant whose models cannot serve the request's needs is replaced
//! by a pick from the conditional distribution over the variants that can.
//!
//! A condition that cannot be evaluated (a missing metadata key, a type error) counts as false,
//! and the route counts the error ([`CompiledRoute::condition_errors`]);
//! [`CompiledRouter::explain`] says, route by route, what each condition gave and why.
//!
//! What follows a decision lives beside its own types, above this module:
//! [`Decision::fallbacks`] in [`fallback`](crate::fallback), [`Decision::plan`] in
//! [`plan`](crate::plan), the owned [`DecisionRecord`](crate::DecisionRecord) in
//! [`record`](crate::record).
//!
//! ```
//! use abroute::{RequestContext, RouterConfig};
//!
//! let config = RouterConfig::from_json(r#"{ "name": "demo", "defaultRoute": {
//!     "route_id": "default", "variants": [
//!     { "variant": { "variant_id": "a", "model_id": "openai/gpt-4o-mini" }, "weight": 1 },
//!     { "variant": { "variant_id": "b", "model_id": "openai/gpt-4.1" }, "weight": 3 } ] } }"#)
//!     .unwrap();
//! let router = config.compile().unwrap();
//! let d = router.decide(&RequestContext::new().with_random(u64::MAX)).unwrap();
//! assert_eq!(d.route_id(), "default");
//! assert_eq!(d.variant_id(), "b");
//! ```

use std::fmt;
use std::sync::atomic::Ordering;

use crate::catalog::{Catalog, Needs, Unsuitable};
use crate::compiled::{CompiledRoute, CompiledRouter, CompiledVariant};
use crate::condition::{ConditionOutcome, Variables};
use crate::context::RequestContext;
use crate::error::RouteError;
use crate::sampling::RandomFallbacks;
use crate::sticky::key_hash_with;

impl CompiledRouter {
    /// Decides where a request goes: the first conditional route whose condition holds, else
    /// the default route; then the sticky or random variant. Allocates nothing.
    ///
    /// # Errors
    ///
    /// [`RouteError::NoRouteMatched`] when no condition holds and there is no default route.
    #[inline]
    pub fn decide(&self, ctx: &RequestContext<'_>) -> Result<Decision<'_>, RouteError> {
        let route = if self.routes.is_empty() {
            self.default_route.as_ref()
        } else {
            let vars = Variables::new(ctx);
            self.routes
                .iter()
                .find(|r| r.matches(vars))
                .or(self.default_route.as_ref())
        };
        let Some(route) = route else {
            return Err(RouteError::NoRouteMatched);
        };
        Ok(self.decision(route, ctx))
    }

    #[inline]
    fn decision<'a>(&'a self, route: &'a CompiledRoute, ctx: &RequestContext<'_>) -> Decision<'a> {
        let (mut variant, assignment) = route.pick(ctx);
        let mut needs = None;
        if let (Some(catalog), Some(n)) = (&self.catalog, ctx.needs())
            && !n.is_empty()
        {
            needs = Some(*n);
            if !route.variants[variant].can_serve(catalog, n) {
                variant = route.repick(variant, assignment, catalog, n);
            }
        }
        if let Some(stats) = &route.variants[variant].stats {
            stats.record_request();
        }
        Decision {
            router: self,
            route,
            variant: variant as u32,
            assignment,
            needs,
        }
    }

    /// Decides like [`decide`](Self::decide), and says why: for each conditional route in
    /// order, whether its condition was true, false or an error (and which), up to the one that
    /// matched. For debugging and the CLI's `explain`; it allocates.
    pub fn explain<'a>(&'a self, ctx: &RequestContext<'_>) -> Explanation<'a> {
        let vars = Variables::new(ctx);
        let mut conditions = Vec::new();
        let mut chosen = None;
        for route in self.routes.iter() {
            let outcome = match &route.condition {
                Some(c) => c.explain(vars),
                None => ConditionOutcome::True,
            };
            let matched = outcome.matched();
            conditions.push(ConditionExplanation {
                route_id: route.id(),
                condition: route.condition().unwrap_or(""),
                outcome: outcome.to_string(),
                matched,
            });
            if matched {
                chosen = Some(route);
                break;
            }
        }
        let chosen = chosen.or(self.default_route.as_ref());
        Explanation {
            conditions,
            decision: match chosen {
                Some(route) => Ok(self.decision(route, ctx)),
                None => Err(RouteError::NoRouteMatched),
            },
        }
    }
}

impl CompiledRoute {
    /// Whether the condition holds for these variables; an error counts as false (and is
    /// counted). The default route always matches.
    #[inline]
    fn matches(&self, vars: Variables<'_, '_>) -> bool {
        match &self.condition {
            None => true,
            Some(c) => match c.evaluate(vars) {
                Ok(b) => b,
                Err(_) => {
                    self.condition_errors.fetch_add(1, Ordering::Relaxed);
                    false
                }
            },
        }
    }

    /// Picks the variant for `ctx` in this route: sticky when the request has a key, random
    /// otherwise.
    #[inline]
    fn pick(&self, ctx: &RequestContext<'_>) -> (usize, Assignment) {
        match ctx.user() {
            Some(user) => match self.sticky_table() {
                Some(table) => {
                    let a = table.assign(user.as_bytes());
                    (
                        a.variant(),
                        Assignment::Sticky {
                            key_hash: a.key_hash(),
                            bucket: a.bucket(),
                        },
                    )
                }
                None => {
                    let key_hash = key_hash_with(self.salt_seed, user.as_bytes());
                    (
                        self.table.index_for(key_hash),
                        Assignment::Hashed { key_hash },
                    )
                }
            },
            None => {
                let draw = ctx.draw();
                (self.table.index_for(draw), Assignment::Random { draw })
            }
        }
    }

    /// Capability routing: the assigned `variant` cannot serve `needs`; pick again among the
    /// variants that can, from the conditional distribution (a random request: a fresh draw
    /// over the servable weights; a sticky one: the first servable variant in the key's own
    /// fallback order). Keeps `variant` when none can (fail open). Runs only in that case.
    #[cold]
    fn repick(
        &self,
        variant: usize,
        assignment: Assignment,
        catalog: &Catalog,
        needs: &Needs,
    ) -> usize {
        let servable = |v: &CompiledVariant| v.weight > 0 && v.can_serve(catalog, needs);
        match assignment {
            Assignment::Random { draw } => {
                let total: u64 = self
                    .variants
                    .iter()
                    .filter(|v| servable(v))
                    .map(|v| u64::from(v.weight))
                    .sum();
                if total == 0 {
                    return variant;
                }
                let x = crate::random::mix64(draw ^ 0x6361_7061_6269_6c69); // "capabili"
                let u = ((u128::from(x) * u128::from(total)) >> 64) as u64;
                let mut acc = 0u64;
                for (i, v) in self.variants.iter().enumerate() {
                    if servable(v) {
                        acc += u64::from(v.weight);
                        if u < acc {
                            return i;
                        }
                    }
                }
                variant
            }
            Assignment::Sticky { key_hash, .. } => match self.sticky_table() {
                Some(table) => table
                    .fallbacks(&table.assign_hashed(key_hash))
                    .find(|&i| self.variants.get(i).is_some_and(servable))
                    .unwrap_or(variant),
                None => variant,
            },
            Assignment::Hashed { key_hash } => RandomFallbacks::new(self, variant, key_hash)
                .find(|(_, v)| servable(v))
                .map_or(variant, |(i, _)| i),
        }
    }
}

/// One conditional route in an [`Explanation`].
#[derive(Debug, Clone)]
pub struct ConditionExplanation<'a> {
    /// The route's id.
    pub route_id: &'a str,
    /// The CEL source.
    pub condition: &'a str,
    /// `true`, `false`, or `error (counted as false): <why>`.
    pub outcome: String,
    /// Whether the route was taken.
    pub matched: bool,
}

/// Why a request went where it went: see [`CompiledRouter::explain`].
#[derive(Debug)]
pub struct Explanation<'a> {
    /// The conditional routes evaluated, in order, up to the first that matched.
    pub conditions: Vec<ConditionExplanation<'a>>,
    /// The decision (or why there is none).
    pub decision: Result<Decision<'a>, RouteError>,
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.conditions {
            writeln!(f, "route {:?}: {} → {}", c.route_id, c.condition, c.outcome)?;
        }
        match &self.decision {
            Ok(d) => write!(
                f,
                "decision: route {:?}, variant {:?}, model {:?} ({})",
                d.route_id(),
                d.variant_id(),
                d.model_id(),
                d.assignment()
            ),
            Err(e) => write!(f, "decision: {e}"),
        }
    }
}

/// How a decision chose its variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Assignment {
    /// A weighted random pick from this uniform 64-bit value.
    Random {
        /// The value given to [`AliasTable::index_for`](crate::AliasTable::index_for).
        draw: u64,
    },
    /// A sticky assignment: the request's key, hashed, looked up in the route's sticky table.
    Sticky {
        /// XXH3-64 of the key, seeded with the route's salt seed.
        key_hash: u64,
        /// The sticky table's slot the key fell in.
        bucket: u32,
    },
    /// A sticky key in a route too large for a sticky table (more than
    /// [`MAX_STICKY_VARIANTS`](crate::sticky::MAX_STICKY_VARIANTS) variants): the key's hash is
    /// given to the alias table, so the key still always gets the same variant, but a change of
    /// weights moves more keys.
    Hashed {
        /// XXH3-64 of the key, seeded with the route's salt seed.
        key_hash: u64,
    },
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Assignment::Random { draw } => write!(f, "random, draw {draw:016x}"),
            Assignment::Sticky { key_hash, bucket } => {
                write!(f, "sticky, key hash {key_hash:016x}, bucket {bucket}")
            }
            Assignment::Hashed { key_hash } => write!(f, "hashed, key hash {key_hash:016x}"),
        }
    }
}

/// Where one request goes: router, route, variant and model. Borrows from the snapshot.
#[derive(Clone, Copy)]
pub struct Decision<'a> {
    router: &'a CompiledRouter,
    route: &'a CompiledRoute,
    variant: u32,
    assignment: Assignment,
    /// The request's needs, when capability routing checked them.
    needs: Option<Needs>,
}

impl fmt::Debug for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decision")
            .field("router", &self.router())
            .field("route", &self.route_id())
            .field("variant", &self.variant_id())
            .field("model", &self.model_id())
            .field("version", &self.version())
            .field("assignment", &self.assignment)
            .finish()
    }
}

impl<'a> Decision<'a> {
    /// The router's name.
    pub fn router(&self) -> &'a str {
        &self.router.name
    }

    /// The chosen route's `route_id`.
    pub fn route_id(&self) -> &'a str {
        &self.route.id
    }

    /// The chosen variant's `variant_id`.
    pub fn variant_id(&self) -> &'a str {
        &self.variant().id
    }

    /// The chosen variant's `model_id`: the model to call first.
    pub fn model_id(&self) -> &'a str {
        self.variant().model_id()
    }

    /// The chosen variant's position in its route's `variants` list.
    pub fn variant_index(&self) -> usize {
        self.variant as usize
    }

    /// The config version that produced this decision.
    pub fn version(&self) -> u64 {
        self.router.version
    }

    /// How the variant was chosen.
    pub fn assignment(&self) -> Assignment {
        self.assignment
    }

    /// The chosen route.
    pub fn route(&self) -> &'a CompiledRoute {
        self.route
    }

    /// The chosen variant.
    pub fn variant(&self) -> &'a CompiledVariant {
        // `variant` came from the route's own table, so it is in range.
        &self.route.variants[self.variant as usize]
    }

    /// The request's needs, when capability routing checked them for this decision.
    pub fn needs(&self) -> Option<&Needs> {
        self.needs.as_ref()
    }

    /// Capability routing: the variants of the route that cannot serve the request, each with
    /// why (its primary model's reason). Empty when capability routing did not apply.
    pub fn skipped_variants(&self) -> Vec<(&'a CompiledVariant, Unsuitable)> {
        let (Some(catalog), Some(needs)) = (self.router.catalog.as_deref(), self.needs.as_ref())
        else {
            return Vec::new();
        };
        self.route
            .variants
            .iter()
            .filter(|v| v.weight > 0 && !v.can_serve(catalog, needs))
            .filter_map(|v| {
                catalog
                    .can_serve(v.model_id(), needs)
                    .err()
                    .map(|why| (v, why))
            })
            .collect()
    }

    /// The compiled router.
    pub fn compiled_router(&self) -> &'a CompiledRouter {
        self.router
    }
}
