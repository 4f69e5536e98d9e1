//! Bodies: a whole-bytes body, the layer's response body, and reading a body with a limit.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::error::BoxError;
use crate::stream::MetadataTap;
use crate::stream_tap::{StreamError, StreamTap};

/// A body that is one `Bytes` (or nothing): what the management API and error responses use.
#[derive(Debug, Clone, Default)]
pub struct Full(Option<Bytes>);

impl Full {
    /// A body of these bytes.
    pub fn new(bytes: Bytes) -> Full {
        Full((!bytes.is_empty()).then_some(bytes))
    }
}

impl From<Bytes> for Full {
    fn from(bytes: Bytes) -> Full {
        Full::new(bytes)
    }
}

impl Body for Full {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// The response body of the [`AbrouteLayer`](crate::AbrouteLayer): the upstream's body (with
/// the frames the layer already read replayed first, and in an event stream with merged
/// metadata, the metadata event inserted: see [`stream`](crate::stream)), or bytes the layer
/// wrote itself (an error, or a body with merged metadata).
#[derive(Debug)]
pub struct AbrouteBody<B> {
    kind: Kind<B>,
    /// Set for a routed event stream the host observes (see [`stream_tap`](crate::stream_tap)).
    stream: Option<Box<StreamTap>>,
}

#[derive(Debug)]
enum Kind<B> {
    Full(Option<Bytes>),
    Inner {
        buffered: Option<Bytes>,
        pending: Option<Frame<Bytes>>,
        inner: B,
        /// Set for an event stream that gets the metadata event.
        tap: Option<Box<MetadataTap>>,
    },
}

impl<B> AbrouteBody<B> {
    /// A body of bytes the layer wrote.
    pub fn full(bytes: Bytes) -> AbrouteBody<B> {
        AbrouteBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            stream: None,
        }
    }

    /// The upstream's body, untouched.
    pub fn inner(inner: B) -> AbrouteBody<B> {
        AbrouteBody::replay(None, None, inner)
    }

    /// The upstream's body after the layer read `buffered` data and then `pending` (a frame)
    /// from it.
    pub(crate) fn replay(
        buffered: Option<Bytes>,
        pending: Option<Frame<Bytes>>,
        inner: B,
    ) -> AbrouteBody<B> {
        AbrouteBody {
            kind: Kind::Inner {
                buffered: buffered.filter(|b| !b.is_empty()),
                pending,
                inner,
                tap: None,
            },
            stream: None,
        }
    }

    /// This body (the upstream's) with the metadata event inserted by `tap`.
    pub(crate) fn with_tap(mut self, with: Box<MetadataTap>) -> AbrouteBody<B> {
        if let Kind::Inner { tap, .. } = &mut self.kind {
            *tap = Some(with);
        }
        self
    }

    /// This body passed through the stream tap `tap` (after the metadata tap, if any).
    pub(crate) fn with_stream_tap(mut self, tap: Box<StreamTap>) -> AbrouteBody<B> {
        self.stream = Some(tap);
        self
    }
}

impl<B> AbrouteBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// The body through its stream tap: whole events, and a clean end after a failure.
    fn poll_tapped(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let Some(tap) = self.stream.as_mut() else {
                return Poll::Ready(None);
            };
            if let Some(f) = tap.pop() {
                return Poll::Ready(Some(Ok(f)));
            }
            if tap.ended() {
                return Poll::Ready(None);
            }
            let next = match poll_kind(&mut self.kind, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(next) => next,
            };
            let Some(tap) = self.stream.as_mut() else {
                return Poll::Ready(None);
            };
            match next {
                None => tap.end(),
                Some(Err(e)) => tap.fail(StreamError::of_upstream(&*e)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => tap.push(data),
                    Err(trailers) => tap.trailers(trailers),
                },
            }
        }
    }
}

impl<B> Body for AbrouteBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.stream.is_some() {
            return self.poll_tapped(cx);
        }
        poll_kind(&mut self.kind, cx)
    }

    fn is_end_stream(&self) -> bool {
        if let Some(tap) = &self.stream {
            return tap.drained();
        }
        self.kind_is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let h = self.kind_size_hint();
        if self.stream.is_some() {
            // The tap may remove an event or add the error event: no upper bound.
            let mut out = SizeHint::new();
            out.set_lower(0);
            return out;
        }
        h
    }
}

