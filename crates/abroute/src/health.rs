//! Passive health: outlier detection per model and per provider, from outcomes the host reports.
//!
//! The core reads no clock: every call takes `now`, a [`Duration`] since any fixed epoch the host
//! chooses (its monotonic clock's start, say). The host reports each attempt's [`Outcome`]; the
//! engine ejects a model that fails too often and lets plans skip it until it recovers.
//!
//! A [`Health`] follows Envoy's outlier detection:
//!
//! - **Healthy.** Counted failures (rate-limited, server error, timeout, slow first token) raise a
//!   consecutive-failure count and fill a sliding window; a success resets the count. Client
//!   errors (4xx) show the model is up: they count as successes, never against it.
//! - **Ejection.** After [`HealthConfig::consecutive_failures`] counted failures in a row, or when
//!   the window (of [`HealthConfig::window`]) holds at least [`HealthConfig::min_requests`]
//!   outcomes of which at least [`HealthConfig::failure_ratio_percent`] percent failed, the model is
//!   ejected for `base_ejection × k`, where `k` is how many times it has been ejected without a
//!   full quiet period in between, capped at [`HealthConfig::max_ejection`].
//! - **Half-open.** When the cooldown ends, [`Health::is_available`] lets exactly one caller
//!   through as a probe (others still see the model as ejected). The probe's success restores the
//!   model; its failure ejects it again with a longer cooldown. A probe that never reports is
//!   given up after [`HealthConfig::probe_timeout`] and another caller may probe: a model is never
//!   stuck ejected forever, and never restored without a success after its cooldown.
//!
//! Reads ([`Health::is_available`]) are one atomic load in the common case, on a cache line that
//! only changes when the model is ejected or restored. Writes ([`Health::report`]) take a mutex
//! of their own model only: health is sharded per model, and routing never waits on a report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use rustc_hash::FxHashMap;

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// HTTP 429.
    RateLimited,
    /// HTTP 5xx.
    ServerError,
    /// No answer in time (connect or total timeout).
    Timeout,
    /// The first token came later than the request's time-to-first-token limit.
    SlowFirstToken,
    /// HTTP 4xx other than 429: the request was at fault, not the model. Never counted against it.
    ClientError,
}

impl FailureClass {
    /// Whether this failure counts against the model's health (everything but client errors).
    pub fn counts_against_model(self) -> bool {
        !matches!(self, FailureClass::ClientError)
    }

    /// Whether a gateway should try the next attempt after this failure (429, 5xx, timeouts).
    pub fn triggers_failover(self) -> bool {
        self.counts_against_model()
    }

    /// Classifies an HTTP status: 429, 5xx and 4xx; `None` for success and other codes.
    pub fn from_status(status: u16) -> Option<FailureClass> {
        match status {
            429 => Some(FailureClass::RateLimited),
            500..=599 => Some(FailureClass::ServerError),
            400..=499 => Some(FailureClass::ClientError),
            _ => None,
        }
    }
}

/// What happened to one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "class")]
pub enum Outcome {
    /// The model answered.
    Success,
    /// The attempt failed.
    Failure(FailureClass),
}

impl Outcome {
    /// True when the outcome counts against the model.
    pub fn is_counted_failure(self) -> bool {
        matches!(self, Outcome::Failure(c) if c.counts_against_model())
    }
}

/// Thresholds of the outlier detection. Every field has a documented default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Eject after this many counted failures in a row. Default 5. 0 disables this rule.
    pub consecutive_failures: u32,
    /// Eject when at least this percentage of the window's outcomes failed. Default 50.
    /// 0 disables this rule.
    pub failure_ratio_percent: u32,
    /// The ratio rule needs at least this many outcomes in the window. Default 20.
    pub min_requests: u32,
    /// The sliding window of the ratio rule. Default 10 s (ten buckets of 1 s).
    #[serde(with = "millis")]
    pub window: Duration,
    /// The first ejection's length; the k-th in a row lasts `k ×` this. Default 10 s.
    #[serde(with = "millis")]
    pub base_ejection: Duration,
    /// The longest ejection. Default 300 s.
    #[serde(with = "millis")]
    pub max_ejection: Duration,
    /// How long a half-open probe may stay unanswered before another caller may probe.
    /// Default 10 s.
    #[serde(with = "millis")]
    pub probe_timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            consecutive_failures: 5,
            failure_ratio_percent: 50,
            min_requests: 20,
            window: Duration::from_secs(10),
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            probe_timeout: Duration::from_secs(10),
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// The number of buckets of the sliding window.
const WINDOW_BUCKETS: usize = 10;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Where a model stands, as [`Health::state`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Serving normally.
    Healthy,
    /// Ejected until the cooldown ends.
    Ejected {
        /// When the cooldown ends, in milliseconds since the host's epoch.
        until_ms: u64,
    },
    /// The cooldown is over; the next caller (or the one already probing) decides.
    HalfOpen,
}

