//! Passive health for request-level calls.
//!
//! The engine's [`HealthRegistry`] holds a model's health weakly: a model no loaded router
//! names is forgotten once nothing holds it. A request-level call names its models itself, so
//! the layer pins the health of every model (and provider) such calls used, here, for as long
//! as the layer lives; the entries are the registry's own, so a router naming the same model
//! shares its state (a model ejected by direct calls is skipped by routers too, and back).
//!
//! At most [`MAX_PINNED`] models are pinned; past that the pins are dropped and taken anew,
//! so a client naming ever new models cannot grow the layer's memory without bound.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use abroute::Outcome;
use abroute::health::{Health, HealthRegistry, provider_of};
use std::collections::HashMap;

/// The most models whose health request-level calls pin.
pub const MAX_PINNED: usize = 4_096;

/// A model's health and its provider's.
#[derive(Debug, Clone)]
pub(crate) struct Pinned {
    model: Arc<Health>,
    provider: Option<Arc<Health>>,
}

impl Pinned {
    /// Whether a call may go to the model at `now` (as `ModelTarget::is_available`).
    pub(crate) fn is_available(&self, now: Duration) -> bool {
        !self.provider.as_ref().is_some_and(|p| p.is_ejected(now)) && self.model.is_available(now)
    }

    /// Reports an outcome to the model's and the provider's health.
    pub(crate) fn report(&self, outcome: Outcome, now: Duration) {
        self.model.report(outcome, now);
        if let Some(p) = &self.provider {
            p.report(outcome, now);
        }
    }
}

/// The pins, by model id.
#[derive(Debug, Default)]
pub(crate) struct PinnedHealth {
    pins: Mutex<HashMap<Box<str>, Pinned>>,
}

impl PinnedHealth {
    /// The health of `model` from `registry`, pinned.
    pub(crate) fn get(&self, registry: &HealthRegistry, model: &str) -> Pinned {
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = pins.get(model) {
            return p.clone();
        }
        if pins.len() >= MAX_PINNED {
            pins.clear();
        }
        let pinned = Pinned {
            model: registry.model(model),
            provider: provider_of(model).map(|p| registry.provider(p)),
        };
        pins.insert(model.into(), pinned.clone());
        pinned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abroute::{FailureClass, HealthConfig};

    #[test]
    fn pins_share_the_registrys_state_and_are_bounded() {
        let registry = HealthRegistry::new(HealthConfig::default());
        let pins = PinnedHealth::default();
        let a = pins.get(&registry, "openai/a");
        assert!(Arc::ptr_eq(
            &a.model,
            &registry.get_model("openai/a").unwrap()
        ));
        let now = Duration::from_secs(1);
        for _ in 0..100 {
            pins.get(&registry, "openai/a")
                .report(Outcome::Failure(FailureClass::ServerError), now);
        }
        assert!(!pins.get(&registry, "openai/a").is_available(now));
        for i in 0..MAX_PINNED + 1 {
            pins.get(&registry, &format!("p/m{i}"));
        }
        assert!(pins.pins.lock().unwrap().len() <= MAX_PINNED);
    }
}
