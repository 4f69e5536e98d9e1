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
//!    [`UpstreamAttempt`] in the request extensions, and waits for the response head *and* its
//!    first body frame. Until that frame arrives nothing has been sent to the client, so a 429,
//!    a 5xx, an inner error, a body error before the first frame, or a timeout moves on to the
//!    next attempt. A 4xx other than 429 is the request's fault: it is answered as is;
//! 4. reports every outcome to the engine through the plan (health and counters), and answers
//!    with the `x-abroute-*` headers, the upstream's body (the first frame replayed), and
//!    optionally merged metadata and the decision record in the response extensions.
//!
//! Any other request (another path or method, a model that is not a router) goes to the inner
//! service once, its body unchanged (read whole, within the limit).
//!
//! **Time.** A [`Clock`] gives `now` for health and latencies ([`MonotonicClock`] by default).
//! **Timeouts** need a runtime's timer, which this crate does not pick. Two ways, both
//! supported:
//!
//! - give the layer a [`Timer`] (three lines for tokio, see its docs). It then enforces
//!   [`RouterOptions::attempt_timeout`](crate::RouterOptions::attempt_timeout) and, for
//!   streaming requests, `extra_body.fallback.ttft_timeout` (time to the first body frame,
//!   reported as a slow first token);
//! - or let the inner service time out itself and fail with [`TimedOut`] (or any error whose
//!   source chain holds a `TimedOut` or an `io::Error` of kind `TimedOut`): the layer classifies
//!   it as a timeout. The TTFT limit of the request is in [`UpstreamAttempt::ttft_timeout`].
//!
//! With the default [`NoTimer`], the layer never times out on its own.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use abroute::{Attempt, Engine, FailureClass, Outcome};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{HeaderValue, Method, Request, Response};
use http_body::{Body, Frame};
use tower::{Layer, Service};

use crate::auth::{ApiKeys, Permission, strip_credentials};
use crate::body::{AbrouteBody, BoxError, ReadError, content_length, read_limited};
use crate::error::ApiError;
use crate::extract::{Api, extract};
use crate::response::{DecisionHeaders, Usage, merge_metadata_and_usage, metadata_value};
use crate::rewrite::rewrite;
use crate::route::{AttemptSettings, RouterOptions, route_error};
use crate::stream::{MetadataTap, is_event_stream};

/// A source of `now` for health and latencies: a duration since any fixed epoch.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Duration;
}

impl<F: Fn() -> Duration + Send + Sync + 'static> Clock for F {
    fn now(&self) -> Duration {
        self()
    }
}

/// `std::time::Instant`, measured from the first time any `MonotonicClock` is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed()
    }
}

/// A runtime's timer, for attempt and first-token timeouts.
///
/// For tokio:
///
/// ```ignore
/// #[derive(Clone)]
/// struct TokioTimer;
/// impl abroute_http::Timer for TokioTimer {
///     type Sleep = tokio::time::Sleep;
///     fn sleep(&self, d: std::time::Duration) -> tokio::time::Sleep { tokio::time::sleep(d) }
/// }
/// ```
pub trait Timer: Send + Sync + 'static {
    /// The future `sleep` returns.
    type Sleep: Future<Output = ()> + Send;
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> Self::Sleep;
}

/// No timer: sleeps never end, so the layer never times out on its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTimer;

impl Timer for NoTimer {
    type Sleep = std::future::Pending<()>;
    fn sleep(&self, _duration: Duration) -> Self::Sleep {
        std::future::pending()
    }
}

/// The error an inner service returns (or holds in its source chain) for an upstream call
/// that timed out: the layer reports it as [`FailureClass::Timeout`] and tries the next attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream call timed out")
    }
}

impl std::error::Error for TimedOut {}

/// What the inner service is asked to do, in its request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAttempt {
    /// The router's name.
    pub router: String,
    /// The route taken.
    pub route_id: String,
    /// The variant this attempt serves.
    pub variant_id: String,
    /// The model to call, in full (`openai/gpt-4.1`): pick the provider from it.
    pub model_id: String,
    /// 0 for the first attempt, then 1, 2, ...
    pub attempt: usize,
    /// True when the attempt belongs to the assigned variant.
    pub assigned_variant: bool,
    /// The request's `extra_body.fallback.ttft_timeout`, for inner services that enforce it.
    pub ttft_timeout: Option<Duration>,
    /// Whether the request asks for a stream.
    pub stream: bool,
}

