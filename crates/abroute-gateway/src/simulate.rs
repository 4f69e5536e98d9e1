//! `abroute simulate`: the realized split of a router beside its configured weights, and for
//! sticky users, how many would move from an older config compared with the least possible.
//!
//! Requests are decided by the core exactly as the gateway decides them. Without `--users`,
//! each request is a random pick from a seeded generator (reproducible with `--seed`). With
//! `--users U`, request `i` is sent by user `i mod U`: a sticky user always gets the same
//! variant, so each user is decided once and counted for each of its requests (exact, and fast
//! for any `--requests`).
//!
//! With `--from OLD_FILE` (which implies users: 100,000 unless `--users` says otherwise), every
//! user is decided under both configs; *moved* is the fraction whose (route, variant) changed,
//! and *least possible* is the total variation distance between the old and new weights of the
//! route each user lands in (no assignment can move fewer users than that).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use abroute::{CompiledRouter, RequestContext};
use serde::Serialize;
use serde_json::Value;

/// One variant's line.
#[derive(Debug, Clone, Serialize)]
pub struct VariantSplit {
    /// The `variant_id`.
    pub variant_id: String,
    /// The `model_id`.
    pub model_id: String,
    /// The configured weight.
    pub weight: u32,
    /// `weight / sum of weights`.
    pub configured: f64,
    /// The share of the route's requests it got.
    pub realized: f64,
    /// How many requests it got.
    pub requests: u64,
}

/// One route's split.
#[derive(Debug, Clone, Serialize)]
pub struct RouteSplit {
    /// The `route_id`.
    pub route_id: String,
    /// The CEL condition (`None` for the default route).
    pub condition: Option<String>,
    /// Requests that took this route.
    pub requests: u64,
    /// The variants, in configured order.
    pub variants: Vec<VariantSplit>,
}

/// How sticky users move from the old config.
#[derive(Debug, Clone, Serialize)]
pub struct Movement {
    /// Users compared.
    pub users: u64,
    /// Users whose route or variant changed.
    pub moved: u64,
    /// `moved / users`.
    pub moved_fraction: f64,
    /// The least fraction any assignment must move: the total variation distance between the
    /// old and new weights, averaged over the users' routes.
    pub least_possible_fraction: f64,
}

/// The result of a simulation.
#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    /// The router's name.
    pub router: String,
    /// Requests simulated.
    pub requests: u64,
    /// Sticky users (`None` for random picks).
    pub users: Option<u64>,
    /// The seed of the random picks.
    pub seed: u64,
    /// Requests that matched no route (no default route).
    pub unrouted: u64,
    /// Every route, conditional routes first.
    pub routes: Vec<RouteSplit>,
    /// Movement from `--from`, if given.
    pub movement: Option<Movement>,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Requests.
    pub requests: u64,
    /// Sticky users (`None` for random picks).
    pub users: Option<u64>,
    /// Metadata for conditions.
    pub metadata: Vec<(String, Value)>,
    /// Seed of the random picks.
    pub seed: u64,
}

/// SplitMix64: a seeded stream of uniform 64-bit values.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn base_context<'a>(metadata: &'a [(String, Value)]) -> RequestContext<'a> {
    let mut ctx = RequestContext::new();
    for (k, v) in metadata {
        ctx = ctx.with_metadata(k.as_str(), v);
    }
    ctx
}

/// The user id of user `i`.
pub fn user_id(i: u64) -> String {
    format!("user-{i}")
}

