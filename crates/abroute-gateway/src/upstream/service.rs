//! The service that calls upstreams: one attempt in, one response (streaming) out.
//!
//! [`UpstreamService`] is the inner service of the adapter's layer. For each attempt it picks
//! the provider by model id, points the request at the provider's base URL, replaces the
//! client's credentials with the provider's key, drops the hop-by-hop headers, and sends it
//! through the provider's transport. What it cannot send (no provider for the model, a URL that
//! cannot be built) it answers itself, in the OpenAI error shape, with a 502. Failures to
//! connect are logged here, at most once a second per provider, since the layer keeps only the
//! failure's class.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use abroute_http::{BoxError, UpstreamAttempt};
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::connect::Clients;
use super::limits::{ResponseLimits, checked_json};
use super::tls::tls_config;
use super::{Providers, Transport, UpstreamBody};

/// Headers that belong to one hop (RFC 9110, 7.6.1) or to abroute, never forwarded.
const DROPPED_REQUEST_HEADERS: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    // Upstreams answer plain bytes, so the layer can merge metadata and time the first token.
    header::ACCEPT_ENCODING,
];

/// The service that calls upstreams. Cheap to clone (the pools are shared by every clone).
#[derive(Clone)]
pub struct UpstreamService {
    /// The pools of the providers reached over the network.
    clients: Clients,
    providers: Arc<Providers>,
    strip_provider: bool,
    /// What a network upstream's answer may cost.
    limits: ResponseLimits,
}

impl fmt::Debug for UpstreamService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamService")
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

impl UpstreamService {
    /// A service over these providers, setting up each connection (TCP connect and TLS
    /// handshake together) within `connect_timeout`. `strip_provider` also applies to requests
    /// that do not name a router.
    ///
    /// # Errors
    ///
    /// When the TLS settings cannot be made (a provider's root certificate is unusable).
    pub fn new(
        providers: Arc<Providers>,
        connect_timeout: Duration,
        strip_provider: bool,
    ) -> Result<Self, String> {
        Self::with_limits(
            providers,
            connect_timeout,
            strip_provider,
            ResponseLimits::default(),
        )
    }

    /// [`UpstreamService::new`] with the limits on the answers of network upstreams (see
    /// [`ResponseLimits`]).
    ///
    /// # Errors
    ///
    /// As [`UpstreamService::new`].
    pub fn with_limits(
        providers: Arc<Providers>,
        connect_timeout: Duration,
        strip_provider: bool,
        limits: ResponseLimits,
    ) -> Result<Self, String> {
        let tls = tls_config(&providers)?;
        Ok(UpstreamService {
            clients: Clients::new(&tls, connect_timeout, &limits),
            providers,
            strip_provider,
            limits,
        })
    }

    /// The providers.
    pub fn providers(&self) -> &Providers {
        &self.providers
    }
}

/// An error and its sources, `: `-separated.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

