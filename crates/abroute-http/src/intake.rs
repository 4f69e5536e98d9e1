//! The request's way in, shared by the [`AbrouteLayer`](crate::AbrouteLayer) and
//! [`RouterOptions::route`]: everything that happens before the first attempt, each step a
//! function that can be called and tested alone.
//!
//! 1. [`authorize`]: the chat permission, then the client's credentials removed (401, 403);
//! 2. [`api_of`] and [`read_body`]: which API a request is for (by method and path; a
//!    compressed body of one is refused, 415) and its body read within the limit (413);
//! 3. [`Intake::new`]: the body extracted (400), and its router found in the snapshot, once;
//!    `None` for a model that names no router (the request passes through);
//! 4. [`Intake::request`]: the [`RequestContext`] (with the conversation parsed only when the
//!    router's compiled conditions read `messages`), the TTFT limit, and the target (404 for an
//!    unknown router, after the body's own errors).
//!
//! The layer runs all four; `RouterOptions::route` takes a body already read and runs the last
//! two. What comes out ([`Request`]) says what the request asks and where it goes, but holds no
//! plan: a [`RoutePlan`](crate::plan::RoutePlan) is made from it for a router, and another plan
//! source (request-level routing) can be made from it the same way.

use std::time::Duration;

use abroute::{LoadedRouter, RequestContext, RouteError, Snapshot};
use bytes::Bytes;
use http::header::CONTENT_ENCODING;
use http::{HeaderMap, Method};
use http_body::Body;
use serde_json::Value;

use crate::auth::{ApiKeys, Permission, strip_credentials};
use crate::body::{ReadError, content_length, read_limited};
use crate::error::ApiError;
use crate::extract::{Api, Extracted, extract};
use crate::options::RouterOptions;

/// Checks the chat permission when `keys` are configured, then removes the client's
/// credentials: the key was for abroute, and the inner service brings the upstream's own.
///
/// # Errors
///
/// 401 without a valid key, 403 for a key without the chat permission.
pub(crate) fn authorize(keys: Option<&ApiKeys>, headers: &mut HeaderMap) -> Result<(), ApiError> {
    if let Some(keys) = keys {
        keys.authorize(headers, Permission::Chat)?;
        strip_credentials(headers);
    }
    Ok(())
}

/// The API a request is for: a `POST` to a chat-completions, responses or messages path.
/// `None` for any other request (it passes through).
///
/// # Errors
///
/// 415 for such a request whose body is compressed (`content-encoding` other than `identity`).
pub(crate) fn api_of(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Option<Api>, ApiError> {
    let api = if method == Method::POST {
        Api::from_path(path)
    } else {
        None
    };
    if api.is_some()
        && headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(ApiError::unsupported_encoding());
    }
    Ok(api)
}

/// Reads a request body whole, within `limit` (a larger declared `content-length` is refused
/// before reading).
///
/// # Errors
///
/// 413 past the limit, 400 when the body fails.
pub(crate) async fn read_body<B: Body>(
    body: B,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    match read_limited(body, limit, content_length(headers)).await {
        Ok(b) => Ok(b),
        Err(ReadError::TooLarge) => Err(ApiError::body_too_large(limit)),
        Err(ReadError::Failed) => Err(ApiError::body_read_failed()),
    }
}

/// A routable request's body, extracted, with its router looked up once.
#[derive(Debug)]
pub(crate) struct Intake<'s, 'b> {
    ex: Extracted<'b>,
    /// The router; `None` when the name is not loaded, or for a request-level call.
    router: Option<&'s LoadedRouter>,
    /// The model names no router, and the request routes itself.
    request_level: bool,
    /// The conversation as JSON, for a router whose conditions read it.
    messages: Option<Value>,
    options: &'b RouterOptions,
}

