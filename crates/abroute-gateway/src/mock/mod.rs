//! The built-in mock upstream: answers each API in its own shape, streaming (SSE) included,
//! says which model served, and counts tokens.
//!
//! The demo mode sends every model to it, `abroute mock` runs it alone (to measure the gateway
//! against it), and the tests script it through a [`MockControl`]: per model (as the upstream
//! receives it, `gpt-4.1` rather than `openai/gpt-4.1` when the gateway strips providers), answer
//! a status such as 429 or 503, hang, delay the response head, delay the first token, or space
//! the tokens of a stream.
//!
//! The gateway reaches it in one of two ways, chosen when it builds its providers: in process
//! ([`router`], handed each request as it would be sent, with no socket: the default) or over
//! loopback HTTP ([`MockServer`], as any upstream). The mock is the same either way.
//!
//! A `POST` is answered by the ending of its path: `…/messages` as Anthropic's messages API (a
//! `message`, or its named stream events), `…/responses` as OpenAI's Responses API (a
//! `response`, or its named stream events), any other path as an OpenAI chat completion (a
//! `chat.completion`, or `chat.completion.chunk` events, with a usage chunk when
//! `stream_options.include_usage` is set). The reply is the same sentence everywhere, one
//! token a word, cut at the request's `max_completion_tokens` / `max_tokens` /
//! `max_output_tokens` with the API's stop reason (`length`, `max_tokens`, or an `incomplete`
//! response with `incomplete_details.reason = max_output_tokens`); the prompt counts a token
//! per 4 bytes of the body. Error statuses come with the API's error body.
//! `GET /v1/models` lists one model, `mock`; `GET /healthz` answers `ok`; any other `GET` is 405.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use tokio::sync::{mpsc, oneshot};

use reply::{Api, MockRequest, error_body};

mod chat;
mod messages;
mod reply;
mod responses;

/// The longest a [`Behaviour::hang`] request waits before giving up by itself.
pub const HANG_LIMIT: Duration = Duration::from_secs(60);

/// The base URL that names the mock in logs and the banner when the gateway calls it in
/// process ([`router`] as the provider's transport), with no socket.
pub const IN_PROCESS_BASE: &str = "http://in-process.mock/v1";

/// How the mock answers one model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Behaviour {
    /// The status to answer (200 by default). Anything else comes with an OpenAI error body.
    pub status: Option<u16>,
    /// Never answer (until [`HANG_LIMIT`] or the client leaves).
    pub hang: bool,
    /// Wait this long before the response head.
    pub head_delay: Duration,
    /// After the head, wait this long before the first body bytes (the first token).
    pub first_token_delay: Duration,
    /// In a stream, wait this long between tokens.
    pub token_interval: Duration,
    /// In a stream, fail the body (a reset) after this many frames (0: never).
    pub reset_after: usize,
}

impl Behaviour {
    /// Answer normally, at once.
    pub fn ok() -> Behaviour {
        Behaviour::default()
    }

    /// Answer this status with an OpenAI-shaped error body.
    pub fn status(status: u16) -> Behaviour {
        Behaviour {
            status: Some(status),
            ..Behaviour::default()
        }
    }

    /// Never answer.
    pub fn hang() -> Behaviour {
        Behaviour {
            hang: true,
            ..Behaviour::default()
        }
    }

    /// Send the head at once and the first token after `delay`.
    pub fn first_token_delay(delay: Duration) -> Behaviour {
        Behaviour {
            first_token_delay: delay,
            ..Behaviour::default()
        }
    }

    /// Wait `delay` before the head.
    pub fn head_delay(delay: Duration) -> Behaviour {
        Behaviour {
            head_delay: delay,
            ..Behaviour::default()
        }
    }

    /// This behaviour, with the stream's body failing after `frames` frames.
    pub fn with_reset_after(mut self, frames: usize) -> Behaviour {
        self.reset_after = frames;
        self
    }

    /// This behaviour, with `interval` between stream tokens.
    pub fn with_token_interval(mut self, interval: Duration) -> Behaviour {
        self.token_interval = interval;
        self
    }
}

/// A request the mock received (kept when [`MockControl::capture`] is on).
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// The path.
    pub path: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

#[derive(Debug, Default)]
struct ControlInner {
    behaviours: RwLock<HashMap<String, Behaviour>>,
    hits: Mutex<HashMap<String, u64>>,
    capture: AtomicBool,
    seen: Mutex<Vec<SeenRequest>>,
    ids: AtomicU64,
    cancelled: AtomicU64,
}

/// Scripts the mock, and counts what it received. Clones share the same state.
#[derive(Debug, Clone, Default)]
pub struct MockControl {
    inner: Arc<ControlInner>,
}

impl MockControl {
    /// A mock that answers every model normally.
    pub fn new() -> MockControl {
        MockControl::default()
    }

    /// How the mock answers `model` from now on.
    pub fn set(&self, model: &str, behaviour: Behaviour) {
        self.inner
            .behaviours
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(model.to_owned(), behaviour);
    }

