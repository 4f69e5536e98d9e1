//! Helpers shared by the behaviour tests: a poll loop, routers, a scripted upstream, a
//! management host that records what it committed.
#![allow(dead_code, missing_docs)]
// Helpers run only inside tests; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use abroute::{Engine, RouterConfig};
use abroute_http::{
    BoxError, CommitError, CommitFuture, EngineHost, RouterChange, RouterHost, UpstreamAttempt,
};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};

/// Polls a future to completion without a runtime. Every future in these tests completes
/// without waiting on I/O; one that stays pending is a bug, reported after many polls.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100_000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("the future never completed");
}

/// Reads a whole body.
pub fn body_bytes<B>(body: B) -> Bytes
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut body = pin!(body);
    let mut out = Vec::new();
    block_on(async {
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            if let Ok(d) = frame.expect("body frame").into_data() {
                out.extend_from_slice(&d);
            }
        }
    });
    Bytes::from(out)
}

pub fn engine_with(configs: &[&str]) -> Arc<Engine> {
    let engine = Engine::new();
    for c in configs {
        engine
            .upsert(RouterConfig::from_json(c).expect("test config parses"))
            .expect("test config is valid");
    }
    Arc::new(engine)
}

/// One variant (`main`) with a primary model and a fallback model, and a generation config.
pub const FAILOVER: &str = r#"{ "name": "fo", "defaultRoute": { "route_id": "default",
  "variants": [ { "variant": { "variant_id": "main", "model_id": "p/primary",
    "model_selection": { "models": ["q/backup"] },
    "text_generation_config": { "temperature": 0.5 } }, "weight": 100 } ] },
  "defaults": { "text_generation_config": { "temperature": 0.9, "max_tokens": 10 } } }"#;

/// A conditional route only: nothing matches, so every request gets "no route matched".
pub const NO_DEFAULT: &str = r#"{ "name": "nd", "routes": [ { "route": { "route_id": "gold",
  "variants": [ { "variant": { "variant_id": "g", "model_id": "p/gold" }, "weight": 1 } ] },
  "condition": { "cel_expression": "tier == \"gold\"" } } ] }"#;

/// What the scripted upstream does for a model.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// Answers with this status and body.
    Status(u16, &'static str),
    /// Answers 200 as an event stream whose first frame never comes.
    StallBody,
    /// Answers 200 whose body fails before any data.
    BodyError,
    /// Never answers.
    Hang,
    /// Fails with this error.
    Fail(fn() -> BoxError),
}

/// A body for the scripted upstream.
#[derive(Debug)]
pub enum TestBody {
    Bytes(Option<Bytes>),
    Stall,
    Error,
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut *self {
            TestBody::Bytes(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            TestBody::Stall => Poll::Pending,
            TestBody::Error => Poll::Ready(Some(Err("upstream body broke".into()))),
        }
    }
}

/// One call the upstream saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub attempt: Option<UpstreamAttempt>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub path: String,
}