/// The layer. See the [module documentation](crate::layer).
#[derive(Clone)]
pub struct AbrouteLayer<C = MonotonicClock, T = NoTimer> {
    engine: Arc<Engine>,
    options: RouterOptions,
    keys: Option<ApiKeys>,
    clock: C,
    timer: T,
}

impl std::fmt::Debug for AbrouteLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbrouteLayer")
            .field("options", &self.options)
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
            keys: None,
            clock: MonotonicClock,
            timer: NoTimer,
        }
    }
}

impl<C, T> AbrouteLayer<C, T> {
    /// These options.
    pub fn options(mut self, options: RouterOptions) -> Self {
        self.options = options;
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
            keys: self.keys,
            clock: self.clock,
            timer,
        }
    }
}

struct Shared<C, T> {
    engine: Arc<Engine>,
    options: RouterOptions,
    keys: Option<ApiKeys>,
    clock: C,
    timer: T,
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
                keys: self.keys.clone(),
                clock: self.clock.clone(),
                timer: self.timer.clone(),
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
        Box::pin(async move { Ok(handle(shared, inner, req).await) })
    }
}

fn error_response<B>(e: &ApiError) -> Response<AbrouteBody<B>> {
    e.to_response().map(AbrouteBody::full)
}

/// What the layer read from a successful response's body before answering.
enum Peeked {
    /// The body ended without data.
    End,
    /// The first frame.
    Frame(Frame<Bytes>),
    /// The whole body (read to merge metadata).
    All(Bytes),
    /// Part of the body, then possibly a frame that is not data (or the limit was reached).
    Partial(Bytes, Option<Frame<Bytes>>),
}

/// One attempt's result, before classification by status.
struct Called<B> {
    response: Response<B>,
    peeked: Option<Peeked>,
}

fn classify_error(e: &(dyn std::error::Error + 'static)) -> FailureClass {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<TimedOut>() {
            return FailureClass::Timeout;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return FailureClass::Timeout;
        }
        cur = err.source();
    }
    FailureClass::ServerError
}

fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim_start();
            v.len() >= 16 && v[..16].eq_ignore_ascii_case("application/json")
        })
}

/// Calls the inner service once; for a success, reads the first body frame (or the whole body
/// when `read_all`, up to `limit`).
async fn call_once<S, B>(
    inner: &mut S,
    req: Request<Bytes>,
    read_all: bool,
    limit: usize,
) -> Result<Called<B>, FailureClass>
where
    S: Service<Request<Bytes>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Unpin,
{
    let classify = |e: S::Error| {
        let e: BoxError = e.into();
        classify_error(&*e)
    };
    std::future::poll_fn(|cx| inner.poll_ready(cx))
        .await
        .map_err(classify)?;
    let mut response = inner.call(req).await.map_err(classify)?;
    if FailureClass::from_status(response.status().as_u16()).is_some() {
        return Ok(Called {
            response,
            peeked: None,
        });
    }
    let read_all = read_all && is_json(response.headers());
    let mut buf: Vec<u8> = Vec::new();
    let peeked = loop {
        let frame = std::future::poll_fn(|cx| Pin::new(response.body_mut()).poll_frame(cx)).await;
        match frame {
            None if read_all => break Peeked::All(Bytes::from(std::mem::take(&mut buf))),
            None => break Peeked::End,
            Some(Err(_)) => return Err(FailureClass::ServerError),
            Some(Ok(frame)) => match frame.data_ref() {
                Some(d) if d.is_empty() => {}
                Some(d) if read_all => {
                    if buf.len() + d.len() > limit {
                        let mut data = std::mem::take(&mut buf);
                        data.extend_from_slice(d);
                        break Peeked::Partial(Bytes::from(data), None);
                    }
                    buf.extend_from_slice(d);
                }
                Some(_) => break Peeked::Frame(frame),
                None if read_all => {
                    break Peeked::Partial(Bytes::from(std::mem::take(&mut buf)), Some(frame));
                }
                None => break Peeked::Frame(frame),
            },
        }
    };
    Ok(Called {
        response,
        peeked: Some(peeked),
    })
}

