//! Connections to upstreams: the connector (TCP, then TLS for `https://`, bounded by one
//! timeout) and the two pooled clients built on it.
//!
//! The pools live here, apart from the service, because they are the part with a lifetime of
//! its own: connections are set up once and reused for many requests (a TLS handshake is paid
//! per connection, not per request). [`Clients`] holds one client that offers HTTP/2 in the
//! TLS handshake (an upstream that agrees gets one multiplexed connection per host) and one
//! that offers only HTTP/1.1 (a pool of keep-alive connections), for providers with
//! `http2 = false`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use abroute_http::BoxError;
use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;

use super::limits::ResponseLimits;

/// A pooled client for every provider of one HTTP version policy.
pub(super) type PooledClient = Client<TimedConnector<HttpsConnector<HttpConnector>>, Full<Bytes>>;

/// The pooled clients every provider reached over the network shares.
#[derive(Clone)]
pub(super) struct Clients {
    /// Offers `h2` then `http/1.1` in the TLS handshake: an upstream that picks `h2` gets one
    /// multiplexed connection.
    h2: PooledClient,
    /// Offers only `http/1.1`: a pool of keep-alive connections.
    h1: PooledClient,
}

impl Clients {
    /// Both clients over `tls`, setting up each connection (TCP connect and TLS handshake
    /// together) within `connect_timeout`.
    /// `limits` bounds each response head (hyper's HTTP/1.1 read buffer, the HTTP/2 header
    /// list).
    pub(super) fn new(
        tls: &ClientConfig,
        connect_timeout: Duration,
        limits: &ResponseLimits,
    ) -> Clients {
        let mut connector = HttpConnector::new();
        // `https://` URIs reach it through the TLS wrapper, which handles the scheme.
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = |alpn: &[&[u8]]| {
            let mut tls = tls.clone();
            tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            // `http://` passes straight through to the plain connector. With ALPN `h2` the
            // pool keeps one connection per host and multiplexes on it.
            let connector = TimedConnector {
                inner: HttpsConnector::from((connector.clone(), tls)),
                timeout: connect_timeout,
            };
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(1024)
                .http1_max_buf_size(limits.h1_buffer())
                .http2_max_header_list_size(limits.h2_header_list())
                .build(connector)
        };
        Clients {
            h2: client(&[b"h2", b"http/1.1"]),
            h1: client(&[b"http/1.1"]),
        }
    }

    /// The client for a provider that offers HTTP/2 (`http2`) or not.
    pub(super) fn get(&self, http2: bool) -> &PooledClient {
        if http2 { &self.h2 } else { &self.h1 }
    }
}

/// A connector that bounds the whole connection setup, TCP connect and TLS handshake together,
/// by one timeout (`limits.connect_timeout`). A server that accepts the connection and then
/// stalls the handshake fails the attempt as soon as a refused connection would, instead of
/// holding it until the attempt timeout. The error is an `io::Error` of kind `TimedOut`.
#[derive(Clone)]
pub(super) struct TimedConnector<C> {
    inner: C,
    timeout: Duration,
}

impl<C> tower::Service<Uri> for TimedConnector<C>
where
    C: tower::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(done) => done.map_err(Into::into),
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the connection (TCP and TLS) was not set up within {} ms",
                        timeout.as_millis()
                    ),
                )) as BoxError),
            }
        })
    }
}
