//! Shared helpers of the end-to-end tests: a gateway with a scriptable mock upstream on
//! loopback, and a small HTTP client.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

pub mod fleet;
pub mod postgres;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use abroute_gateway::config::{GatewayConfig, KeyConfig, ProviderConfig};
use abroute_gateway::mock::MockControl;
use abroute_gateway::{Gateway, StartOptions};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub const ADMIN: &str = "test-admin-key";

/// A router with a primary and a backup model in one variant, and a second variant.
pub fn failover_router(name: &str, primary: &str, backup: &str) -> String {
    format!(
        r#"{{ "name": "{name}", "defaultRoute": {{ "route_id": "default", "variants": [
        {{ "variant": {{ "variant_id": "main", "model_id": "{primary}",
            "model_selection": {{ "models": ["{backup}"] }} }}, "weight": 100 }} ] }} }}"#
    )
}

pub const SEED: &str = r#"{ "name": "compare-frontier-models", "defaultRoute": { "route_id": "default", "variants": [ { "variant": { "variant_id": "openai/gpt-4o-mini-a", "model_id": "openai/gpt-4o-mini" }, "weight": 33 }, { "variant": { "variant_id": "openai/gpt-3.5-turbo-b", "model_id": "openai/gpt-3.5-turbo" }, "weight": 33 }, { "variant": { "variant_id": "openai/gpt-4.1-c", "model_id": "openai/gpt-4.1" }, "weight": 34 } ] } }"#;

/// A config on 127.0.0.1:0 with the admin key, every model on the mock, short timeouts.
pub fn test_config() -> GatewayConfig {
    let mut c = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..GatewayConfig::default()
    };
    c.auth.keys = vec![KeyConfig {
        key: Some(ADMIN.to_owned()),
        key_env: None,
        permissions: vec!["all".to_owned()],
    }];
    c.providers = vec![ProviderConfig {
        name: "*".to_owned(),
        base_url: None,
        mock: true,
        api_key: Some("sk-upstream-key".to_owned()),
        api_key_env: None,
        ca_file: None,
        http2: true,
    }];
    // Real sockets to the mock too: the upstream hop is part of what these tests check.
    c.mock.in_process = false;
    c.limits.attempt_timeout = Duration::from_millis(800);
    c.limits.connect_timeout = Duration::from_millis(500);
    c.limits.shutdown_timeout = Duration::from_secs(10);
    c
}

pub struct Harness {
    pub gateway: Gateway,
    pub mock: MockControl,
    pub base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

impl Harness {
    pub async fn start(config: GatewayConfig) -> Harness {
        Harness::try_start(config)
            .await
            .expect("the gateway starts")
    }

    pub async fn try_start(config: GatewayConfig) -> Result<Harness, String> {
        let mock = MockControl::new();
        let gateway = Gateway::start(
            config,
            StartOptions {
                mock_control: Some(mock.clone()),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let base = format!("http://{}", gateway.addr());
        Ok(Harness {
            gateway,
            mock,
            base,
            client: client(),
        })
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: &str,
        key: Option<&str>,
    ) -> Response {
        request(&self.client, &self.base, method, path, body, key).await
    }

    /// POST a chat completion (no key: chat needs one in the test config, so the admin key).
    pub async fn chat(&self, body: &str) -> Response {
        self.request(Method::POST, "/v1/chat/completions", body, Some(ADMIN))
            .await
    }

    /// Creates router `name` (`primary`, then `openai/backup`), chats once, and checks that
    /// the answer came from the backup after one failure of `class`. Returns the body.
    pub async fn fails_over_to_backup(&self, name: &str, primary: &str, class: &str) -> Value {
        let r = self
            .create(&failover_router(name, primary, "openai/backup"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = self.chat(&chat_body(name, "")).await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.text());
        assert_eq!(r.header("x-abroute-model"), "openai/backup", "{name}");
        let body = r.json();
        assert_eq!(body["model"], "backup", "{name}");
        assert_eq!(
            attempt_models(&body),
            vec![
                (primary.to_owned(), format!("failure:{class}")),
                ("openai/backup".to_owned(), "success".to_owned())
            ],
            "{name}"
        );
        body
    }

    pub async fn create(&self, router: &str) -> Response {
        self.request(Method::POST, "/router/v1/routers", router, Some(ADMIN))
            .await
    }

    /// Starts a request and returns its head, then the body frames with their arrival times.
    pub async fn stream(&self, body: &str) -> (StatusCode, HeaderMap, Vec<(Duration, Bytes)>) {
        let start = Instant::now();
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/v1/chat/completions", self.base))
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = self.client.request(req).await.expect("the request is sent");
        let (head, mut body) = response.into_parts();
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(d) = frame.expect("a body frame").into_data() {
                frames.push((start.elapsed(), d));
            }
        }
        (head.status, head.headers, frames)
    }

    pub async fn stop(self) -> bool {
        self.gateway.shutdown().await
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn request(
    client: &Client<HttpConnector, Full<Bytes>>,
    base: &str,
    method: Method,
    path: &str,
    body: &str,
    key: Option<&str>,
) -> Response {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Basic {k}"));
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let response = client.request(req).await.expect("the request is sent");
    let (head, body) = response.into_parts();
    let body = body.collect().await.expect("the body is read").to_bytes();
    Response {
        status: head.status,
        headers: head.headers,
        body,
    }
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("abroute-gw-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The chat body of the seed's Step 2, with extra fields.
pub fn chat_body(router: &str, extra: &str) -> String {
    format!(
        r#"{{ "model": "inworld/{router}", "messages": [{{"role": "user", "content": "Hello!"}}]{extra} }}"#
    )
}

/// The `model` fields of an attempts list.
pub fn attempt_models(body: &Value) -> Vec<(String, String)> {
    body["metadata"]["attempts"]
        .as_array()
        .expect("metadata.attempts")
        .iter()
        .map(|a| {
            (
                a["model"].as_str().unwrap_or("").to_owned(),
                a["outcome"].as_str().unwrap_or("").to_owned()
                    + a["class"]
                        .as_str()
                        .map(|c| format!(":{c}"))
                        .as_deref()
                        .unwrap_or(""),
            )
        })
        .collect()
}

/// The concatenated `delta.content` of an SSE stream of chat completion chunks.
/// The chunk abroute adds to a chat stream with Inworld's `metadata`: one event, the last
/// before `data: [DONE]`, with empty `choices`.
pub fn sse_metadata(text: &str) -> Value {
    let events: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    let done = events
        .iter()
        .position(|d| *d == "[DONE]")
        .unwrap_or_else(|| panic!("no [DONE]: {text}"));
    assert_eq!(
        events.iter().filter(|d| d.contains("\"metadata\"")).count(),
        1,
        "{text}"
    );
    let chunk: Value = serde_json::from_str(events[done.checked_sub(1).unwrap()]).unwrap();
    assert_eq!(chunk["object"], "chat.completion.chunk", "{text}");
    assert_eq!(chunk["choices"], serde_json::json!([]), "{text}");
    chunk
}

pub fn sse_content(text: &str) -> String {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}