/// Runs `fut`, or gives up when `sleep` completes first (`None`).
async fn race<F: Future, Sl: Future<Output = ()>>(fut: F, sleep: Option<Sl>) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut sleep = pin!(sleep);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if let Some(s) = sleep.as_mut().as_pin_mut()
            && s.poll(cx).is_ready()
        {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

fn attempt_request(
    parts: &http::request::Parts,
    body: Vec<u8>,
    info: UpstreamAttempt,
) -> Request<Bytes> {
    let len = body.len();
    let mut req = Request::from_parts(parts.clone(), Bytes::from(body));
    let headers = req.headers_mut();
    headers.remove(TRANSFER_ENCODING);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    req.extensions_mut().insert(info);
    req
}

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
    if let Some(keys) = &shared.keys {
        if let Err(e) = keys.authorize(&parts.headers, Permission::Chat) {
            return error_response(&ApiError::from(e));
        }
        // The key was for abroute; the inner service brings the upstream's own.
        strip_credentials(&mut parts.headers);
    }
    let api = if parts.method == Method::POST {
        Api::from_path(parts.uri.path())
    } else {
        None
    };
    if api.is_some()
        && parts
            .headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return error_response(&ApiError::unsupported_encoding());
    }
    let declared = content_length(&parts.headers);
    let bytes = match read_limited(body, opts.get_max_body_bytes(), declared).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => {
            return error_response(&ApiError::body_too_large(opts.get_max_body_bytes()));
        }
        Err(ReadError::Failed) => return error_response(&ApiError::body_read_failed()),
    };
    let Some(api) = api else {
        return pass_through(inner, parts, bytes).await;
    };
    let ex = match extract(api, &bytes) {
        Ok(ex) => ex,
        Err(e) => return error_response(&e),
    };
    let Some(router) = ex.router_name(opts.get_model_prefix()) else {
        return pass_through(inner, parts, bytes.clone()).await;
    };
    let snapshot = shared.engine.load_full();
    // Messages are parsed only for routers whose conditions read them.
    let messages = match snapshot.router(router) {
        Some(r) if r.compiled().uses_messages() => match ex.messages_json() {
            Ok(m) => m,
            Err(e) => return error_response(&e),
        },
        _ => None,
    };
    let ctx = match ex.context(opts.header_user(&parts.headers)) {
        Ok(ctx) => ctx.with_needs(ex.needs()),
        Err(e) => return error_response(&e),
    };
    let ctx = match &messages {
        Some(m) => ctx.with_messages(m),
        None => ctx,
    };
    let ttft = match ex.ttft_timeout() {
        Ok(t) => t,
        Err(e) => return error_response(&e),
    };
    let decision = match snapshot.route(router, &ctx) {
        Ok(d) => d,
        Err(e) => return error_response(&route_error(e)),
    };
    let loaded = snapshot.router(router);
    let stream = ex.is_stream();
    let start = shared.clock.now();
    let mut plan = decision.plan(&ctx, start);

    // The binding deadline of an attempt and how its expiry is classified.
    let deadline = match (opts.get_attempt_timeout(), ttft.filter(|_| stream)) {
        (Some(a), Some(t)) if t < a => Some((t, FailureClass::SlowFirstToken)),
        (Some(a), _) => Some((a, FailureClass::Timeout)),
        (None, Some(t)) => Some((t, FailureClass::SlowFirstToken)),
        (None, None) => None,
    };
    let read_all = opts.get_merge_metadata() && !stream;

    let mut tried = 0usize;
    let mut timeouts = 0usize;
    let mut last_failed: Option<(Response<ResB>, Attempt<'_>)> = None;
    let mut last_attempt: Option<Attempt<'_>> = None;
    while let Some(attempt) = plan.next() {
        let settings = AttemptSettings::of(
            loaded,
            decision.route_id(),
            attempt.variant_index(),
            ex.api(),
        );
        let out = rewrite(
            &ex,
            &settings.rewrite(opts.body_model(attempt.model_id()), opts.get_precedence()),
        );
        let info = UpstreamAttempt {
            router: decision.router().to_owned(),
            route_id: decision.route_id().to_owned(),
            variant_id: attempt.variant_id().to_owned(),
            model_id: attempt.model_id().to_owned(),
            attempt: tried,
            assigned_variant: attempt.is_assigned_variant(),
            ttft_timeout: ttft,
            stream,
        };
        tried += 1;
        last_attempt = Some(attempt);
        let req = attempt_request(&parts, out, info);
        let t0 = shared.clock.now();
        let sleep = deadline.map(|(d, _)| shared.timer.sleep(d));
        let result = race(
            call_once(&mut inner, req, read_all, opts.get_max_body_bytes()),
            sleep,
        )
        .await;
        let now = shared.clock.now();
        let latency = now.saturating_sub(t0);
        let called = match result {
            None => {
                let class = deadline.map_or(FailureClass::Timeout, |(_, c)| c);
                plan.report(&attempt, Outcome::Failure(class), latency, None, now);
                timeouts += 1;
                continue;
            }
            Some(Err(class)) => {
                plan.report(&attempt, Outcome::Failure(class), latency, None, now);
                if class == FailureClass::Timeout {
                    timeouts += 1;
                }
                continue;
            }
            Some(Ok(called)) => called,
        };
        let status = called.response.status().as_u16();
        match FailureClass::from_status(status) {
            Some(FailureClass::ClientError) => {
                plan.report(
                    &attempt,
                    Outcome::Failure(FailureClass::ClientError),
                    latency,
                    None,
                    now,
                );
                return finish(
                    called.response.map(AbrouteBody::inner),
                    &plan,
                    &attempt,
                    opts.get_record_extension(),
                );
            }
            Some(class) => {
                plan.report(&attempt, Outcome::Failure(class), latency, None, now);
                last_failed = Some((called.response, attempt));
                continue;
            }
            None => {}
        }
        let ttft_seen = stream.then_some(latency);
        plan.report(&attempt, Outcome::Success, latency, ttft_seen, now);
        let (mut head, body) = called.response.into_parts();
        // Built once: for the merged metadata and for the response extension.
        let mut record = None;
        let mut usage: Option<Usage> = None;
        let body = match called.peeked {
            Some(Peeked::All(all)) => {
                let total = now.saturating_sub(start);
                let rec = record.insert(plan.record());
                // One pass over the answer: the metadata merged, and its usage.
                let (merged, found) =
                    merge_metadata_and_usage(ex.api(), &all, metadata_value(rec, total));
                usage = found;
                // Read whole, so the latency covers the whole answer: with its output tokens,
                // the model's throughput.
                if let Some(tokens) = usage.and_then(|u| u.output_tokens) {
                    plan.report_output_tokens(&attempt, tokens, latency);
                }
                match merged {
                    Some(merged) => {
                        head.headers
                            .insert(CONTENT_LENGTH, HeaderValue::from(merged.len()));
                        AbrouteBody::full(Bytes::from(merged))
                    }
                    None => AbrouteBody::full(all),
                }
            }
            Some(Peeked::Frame(f)) => AbrouteBody::replay(None, Some(f), body),
            Some(Peeked::Partial(data, frame)) => AbrouteBody::replay(Some(data), frame, body),
            Some(Peeked::End) | None => AbrouteBody::replay(None, None, body),
        };
        // An event stream gets the metadata as one more event (see `stream`), written when
        // the stream ends; its length changes.
        let body = if opts.get_merge_metadata() && is_event_stream(&head.headers) {
            head.headers.remove(CONTENT_LENGTH);
            let rec = record.get_or_insert_with(|| plan.record()).clone();
            let clock: Arc<dyn Clock> = shared.clone();
            body.with_tap(MetadataTap::new(ex.api(), rec, start, clock))
        } else {
            body
        };
        let mut response = finish(Response::from_parts(head, body), &plan, &attempt, false);
        if opts.get_record_extension() {
            let record = record.unwrap_or_else(|| plan.record());
            response.extensions_mut().insert(record);
        }
        if let Some(usage) = usage {
            response.extensions_mut().insert(usage);
        }
        return response;
    }
    // Every attempt failed: pass on the last upstream error response, or say why there is none.
    if let Some((response, attempt)) = last_failed {
        return finish(
            response.map(AbrouteBody::inner),
            &plan,
            &attempt,
            opts.get_record_extension(),
        );
    }
    let e = if timeouts == tried && tried > 0 {
        ApiError::upstream_timeout(tried)
    } else {
        ApiError::upstream_unavailable(tried)
    };
    let response = error_response(&e);
    match last_attempt {
        Some(a) => finish(response, &plan, &a, opts.get_record_extension()),
        None => response,
    }
}

/// Adds the decision headers (and the record) to a response.
fn finish<B>(
    mut response: Response<B>,
    plan: &abroute::AttemptPlan<'_>,
    attempt: &Attempt<'_>,
    record: bool,
) -> Response<B> {
    let d = plan.decision();
    DecisionHeaders {
        router: d.router(),
        route_id: d.route_id(),
        variant_id: attempt.variant_id(),
        assigned_variant_id: d.variant_id(),
        model_id: attempt.model_id(),
        version: d.version(),
    }
    .apply(response.headers_mut());
    if record {
        response.extensions_mut().insert(plan.record());
    }
    response
}