    /// Forgets every scripted behaviour and count.
    pub fn reset(&self) {
        self.inner
            .behaviours
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.inner
            .hits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many streams stopped because their caller went away.
    pub fn cancelled(&self) -> u64 {
        self.inner.cancelled.load(Ordering::Relaxed)
    }

    /// How many requests named `model`.
    pub fn hits(&self, model: &str) -> u64 {
        self.inner
            .hits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(model)
            .copied()
            .unwrap_or(0)
    }

    /// Keeps every request from now on (or stops).
    pub fn capture(&self, on: bool) {
        self.inner.capture.store(on, Ordering::Relaxed);
    }

    /// The requests kept so far.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn behaviour(&self, model: &str) -> Behaviour {
        self.inner
            .behaviours
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(model)
            .copied()
            .unwrap_or_default()
    }

    fn hit(&self, model: &str) {
        let mut hits = self
            .inner
            .hits
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match hits.get_mut(model) {
            Some(n) => *n += 1,
            None => {
                hits.insert(model.to_owned(), 1);
            }
        }
    }
}

/// A body fed by a channel: frames go out as they are sent.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| b.map(Frame::data)))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn handle(State(control): State<MockControl>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let api = Api::of_path(parts.uri.path());
    if parts.method == Method::GET {
        return match parts.uri.path() {
            "/healthz" => Response::new(Body::from("ok\n")),
            p if p.ends_with("/models") => json_response(
                StatusCode::OK,
                r#"{"object":"list","data":[{"id":"mock","object":"model","owned_by":"abroute"}]}"#
                    .to_owned(),
            ),
            _ => json_response(StatusCode::METHOD_NOT_ALLOWED, error_body(api, 405, "?")),
        };
    }
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return json_response(StatusCode::BAD_REQUEST, error_body(api, 400, "?"));
    };
    let request: MockRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            let body = serde_json::json!({"error": {"message": format!("mock: bad JSON: {e}"),
                "type": "invalid_request_error", "code": "invalid_json", "param": null}});
            return json_response(StatusCode::BAD_REQUEST, body.to_string());
        }
    };
    let model = request
        .model
        .clone()
        .unwrap_or_else(|| "unnamed-model".to_owned());
    control.hit(&model);
    if control.inner.capture.load(Ordering::Relaxed) {
        control
            .inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(SeenRequest {
                path: parts.uri.path().to_owned(),
                headers: parts.headers.clone(),
                body: bytes.clone(),
            });
    }
    let b = control.behaviour(&model);
    if b.hang {
        tokio::time::sleep(HANG_LIMIT).await;
        return json_response(StatusCode::GATEWAY_TIMEOUT, error_body(api, 504, &model));
    }
    if !b.head_delay.is_zero() {
        tokio::time::sleep(b.head_delay).await;
    }
    if let Some(status) = b.status.filter(|s| *s != 200) {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return json_response(code, error_body(api, status, &model));
    }
    let n = control.inner.ids.fetch_add(1, Ordering::Relaxed);
    let (frames, content_type) = reply::answer(api, n, &model, &bytes, &request);
    let streamed = !(b.first_token_delay.is_zero() && b.token_interval.is_zero());
    let body = if !streamed && b.reset_after == 0 {
        if frames.len() == 1 {
            Body::from(frames.into_iter().next().unwrap_or_default())
        } else {
            Body::from(frames.concat())
        }
    } else {
        let (tx, rx) = mpsc::channel(frames.len().max(1));
        let cancelled = Arc::clone(&control.inner);
        tokio::spawn(async move {
            tokio::time::sleep(b.first_token_delay).await;
            for (i, f) in frames.into_iter().enumerate() {
                if i > 0 && !b.token_interval.is_zero() {
                    tokio::time::sleep(b.token_interval).await;
                }
                if b.reset_after > 0 && i == b.reset_after {
                    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
                    let _ = tx.send(Err(reset)).await;
                    return;
                }
                if tx.send(Ok(f)).await.is_err() {
                    // The caller went away: the stream stops here.
                    cancelled.cancelled.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        });
        Body::new(ChannelBody { rx })
    };
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if request.stream {
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    r
}

/// The mock as an axum router.
pub fn router(control: MockControl) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(control)
}

/// A running mock upstream.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    control: MockControl,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    /// Binds `addr` (port 0 for any free port) and serves until stopped. Must run inside a
    /// tokio runtime.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn start(addr: SocketAddr, control: MockControl) -> std::io::Result<MockServer> {
        use axum::serve::ListenerExt;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(control.clone());
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the mock upstream stopped");
            }
        });
        Ok(MockServer {
            addr,
            control,
            stop: Some(stop),
            task,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its control.
    pub fn control(&self) -> &MockControl {
        &self.control
    }

    /// Stops accepting and waits for open requests (hanging ones are cut off).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
    }

    /// Waits until the server stops (it never does unless stopped).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}
