//! Settings, in two kinds: how one request is read, routed and rewritten ([`RouterOptions`],
//! for the layer and [`RouterOptions::route`] alike), and what the layer does around the
//! upstream call ([`LayerOptions`]). Every setting has a default.

use std::time::Duration;

use http::{HeaderMap, HeaderName};

use crate::rewrite::Precedence;

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
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            model_prefix: DEFAULT_MODEL_PREFIX.to_owned(),
            user_header: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            precedence: Precedence::Router,
            strip_provider: false,
        }
    }
}

impl RouterOptions {
    /// The defaults: prefix `inworld/`, no user header, 32 MiB, the router's generation config
    /// wins, model ids sent whole.
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

    /// The largest request body accepted; a larger one gets 413. The layer also reads an
    /// answer whole for the metadata merge up to this size.
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
    /// model names). The attempt's full id is always in
    /// [`UpstreamAttempt`](crate::UpstreamAttempt).
    pub fn strip_provider(mut self, strip: bool) -> RouterOptions {
        self.strip_provider = strip;
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

    /// The sticky key from the configured header, if set and present.
    pub fn header_user<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let name = self.user_header.as_ref()?;
        headers.get(name)?.to_str().ok().filter(|s| !s.is_empty())
    }

    /// The model to write into the body for `model_id`.
    pub fn body_model<'m>(&self, model_id: &'m str) -> &'m str {
        if self.strip_provider {
            abroute::ModelId::new(model_id).name()
        } else {
            model_id
        }
    }
}

/// What the [`AbrouteLayer`](crate::AbrouteLayer) does around the upstream call. Every setting
/// has a default.
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    merge_metadata: bool,
    record_extension: bool,
    attempt_timeout: Option<Duration>,
    stream_observer: Option<ObserverSlot>,
}

/// The observer of routed event streams (a newtype for `Debug`).
#[derive(Clone)]
struct ObserverSlot(std::sync::Arc<dyn crate::stream_tap::StreamObserver>);

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamObserver")
    }
}

impl LayerOptions {
    /// The defaults: no metadata merge, no record extension, no attempt timeout.
    pub fn new() -> LayerOptions {
        LayerOptions::default()
    }

    /// Merge Inworld-style `metadata` into non-streaming JSON responses, and add it to event
    /// streams as one more event.
    pub fn merge_metadata(mut self, merge: bool) -> LayerOptions {
        self.merge_metadata = merge;
        self
    }

    /// Put the [`DecisionRecord`](abroute::DecisionRecord) into each routed response's
    /// extensions, for the host to log.
    pub fn record_extension(mut self, on: bool) -> LayerOptions {
        self.record_extension = on;
        self
    }

    /// Give up on an attempt after this long without a response head and first body frame
    /// (needs a [`Timer`](crate::Timer)).
    pub fn attempt_timeout(mut self, timeout: Duration) -> LayerOptions {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Pass every routed event stream through a [`StreamTap`](crate::stream_tap::StreamTap)
    /// and tell `observer` about it when it ends (usage, time to first token, duration, how it
    /// ended). Also asks chat-completions upstreams for the stream's usage
    /// ([`include_usage`](crate::include_usage)).
    pub fn stream_observer(
        mut self,
        observer: std::sync::Arc<dyn crate::stream_tap::StreamObserver>,
    ) -> LayerOptions {
        self.stream_observer = Some(ObserverSlot(observer));
        self
    }

    /// The stream observer, if set.
    pub fn get_stream_observer(
        &self,
    ) -> Option<&std::sync::Arc<dyn crate::stream_tap::StreamObserver>> {
        self.stream_observer.as_ref().map(|s| &s.0)
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
}
