//! The tower layer: route, rewrite, call upstream, fail over, report, answer.
//!
//! [`AbrouteLayer`] wraps an inner service that makes the upstream call
//! (`Service<http::Request<Bytes>>`). For each `POST` to a chat-completions, responses or
//! messages path whose `model` names a router, the layer:
//!
//! 1. checks the API key for the chat permission, if keys are configured (and then removes
//!    `authorization` and `x-api-key`, which were meant for it, not for the upstream);
//! 2. reads the body up to the limit (413 beyond), extracts, routes (404, 422) and makes the
//!    attempt plan;
//! 3. for each attempt: rewrites the body for it, calls the inner service with an
//!    [`UpstreamAttempt`](crate::UpstreamAttempt) in the request extensions, and waits for the
//!    response head *and* its first body frame. Until that frame arrives nothing has been sent
//!    to the client, so a 429, a 5xx, an inner error, a body error before the first frame, or a
//!    timeout moves on to the next attempt. A 4xx other than 429 is the request's fault: it is
//!    answered as is;
//! 4. reports every outcome to the engine through the plan (health and counters), and answers
//!    with the `x-abroute-*` headers, the upstream's body (the first frame replayed), and
//!    optionally merged metadata and the decision record in the response extensions.
//!
//! A request whose model names no router but which routes itself (`"model": "auto"`, or the
//! router's keys in `extra_body`) goes through the same steps with a request-level plan
//! ([`request_level`](crate::request_level)). Any other request (another path or method, a
//! model that is not a router) goes to the inner service once, its body unchanged (read whole,
//! within the limit).
//!
//! Each step is a phase of its own module, and [`AbrouteService`]'s `handle` only chains
//! them: the way in (`intake`: steps 1 and 2, shared with
//! [`RouterOptions::route`]), the plan (`plan`), the attempt loop (`attempts`: step 3) and
//! the answer (`answer`: step 4).
//!
//! **Time.** A [`Clock`] gives `now` for health and latencies ([`MonotonicClock`] by default).
//! **Timeouts** need a runtime's timer, which this crate does not pick. Two ways, both
//! supported:
//!
//! - give the layer a [`Timer`] (three lines for tokio, see its docs). It then enforces
//!   [`LayerOptions::attempt_timeout`] and, for streaming requests,
//!   `extra_body.fallback.ttft_timeout` (time to the first body frame, reported as a slow first
//!   token);
//! - or let the inner service time out itself and fail with [`TimedOut`](crate::TimedOut) (or
//!   any error whose source chain holds a `TimedOut` or an `io::Error` of kind `TimedOut`): the
//!   layer classifies it as a timeout. The TTFT limit of the request is in
//!   [`UpstreamAttempt::ttft_timeout`](crate::UpstreamAttempt::ttft_timeout).
//!
//! With the default [`NoTimer`], the layer never times out on its own.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use abroute::{Engine, FailureClass};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower::{Layer, Service};

use crate::answer::{self, error_response};
use crate::attempts::{self, Attempted, Limits, Walk, classify_error};
use crate::auth::ApiKeys;
use crate::body::AbrouteBody;
use crate::error::{ApiError, BoxError};
use crate::intake::{self, Intake, Target};
use crate::options::{LayerOptions, RouterOptions};
use crate::plan::RoutePlan;
use crate::request_level::{EitherPlan, RequestLevel, RequestPlan};
use crate::time::{Clock, MonotonicClock, NoTimer, Timer};

/// The layer. See the [module documentation](crate::layer).
#[derive(Clone)]
pub struct AbrouteLayer<C = MonotonicClock, T = NoTimer> {
    engine: Arc<Engine>,
    options: RouterOptions,
    layer_options: LayerOptions,
    keys: Option<ApiKeys>,
    clock: C,
    timer: T,
}

