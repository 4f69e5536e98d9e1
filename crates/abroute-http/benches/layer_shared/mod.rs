//! What the `request_level` bench and the `layer_loop` example share: the layer over an inner
//! service that answers at once, the request bodies, and a runtime-free `block_on`.
//!
//! Uses only APIs that predate request-level routing, so the `layer_loop` example builds
//! against the adapter before it too (for before/after instruction counts).

#![allow(clippy::unwrap_used)] // A bench (and its loop example): a failed unwrap is a broken setup.

use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use abroute::{Engine, RouterConfig};
use abroute_http::{AbrouteLayer, Full, LayerOptions};
use bytes::Bytes;
use http::{Request, Response};
use tower::{Layer, Service};

/// The seed router.
pub const SEED: &str = r#"{ "name": "compare-frontier-models", "defaultRoute": { "route_id": "default",
  "variants": [
    { "variant": { "variant_id": "openai/gpt-4o-mini-a", "model_id": "openai/gpt-4o-mini" }, "weight": 33 },
    { "variant": { "variant_id": "openai/gpt-3.5-turbo-b", "model_id": "openai/gpt-3.5-turbo" }, "weight": 33 },
    { "variant": { "variant_id": "openai/gpt-4.1-c", "model_id": "openai/gpt-4.1" }, "weight": 34 } ] } }"#;

/// The kinds of request measured.
pub const KINDS: [&str; 4] = ["routed", "pass-through", "direct", "auto"];

/// A ~1 KB chat body of `kind`: routed (`inworld/compare-frontier-models`, with metadata and
/// a request model), pass-through (`openai/gpt-4o-mini`, no router keys), direct
/// (`openai/gpt-4o-mini` with `extra_body.models`), auto (`auto` by price over three models).
pub fn body(kind: &str) -> Bytes {
    let prose = "The quarterly report shows revenue growth of 12% \u{2014} mostly from the \
                 enterprise tier; please summarize the main drivers and list risks. ";
    let messages: Vec<String> = (0..4)
        .map(|i| format!(r#"{{"role":"user","content":"Turn {i}. {prose}{prose}"}}"#))
        .collect();
    let messages = messages.join(",");
    let (model, extra) = match kind {
        "routed" => (
            "inworld/compare-frontier-models",
            r#","extra_body":{"metadata":{"tier":"premium"},"models":["openai/gpt-4.1"]}"#,
        ),
        "pass-through" => ("openai/gpt-4o-mini", ""),
        "direct" => (
            "openai/gpt-4o-mini",
            r#","extra_body":{"models":["openai/gpt-4.1"]}"#,
        ),
        _ => (
            "auto",
            r#","extra_body":{"sort":["price"],"models":["openai/gpt-4.1","openai/gpt-4o-mini","openai/gpt-5-nano"]}"#,
        ),
    };
    Bytes::from(format!(
        r#"{{"model":"{model}","messages":[{messages}],"user":"user-1234","temperature":0.7{extra}}}"#
    ))
}

/// An upstream that answers every call at once with a small JSON body.
#[derive(Clone, Copy)]
pub struct Answer;

impl Service<Request<Bytes>> for Answer {
    type Response = Response<Full>;
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Response<Full>, std::convert::Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        std::hint::black_box(req.body().len());
        let mut r = Response::new(Full::new(Bytes::from_static(
            br#"{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
        )));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        ready(Ok(r))
    }
}

/// The layer as the gateway sets it up (metadata merged, records in the extensions) over
/// [`Answer`], with the seed router loaded.
pub fn service() -> impl Service<
    Request<Full>,
    Response = Response<abroute_http::AbrouteBody<Full>>,
    Error = std::convert::Infallible,
> {
    let engine = Arc::new(Engine::new());
    engine
        .upsert(RouterConfig::from_json(SEED).unwrap())
        .unwrap();
    AbrouteLayer::new(engine)
        .layer_options(
            LayerOptions::new()
                .merge_metadata(true)
                .record_extension(true),
        )
        .layer(Answer)
}

/// A POST of `body` to `/v1/chat/completions`.
pub fn request(body: &Bytes) -> Request<Full> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .unwrap()
}

/// Polls a future that never waits (the inner service is ready at once) to completion.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// One request of `body` through `svc`, its answer's status.
pub fn one<S>(svc: &mut S, body: &Bytes) -> u16
where
    S: Service<
            Request<Full>,
            Response = Response<abroute_http::AbrouteBody<Full>>,
            Error = std::convert::Infallible,
        >,
{
    match block_on(svc.call(request(body))) {
        Ok(r) => r.status().as_u16(),
        Err(e) => match e {},
    }
}
