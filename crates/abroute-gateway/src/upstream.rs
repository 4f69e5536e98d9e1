//! The upstream call: the inner service of the adapter's layer.
//!
//! The layer hands each attempt over as an `http::Request<Bytes>` whose body is already
//! rewritten for the attempt's model, with an [`UpstreamAttempt`] in its extensions. This
//! service picks the provider by the provider part of the model id (`openai` in
//! `openai/gpt-4.1`, else the `*` provider), points the request at the provider's base URL,
//! replaces the client's credentials with the provider's key, and sends it over a pooled
//! connection: HTTP/2 when an `https://` upstream agrees to it in the TLS handshake (one
//! multiplexed connection per host; a provider's `http2 = false` turns the offer off), else
//! keep-alive HTTP/1.1. The response body is passed on as it arrives (SSE included): nothing
//! is buffered here.
//!
//! The clients serve `http://` and `https://` base URLs alike. TLS is rustls with the `ring`
//! provider (TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`), trusting Mozilla's root certificates built into
//! the binary (`webpki-roots`, so no system CA bundle is needed). A provider's `ca_file` adds
//! root certificates (a private CA, a self-signed dev certificate) for that provider's host
//! only: the other hosts are still checked against Mozilla's roots alone. A TLS connection is
//! pooled like a plain one, so the handshake is paid once per connection, not per request.
//!
//! Requests that do not name a router (a plain `openai/gpt-4.1`, say) come without an
//! `UpstreamAttempt`; their body's `model` picks the provider the same way.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use abroute_http::{BoxError, UpstreamAttempt};
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The body of an upstream response as the layer sees it.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// An OpenAI-compatible base URL, split for fast joining: `http(s)://host:port/prefix`.
#[derive(Debug, Clone)]
pub struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    /// The path without a trailing `/` (`/v1`), possibly empty.
    prefix: String,
}

impl BaseUrl {
    /// Parses `http://host:port/path` or `https://host:port/path`.
    ///
    /// # Errors
    ///
    /// When it is not an absolute `http` or `https` URL, or has a query.
    pub fn parse(text: &str) -> Result<BaseUrl, String> {
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("{text:?} needs a scheme (http:// or https://)"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!(
                "{text:?}: the scheme must be http:// or https://, not {scheme}://"
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{text:?} needs a host"))?;
        if uri.query().is_some() {
            return Err(format!("{text:?}: a base URL cannot have a query"));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(BaseUrl {
            scheme,
            authority,
            prefix,
        })
    }

    /// Whether requests to it go over TLS.
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// The host as TLS names it: a DNS name as written (lowercased), an IP address in its
    /// canonical form, without brackets.
    fn tls_host(&self) -> String {
        let host = self.authority.host();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => bare.to_ascii_lowercase(),
        }
    }

    /// The URL for a request path: `/v1/chat/completions` becomes
    /// `<base>/chat/completions` (the base URL carries its own version prefix).
    pub fn join(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let rest = path_and_query
            .strip_prefix("/v1")
            .filter(|r| r.is_empty() || r.starts_with('/') || r.starts_with('?'))
            .unwrap_or(path_and_query);
        let mut pq = String::with_capacity(self.prefix.len() + rest.len());
        pq.push_str(&self.prefix);
        pq.push_str(rest);
        let pq: PathAndQuery = pq.parse()?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.prefix)
    }
}

/// The base URL shown for a provider answered in process.
pub const IN_PROCESS_BASE: &str = "http://in-process.mock/v1";

/// One provider, ready to call.
pub struct Provider {
    /// Its name (`openai`, or `*`).
    pub name: String,
    /// Where to send its requests.
    pub base: BaseUrl,
    /// `Bearer <key>`, marked sensitive.
    authorization: Option<HeaderValue>,
    /// Root certificates trusted for this provider's host besides Mozilla's (its `ca_file`).
    extra_roots: Vec<CertificateDer<'static>>,
    /// The built-in mock, called in process (no socket) instead of `base`.
    in_process: Option<axum::Router>,
    /// Whether HTTP/2 is offered when `base` is `https://`.
    http2: bool,
    /// Failed-connection warnings: at most one a second.
    connect_warnings: WarnLimiter,
}

/// Lets one warning through per interval and counts the others, so that an upstream that is
/// down under load logs a line a second, not a line per request.
#[derive(Debug, Default)]
struct WarnLimiter {
    /// When the last warning went out, in ms since [`WarnLimiter::epoch`] plus one (0: never).
    last: std::sync::atomic::AtomicU64,
    /// Warnings held back since the last one that went out.
    suppressed: std::sync::atomic::AtomicU64,
}

impl WarnLimiter {
    /// The interval between two warnings.
    const INTERVAL_MS: u64 = 1000;

