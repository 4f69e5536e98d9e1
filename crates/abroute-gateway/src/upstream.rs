//! The upstream call: the inner service of the adapter's layer.
//!
//! The layer hands each attempt over as an `http::Request<Bytes>` whose body is already
//! rewritten for the attempt's model, with an [`UpstreamAttempt`] in its extensions. This
//! service picks the provider by the provider part of the model id (`openai` in
//! `openai/gpt-4.1`, else the `*` provider), points the request at the provider's base URL,
//! replaces the client's credentials with the provider's key, and sends it over a pooled
//! keep-alive HTTP/1.1 connection. The response body is passed on as it arrives (SSE included):
//! nothing is buffered here.
//!
//! Requests that do not name a router (a plain `openai/gpt-4.1`, say) come without an
//! `UpstreamAttempt`; their body's `model` picks the provider the same way.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
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
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The body of an upstream response as the layer sees it.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// An OpenAI-compatible base URL, split for fast joining: `http://host:port/prefix`.
#[derive(Debug, Clone)]
pub struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    /// The path without a trailing `/` (`/v1`), possibly empty.
    prefix: String,
}

impl BaseUrl {
    /// Parses `http://host:port/path`.
    ///
    /// # Errors
    ///
    /// When it is not an absolute `http` URL (`https` needs a TLS-terminating proxy in front:
    /// this build speaks plain HTTP to upstreams).
    pub fn parse(text: &str) -> Result<BaseUrl, String> {
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("{text:?} needs a scheme (http://...)"))?;
        if scheme != Scheme::HTTP {
            return Err(format!(
                "{text:?}: only http:// upstreams are supported by this build; put a TLS proxy \
                 (or a local sidecar) in front of https upstreams"
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

/// One provider, ready to call.
pub struct Provider {
    /// Its name (`openai`, or `*`).
    pub name: String,
    /// Where to send its requests.
    pub base: BaseUrl,
    /// `Bearer <key>`, marked sensitive.
    authorization: Option<HeaderValue>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("base", &self.base.to_string())
            .field("key", &self.authorization.is_some())
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
        })
    }
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
        model_id
            .split_once('/')
            .and_then(|(p, _)| self.by_name.get(p))
            .or(self.any.as_ref())
            .map(|p| &**p)
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

/// The service that calls upstreams. Cheap to clone (one pool shared by every clone).
#[derive(Clone)]
pub struct UpstreamService {
    client: Client<HttpConnector, Full<Bytes>>,
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
    /// A service over these providers, connecting with this timeout. `strip_provider` also
    /// applies to requests that do not name a router.
    pub fn new(providers: Arc<Providers>, connect_timeout: Duration, strip_provider: bool) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(connector);
        UpstreamService {
            client,
            providers,
            strip_provider,
        }
    }

    /// The providers.
    pub fn providers(&self) -> &Providers {
        &self.providers
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
            Some(m) => self.providers.for_model(m),
            None => self.providers.any.as_deref(),
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
        headers.remove(header::AUTHORIZATION);
        headers.remove("x-api-key");
        if let Some(auth) = &provider.authorization {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        parts.version = http::Version::HTTP_11;
        let req = Request::from_parts(parts, Full::new(body));
        let fut = self.client.request(req);
        Box::pin(async move {
            let response = fut.await.map_err(|e| Box::new(e) as BoxError)?;
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
        assert!(BaseUrl::parse("https://api.openai.com/v1").is_err());
        assert!(BaseUrl::parse("localhost:80").is_err());
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