/// The write side: counters behind the model's own mutex.
#[derive(Debug, Default)]
struct Counters {
    consecutive: u32,
    /// (bucket epoch, outcomes, counted failures) per bucket of the window.
    window: [(u64, u32, u32); WINDOW_BUCKETS],
    /// Ejections in a row (the cooldown multiplier).
    ejections: u32,
    /// When the last restore happened, to forget old ejections after a quiet period.
    restored_at_ms: u64,
    /// Lifetime totals, for stats.
    total_ejections: u64,
}

/// Health of one model (or one provider). Shared by every snapshot that names it.
#[derive(Debug)]
pub struct Health {
    /// 0 when healthy; otherwise the end of the cooldown in ms since the epoch, plus one (so
    /// that an ejection at time 0 is still distinguishable from healthy).
    ejected_until: AtomicU64,
    /// While half-open: until when the current probe holds its slot (ms, plus one); 0 for none.
    probe_until: AtomicU64,
    counters: Mutex<Counters>,
    config: HealthConfig,
}

impl Health {
    /// A healthy model with these thresholds.
    pub fn new(config: HealthConfig) -> Health {
        Health {
            ejected_until: AtomicU64::new(0),
            probe_until: AtomicU64::new(0),
            counters: Mutex::new(Counters::default()),
            config,
        }
    }

    /// The thresholds.
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Where the model stands at `now`, without taking a probe slot.
    pub fn state(&self, now: Duration) -> HealthState {
        match self.ejected_until.load(Ordering::Acquire) {
            0 => HealthState::Healthy,
            until if ms(now) + 1 < until => HealthState::Ejected {
                until_ms: until - 1,
            },
            _ => HealthState::HalfOpen,
        }
    }