    fn epoch() -> std::time::Instant {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(std::time::Instant::now)
    }

    /// `Some(n)` when a warning may go out now, `n` being how many were held back before it.
    fn allow(&self) -> Option<u64> {
        let now = u64::try_from(Self::epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        self.allow_at(now)
    }

    fn allow_at(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let stamp = now_ms.saturating_add(1);
        let last = self.last.load(Relaxed);
        let due = last == 0 || stamp.saturating_sub(last) >= Self::INTERVAL_MS;
        if due
            && self
                .last
                .compare_exchange(last, stamp, Relaxed, Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Relaxed))
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("base", &self.base.to_string())
            .field("key", &self.authorization.is_some())
            .field("extra_roots", &self.extra_roots.len())
            .field("in_process", &self.in_process.is_some())
            .field("http2", &self.http2)
            .finish()
    }
}

impl Provider {
    /// A provider at `base`, with an optional key.
    ///
    /// # Errors
    ///
    /// When the key cannot be a header value.
    pub fn new(name: &str, base: BaseUrl, key: Option<&str>) -> Result<Provider, String> {
        let authorization = match key {
            Some(k) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {k}"))
                    .map_err(|_| format!("the key of provider {name:?} is not a valid header"))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(Provider {
            name: name.to_owned(),
            base,
            authorization,
            extra_roots: Vec::new(),
            in_process: None,
            http2: true,
            connect_warnings: WarnLimiter::default(),
        })
    }

    /// Offers HTTP/2 (ALPN `h2`, then `http/1.1`) to an `https://` base when `on` (the
    /// default), or only HTTP/1.1. A plain `http://` base always gets HTTP/1.1.
    #[must_use]
    pub fn http2(mut self, on: bool) -> Provider {
        self.http2 = on;
        self
    }

    /// This provider, answered in process by `service` (the built-in mock's router): requests
    /// are handed to it as they would be sent, headers and key included, with no socket in
    /// between. Its `base` then only names it in logs; [`IN_PROCESS_BASE`] is the usual one.
    #[must_use]
    pub fn served_in_process(mut self, service: axum::Router) -> Provider {
        self.in_process = Some(service);
        self
    }

    /// True when answered in process (the built-in mock).
    pub fn is_in_process(&self) -> bool {
        self.in_process.is_some()
    }

    /// Also trusts these root certificates (from [`read_ca_file`]) for this provider's host.
    #[must_use]
    pub fn trust(mut self, roots: Vec<CertificateDer<'static>>) -> Provider {
        self.extra_roots.extend(roots);
        self
    }
}

/// Reads a PEM file of root certificates (a provider's `ca_file`) and checks that each can be a
/// trust anchor.
///
/// # Errors
///
/// When the file cannot be read, is not PEM, holds no certificate, or holds one that cannot be
/// parsed; the message starts with the file's path.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown}: not a PEM file: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{shown}: no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` blocks)"
        ));
    }
    let mut check = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        check
            .add(cert.clone())
            .map_err(|e| format!("{shown}: certificate {} cannot be a root: {e}", i + 1))?;
    }
    Ok(certs)
}

/// Checks server certificates against Mozilla's roots, or, for the hosts of providers with a
/// `ca_file`, against Mozilla's roots and that file's.
#[derive(Debug)]
struct ScopedVerifier {
    default: Arc<WebPkiServerVerifier>,
    /// By [`BaseUrl::tls_host`]; a handful at most, so a list.
    scoped: Vec<(String, Arc<WebPkiServerVerifier>)>,
}

impl ScopedVerifier {
    fn for_name(&self, name: &ServerName<'_>) -> &WebPkiServerVerifier {
        if self.scoped.is_empty() {
            return &self.default;
        }
        let name = name.to_str();
        self.scoped
            .iter()
            .find(|(host, _)| host.eq_ignore_ascii_case(&name))
            .map_or(&self.default, |(_, v)| v)
    }
}

impl ServerCertVerifier for ScopedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.for_name(server_name).verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.default.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.default.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.default.supported_verify_schemes()
    }
}