impl std::fmt::Debug for AbrouteLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbrouteLayer")
            .field("options", &self.options)
            .field("layer_options", &self.layer_options)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl AbrouteLayer {
    /// A layer routing with `engine`, default options, no keys (chat open), the monotonic clock
    /// and no timer.
    pub fn new(engine: Arc<Engine>) -> AbrouteLayer {
        AbrouteLayer {
            engine,
            options: RouterOptions::default(),
            layer_options: LayerOptions::default(),
            keys: None,
            clock: MonotonicClock,
            timer: NoTimer,
        }
    }
}

impl<C, T> AbrouteLayer<C, T> {
    /// How requests are read, routed and rewritten.
    pub fn options(mut self, options: RouterOptions) -> Self {
        self.options = options;
        self
    }

    /// What the layer does around the upstream call (metadata, records, attempt timeout).
    pub fn layer_options(mut self, options: LayerOptions) -> Self {
        self.layer_options = options;
        self
    }

    /// Requires an API key with the chat permission (unless `keys` opens chat).
    pub fn keys(mut self, keys: ApiKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// This clock.
    pub fn clock<C2: Clock>(self, clock: C2) -> AbrouteLayer<C2, T> {
        AbrouteLayer {
            engine: self.engine,
            options: self.options,
            layer_options: self.layer_options,
            keys: self.keys,
            clock,
            timer: self.timer,
        }
    }

    /// This timer.
    pub fn timer<T2: Timer>(self, timer: T2) -> AbrouteLayer<C, T2> {
        AbrouteLayer {
            engine: self.engine,
            options: self.options,
            layer_options: self.layer_options,
            keys: self.keys,
            clock: self.clock,
            timer,
        }
    }
}

struct Shared<C, T> {
    engine: Arc<Engine>,
    options: RouterOptions,
    layer_options: LayerOptions,
    keys: Option<ApiKeys>,
    clock: C,
    timer: T,
    /// What request-level routing keeps between requests.
    request_level: RequestLevel,
}

/// The layer's clock, so that a streamed body can read it (as an `Arc<dyn Clock>` of the
/// shared state: no allocation).
impl<C: Clock, T: Timer> Clock for Shared<C, T> {
    fn now(&self) -> Duration {
        self.clock.now()
    }
}

impl<S, C: Clone, T: Clone> Layer<S> for AbrouteLayer<C, T> {
    type Service = AbrouteService<S, C, T>;

    fn layer(&self, inner: S) -> Self::Service {
        AbrouteService {
            inner,
            shared: Arc::new(Shared {
                engine: Arc::clone(&self.engine),
                options: self.options.clone(),
                layer_options: self.layer_options.clone(),
                keys: self.keys.clone(),
                clock: self.clock.clone(),
                timer: self.timer.clone(),
                request_level: RequestLevel::default(),
            }),
        }
    }
}

/// The service the layer makes. Always ready; answers every request with a response (its
/// error type is `Infallible`), so it can be mounted directly in axum or hyper.
pub struct AbrouteService<S, C = MonotonicClock, T = NoTimer> {
    inner: S,
    shared: Arc<Shared<C, T>>,
}

impl<S: Clone, C, T> Clone for AbrouteService<S, C, T> {
    fn clone(&self) -> Self {
        AbrouteService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, C, T> std::fmt::Debug for AbrouteService<S, C, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbrouteService").finish_non_exhaustive()
    }
}

impl<S, C, T, ReqB, ResB> Service<Request<ReqB>> for AbrouteService<S, C, T>
where
    S: Service<Request<Bytes>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Unpin + Send + 'static,
    ResB::Error: Into<BoxError>,
    ReqB: Body + Send + 'static,
    ReqB::Data: Send,
    C: Clock,
    T: Timer,
{
    type Response = Response<AbrouteBody<ResB>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each call drives its own clone of the inner service to readiness.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let inner = self.inner.clone();
        let shared = Arc::clone(&self.shared);
        pin_in_place(move || async move { Ok(handle(shared, inner, req).await) })
    }
}