/// An upstream scripted by model id (`*` for any other, including pass-through calls).
#[derive(Clone, Default)]
pub struct Upstream {
    pub script: Arc<Mutex<HashMap<String, Behavior>>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub fn new(script: &[(&str, Behavior)]) -> Upstream {
        let u = Upstream::default();
        for (m, b) in script {
            u.script.lock().unwrap().insert((*m).to_owned(), b.clone());
        }
        u
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn models(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .map(|s| s.attempt.map(|a| a.model_id).unwrap_or_else(|| "-".into()))
            .collect()
    }
}

impl tower::Service<Request<Bytes>> for Upstream {
    type Response = Response<TestBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<TestBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let attempt = req.extensions().get::<UpstreamAttempt>().cloned();
        let key = attempt
            .as_ref()
            .map_or("*".to_owned(), |a| a.model_id.clone());
        let behavior = {
            let script = self.script.lock().unwrap();
            script
                .get(&key)
                .or_else(|| script.get("*"))
                .cloned()
                .unwrap_or(Behavior::Status(200, r#"{"id":"ok"}"#))
        };
        self.seen.lock().unwrap().push(Seen {
            attempt,
            headers: req.headers().clone(),
            body: req.body().clone(),
            path: req.uri().path().to_owned(),
        });
        Box::pin(async move {
            let response = |status: u16, body: TestBody, ctype: &'static str| {
                let mut r = Response::new(body);
                *r.status_mut() = StatusCode::from_u16(status).unwrap();
                r.headers_mut()
                    .insert(http::header::CONTENT_TYPE, ctype.parse().unwrap());
                r
            };
            match behavior {
                Behavior::Status(s, b) => Ok(response(
                    s,
                    TestBody::Bytes(Some(Bytes::from_static(b.as_bytes()))),
                    "application/json",
                )),
                Behavior::StallBody => Ok(response(200, TestBody::Stall, "text/event-stream")),
                Behavior::BodyError => Ok(response(200, TestBody::Error, "application/json")),
                Behavior::Hang => std::future::pending().await,
                Behavior::Fail(e) => Err(e()),
            }
        })
    }
}

/// A timer whose sleeps end at once: any attempt not ready on its first poll times out.
#[derive(Debug, Clone, Copy)]
pub struct ImmediateTimer;

impl abroute_http::Timer for ImmediateTimer {
    type Sleep = std::future::Ready<()>;
    fn sleep(&self, _d: std::time::Duration) -> Self::Sleep {
        std::future::ready(())
    }
}

/// A POST with a JSON body and its content-length, as a client sends it.
pub fn post(path: &str, body: &str) -> Request<abroute_http::Full> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(abroute_http::Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

pub fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

/// A body of frames given in advance.
pub struct Frames(pub std::collections::VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// A tiny deterministic generator (xorshift64) for the shapes property tests vary by hand.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A response header as text (empty when absent).
pub fn header<B>(r: &Response<B>, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// A management host for tests: applies changes to an engine ([`EngineHost`]) and records what
/// it committed, as a store would hold it. It can be told to fail (every commit is then
/// refused as unavailable and nothing changes), to refuse changes to some routers
/// ([`RouterHost::may_change`]), and to run something just before its next commit (another
/// writer racing the API).
pub struct TestHost {
    engine: EngineHost,
    stored: Mutex<BTreeMap<String, RouterConfig>>,
    failing: AtomicBool,
    protected: Mutex<BTreeMap<String, String>>,
    before_commit: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    commits: Mutex<Vec<RouterChange>>,
}

impl TestHost {
    pub fn new(engine: Arc<Engine>) -> TestHost {
        TestHost {
            engine: EngineHost::new(engine),
            stored: Mutex::default(),
            failing: AtomicBool::new(false),
            protected: Mutex::default(),
            before_commit: Mutex::default(),
            commits: Mutex::default(),
        }
    }

    /// Makes every later commit fail (or succeed again).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Refuses every change of router `name`, with `reason`.
    pub fn protect(&self, name: &str, reason: &str) {
        self.protected
            .lock()
            .unwrap()
            .insert(name.to_owned(), reason.to_owned());
    }

    /// Runs `f` at the start of the next commit, before the expectation is checked.
    pub fn before_next_commit(&self, f: impl FnOnce() + Send + 'static) {
        *self.before_commit.lock().unwrap() = Some(Box::new(f));
    }

    /// The stored names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.stored.lock().unwrap().keys().cloned().collect()
    }

    /// The stored router `name`.
    pub fn get(&self, name: &str) -> Option<RouterConfig> {
        self.stored.lock().unwrap().get(name).cloned()
    }

    /// Every stored router: what a restart loads.
    pub fn stored(&self) -> Vec<RouterConfig> {
        self.stored.lock().unwrap().values().cloned().collect()
    }

    /// Every change asked of the host, committed or not.
    pub fn commits(&self) -> Vec<RouterChange> {
        self.commits.lock().unwrap().clone()
    }

    fn apply(&self, change: RouterChange) -> Result<abroute_http::Committed, CommitError> {
        self.commits.lock().unwrap().push(change.clone());
        if let Some(f) = self.before_commit.lock().unwrap().take() {
            f();
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(CommitError::Unavailable(
                "the test host was told to fail".into(),
            ));
        }
        let stored = match &change {
            RouterChange::Put { config, .. } => Some(config.clone()),
            RouterChange::Delete { .. } => None,
        };
        let name = change.name().to_owned();
        let committed = self.engine.apply(change)?;
        let mut all = self.stored.lock().unwrap();
        match stored {
            Some(config) => {
                all.insert(name, config);
            }
            None => {
                all.remove(&name);
            }
        }
        Ok(committed)
    }
}

impl RouterHost for TestHost {
    fn may_change(&self, name: &str) -> Result<(), String> {
        match self.protected.lock().unwrap().get(name) {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }

    fn commit(&self, change: RouterChange) -> CommitFuture<'_> {
        let result = self.apply(change);
        Box::pin(std::future::ready(result))
    }
}