/// Runs the simulation; `progress(done)` is called now and then with requests done so far.
pub fn simulate(
    router: &CompiledRouter,
    old: Option<&CompiledRouter>,
    opts: &SimulateOptions,
    progress: &mut dyn FnMut(u64),
) -> Simulation {
    let routes: Vec<_> = router.routes().collect();
    let mut counts: Vec<Vec<u64>> = routes.iter().map(|r| vec![0; r.variants().len()]).collect();
    let index_of = |route_id: &str| routes.iter().position(|r| r.id() == route_id);
    let mut unrouted = 0u64;
    let base = base_context(&opts.metadata);
    let users = match (opts.users, old) {
        (Some(u), _) => Some(u.max(1)),
        (None, Some(_)) => Some(100_000),
        (None, None) => None,
    };
    let mut movement = None;
    match users {
        None => {
            let mut rng = SplitMix(opts.seed);
            for i in 0..opts.requests {
                let ctx = base.clone().with_random(rng.next());
                match router.decide(&ctx) {
                    Ok(d) => {
                        if let Some(r) = index_of(d.route_id()) {
                            counts[r][d.variant_index()] += 1;
                        }
                    }
                    Err(_) => unrouted += 1,
                }
                if i % 65_536 == 0 {
                    progress(i);
                }
            }
        }
        Some(users) => {
            let per_user = opts.requests / users;
            let extra = opts.requests % users;
            let mut moved = 0u64;
            // Users per (route, TV of that route between old and new weights).
            let mut least = 0f64;
            let mut compared = 0u64;
            for u in 0..users {
                let id = user_id(u);
                let n = per_user + u64::from(u < extra);
                let ctx = base.clone().with_user(&id);
                let new = router.decide(&ctx);
                match &new {
                    Ok(d) => {
                        if let Some(r) = index_of(d.route_id()) {
                            counts[r][d.variant_index()] += n;
                        }
                    }
                    Err(_) => unrouted += n,
                }
                if let (Some(old), Ok(d)) = (old, &new) {
                    compared += 1;
                    let before = old.decide(&ctx);
                    let same = before.as_ref().is_ok_and(|b| {
                        b.route_id() == d.route_id() && b.variant_id() == d.variant_id()
                    });
                    if !same {
                        moved += 1;
                    }
                    least += route_tv(old, d.route());
                }
                if u % 65_536 == 0 {
                    progress(u.saturating_mul(opts.requests) / users);
                }
            }
            if old.is_some() {
                let c = compared.max(1) as f64;
                movement = Some(Movement {
                    users: compared,
                    moved,
                    moved_fraction: moved as f64 / c,
                    least_possible_fraction: least / c,
                });
            }
        }
    }
    progress(opts.requests);
    let routes = routes
        .iter()
        .zip(&counts)
        .map(|(route, counts)| {
            let total: u64 = counts.iter().sum();
            RouteSplit {
                route_id: route.id().to_owned(),
                condition: route.condition().map(str::to_owned),
                requests: total,
                variants: route
                    .variants()
                    .iter()
                    .zip(counts)
                    .enumerate()
                    .map(|(i, (v, &n))| VariantSplit {
                        variant_id: v.id().to_owned(),
                        model_id: v.model_id().to_owned(),
                        weight: v.weight(),
                        configured: route.share(i),
                        realized: if total == 0 {
                            0.0
                        } else {
                            n as f64 / total as f64
                        },
                        requests: n,
                    })
                    .collect(),
            }
        })
        .collect();
    Simulation {
        router: router.name().to_owned(),
        requests: opts.requests,
        users,
        seed: opts.seed,
        unrouted,
        routes,
        movement,
    }
}

/// Total variation distance between the old config's route of the same id and `new`, by
/// variant id; 1 when the old config has no such route.
fn route_tv(old: &CompiledRouter, new: &abroute::CompiledRoute) -> f64 {
    let Some(before) = old.routes().find(|r| r.id() == new.id()) else {
        return 1.0;
    };
    let mut shares: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (i, v) in before.variants().iter().enumerate() {
        shares.entry(v.id()).or_default().0 += before.share(i);
    }
    for (i, v) in new.variants().iter().enumerate() {
        shares.entry(v.id()).or_default().1 += new.share(i);
    }
    shares.values().map(|(a, b)| (a - b).abs()).sum::<f64>() / 2.0
}

/// A horizontal bar of `width` cells for a share in [0, 1], with eighth-cell precision.
pub fn bar(share: f64, width: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (share.clamp(0.0, 1.0) * width as f64 * 8.0).round() as usize;
    let mut s: String = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        s.push(PARTS[eighths % 8]);
    }
    let len = s.chars().count();
    s.extend(std::iter::repeat_n(' ', width.saturating_sub(len)));
    s
}