/// An answer made here (no provider for the model): OpenAI-shaped, 502.
fn local_error(status: StatusCode, code: &str, message: &str) -> Response<UpstreamBody> {
    let body = serde_json::json!({"error": {
        "message": message, "type": "api_error", "code": code, "param": null }});
    let mut r = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The body of a request that names no router, with its model's provider part removed (when
/// `strip`) and every other byte as the client sent it ([`abroute_http::set_model`]).
fn pass_through_model(body: &Bytes, strip: bool) -> (Option<String>, Bytes) {
    #[derive(serde::Deserialize)]
    struct Model {
        model: Option<String>,
    }
    let Ok(Model { model: Some(model) }) = serde_json::from_slice::<Model>(body) else {
        return (None, body.clone());
    };
    if !strip || !model.contains('/') {
        return (Some(model), body.clone());
    }
    let bare = abroute::ModelId::new(&model).name();
    let out = abroute_http::set_model(body, bare).map_or_else(|| body.clone(), Bytes::from);
    (Some(model), out)
}

impl tower::Service<Request<Bytes>> for UpstreamService {
    type Response = Response<UpstreamBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<UpstreamBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let (mut parts, mut body) = req.into_parts();
        let model = match parts.extensions.get::<UpstreamAttempt>() {
            Some(a) => Some(a.model_id.clone()),
            None => {
                let (model, rewritten) = pass_through_model(&body, self.strip_provider);
                body = rewritten;
                model
            }
        };
        let endpoint = match model.as_deref() {
            Some(m) => self.providers.pick(m),
            None => self.providers.any(),
        };
        let Some(endpoint) = endpoint else {
            let message = match &model {
                Some(m) => format!("no provider is configured for model {m:?}"),
                None => "the request names no model and no `*` provider is configured".into(),
            };
            return Box::pin(async move {
                Ok(local_error(
                    StatusCode::BAD_GATEWAY,
                    "no_provider",
                    &message,
                ))
            });
        };
        let provider = &endpoint.provider;
        let pq = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        parts.uri = match provider.base.join(pq) {
            Ok(uri) => uri,
            Err(e) => {
                let message = format!("cannot build the upstream URL: {e}");
                return Box::pin(async move {
                    Ok(local_error(
                        StatusCode::BAD_GATEWAY,
                        "bad_upstream_url",
                        &message,
                    ))
                });
            }
        };
        let headers = &mut parts.headers;
        for h in &DROPPED_REQUEST_HEADERS {
            headers.remove(h);
        }
        // The client's credentials were for abroute; the provider gets its own.
        abroute_http::strip_credentials(headers);
        if let Some(auth) = &provider.authorization {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        parts.version = http::Version::HTTP_11;
        match &endpoint.transport {
            Transport::InProcess(local) => return local.send(Request::from_parts(parts, body)),
            Transport::Network => {}
        }
        let req = Request::from_parts(parts, Full::new(body));
        let client = self.clients.get(provider.http2);
        let fut = client.request(req);
        let provider = Arc::clone(provider);
        let limits = self.limits;
        Box::pin(async move {
            let response = fut.await.map_err(|e| {
                // The layer keeps only the failure's class: say here what went wrong (a refused
                // connection, a certificate that is not trusted, ...).
                if e.is_connect() {
                    // At most one a second per provider: an outage under load would
                    // otherwise log one line per request.
                    if let Some(suppressed) = provider.connect_warnings.allow() {
                        tracing::warn!(provider = %provider.name, base = %provider.base,
                            error = %ErrorChain(&e), suppressed,
                            "cannot connect to the upstream");
                    }
                } else {
                    tracing::debug!(provider = %provider.name, base = %provider.base,
                        error = %ErrorChain(&e), "upstream request failed");
                }
                Box::new(e) as BoxError
            })?;
            let (mut head, body) = response.into_parts();
            head.headers.remove(header::CONNECTION);
            head.headers.remove("keep-alive");
            head.headers.remove(header::TRANSFER_ENCODING);
            let response = Response::from_parts(
                head,
                body.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
            );
            checked_json(response, &limits).await.inspect_err(|e| {
                tracing::debug!(provider = %provider.name, base = %provider.base,
                    error = %e, "the upstream's answer broke a limit");
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_through_strips() {
        let (m, b) = pass_through_model(&Bytes::from(r#"{"model":"openai/gpt-4.1","x":1}"#), true);
        assert_eq!(m.as_deref(), Some("openai/gpt-4.1"));
        assert_eq!(&b[..], br#"{"model":"gpt-4.1","x":1}"#);
        // Byte for byte: spacing, key order, number spellings and escapes stay as sent.
        let sent =
            "{ \"z\" : 1.50e0,\n  \"model\" : \"openai/gpt-4.1\", \"s\":\"\\u00e9\", \"a\":[ ] }";
        let (m, b) = pass_through_model(&Bytes::from(sent), true);
        assert_eq!(m.as_deref(), Some("openai/gpt-4.1"));
        assert_eq!(
            std::str::from_utf8(&b).expect("UTF-8"),
            sent.replace("openai/gpt-4.1", "gpt-4.1")
        );
        // Without strip, or for a bare model, the body is the one sent.
        let (_, b) = pass_through_model(&Bytes::from(sent), false);
        assert_eq!(&b[..], sent.as_bytes());
    }
}
