//! The providers: who serves a model, with which key, and how requests get there.
//!
//! A [`Provider`] is what the config says of one upstream: its name (the provider part of a
//! model id, or `*` for any model), base URL, key, extra root certificates and HTTP/2 policy.
//! [`Providers`] is the list the service picks from by model id, each provider paired with the
//! [`Transport`] its requests take, chosen by whoever builds the list (the gateway puts the
//! built-in mock in process there): a provider itself knows nothing of how it is reached.
//! [`WarnLimiter`] keeps a provider that is down under load from logging a line per request.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use http::header::HeaderValue;
use rustls::pki_types::CertificateDer;

use super::{BaseUrl, Transport};

/// One provider, ready to call.
pub struct Provider {
    /// Its name (`openai`, or `*`).
    pub name: String,
    /// Where to send its requests.
    pub base: BaseUrl,
    /// `Bearer <key>`, marked sensitive.
    pub(super) authorization: Option<HeaderValue>,
    /// Root certificates trusted for this provider's host besides Mozilla's (its `ca_file`).
    pub(super) extra_roots: Vec<CertificateDer<'static>>,
    /// Whether HTTP/2 is offered when `base` is `https://`.
    pub(super) http2: bool,
    /// Failed-connection warnings: at most one a second.
    pub(super) connect_warnings: WarnLimiter,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("base", &self.base.to_string())
            .field("key", &self.authorization.is_some())
            .field("extra_roots", &self.extra_roots.len())
            .field("http2", &self.http2)
            .finish()
    }
}

impl Provider {
    /// A provider at `base`, with an optional key.
    ///
    /// # Errors
    ///
    /// When the key cannot be a header value.
    pub fn new(name: &str, base: BaseUrl, key: Option<&str>) -> Result<Provider, String> {
        let authorization = match key {
            Some(k) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {k}"))
                    .map_err(|_| format!("the key of provider {name:?} is not a valid header"))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(Provider {
            name: name.to_owned(),
            base,
            authorization,
            extra_roots: Vec::new(),
            http2: true,
            connect_warnings: WarnLimiter::default(),
        })
    }

    /// Offers HTTP/2 (ALPN `h2`, then `http/1.1`) to an `https://` base when `on` (the
    /// default), or only HTTP/1.1. A plain `http://` base always gets HTTP/1.1.
    #[must_use]
    pub fn http2(mut self, on: bool) -> Provider {
        self.http2 = on;
        self
    }

    /// Also trusts these root certificates (from
    /// [`read_ca_file`](super::read_ca_file)) for this provider's host.
    #[must_use]
    pub fn trust(mut self, roots: Vec<CertificateDer<'static>>) -> Provider {
        self.extra_roots.extend(roots);
        self
    }
}

/// A provider and the transport its requests take.
#[derive(Debug)]
pub(super) struct Endpoint {
    /// The provider (shared with the requests in flight, for their connection warnings).
    pub(super) provider: Arc<Provider>,
    /// How its requests get there.
    pub(super) transport: Transport,
}

/// Every provider, by name, and the catch-all.
#[derive(Debug, Default)]
pub struct Providers {
    by_name: HashMap<String, Endpoint>,
    any: Option<Endpoint>,
}

impl Providers {
    /// These providers (`*` is the catch-all), each reached through its transport.
    pub fn new(list: Vec<(Provider, Transport)>) -> Providers {
        let mut out = Providers::default();
        for (provider, transport) in list {
            let endpoint = Endpoint {
                provider: Arc::new(provider),
                transport,
            };
            if endpoint.provider.name == "*" {
                out.any = Some(endpoint);
            } else {
                out.by_name.insert(endpoint.provider.name.clone(), endpoint);
            }
        }
        out
    }

    /// The provider for a model id: by its provider part, else the catch-all.
    pub fn for_model(&self, model_id: &str) -> Option<&Provider> {
        self.pick(model_id).map(|e| &*e.provider)
    }

    /// The endpoint for a model id: by its provider part, else the catch-all.
    pub(super) fn pick(&self, model_id: &str) -> Option<&Endpoint> {
        abroute::ModelId::new(model_id)
            .provider()
            .and_then(|p| self.by_name.get(p))
            .or(self.any.as_ref())
    }

    /// The catch-all's endpoint, for requests that name no model.
    pub(super) fn any(&self) -> Option<&Endpoint> {
        self.any.as_ref()
    }

    /// Every provider, for the banner.
    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.by_name
            .values()
            .chain(self.any.as_ref())
            .map(|e| &*e.provider)
    }
}

/// Lets one warning through per interval and counts the others, so that an upstream that is
/// down under load logs a line a second, not a line per request.
#[derive(Debug, Default)]
pub(super) struct WarnLimiter {
    /// When the last warning went out, in ms since [`WarnLimiter::epoch`] plus one (0: never).
    last: AtomicU64,
    /// Warnings held back since the last one that went out.
    suppressed: AtomicU64,
}

impl WarnLimiter {
    /// The interval between two warnings.
    const INTERVAL_MS: u64 = 1000;

    fn epoch() -> std::time::Instant {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(std::time::Instant::now)
    }

    /// `Some(n)` when a warning may go out now, `n` being how many were held back before it.
    pub(super) fn allow(&self) -> Option<u64> {
        let now = u64::try_from(Self::epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        self.allow_at(now)
    }

    fn allow_at(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let stamp = now_ms.saturating_add(1);
        let last = self.last.load(Relaxed);
        let due = last == 0 || stamp.saturating_sub(last) >= Self::INTERVAL_MS;
        if due
            && self
                .last
                .compare_exchange(last, stamp, Relaxed, Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Relaxed))
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_warnings_are_one_a_second() {
        let w = WarnLimiter::default();
        assert_eq!(w.allow_at(0), Some(0), "the first goes out");
        assert_eq!(w.allow_at(10), None);
        assert_eq!(w.allow_at(998), None);
        assert_eq!(
            w.allow_at(1000),
            Some(2),
            "a second later, with the count held back"
        );
        assert_eq!(w.allow_at(1500), None);
        assert_eq!(w.allow_at(5000), Some(1));
        assert_eq!(w.allow_at(5001), None);
    }

    #[test]
    fn picks_providers() {
        let p = |n: &str| {
            let provider = Provider::new(n, BaseUrl::parse("http://h/v1").unwrap(), None).unwrap();
            (provider, Transport::Network)
        };
        let ps = Providers::new(vec![p("openai"), p("*")]);
        assert_eq!(ps.for_model("openai/gpt-4.1").unwrap().name, "openai");
        assert_eq!(ps.for_model("vllm/llama").unwrap().name, "*");
        assert_eq!(ps.for_model("bare").unwrap().name, "*");
        let ps = Providers::new(vec![p("openai")]);
        assert!(ps.for_model("vllm/llama").is_none());
    }
}