/// The terminal report: per route, each variant's bar, realized and configured shares.
pub fn render(sim: &Simulation) -> String {
    let mut out = String::new();
    let who = match sim.users {
        Some(u) => format!("{u} sticky users"),
        None => format!("random picks, seed {}", sim.seed),
    };
    let _ = writeln!(
        out,
        "router {}: {} requests ({who})\n",
        sim.router, sim.requests
    );
    let idw = sim
        .routes
        .iter()
        .flat_map(|r| r.variants.iter().map(|v| v.variant_id.chars().count()))
        .max()
        .unwrap_or(7)
        .max(7);
    let mw = sim
        .routes
        .iter()
        .flat_map(|r| r.variants.iter().map(|v| v.model_id.chars().count()))
        .max()
        .unwrap_or(5)
        .max(5);
    for route in &sim.routes {
        let share = if sim.requests == 0 {
            0.0
        } else {
            route.requests as f64 / sim.requests as f64
        };
        let cond = route
            .condition
            .as_deref()
            .map_or_else(|| "default route".to_owned(), |c| format!("if {c}"));
        let _ = writeln!(
            out,
            "route {} ({cond}): {} requests, {:.2}%",
            route.route_id,
            route.requests,
            share * 100.0
        );
        if route.requests == 0 {
            let _ = writeln!(out, "  (no request took this route)\n");
            continue;
        }
        let _ = writeln!(
            out,
            "  {:idw$}  {:mw$}  {:40}  {:>8}  {:>10}  {:>8}",
            "variant", "model", "realized", "realized", "configured", "diff"
        );
        for v in &route.variants {
            let _ = writeln!(
                out,
                "  {:idw$}  {:mw$}  {}  {:>7.3}%  {:>9.3}%  {:>+7.3}",
                v.variant_id,
                v.model_id,
                bar(v.realized, 40),
                v.realized * 100.0,
                v.configured * 100.0,
                (v.realized - v.configured) * 100.0,
            );
        }
        let _ = writeln!(out);
    }
    if sim.unrouted > 0 {
        let _ = writeln!(
            out,
            "{} requests matched no route (the router has no default route)\n",
            sim.unrouted
        );
    }
    if let Some(m) = &sim.movement {
        let _ = writeln!(
            out,
            "sticky users moved from the old config: {} of {} ({:.3}%); least possible (total \
             variation distance): {:.3}%",
            m.moved,
            m.users,
            m.moved_fraction * 100.0,
            m.least_possible_fraction * 100.0
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use abroute::RouterConfig;

    fn router(w: [u32; 3]) -> CompiledRouter {
        RouterConfig::from_json(&format!(
            r#"{{"name": "s", "defaultRoute": {{"route_id": "d", "variants": [
            {{"variant": {{"variant_id": "a", "model_id": "m/a"}}, "weight": {}}},
            {{"variant": {{"variant_id": "b", "model_id": "m/b"}}, "weight": {}}},
            {{"variant": {{"variant_id": "c", "model_id": "m/c"}}, "weight": {}}}]}}}}"#,
            w[0], w[1], w[2]
        ))
        .unwrap()
        .compile()
        .unwrap()
    }

    #[test]
    fn random_split_is_close() {
        let r = router([33, 33, 34]);
        let opts = SimulateOptions {
            requests: 200_000,
            users: None,
            metadata: vec![],
            seed: 7,
        };
        let sim = simulate(&r, None, &opts, &mut |_| {});
        for v in &sim.routes[0].variants {
            assert!((v.realized - v.configured).abs() < 0.01, "{v:?}");
        }
        assert!(render(&sim).contains("route d (default route)"));
    }

    #[test]
    fn movement_is_near_the_least() {
        let old = router([33, 33, 34]);
        let new = router([50, 25, 25]);
        let opts = SimulateOptions {
            requests: 100_000,
            users: Some(20_000),
            metadata: vec![],
            seed: 1,
        };
        let sim = simulate(&new, Some(&old), &opts, &mut |_| {});
        let m = sim.movement.unwrap();
        assert!((m.least_possible_fraction - 0.17).abs() < 1e-9, "{m:?}");
        assert!(
            m.moved_fraction >= m.least_possible_fraction - 0.01,
            "{m:?}"
        );
        assert_eq!(sim.routes[0].requests, 100_000);
    }

    #[test]
    fn bars() {
        assert_eq!(bar(0.5, 4), "██  ");
        assert_eq!(bar(1.0, 2), "██");
        assert_eq!(bar(0.0, 2), "  ");
    }
}
