//! What an upstream's answer may cost: the size of its head, the size of a body that is not a
//! stream, the silence between two body frames, and whether a JSON answer is JSON.
//!
//! An upstream is trusted to serve models, not to be well behaved: a broken or hostile one can
//! send a head of a megabyte, a body that never ends, a stream that goes quiet for an hour, or
//! `Content-Type: application/json` over something that is not JSON. Each of these fails the
//! attempt with an error here, so the layer fails over while nothing has been sent to the client
//! (and answers 502, or 504 when every attempt timed out, when no attempt is left):
//!
//! | fault | where it is caught | the attempt's failure |
//! |---|---|---|
//! | a head over `max_upstream_head_bytes` | hyper's read buffer ([`ResponseLimits::head_bytes`]) | server error |
//! | a body that is not an event stream over `max_upstream_body_bytes` | [`GuardedBody`] | server error |
//! | no body frame for `upstream_idle_timeout` | [`GuardedBody`] | timeout (server error while the layer reads a JSON answer whole) |
//! | a successful `application/json` answer that is not JSON | [`checked_json`] | server error |
//!
//! A JSON answer is read whole here (within the body limit) and parsed once without building
//! anything (`serde::de::IgnoredAny`), then handed on as one frame: the layer reads such an
//! answer whole anyway to merge its metadata, so the bytes are held once either way. An event
//! stream is passed on frame by frame, each frame as it comes; after its first frame has been
//! sent to the client a fault can only end the stream.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use abroute_http::BoxError;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};

use super::UpstreamBody;

/// The limits on an upstream's answers (`[limits]`'s `max_upstream_*` and
/// `upstream_idle_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// The largest response head (status line and headers), in bytes: hyper's read buffer for
    /// HTTP/1.1 (at least 8 KiB, hyper's floor), the header list size for HTTP/2.
    pub head_bytes: usize,
    /// The largest body of an answer that is not an event stream, in bytes.
    pub body_bytes: u64,
    /// The longest silence between two body frames (and before the first).
    pub idle: Duration,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        ResponseLimits {
            head_bytes: 64 * 1024,
            body_bytes: 32 * 1024 * 1024,
            idle: Duration::from_secs(120),
        }
    }
}

impl ResponseLimits {
    /// hyper's HTTP/1.1 read buffer: the head limit, raised to hyper's floor of 8 KiB.
    pub(super) fn h1_buffer(&self) -> usize {
        self.head_bytes.max(8192)
    }

    /// The HTTP/2 header list size, within `u32`.
    pub(super) fn h2_header_list(&self) -> u32 {
        u32::try_from(self.head_bytes).unwrap_or(u32::MAX)
    }
}

/// Whether a head says its body is an event stream (`text/event-stream`).
fn is_event_stream(headers: &HeaderMap) -> bool {
    content_type_is(headers, "text/event-stream")
}

/// Whether a head says its body is JSON (`application/json`, parameters allowed).
fn is_json(headers: &HeaderMap) -> bool {
    content_type_is(headers, "application/json")
}

fn content_type_is(headers: &HeaderMap, kind: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim_start().as_bytes();
            v.len() >= kind.len() && v[..kind.len()].eq_ignore_ascii_case(kind.as_bytes())
        })
}

/// The error of an answer over a limit: an `io::Error` (`TimedOut` for the silence, so the
/// layer classifies it as a timeout; `InvalidData` for the rest).
fn limit_error(kind: std::io::ErrorKind, message: String) -> BoxError {
    Box::new(std::io::Error::new(kind, message))
}