/// The body's frames before the stream tap.
fn poll_kind<B>(
    kind: &mut Kind<B>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    {
        match kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Inner {
                buffered,
                pending,
                inner,
                tap: Some(tap),
            } => loop {
                if let Some(out) = tap.pop() {
                    return Poll::Ready(Some(out));
                }
                if tap.ended() {
                    return Poll::Ready(None);
                }
                let next = if let Some(b) = buffered.take() {
                    Some(Ok(Frame::data(b)))
                } else if let Some(f) = pending.take() {
                    Some(Ok(f))
                } else {
                    match Pin::new(&mut *inner).poll_frame(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(f) => f.map(|r| r.map_err(Into::into)),
                    }
                };
                match next {
                    Some(Ok(frame)) => {
                        if let Some(whole) = tap.push(frame) {
                            return Poll::Ready(Some(Ok(whole)));
                        }
                    }
                    Some(Err(e)) => tap.fail(e),
                    None => tap.end(),
                }
            },
            Kind::Inner {
                buffered,
                pending,
                inner,
                tap: None,
            } => {
                if let Some(b) = buffered.take() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                if let Some(f) = pending.take() {
                    return Poll::Ready(Some(Ok(f)));
                }
                Pin::new(inner)
                    .poll_frame(cx)
                    .map(|f| f.map(|r| r.map_err(Into::into)))
            }
        }
    }
}

impl<B: Body> AbrouteBody<B> {
    fn kind_is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Inner { tap: Some(tap), .. } => tap.drained(),
            Kind::Inner {
                buffered,
                pending,
                inner,
                tap: None,
            } => buffered.is_none() && pending.is_none() && inner.is_end_stream(),
        }
    }

    fn kind_size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Inner {
                buffered,
                pending,
                inner,
                tap,
            } => {
                let extra = buffered.as_ref().map_or(0, |b| b.len() as u64)
                    + pending
                        .as_ref()
                        .and_then(Frame::data_ref)
                        .map_or(0, |b| b.len() as u64);
                let h = inner.size_hint();
                let mut out = SizeHint::new();
                // With a tap, the event adds bytes and held ones are in neither count: the lower
                // bound stays true, and there is no upper one.
                out.set_lower(h.lower() + extra);
                if let (Some(upper), None) = (h.upper(), tap) {
                    out.set_upper(upper + extra);
                }
                out
            }
        }
    }
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// More than the limit.
    TooLarge,
    /// The body failed.
    Failed,
}

/// The `content-length` header, if present and a number.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads a whole body, refusing more than `limit` bytes (before reading anything when the
/// declared length already exceeds it). A body of one frame is returned without copying.
/// Trailers are dropped.
pub(crate) async fn read_limited<B>(
    body: B,
    limit: usize,
    declared: Option<u64>,
) -> Result<Bytes, ReadError>
where
    B: Body,
{
    let limit64 = limit as u64;
    if declared.is_some_and(|n| n > limit64) || body.size_hint().lower() > limit64 {
        return Err(ReadError::TooLarge);
    }
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut rest: Option<Vec<u8>> = None;
    let mut total = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|_| ReadError::Failed)?;
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let n = data.remaining();
        total = total.saturating_add(n);
        if total > limit {
            return Err(ReadError::TooLarge);
        }
        if let Some(v) = rest.as_mut() {
            put_buf(v, &mut data);
        } else if let Some(f) = first.take() {
            let hint = usize::try_from(declared.unwrap_or(0))
                .unwrap_or(0)
                .clamp(total, limit);
            let mut v = Vec::with_capacity(hint);
            v.extend_from_slice(&f);
            put_buf(&mut v, &mut data);
            rest = Some(v);
        } else {
            first = Some(data.copy_to_bytes(n));
        }
    }
    Ok(match (first, rest) {
        (_, Some(v)) => Bytes::from(v),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

fn put_buf(v: &mut Vec<u8>, data: &mut impl Buf) {
    while data.has_remaining() {
        let chunk = data.chunk();
        v.extend_from_slice(chunk);
        let n = chunk.len();
        data.advance(n);
    }
}
