//! Errors answered to chat clients, in the OpenAI shape.
//!
//! Every error the adapter produces on the request path is an [`ApiError`]: an HTTP status and
//! `{"error": {"message", "type", "code", "param"}}`, the body OpenAI's SDKs parse. The statuses:
//!
//! | situation | status | `code` |
//! |---|---|---|
//! | body is not JSON, or not an object | 400 | `invalid_json` |
//! | a router field (`extra_body.models`, ...) has the wrong type or value | 400 | `invalid_parameter` |
//! | unknown router (`inworld/<name>` not loaded) | 404 | `router_not_found` |
//! | no route matched and no default route | 422 | `no_route_matched` |
//! | body larger than the limit | 413 | `request_too_large` |
//! | compressed request body (`content-encoding`) | 415 | `unsupported_content_encoding` |
//! | no valid API key | 401 | `invalid_api_key` |
//! | key lacks the permission | 403 | `permission_denied` |
//! | every attempt failed without a response | 502 | `upstream_unavailable` |
//! | every attempt timed out | 504 | `upstream_timeout` |
//!
//! No route matched is 422, not 400: the body is well-formed and names a router that exists,
//! but the router has no route for it. 422 lets a client tell a configuration gap from a
//! malformed request, and OpenAI's SDKs map it to their own `UnprocessableEntityError`.

use std::borrow::Cow;
use std::fmt;

use abroute::RouteError;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::auth::AuthError;
use crate::json::SyntaxError;

/// The error type of bodies and inner services that can fail: anything boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// 401 ([`ApiError::unauthorized`]) for a missing or unknown key, 403
/// ([`ApiError::forbidden`]) for a key without the permission: the one mapping of
/// [`AuthError`] to an answer in the OpenAI shape.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Unauthorized => ApiError::unauthorized(),
            AuthError::Forbidden(p) => ApiError::forbidden(p.as_str()),
        }
    }
}

/// 404 ([`ApiError::router_not_found`]) for an unknown router, 422
/// ([`ApiError::no_route_matched`]) when no route matched: the one mapping of [`RouteError`]
/// to an answer.
impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> ApiError {
        match e {
            RouteError::UnknownRouter(name) => ApiError::router_not_found(&name),
            _ => ApiError::no_route_matched(),
        }
    }
}

/// An error answered to a chat client: a status and an OpenAI-shaped body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    error_type: &'static str,
    code: &'static str,
    message: Cow<'static, str>,
    param: Option<Cow<'static, str>>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    error_type: &'a str,
    code: &'a str,
    param: Option<&'a str>,
}

impl ApiError {
    /// An error with every field given.
    pub fn new(
        status: StatusCode,
        error_type: &'static str,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> ApiError {
        ApiError {
            status,
            error_type,
            code,
            message: message.into(),
            param: None,
        }
    }

    /// The same error naming the request field at fault (`param`).
    pub fn with_param(mut self, param: impl Into<Cow<'static, str>>) -> ApiError {
        self.param = Some(param.into());
        self
    }

    /// 400: the body is not JSON; the message gives the line, column and byte offset.
    pub(crate) fn invalid_json(e: &SyntaxError) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_json",
            format!("the request body is not valid JSON: {e}"),
        )
    }

    /// 400: the body is JSON but not an object.
    pub fn not_an_object() -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_json",
            "the request body must be a JSON object",
        )
    }

    /// 400: a field the router reads has the wrong type or value.
    pub fn invalid_param(param: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_parameter",
            message,
        )
        .with_param(param)
    }

    /// 404: no router by this name is loaded.
    pub fn router_not_found(name: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "router_not_found",
            format!("router {name:?} does not exist"),
        )
        .with_param("model")
    }

    /// 422: no conditional route matched and the router has no default route.
    pub fn no_route_matched() -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            "no_route_matched",
            abroute::RouteError::NO_ROUTE_MATCHED,
        )
        .with_param("model")
    }

    /// 413: the body is larger than `limit` bytes.
    pub fn body_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 415: the body is compressed; the adapter reads plain JSON only.
    pub fn unsupported_encoding() -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "unsupported_content_encoding",
            "compressed request bodies are not supported; send plain JSON",
        )
    }

    /// 400: the body could not be read (the connection failed while sending it).
    pub fn body_read_failed() -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "body_read_failed",
            "the request body could not be read",
        )
    }

    /// 401: no valid API key. Never echoes what was sent.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            "a valid API key is required: `Authorization: Bearer <key>` or `Basic <key>`",
        )
    }

    /// 403: the key is valid but lacks the permission.
    pub fn forbidden(permission: &'static str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "permission_denied",
            format!("this API key does not have the {permission} permission"),
        )
    }

    /// 502: every attempt failed without a response to pass on.
    pub fn upstream_unavailable(attempts: usize) -> ApiError {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_unavailable",
            format!("every upstream attempt failed ({attempts} tried)"),
        )
    }

    /// 504: every attempt timed out.
    pub fn upstream_timeout(attempts: usize) -> ApiError {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "api_error",
            "upstream_timeout",
            format!("every upstream attempt timed out ({attempts} tried)"),
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `type` field (`invalid_request_error`, `authentication_error`, ...).
    pub fn error_type(&self) -> &'static str {
        self.error_type
    }

    /// The `code` field (`invalid_json`, `router_not_found`, ...).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The request field at fault, if one is.
    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    /// The JSON body: `{"error": {"message", "type", "code", "param"}}`.
    pub fn body(&self) -> Bytes {
        let envelope = Envelope {
            error: Inner {
                message: &self.message,
                error_type: self.error_type,
                code: self.code,
                param: self.param.as_deref(),
            },
        };
        // Serializing strings into a Vec cannot fail.
        Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
    }

    /// The whole response: status, `content-type: application/json`, and the body.
    pub fn to_response(&self) -> Response<Bytes> {
        let mut response = Response::new(self.body());
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"abroute\", Basic realm=\"abroute\""),
            );
        }
        response
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape() {
        let e = ApiError::router_not_found("nope");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {
                "message": "router \"nope\" does not exist",
                "type": "invalid_request_error",
                "code": "router_not_found",
                "param": "model"
            }})
        );
        assert_eq!(e.to_response().status(), 404);
        let v: serde_json::Value =
            serde_json::from_slice(&ApiError::unauthorized().body()).unwrap();
        assert_eq!(v["error"]["param"], serde_json::Value::Null);
    }
}