/// The future `make` returns, pinned in an allocation made first and written by `make` in
/// place. The request's future is several KiB (extraction, plan and attempt loop live in it);
/// `Box::pin(future)` builds it on the stack and copies every byte of it into the box, which
/// cost the gateway 8,400 instructions a request (callgrind, built-in mock: 156,700 a request
/// with the copy, 148,600 without, against 146,700 before the reshape of issue 12).
#[inline(always)]
fn pin_in_place<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    let mut slot = Box::<F>::new_uninit();
    slot.write(make());
    // SAFETY: `write` initialized the slot.
    Box::into_pin(unsafe { slot.assume_init() })
}

/// A request that is not routed: to the inner service once, its body as it came.
async fn pass_through<S, B>(
    mut inner: S,
    parts: http::request::Parts,
    body: Bytes,
) -> Response<AbrouteBody<B>>
where
    S: Service<Request<Bytes>, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    let req = Request::from_parts(parts, body);
    if std::future::poll_fn(|cx| inner.poll_ready(cx))
        .await
        .is_err()
    {
        return error_response(&ApiError::upstream_unavailable(1));
    }
    match inner.call(req).await {
        Ok(r) => r.map(AbrouteBody::inner),
        Err(e) => {
            let e: BoxError = e.into();
            if classify_error(&*e) == FailureClass::Timeout {
                error_response(&ApiError::upstream_timeout(1))
            } else {
                error_response(&ApiError::upstream_unavailable(1))
            }
        }
    }
}

/// One request, phase by phase: the way in, the plan, the attempts, the answer.
async fn handle<S, ReqB, ResB, C, T>(
    shared: Arc<Shared<C, T>>,
    mut inner: S,
    req: Request<ReqB>,
) -> Response<AbrouteBody<ResB>>
where
    S: Service<Request<Bytes>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Unpin,
    ReqB: Body,
    C: Clock,
    T: Timer,
{
    let opts = &shared.options;
    let (mut parts, body) = req.into_parts();
    if let Err(e) = intake::authorize(shared.keys.as_ref(), &mut parts.headers) {
        return error_response(&e);
    }
    let api = match intake::api_of(&parts.method, parts.uri.path(), &parts.headers) {
        Ok(api) => api,
        Err(e) => return error_response(&e),
    };
    let bytes = match intake::read_body(body, &parts.headers, opts.get_max_body_bytes()).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    let Some(api) = api else {
        return pass_through(inner, parts, bytes).await;
    };
    let snapshot = shared.engine.load_full();
    let intake = match Intake::new(opts, &snapshot, api, &bytes) {
        Ok(Some(intake)) => intake,
        Ok(None) => return pass_through(inner, parts, bytes.clone()).await,
        Err(e) => return error_response(&e),
    };
    let request = match intake.request(&parts.headers) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let start = shared.clock.now();
    let mut plan = match request.target {
        Target::Router(router) => match RoutePlan::new(router, &request, start) {
            Ok(p) => EitherPlan::Route(p),
            Err(e) => return error_response(&e),
        },
        Target::Request => {
            match RequestPlan::new(&shared.engine, &shared.request_level, &request, start) {
                Ok(p) => EitherPlan::Request(p),
                Err(e) => return error_response(&e),
            }
        }
    };
    let stream = request.ex.is_stream();
    let layer = &shared.layer_options;
    let limits = Limits {
        deadline: Limits::deadline(layer.get_attempt_timeout(), request.ttft, stream),
        read_all: layer.get_merge_metadata() && !stream,
        max_read: opts.get_max_body_bytes(),
        ask_usage: layer.get_stream_observer().is_some(),
    };
    let walk = Walk {
        parts: &parts,
        ex: request.ex,
        options: opts,
        limits,
        clock: &shared.clock,
        timer: &shared.timer,
    };
    let attempted = attempts::walk(walk, &mut plan, &mut inner).await;
    match attempted {
        Attempted::Served(served) => answer::served(served, &plan, api, start, layer, || {
            Arc::clone(&shared) as Arc<dyn Clock>
        }),
        Attempted::Refused { attempt, response } => {
            answer::refused(response, &plan, &attempt, layer)
        }
        Attempted::Failed(failed) => answer::failed(failed, &plan, layer),
    }
}
