//! Every endpoint × no key, a wrong key, a read key, a write key, a chat key. No response ever
//! contains a key.
// Helpers outside `#[test]` functions unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use abroute::{Engine, RouterConfig};
use abroute_http::{AbrouteLayer, ApiKeys, EngineHost, Full, ManagementApi, Permissions};
use bytes::Bytes;
use common::{Upstream, block_on, body_bytes};
use http::{Method, Request};
use tower::{Layer, Service};

const ROUTER: &str = r#"{ "name": "demo", "defaultRoute": { "route_id": "default",
  "variants": [ { "variant": { "variant_id": "a", "model_id": "p/a" }, "weight": 1 } ] } }"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Create,
    List,
    Get,
    Update,
    Delete,
    Chat,
}

#[derive(Debug, Clone, Copy)]
enum Key {
    None,
    Wrong,
    Read,
    Write,
    Chat,
}

const SECRETS: [&str; 4] = [
    "sk-read-0123456789",
    "sk-write-0123456789",
    "sk-chat-0123456789",
    "sk-wrong-0123456789",
];

fn header(key: Key) -> Option<String> {
    match key {
        Key::None => None,
        Key::Wrong => Some(format!("Bearer {}", SECRETS[3])),
        Key::Read => Some(format!("Basic {}", SECRETS[0])),
        Key::Write => Some(format!("Bearer {}", SECRETS[1])),
        Key::Chat => Some(format!("Bearer {}", SECRETS[2])),
    }
}

fn expected(endpoint: Endpoint, key: Key) -> u16 {
    use Endpoint as E;
    match (key, endpoint) {
        (Key::None | Key::Wrong, _) => 401,
        (Key::Read, E::List | E::Get) => 200,
        (Key::Write, E::Create | E::Update | E::Delete) => 200,
        (Key::Chat, E::Chat) => 200,
        _ => 403,
    }
}

/// Sends one request to a fresh setup; returns the status and the whole response as text.
fn run(endpoint: Endpoint, key: Key) -> (u16, String) {
    let engine = Arc::new(Engine::new());
    engine
        .upsert(RouterConfig::from_json(ROUTER).unwrap())
        .unwrap();
    let keys = ApiKeys::new()
        .with_key(SECRETS[0], Permissions::READ)
        .with_key(SECRETS[1], Permissions::WRITE)
        .with_key(SECRETS[2], Permissions::CHAT);
    let (method, uri, body) = match endpoint {
        Endpoint::Create => (
            Method::POST,
            "/router/v1/routers",
            ROUTER.replace("\"demo\"", "\"other\""),
        ),
        Endpoint::List => (Method::GET, "/router/v1/routers", String::new()),
        Endpoint::Get => (Method::GET, "/router/v1/routers/demo", String::new()),
        Endpoint::Update => (
            Method::PATCH,
            "/router/v1/routers/demo?update_mask=displayName",
            r#"{"displayName":"x"}"#.to_owned(),
        ),
        Endpoint::Delete => (Method::DELETE, "/router/v1/routers/demo", String::new()),
        Endpoint::Chat => (
            Method::POST,
            "/v1/chat/completions",
            r#"{"model":"inworld/demo","messages":[]}"#.to_owned(),
        ),
    };
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(h) = header(key) {
        builder = builder.header("authorization", h);
    }
    if endpoint == Endpoint::Chat {
        let req = builder.body(Full::new(Bytes::from(body))).unwrap();
        let mut svc = AbrouteLayer::new(engine)
            .keys(keys)
            .layer(Upstream::new(&[]));
        let r = block_on(svc.call(req)).unwrap_or_else(|e| match e {});
        let status = r.status().as_u16();
        let headers = format!("{:?}", r.headers());
        let text = format!("{headers} {:?}", body_bytes(r.into_body()));
        (status, text)
    } else {
        let req = builder.body(Bytes::from(body)).unwrap();
        let host = Arc::new(EngineHost::new(Arc::clone(&engine)));
        let api = ManagementApi::new(engine, host, keys);
        let r = block_on(api.handle(req));
        let status = r.status().as_u16();
        (status, format!("{:?} {:?}", r.headers(), r.body()))
    }
}

#[test]
fn every_endpoint_times_every_key() {
    let endpoints = [
        Endpoint::Create,
        Endpoint::List,
        Endpoint::Get,
        Endpoint::Update,
        Endpoint::Delete,
        Endpoint::Chat,
    ];
    let keys = [Key::None, Key::Wrong, Key::Read, Key::Write, Key::Chat];
    let mut table = String::new();
    for endpoint in endpoints {
        for key in keys {
            let (status, text) = run(endpoint, key);
            table.push_str(&format!("{endpoint:?} × {key:?}: {status}\n"));
            assert_eq!(
                status,
                expected(endpoint, key),
                "{endpoint:?} with {key:?}: {text}"
            );
            for secret in SECRETS {
                assert!(
                    !text.contains(secret),
                    "{endpoint:?} with {key:?} echoed a key"
                );
            }
            if status == 401 {
                assert!(text.contains("www-authenticate"), "{text}");
            }
        }
    }
    // 6 endpoints × 5 keys.
    assert_eq!(table.lines().count(), 30);
}

#[test]
fn open_chat_needs_no_key_but_management_still_does() {
    let engine = Arc::new(Engine::new());
    engine
        .upsert(RouterConfig::from_json(ROUTER).unwrap())
        .unwrap();
    let keys = ApiKeys::new().open_chat();
    let mut svc = AbrouteLayer::new(Arc::clone(&engine))
        .keys(keys.clone())
        .layer(Upstream::new(&[]));
    let req = Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"inworld/demo"}"#,
        )))
        .unwrap();
    let r = block_on(svc.call(req)).unwrap_or_else(|e| match e {});
    assert_eq!(r.status(), 200);
    let host = Arc::new(EngineHost::new(Arc::clone(&engine)));
    let api = ManagementApi::new(engine, host, keys);
    let r = block_on(
        api.handle(
            Request::get("/router/v1/routers")
                .body(Bytes::new())
                .unwrap(),
        ),
    );
    assert_eq!(r.status(), 401);
}