    /// Whether the model is ejected at `now` (half-open counts as not ejected).
    #[inline]
    pub fn is_ejected(&self, now: Duration) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        until != 0 && ms(now) + 1 < until
    }

    /// Whether a request may be sent to the model now. Healthy: yes. Ejected: no. Half-open:
    /// yes for exactly one caller (the probe) until it reports or its probe times out.
    #[inline]
    pub fn is_available(&self, now: Duration) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now_ms = ms(now);
        if now_ms + 1 < until {
            return false;
        }
        self.try_probe(now_ms)
    }

    #[cold]
    fn try_probe(&self, now_ms: u64) -> bool {
        let current = self.probe_until.load(Ordering::Acquire);
        if current != 0 && now_ms + 1 < current {
            return false; // somebody is probing
        }
        let deadline = now_ms
            .saturating_add(ms(self.config.probe_timeout))
            .saturating_add(1);
        self.probe_until
            .compare_exchange(current, deadline, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Records one outcome at `now`, ejecting or restoring the model as the rules say.
    pub fn report(&self, outcome: Outcome, now: Duration) {
        let now_ms = ms(now);
        let mut c = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let failed = outcome.is_counted_failure();
        let until = self.ejected_until.load(Ordering::Acquire);

        if until != 0 {
            // Ejected or half-open. Only a result after the cooldown decides anything; reports
            // of attempts that started before the ejection are ignored.
            if now_ms + 1 < until {
                return;
            }
            if failed {
                self.eject(&mut c, now_ms);
            } else {
                self.restore(&mut c, now_ms);
            }
            return;
        }

        // Healthy: update the window and the streak.
        let bucket_ms = (ms(self.config.window) / WINDOW_BUCKETS as u64).max(1);
        let epoch = now_ms / bucket_ms;
        let slot = (epoch % WINDOW_BUCKETS as u64) as usize;
        if c.window[slot].0 != epoch {
            c.window[slot] = (epoch, 0, 0);
        }
        c.window[slot].1 += 1;
        if failed {
            c.window[slot].2 += 1;
            c.consecutive += 1;
        } else {
            c.consecutive = 0;
        }
        if !failed {
            return;
        }
        let streak = self.config.consecutive_failures != 0
            && c.consecutive >= self.config.consecutive_failures;
        let (total, failures) = c
            .window
            .iter()
            .filter(|(e, _, _)| *e + WINDOW_BUCKETS as u64 > epoch)
            .fold((0u64, 0u64), |(t, f), (_, bt, bf)| {
                (t + u64::from(*bt), f + u64::from(*bf))
            });
        let ratio = self.config.failure_ratio_percent != 0
            && total >= u64::from(self.config.min_requests.max(1))
            && failures * 100 >= total * u64::from(self.config.failure_ratio_percent);
        if streak || ratio {
            self.eject(&mut c, now_ms);
        }
    }

    fn eject(&self, c: &mut Counters, now_ms: u64) {
        // Forget earlier ejections after a quiet period as long as the longest ejection.
        if c.ejections > 0
            && now_ms.saturating_sub(c.restored_at_ms) > ms(self.config.max_ejection)
            && self.ejected_until.load(Ordering::Acquire) == 0
        {
            c.ejections = 0;
        }
        c.ejections = c.ejections.saturating_add(1);
        c.total_ejections += 1;
        let cooldown = ms(self.config.base_ejection)
            .saturating_mul(u64::from(c.ejections))
            .min(ms(self.config.max_ejection))
            .max(1);
        c.consecutive = 0;
        c.window = Default::default();
        self.probe_until.store(0, Ordering::Release);
        self.ejected_until.store(
            now_ms.saturating_add(cooldown).saturating_add(1),
            Ordering::Release,
        );
    }

    fn restore(&self, c: &mut Counters, now_ms: u64) {
        c.consecutive = 0;
        c.window = Default::default();
        c.restored_at_ms = now_ms;
        self.probe_until.store(0, Ordering::Release);
        self.ejected_until.store(0, Ordering::Release);
    }

    /// How many times the model has been ejected since it was created.
    pub fn total_ejections(&self) -> u64 {
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total_ejections
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn consecutive_failures_eject_and_probe_restores() {
        let h = Health::new(HealthConfig::default());
        for i in 0..4 {
            h.report(Outcome::Failure(FailureClass::ServerError), S(i));
            assert!(h.is_available(S(i)));
        }
        h.report(Outcome::Failure(FailureClass::Timeout), S(4));
        assert!(!h.is_available(S(5)));
        assert_eq!(h.state(S(5)), HealthState::Ejected { until_ms: 14_000 });
        // Cooldown over: one probe, not two.
        assert!(h.is_available(S(14)));
        assert!(!h.is_available(S(14)));
        h.report(Outcome::Success, S(15));
        assert_eq!(h.state(S(15)), HealthState::Healthy);
        assert!(h.is_available(S(15)));
    }

    #[test]
    fn client_errors_never_count() {
        let h = Health::new(HealthConfig::default());
        for i in 0..100 {
            h.report(Outcome::Failure(FailureClass::ClientError), S(i));
        }
        assert!(h.is_available(S(100)));
    }

    #[test]
    fn failed_probe_doubles_the_cooldown_up_to_the_cap() {
        let config = HealthConfig {
            consecutive_failures: 1,
            max_ejection: S(25),
            ..HealthConfig::default()
        };
        let h = Health::new(config);
        h.report(Outcome::Failure(FailureClass::RateLimited), S(0));
        assert_eq!(h.state(S(0)), HealthState::Ejected { until_ms: 10_000 });
        assert!(h.is_available(S(10)));
        h.report(Outcome::Failure(FailureClass::RateLimited), S(11));
        assert_eq!(h.state(S(11)), HealthState::Ejected { until_ms: 31_000 });
        assert!(h.is_available(S(31)));
        h.report(Outcome::Failure(FailureClass::RateLimited), S(31));
        // 3 × 10 s capped at 25 s.
        assert_eq!(h.state(S(31)), HealthState::Ejected { until_ms: 56_000 });
    }

    #[test]
    fn ratio_rule_needs_min_requests() {
        let config = HealthConfig {
            consecutive_failures: 0,
            ..HealthConfig::default()
        };
        let h = Health::new(config);
        // Alternate: 50% failures, never 5 in a row.
        for i in 0..19 {
            let o = if i % 2 == 0 {
                Outcome::Failure(FailureClass::ServerError)
            } else {
                Outcome::Success
            };
            h.report(o, Duration::from_millis(i * 100));
            assert!(!h.is_ejected(Duration::from_millis(i * 100)), "at {i}");
        }
        h.report(
            Outcome::Failure(FailureClass::ServerError),
            Duration::from_millis(1900),
        );
        assert!(h.is_ejected(Duration::from_millis(1900)));
    }

    #[test]
    fn lost_probe_times_out() {
        let config = HealthConfig {
            consecutive_failures: 1,
            ..HealthConfig::default()
        };
        let h = Health::new(config);
        h.report(Outcome::Failure(FailureClass::Timeout), S(0));
        assert!(h.is_available(S(10))); // probe taken, never reported
        assert!(!h.is_available(S(15)));
        assert!(h.is_available(S(21))); // probe timed out: another caller may probe
    }
}

/// Every model's and provider's [`Health`], keyed by id, shared across snapshots.
///
/// Compiling a router asks the registry for the health of each model it names; a model that
/// is still named after a config swap keeps its state. Entries are held weakly: a model that no
/// loaded router names any more is forgotten once the last snapshot naming it is dropped.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    config: HealthConfig,
    models: Mutex<FxHashMap<Box<str>, Weak<Health>>>,
    providers: Mutex<FxHashMap<Box<str>, Weak<Health>>>,
}

/// The provider of a model id: the part before the first `/`, if any (`openai/gpt-4.1` → `openai`).
pub fn provider_of(model_id: &str) -> Option<&str> {
    crate::model::ModelId::new(model_id).named_provider()
}

impl HealthRegistry {
    /// An empty registry whose entries use `config`.
    pub fn new(config: HealthConfig) -> HealthRegistry {
        HealthRegistry {
            config,
            ..HealthRegistry::default()
        }
    }

    /// The thresholds every entry uses.
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    fn entry(&self, map: &Mutex<FxHashMap<Box<str>, Weak<Health>>>, id: &str) -> Arc<Health> {
        let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = map.get(id).and_then(Weak::upgrade) {
            return h;
        }
        if map.len() >= 64 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let h = Arc::new(Health::new(self.config));
        map.insert(id.into(), Arc::downgrade(&h));
        h
    }

    /// The health of model `id`, created healthy if nobody holds it.
    pub fn model(&self, id: &str) -> Arc<Health> {
        self.entry(&self.models, id)
    }

    /// The health of provider `id`, created healthy if nobody holds it.
    pub fn provider(&self, id: &str) -> Arc<Health> {
        self.entry(&self.providers, id)
    }

    /// The health of model `id` if some loaded router names it.
    pub fn get_model(&self, id: &str) -> Option<Arc<Health>> {
        let map = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(id).and_then(Weak::upgrade)
    }

    /// The health of provider `id` if some loaded router names one of its models.
    pub fn get_provider(&self, id: &str) -> Option<Arc<Health>> {
        let map = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(id).and_then(Weak::upgrade)
    }

    /// Reports an outcome for model `id` (and its provider) by name, for hosts that do not
    /// keep the attempt. Unknown models are ignored.
    pub fn report(&self, id: &str, outcome: Outcome, now: Duration) {
        if let Some(h) = self.get_model(id) {
            h.report(outcome, now);
        }
        if let Some(p) = provider_of(id).and_then(|p| self.get_provider(p)) {
            p.report(outcome, now);
        }
    }
}
