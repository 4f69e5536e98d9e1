//! The attempt loop: for each attempt of a [`Plan`], rewrite the body, call the inner service,
//! race the timer, classify what came back, and report the outcome.
//!
//! An attempt waits for the response head *and* its first body frame (or, when the answer is
//! to be read whole for the metadata merge, the whole JSON body). Until then nothing has been
//! sent to the client, so a 429, a 5xx, an inner error, a body error before the first frame or
//! a timeout moves on to the next attempt. A 4xx other than 429 is the request's fault: the
//! loop stops and the answer is that response. What the loop ends with ([`Attempted`]) is
//! turned into the answer by [`answer`](crate::answer).

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use abroute::{FailureClass, Outcome};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame};
use tower::Service;

use crate::error::BoxError;
use crate::extract::{Api, Extracted};
use crate::include_usage::{UsageAsk, ask_for_usage};
use crate::options::RouterOptions;
use crate::plan::{Plan, UpstreamAttempt};
use crate::rewrite::rewrite;
use crate::time::{Clock, TimedOut, Timer};

/// What an attempt read of a successful response's body before answering.
#[derive(Debug)]
pub(crate) enum Peeked {
    /// The body ended before any data.
    End,
    /// The first frame (data, or trailers).
    Frame(Frame<Bytes>),
    /// The whole body (read for the metadata merge).
    All(Bytes),
    /// Part of the body, then possibly a frame that is not data (or the limit was reached).
    Partial(Bytes, Option<Frame<Bytes>>),
}

/// How long an attempt may take, and how the loop reads a successful answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The binding deadline of an attempt and how its expiry is classified.
    pub(crate) deadline: Option<(Duration, FailureClass)>,
    /// Read a JSON answer whole (for the metadata merge) rather than its first frame.
    pub(crate) read_all: bool,
    /// The most bytes of an answer read whole.
    pub(crate) max_read: usize,
    /// Ask a chat-completions upstream for a stream's usage ([`crate::include_usage`]).
    pub(crate) ask_usage: bool,
}

impl Limits {
    /// The deadline of an attempt: the attempt timeout, or for a streaming request the TTFT
    /// limit when it is shorter (then reported as a slow first token).
    pub(crate) fn deadline(
        attempt_timeout: Option<Duration>,
        ttft: Option<Duration>,
        stream: bool,
    ) -> Option<(Duration, FailureClass)> {
        match (attempt_timeout, ttft.filter(|_| stream)) {
            (Some(a), Some(t)) if t < a => Some((t, FailureClass::SlowFirstToken)),
            (Some(a), _) => Some((a, FailureClass::Timeout)),
            (None, Some(t)) => Some((t, FailureClass::SlowFirstToken)),
            (None, None) => None,
        }
    }
}

/// How the loop ended.
#[derive(Debug)]
pub(crate) enum Attempted<A, B> {
    /// An attempt succeeded (and was reported so).
    Served(Served<A, B>),
    /// An attempt got a 4xx other than 429: the request's fault, answered as is.
    Refused {
        /// The attempt.
        attempt: A,
        /// Its response.
        response: Response<B>,
    },
    /// Every attempt failed.
    Failed(Failed<A, B>),
}

/// A successful attempt.
#[derive(Debug)]
pub(crate) struct Served<A, B> {
    /// The attempt.
    pub(crate) attempt: A,
    /// Its response; the body without what was read into `peeked`.
    pub(crate) response: Response<B>,
    /// What was read of the body.
    pub(crate) peeked: Option<Peeked>,
    /// From the call to the head and first frame (or the whole body).
    pub(crate) latency: Duration,
    /// When the attempt ended.
    pub(crate) now: Duration,
    /// Whether the body asked for the stream's usage, and who did.
    pub(crate) usage_ask: UsageAsk,
}

/// Every attempt failed.
#[derive(Debug)]
pub(crate) struct Failed<A, B> {
    /// The last upstream error response (429, 5xx) and its attempt, if any came.
    pub(crate) last_response: Option<(Response<B>, A)>,
    /// The last attempt made.
    pub(crate) last_attempt: Option<A>,
    /// How many attempts were made.
    pub(crate) tried: usize,
    /// How many of them timed out.
    pub(crate) timeouts: usize,
}

/// What every attempt of one request shares.
pub(crate) struct Walk<'a, C, T> {
    /// The client's request head, sent with each attempt.
    pub(crate) parts: &'a http::request::Parts,
    /// The body, extracted: rewritten for each attempt.
    pub(crate) ex: &'a Extracted<'a>,
    /// How it is rewritten.
    pub(crate) options: &'a RouterOptions,
    /// How long an attempt may take, and how an answer is read.
    pub(crate) limits: Limits,
    /// Latencies and outcomes are timed with it.
    pub(crate) clock: &'a C,
    /// Deadlines are enforced with it.
    pub(crate) timer: &'a T,
}