/// An upstream body within the limits: at most `remaining` bytes (for a body that is not an
/// event stream) and never silent longer than `idle`.
pub struct GuardedBody {
    inner: UpstreamBody,
    /// Bytes still allowed; `None` for an event stream (unbounded, frame by frame).
    remaining: Option<u64>,
    idle: Duration,
    /// When the last frame came (or the body was made).
    last: tokio::time::Instant,
    /// Made when the body first has to wait: fires at `last + idle` as of when it was set, and
    /// is moved on when a frame came since. A body read without waiting never makes a timer,
    /// and a stream touches the timer once per `idle`, not once per frame.
    silence: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl GuardedBody {
    /// `inner` within `limits`; `stream` lifts the size limit (an event stream).
    pub fn new(inner: UpstreamBody, limits: &ResponseLimits, stream: bool) -> GuardedBody {
        GuardedBody {
            inner,
            remaining: (!stream).then_some(limits.body_bytes),
            idle: limits.idle,
            last: tokio::time::Instant::now(),
            silence: None,
        }
    }
}

impl GuardedBody {
    /// Whether the body has been silent for `idle` (else the timer is set to wake `cx` when it
    /// would have been).
    fn silent(&mut self, cx: &mut Context<'_>) -> bool {
        let due = self.last + self.idle;
        let sleep = self
            .silence
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        if sleep.deadline() >= due {
            return true;
        }
        // It fired, but a frame came since it was set: move it on to `idle` after that frame
        // (so a stream touches the timer once per `idle`, not once per frame).
        sleep.as_mut().reset(due);
        sleep.as_mut().poll(cx).is_ready()
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(left), Some(d)) = (this.remaining.as_mut(), frame.data_ref()) {
                    let n = d.len() as u64;
                    if n > *left {
                        this.remaining = Some(0);
                        return Poll::Ready(Some(Err(limit_error(
                            std::io::ErrorKind::InvalidData,
                            "the upstream's answer is larger than limits.max_upstream_body_bytes"
                                .to_owned(),
                        ))));
                    }
                    *left -= n;
                }
                this.last = tokio::time::Instant::now();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                if this.silent(cx) {
                    return Poll::Ready(Some(Err(limit_error(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the upstream sent nothing for {} ms (limits.upstream_idle_timeout)",
                            this.idle.as_millis()
                        ),
                    ))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer within `limits`: a successful JSON answer read whole and checked to be JSON (one
/// frame on), any other body guarded frame by frame ([`GuardedBody`]).
///
/// # Errors
///
/// A JSON answer that is larger than the body limit, goes silent, fails to arrive whole, or is
/// not JSON: the attempt fails (and the layer fails over).
pub async fn checked_json(
    response: Response<UpstreamBody>,
    limits: &ResponseLimits,
) -> Result<Response<UpstreamBody>, BoxError> {
    let (head, body) = response.into_parts();
    let stream = is_event_stream(&head.headers);
    let body = GuardedBody::new(body, limits, stream);
    if stream || !head.status.is_success() || !is_json(&head.headers) {
        return Ok(Response::from_parts(head, body.boxed_unsync()));
    }
    let bytes = body.collect().await?.to_bytes();
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        return Err(limit_error(
            std::io::ErrorKind::InvalidData,
            format!("the upstream's answer says application/json but is not JSON: {e}"),
        ));
    }
    Ok(Response::from_parts(
        head,
        Full::new(bytes).map_err(|e| match e {}).boxed_unsync(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// A body of these chunks, then its end; or, with `None`, a body that never sends.
    struct Chunks(Option<std::vec::IntoIter<&'static str>>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            match self.0.as_mut() {
                None => Poll::Pending,
                Some(it) => Poll::Ready(it.next().map(|c| Ok(Frame::data(Bytes::from(c))))),
            }
        }
    }

    fn response(content_type: &str, chunks: Option<Vec<&'static str>>) -> Response<UpstreamBody> {
        let mut r = Response::new(Chunks(chunks.map(Vec::into_iter)).boxed_unsync());
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        r
    }

    fn small() -> ResponseLimits {
        ResponseLimits {
            head_bytes: 8192,
            body_bytes: 10,
            idle: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn json_answers_are_checked_and_bounded() {
        let json = |c: Vec<&'static str>| response("application/json; charset=utf-8", Some(c));
        let ok = checked_json(json(vec!["{\"a\":", "1}"]), &small())
            .await
            .expect("JSON within the limit");
        let body = ok.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"{\"a\":1}");
        let e = checked_json(json(vec!["{\"a\":"]), &small())
            .await
            .expect_err("truncated JSON fails");
        assert!(e.to_string().contains("not JSON"), "{e}");
        let e = checked_json(json(vec!["{\"a\":", "\"0123456\"}"]), &small())
            .await
            .expect_err("over the limit fails");
        assert!(e.to_string().contains("max_upstream_body_bytes"), "{e}");
    }

    #[tokio::test]
    async fn streams_are_unbounded_and_other_bodies_bounded() {
        let long = vec!["0123456789"; 3];
        let r = checked_json(response("text/event-stream", Some(long.clone())), &small())
            .await
            .unwrap();
        let body = r
            .into_body()
            .collect()
            .await
            .expect("a stream has no size limit");
        assert_eq!(body.to_bytes().len(), 30);
        let r = checked_json(response("text/plain", Some(long)), &small())
            .await
            .unwrap();
        assert!(
            r.into_body().collect().await.is_err(),
            "a plain body is bounded"
        );
    }

    #[tokio::test]
    async fn silence_fails_the_body() {
        let limits = ResponseLimits {
            idle: Duration::from_millis(50),
            ..small()
        };
        let r = checked_json(response("text/event-stream", None), &limits)
            .await
            .unwrap();
        let e = r.into_body().collect().await.expect_err("silence fails");
        let io = e.downcast_ref::<std::io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    }

    /// A body that sends a frame every `gap`, `n` times.
    struct Ticking {
        gap: Duration,
        left: usize,
        sleep: Pin<Box<tokio::time::Sleep>>,
    }

    impl Body for Ticking {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.left -= 1;
            let next = tokio::time::Instant::now() + self.gap;
            self.sleep.as_mut().reset(next);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"data: x\n\n")))))
        }
    }

    #[tokio::test]
    async fn a_stream_that_keeps_talking_is_never_silent() {
        // 12 frames 30 ms apart: 360 ms in all, each gap within the 100 ms idle limit.
        let limits = ResponseLimits {
            idle: Duration::from_millis(100),
            ..small()
        };
        let gap = Duration::from_millis(30);
        let body = Ticking {
            gap,
            left: 12,
            sleep: Box::pin(tokio::time::sleep(gap)),
        };
        let mut r = Response::new(body.boxed_unsync());
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        let r = checked_json(r, &limits).await.unwrap();
        let all = r
            .into_body()
            .collect()
            .await
            .expect("never silent for 100 ms");
        assert_eq!(all.to_bytes().len(), 12 * 9);
    }
}
