//! Arbitrary sequences of management requests (method, path, query, key, body) against one
//! engine and a host that records what it committed (its store). Nothing may panic, and after
//! every request:
//!
//! - the response is JSON with a status the API documents, and never contains a key;
//! - the engine and the store hold the same routers (a change reaches both or neither);
//! - without a valid write key nothing changed.
#![no_main]

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use abroute::Engine;
use abroute_http::{
    ApiKeys, CommitFuture, EngineHost, ManagementApi, Permissions, RouterChange, RouterHost,
};
use bytes::Bytes;
use http::{Method, Request};
use libfuzzer_sys::fuzz_target;

/// An [`EngineHost`] that records the names it holds, as a store would.
struct Store {
    engine: EngineHost,
    names: Mutex<BTreeSet<String>>,
}

impl Store {
    fn names(&self) -> Vec<String> {
        self.names
            .lock()
            .expect("not poisoned")
            .iter()
            .cloned()
            .collect()
    }
}

impl RouterHost for Store {
    fn commit(&self, change: RouterChange) -> CommitFuture<'_> {
        let name = change.name().to_owned();
        let put = matches!(change, RouterChange::Put { .. });
        let result = self.engine.apply(change);
        if result.is_ok() {
            let mut names = self.names.lock().expect("not poisoned");
            if put {
                names.insert(name);
            } else {
                names.remove(&name);
            }
        }
        Box::pin(std::future::ready(result))
    }
}

/// The API's futures are ready at once over this host.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the management API waited on a host that never waits"),
    }
}

const KEYS: [&str; 3] = [
    "fuzz-admin-key-0001",
    "fuzz-reader-key-002",
    "fuzz-writer-key-003",
];

const ROUTER: &str = r#"{"name":"r1","displayName":"one","defaultRoute":{"route_id":"d","variants":[{"variant":{"variant_id":"a","model_id":"p/a"},"weight":1}]}}"#;

fuzz_target!(|data: &[u8]| {
    let engine = Arc::new(Engine::new());
    let store = Arc::new(Store {
        engine: EngineHost::new(Arc::clone(&engine)),
        names: Mutex::default(),
    });
    let api = ManagementApi::new(
        Arc::clone(&engine),
        Arc::clone(&store) as Arc<dyn RouterHost>,
        ApiKeys::new()
            .with_key(KEYS[0], Permissions::ADMIN)
            .with_key(KEYS[1], Permissions::READ)
            .with_key(KEYS[2], Permissions::WRITE),
    );
    // Requests are separated by 0xff; each starts with three selector bytes.
    for chunk in data.split(|&b| b == 0xff).take(16) {
        let [m, p, k, rest @ ..] = chunk else {
            continue;
        };
        let method = [
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::PUT,
        ][*m as usize % 5]
            .clone();
        let (path_bytes, body) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let tail = String::from_utf8_lossy(path_bytes);
        let path = match p % 6 {
            0 => "/router/v1/routers".to_owned(),
            1 => format!("/router/v1/routers?{tail}"),
            2 => format!("/router/v1/routers/{tail}"),
            3 => "/router/v1/routers/r1".to_owned(),
            4 => format!("/router/v1/routers/r1?update_mask={tail}"),
            _ => format!("/{tail}"),
        };
        let body: Vec<u8> = if k & 0x80 != 0 {
            ROUTER.as_bytes().to_vec()
        } else {
            body.to_vec()
        };
        let auth = match k % 5 {
            0 => None,
            1 => Some(format!("Bearer {}", KEYS[0])),
            2 => Some(format!("Basic {}", KEYS[1])),
            3 => Some(format!("Bearer {}", KEYS[2])),
            _ => Some("Bearer not-a-key".to_owned()),
        };
        let Ok(uri) = path.parse::<http::Uri>() else {
            continue;
        };
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(a) = &auth {
            builder = builder.header("authorization", a.as_str());
        }
        let Ok(req) = builder.body(Bytes::from(body)) else {
            continue;
        };
        let version = engine.version();
        let response = block_on(api.handle(req));
        let status = response.status().as_u16();
        assert!(
            [200, 400, 401, 403, 404, 405, 409, 503].contains(&status),
            "undocumented status {status}"
        );
        let text = String::from_utf8_lossy(response.body());
        serde_json::from_slice::<serde_json::Value>(response.body()).expect("a JSON body");
        for key in KEYS {
            assert!(!text.contains(key), "a key was echoed");
        }
        let in_engine: Vec<String> = engine
            .load()
            .names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(in_engine, store.names(), "engine and store disagree");
        let can_write = matches!(k % 5, 1 | 3);
        if !can_write {
            assert_eq!(engine.version(), version, "a change without a write key");
        }
    }
});