/// What a request asks and where it goes: everything a plan is made from.
#[derive(Debug)]
pub(crate) struct Request<'a, 's> {
    /// The body, extracted.
    pub(crate) ex: &'a Extracted<'a>,
    /// The request's context, for conditions, selection and the request's own models.
    pub(crate) ctx: RequestContext<'a>,
    /// `extra_body.fallback.ttft_timeout`, if given.
    pub(crate) ttft: Option<Duration>,
    /// Where the request goes.
    pub(crate) target: Target<'s>,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'s> {
    /// A router of the snapshot (`"model": "inworld/<router>"`).
    Router(&'s LoadedRouter),
    /// No router: the request routes itself (`"model": "auto"`, or router keys in
    /// `extra_body`), see [`request_level`](crate::request_level).
    Request,
}

/// Whether a request whose model names no router routes itself: `"model": "auto"`, or any
/// of the router's keys in `extra_body` (which must then not reach the upstream).
fn is_request_level(ex: &Extracted<'_>) -> bool {
    ex.model() == Some(abroute::select::AUTO) || ex.has_router_keys()
}

impl<'s, 'b> Intake<'s, 'b> {
    /// Extracts `body` (for `api`) and finds its router in `snapshot`. `None` when the model
    /// names no router (see [`RouterOptions::model_prefix`]): the request passes through.
    ///
    /// # Errors
    ///
    /// 400 for a body that is not a JSON object, or whose conversation cannot be read for a
    /// router that needs it.
    pub(crate) fn new(
        options: &'b RouterOptions,
        snapshot: &'s Snapshot,
        api: Api,
        body: &'b [u8],
    ) -> Result<Option<Intake<'s, 'b>>, ApiError> {
        let ex = extract(api, body)?;
        let Some(name) = ex.router_name(options.get_model_prefix()) else {
            if is_request_level(&ex) {
                return Ok(Some(Intake {
                    ex,
                    router: None,
                    request_level: true,
                    messages: None,
                    options,
                }));
            }
            return Ok(None);
        };
        let router = snapshot.router(name);
        // Messages are parsed only for routers whose conditions read them.
        let messages = match router {
            Some(r) if r.compiled().uses_messages() => ex.messages_json()?,
            _ => None,
        };
        Ok(Some(Intake {
            ex,
            router,
            request_level: false,
            messages,
            options,
        }))
    }

    /// The body, extracted.
    pub(crate) fn extracted(&self) -> &Extracted<'b> {
        &self.ex
    }

    /// The request's context (its sticky key from `headers` when a user header is
    /// configured), its TTFT limit and its target.
    ///
    /// # Errors
    ///
    /// 400 for `extra_body` fields of the wrong type or value (the context's first, then the
    /// TTFT limit's), then 404 for a router that is not loaded.
    pub(crate) fn request<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> Result<Request<'a, 's>, ApiError> {
        let ctx = self
            .ex
            .context(self.options.header_user(headers))?
            .with_needs(self.ex.needs());
        let ctx = match &self.messages {
            Some(m) => ctx.with_messages(m),
            None => ctx,
        };
        let ttft = self.ex.ttft_timeout()?;
        let target = match self.router {
            Some(r) => Target::Router(r),
            None if self.request_level => Target::Request,
            None => {
                let name = self.ex.router_name(self.options.get_model_prefix());
                let name = name.unwrap_or_default().to_owned();
                return Err(RouteError::UnknownRouter(name).into());
            }
        };
        Ok(Request {
            ex: &self.ex,
            ctx,
            ttft,
            target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Permissions;
    use abroute::{Engine, RouterConfig};
    use http::StatusCode;

    fn snapshot(configs: &[&str]) -> std::sync::Arc<Snapshot> {
        let engine = Engine::new();
        for c in configs {
            engine.upsert(RouterConfig::from_json(c).unwrap()).unwrap();
        }
        engine.load_full()
    }

    const PLAIN: &str = r#"{ "name": "plain", "defaultRoute": { "route_id": "d", "variants": [
        { "variant": { "variant_id": "a", "model_id": "p/a" }, "weight": 1 } ] } }"#;
    const READS_MESSAGES: &str = r#"{ "name": "reads", "routes": [ { "route": { "route_id": "r",
        "variants": [ { "variant": { "variant_id": "a", "model_id": "p/a" }, "weight": 1 } ] },
        "condition": { "cel_expression": "size(messages) > 1" } } ],
        "defaultRoute": { "route_id": "d", "variants": [
        { "variant": { "variant_id": "b", "model_id": "p/b" }, "weight": 1 } ] } }"#;

    #[test]
    fn authorize_checks_then_strips() {
        let keys = ApiKeys::new().with_key("k", Permissions::CHAT);
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer k".parse().unwrap());
        headers.insert("x-api-key", "k".parse().unwrap());
        authorize(Some(&keys), &mut headers).unwrap();
        assert!(headers.is_empty(), "the client's credentials are removed");
        let e = authorize(Some(&keys), &mut HeaderMap::new()).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        // Without keys, nothing is checked and nothing removed.
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer upstream".parse().unwrap());
        authorize(None, &mut headers).unwrap();
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn api_by_method_and_path() {
        let none = HeaderMap::new();
        let api = |m: Method, p: &str| api_of(&m, p, &none).unwrap();
        assert_eq!(
            api(Method::POST, "/v1/chat/completions"),
            Some(Api::ChatCompletions)
        );
        assert_eq!(api(Method::GET, "/v1/chat/completions"), None);
        assert_eq!(api(Method::POST, "/v1/embeddings"), None);
        let mut gzip = HeaderMap::new();
        gzip.insert(CONTENT_ENCODING, "gzip".parse().unwrap());
        let e = api_of(&Method::POST, "/v1/messages", &gzip).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        // Only a routable request is refused for it.
        assert_eq!(api_of(&Method::POST, "/upload", &gzip).unwrap(), None);
    }

    #[test]
    fn the_router_is_found_once_and_messages_read_only_when_needed() {
        let snapshot = snapshot(&[PLAIN, READS_MESSAGES]);
        let options = RouterOptions::new();
        let body = |model: &str| {
            format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
        };
        let headers = HeaderMap::new();
        for (model, messages) in [("inworld/plain", false), ("inworld/reads", true)] {
            let body = body(model);
            let intake = Intake::new(&options, &snapshot, Api::ChatCompletions, body.as_bytes())
                .unwrap()
                .unwrap();
            assert_eq!(intake.messages.is_some(), messages, "{model}");
            let request = intake.request(&headers).unwrap();
            let Target::Router(r) = request.target else {
                panic!("{model} is a router")
            };
            assert!(std::ptr::eq(r, snapshot.router(&model[8..]).unwrap()));
        }
        // Not a router: passes through.
        let other = body("openai/gpt-4.1");
        assert!(
            Intake::new(&options, &snapshot, Api::ChatCompletions, other.as_bytes())
                .unwrap()
                .is_none()
        );
        // Not a router, but `auto` or router keys: routed at the request level.
        for body in [
            r#"{"model":"auto"}"#,
            r#"{"model":"openai/gpt-4.1","extra_body":{"models":["openai/gpt-4o"]}}"#,
            r#"{"model":"openai/gpt-4.1","extra_body":{"metadata":null}}"#,
            r#"{"model":"openai/gpt-4.1","extra_body":{"sort":["price"]}}"#,
        ] {
            let intake = Intake::new(&options, &snapshot, Api::ChatCompletions, body.as_bytes())
                .unwrap()
                .expect(body);
            let request = intake.request(&headers).unwrap();
            assert!(matches!(request.target, Target::Request), "{body}");
        }
        // Other keys of extra_body alone do not make a request routed.
        let other = r#"{"model":"openai/gpt-4.1","extra_body":{"seed":1}}"#;
        assert!(
            Intake::new(&options, &snapshot, Api::ChatCompletions, other.as_bytes())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_bodys_own_errors_come_before_an_unknown_router() {
        let snapshot = snapshot(&[PLAIN]);
        let options = RouterOptions::new();
        let headers = HeaderMap::new();
        let request = |body: &str| {
            let intake = Intake::new(&options, &snapshot, Api::ChatCompletions, body.as_bytes())
                .unwrap()
                .unwrap();
            intake.request(&headers).map(|_| ()).unwrap_err()
        };
        let e = request(r#"{"model":"inworld/nope","extra_body":{"models":7}}"#);
        assert_eq!(
            (e.status().as_u16(), e.param()),
            (400, Some("extra_body.models"))
        );
        let e =
            request(r#"{"model":"inworld/nope","extra_body":{"fallback":{"ttft_timeout":"1ms"}}}"#);
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = request(r#"{"model":"inworld/nope"}"#);
        assert_eq!((e.status().as_u16(), e.code()), (404, "router_not_found"));
        assert_eq!(e.message(), "router \"nope\" does not exist");
    }
}