/// The TLS client settings: `ring`, safe default versions (1.2 and 1.3), the
/// [`ScopedVerifier`] for these providers, and no ALPN yet (see [`UpstreamService::new`]).
fn tls_config(providers: &Providers) -> Result<ClientConfig, String> {
    let crypto = Arc::new(rustls::crypto::ring::default_provider());
    let mozilla = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let verifier = |roots: RootCertStore| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto.clone())
            .build()
            .map_err(|e| format!("cannot set up TLS certificate checks: {e}"))
    };
    let mut extra: Vec<(String, RootCertStore)> = Vec::new();
    for p in providers.iter() {
        if p.extra_roots.is_empty() || !p.base.is_https() {
            continue;
        }
        let host = p.base.tls_host();
        let at = match extra.iter().position(|(h, _)| *h == host) {
            Some(at) => at,
            None => {
                extra.push((host, mozilla.clone()));
                extra.len() - 1
            }
        };
        for cert in &p.extra_roots {
            extra[at]
                .1
                .add(cert.clone())
                .map_err(|e| format!("provider {:?}: a CA certificate: {e}", p.name))?;
        }
    }
    let scoped = extra
        .into_iter()
        .map(|(host, roots)| Ok((host, verifier(roots)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let verifier = ScopedVerifier {
        default: verifier(mozilla)?,
        scoped,
    };
    Ok(ClientConfig::builder_with_provider(crypto.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        // `dangerous` only names the hook: the verifier is webpki's, with per-host roots.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// Every provider, by name, and the catch-all.
#[derive(Debug, Default)]
pub struct Providers {
    by_name: HashMap<String, Arc<Provider>>,
    any: Option<Arc<Provider>>,
}

impl Providers {
    /// These providers (`*` is the catch-all).
    pub fn new(list: Vec<Provider>) -> Providers {
        let mut out = Providers::default();
        for p in list {
            let p = Arc::new(p);
            if p.name == "*" {
                out.any = Some(p);
            } else {
                out.by_name.insert(p.name.clone(), p);
            }
        }
        out
    }

    /// The provider for a model id: by its provider part, else the catch-all.
    pub fn for_model(&self, model_id: &str) -> Option<&Provider> {
        self.pick(model_id).map(|p| &**p)
    }

    fn pick(&self, model_id: &str) -> Option<&Arc<Provider>> {
        abroute::ModelId::new(model_id)
            .provider()
            .and_then(|p| self.by_name.get(p))
            .or(self.any.as_ref())
    }

    /// Every provider, for the banner.
    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.by_name.values().chain(self.any.as_ref()).map(|p| &**p)
    }
}

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

/// A pooled client for every provider of one HTTP version policy.
type PooledClient = Client<TimedConnector<HttpsConnector<HttpConnector>>, Full<Bytes>>;

/// A connector that bounds the whole connection setup, TCP connect and TLS handshake together,
/// by one timeout (`limits.connect_timeout`). A server that accepts the connection and then
/// stalls the handshake fails the attempt as soon as a refused connection would, instead of
/// holding it until the attempt timeout. The error is an `io::Error` of kind `TimedOut`.
#[derive(Clone)]
struct TimedConnector<C> {
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

/// The service that calls upstreams. Cheap to clone (the pools are shared by every clone).
#[derive(Clone)]
pub struct UpstreamService {
    /// Offers `h2` then `http/1.1` in the TLS handshake: an upstream that picks `h2` gets one
    /// multiplexed connection.
    client_h2: PooledClient,
    /// Offers only `http/1.1`: a pool of keep-alive connections.
    client_h1: PooledClient,
    providers: Arc<Providers>,
    strip_provider: bool,
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
        let mut connector = HttpConnector::new();
        // `https://` URIs reach it through the TLS wrapper, which handles the scheme.
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let tls = tls_config(&providers)?;
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
                .build(connector)
        };
        Ok(UpstreamService {
            client_h2: client(&[b"h2", b"http/1.1"]),
            client_h1: client(&[b"http/1.1"]),
            providers,
            strip_provider,
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

/// The body of a request that names no router, with its model's provider part removed.
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
    let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_slice(body) else {
        return (Some(model), body.clone());
    };
    let bare = abroute_http::strip_provider(&model).to_owned();
    obj.insert("model".into(), serde_json::Value::String(bare));
    let out = serde_json::to_vec(&obj)
        .map(Bytes::from)
        .unwrap_or_else(|_| body.clone());
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
        let provider = match model.as_deref() {
            Some(m) => self.providers.pick(m),
            None => self.providers.any.as_ref(),
        };
        let Some(provider) = provider else {
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
        if let Some(service) = &provider.in_process {
            let req = Request::from_parts(parts, axum::body::Body::from(body));
            let service = service.clone();
            return Box::pin(async move {
                let response = match tower::ServiceExt::oneshot(service, req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok(response.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
            });
        }
        let req = Request::from_parts(parts, Full::new(body));
        let client = if provider.http2 {
            &self.client_h2
        } else {
            &self.client_h1
        };
        let fut = client.request(req);
        let provider = Arc::clone(provider);
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
            Ok(Response::from_parts(
                head,
                body.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_warnings_are_one_a_second() {
        let w = WarnLimiter::default();
        assert_eq!(w.allow_at(0), Some(0), "the first goes out");
        assert_eq!(w.allow_at(10), None);
        assert_eq!(w.allow_at(998), None);
        assert_eq!(
            w.allow_at(1000),
            Some(2),
            "a second later, with the count held back"
        );
        assert_eq!(w.allow_at(1500), None);
        assert_eq!(w.allow_at(5000), Some(1));
        assert_eq!(w.allow_at(5001), None);
    }

    #[test]
    fn joins_paths() {
        let b = BaseUrl::parse("http://127.0.0.1:8000/v1/").unwrap();
        assert_eq!(
            b.join("/v1/chat/completions").unwrap().to_string(),
            "http://127.0.0.1:8000/v1/chat/completions"
        );
        let b = BaseUrl::parse("http://h/openai/v1").unwrap();
        assert_eq!(
            b.join("/v1/chat/completions?x=1").unwrap().to_string(),
            "http://h/openai/v1/chat/completions?x=1"
        );
        assert_eq!(
            b.join("/other").unwrap().to_string(),
            "http://h/openai/v1/other"
        );
        assert_eq!(
            b.join("/v1x").unwrap().to_string(),
            "http://h/openai/v1/v1x"
        );
        assert!(BaseUrl::parse("localhost:80").is_err());
    }

    #[test]
    fn accepts_http_and_https_only() {
        let b = BaseUrl::parse("https://api.openai.com/v1").unwrap();
        assert!(b.is_https());
        assert_eq!(b.to_string(), "https://api.openai.com/v1");
        assert_eq!(
            b.join("/v1/chat/completions").unwrap().to_string(),
            "https://api.openai.com/v1/chat/completions"
        );
        assert!(!BaseUrl::parse("http://h/v1").unwrap().is_https());
        for bad in [
            "ftp://h/v1",
            "ws://h/v1",
            "file:///etc/passwd",
            "/v1",
            "https://h/v1?x=1",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad} was accepted");
        }
        let e = BaseUrl::parse("ftp://h/v1").unwrap_err();
        assert!(e.contains("http:// or https://"), "{e}");
    }

    #[test]
    fn tls_hosts_are_canonical() {
        let host = |u: &str| BaseUrl::parse(u).unwrap().tls_host();
        assert_eq!(host("https://API.OpenAI.com/v1"), "api.openai.com");
        assert_eq!(host("https://localhost:8443/v1"), "localhost");
        assert_eq!(host("https://127.0.0.1:8443/v1"), "127.0.0.1");
        assert_eq!(host("https://[0:0::1]:8443/v1"), "::1");
    }

    #[test]
    fn ca_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("abroute-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = read_ca_file(&missing).unwrap_err();
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
        assert!(e.contains("cannot read"), "{e}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "just text\n").unwrap();
        let e = read_ca_file(&empty).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = read_ca_file(&garbage).unwrap_err();
        assert!(e.contains("certificate 1 cannot be a root"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_client_builds_with_and_without_extra_roots() {
        let p = |n: &str, u: &str| Provider::new(n, BaseUrl::parse(u).unwrap(), None).unwrap();
        let plain = Providers::new(vec![p("a", "http://h/v1"), p("b", "https://h/v1")]);
        let config = tls_config(&plain).unwrap();
        // ALPN is each client's (`h2` and `http/1.1`, or `http/1.1` alone).
        assert!(config.alpn_protocols.is_empty());
        assert!(UpstreamService::new(Arc::new(plain), Duration::from_secs(1), true).is_ok());
    }

    #[test]
    fn picks_providers() {
        let p = |n: &str| Provider::new(n, BaseUrl::parse("http://h/v1").unwrap(), None).unwrap();
        let ps = Providers::new(vec![p("openai"), p("*")]);
        assert_eq!(ps.for_model("openai/gpt-4.1").unwrap().name, "openai");
        assert_eq!(ps.for_model("vllm/llama").unwrap().name, "*");
        assert_eq!(ps.for_model("bare").unwrap().name, "*");
        let ps = Providers::new(vec![p("openai")]);
        assert!(ps.for_model("vllm/llama").is_none());
    }

    #[test]
    fn pass_through_strips() {
        let (m, b) = pass_through_model(&Bytes::from(r#"{"model":"openai/gpt-4.1","x":1}"#), true);
        assert_eq!(m.as_deref(), Some("openai/gpt-4.1"));
        assert_eq!(&b[..], br#"{"model":"gpt-4.1","x":1}"#);
    }
}