/// Walks `plan` with `inner`: each attempt's body is the request's rewritten for it, sent with
/// the request's head and the attempt's [`UpstreamAttempt`] in its extensions.
pub(crate) async fn walk<P, S, B, C, T>(
    walk: Walk<'_, C, T>,
    plan: &mut P,
    inner: &mut S,
) -> Attempted<P::Attempt, B>
where
    P: Plan,
    S: Service<Request<Bytes>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Unpin,
    C: Clock,
    T: Timer,
{
    let Walk {
        parts,
        ex,
        options,
        limits,
        clock,
        timer,
    } = walk;
    let mut tried = 0usize;
    let mut timeouts = 0usize;
    let mut last_response = None;
    let mut last_attempt = None;
    let ask_usage = limits.ask_usage && ex.is_stream() && ex.api() == Api::ChatCompletions;
    let mut usage_ask = UsageAsk::Untouched;
    while let Some(attempt) = plan.next_attempt() {
        let info = plan.upstream(&attempt, tried);
        let mut out = rewrite(
            ex,
            &plan
                .settings(&attempt)
                .rewrite(options.body_model(&info.model_id), options.get_precedence()),
        );
        if ask_usage {
            usage_ask = ask_for_usage(&mut out);
        }
        tried += 1;
        last_attempt = Some(attempt);
        let req = attempt_request(parts, out, info);
        let t0 = clock.now();
        let sleep = limits.deadline.map(|(d, _)| timer.sleep(d));
        let result = race(
            call_once(inner, req, limits.read_all, limits.max_read),
            sleep,
        )
        .await;
        let now = clock.now();
        let latency = now.saturating_sub(t0);
        let (response, peeked) = match result {
            None => {
                let class = limits.deadline.map_or(FailureClass::Timeout, |(_, c)| c);
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
        match FailureClass::from_status(response.status().as_u16()) {
            Some(FailureClass::ClientError) => {
                let class = FailureClass::ClientError;
                plan.report(&attempt, Outcome::Failure(class), latency, None, now);
                return Attempted::Refused { attempt, response };
            }
            Some(class) => {
                plan.report(&attempt, Outcome::Failure(class), latency, None, now);
                last_response = Some((response, attempt));
                continue;
            }
            None => {}
        }
        let ttft_seen = ex.is_stream().then_some(latency);
        plan.report(&attempt, Outcome::Success, latency, ttft_seen, now);
        return Attempted::Served(Served {
            attempt,
            response,
            peeked,
            latency,
            now,
            usage_ask,
        });
    }
    Attempted::Failed(Failed {
        last_response,
        last_attempt,
        tried,
        timeouts,
    })
}

/// How an inner service's error is reported: a timeout when its source chain holds a
/// [`TimedOut`] or an `io::Error` of kind `TimedOut`, a server error otherwise.
pub(crate) fn classify_error(e: &(dyn std::error::Error + 'static)) -> FailureClass {
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
) -> Result<(Response<B>, Option<Peeked>), FailureClass>
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
        return Ok((response, None));
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
    Ok((response, Some(peeked)))
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

/// The request of one attempt: the client's head, the rewritten body (with its length), and
/// `info` in the extensions.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_deadline() {
        let s = Duration::from_secs;
        let (timeout, slow) = (FailureClass::Timeout, FailureClass::SlowFirstToken);
        assert_eq!(Limits::deadline(None, None, true), None);
        assert_eq!(
            Limits::deadline(Some(s(9)), None, true),
            Some((s(9), timeout))
        );
        assert_eq!(
            Limits::deadline(Some(s(9)), Some(s(2)), true),
            Some((s(2), slow))
        );
        assert_eq!(
            Limits::deadline(Some(s(1)), Some(s(2)), true),
            Some((s(1), timeout))
        );
        assert_eq!(Limits::deadline(None, Some(s(2)), true), Some((s(2), slow)));
        // The TTFT limit binds streaming requests only.
        assert_eq!(Limits::deadline(None, Some(s(2)), false), None);
        assert_eq!(
            Limits::deadline(Some(s(9)), Some(s(2)), false),
            Some((s(9), timeout))
        );
    }

    #[test]
    fn timeouts_anywhere_in_the_source_chain() {
        #[derive(Debug)]
        struct Wrapped(Box<dyn std::error::Error + 'static>);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&*self.0)
            }
        }
        let io = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(classify_error(&TimedOut), FailureClass::Timeout);
        assert_eq!(
            classify_error(&Wrapped(Box::new(TimedOut))),
            FailureClass::Timeout
        );
        assert_eq!(
            classify_error(&Wrapped(Box::new(io))),
            FailureClass::Timeout
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            classify_error(&Wrapped(Box::new(refused))),
            FailureClass::ServerError
        );
    }
}
