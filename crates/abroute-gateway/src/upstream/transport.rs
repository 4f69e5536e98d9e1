//! How a provider's requests travel: over the network, or to a service in this process.
//!
//! Every provider of a real deployment is [`Transport::Network`]: HTTP over TCP (and TLS for
//! `https://`), through the shared pooled clients. [`Transport::InProcess`] hands the request,
//! exactly as it would be sent (URL, headers, the provider's key, the rewritten body), to an
//! axum router in this process, with no socket in between: the gateway uses it for the
//! built-in mock upstream, so that the demo and the load test measure the gateway's own work
//! and not a loopback hop. Which transport a provider gets is decided where the provider list
//! is built ([`Providers::new`](super::Providers::new)); the provider itself does not know.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use abroute_http::BoxError;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;

use super::UpstreamBody;

/// How a provider's requests get to it.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Over the network, through the pooled clients.
    Network,
    /// To a service in this process (the built-in mock upstream).
    InProcess(InProcess),
}

/// A service in this process that answers a provider's requests as its upstream would.
#[derive(Clone)]
pub struct InProcess {
    service: axum::Router,
}

impl fmt::Debug for InProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcess").finish_non_exhaustive()
    }
}

/// The future of one in-process call.
pub(super) type InProcessFuture =
    Pin<Box<dyn Future<Output = Result<Response<UpstreamBody>, BoxError>> + Send>>;

impl InProcess {
    /// Requests answered by `service` (the built-in mock's router, say).
    pub fn new(service: axum::Router) -> InProcess {
        InProcess { service }
    }

    /// Hands `req` (ready to send: URL, headers and body final) to the service.
    pub(super) fn send(&self, req: Request<Bytes>) -> InProcessFuture {
        let req = req.map(axum::body::Body::from);
        let service = self.service.clone();
        Box::pin(async move {
            let response = match tower::ServiceExt::oneshot(service, req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok(response.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
        })
    }
}
