//! https upstreams over loopback: a real TLS server started by each test, with a self-signed
//! certificate made at test time (`rcgen`), serving the built-in mock's router behind a
//! `tokio-rustls` acceptor. The gateway reaches it when the provider's `ca_file` holds that
//! certificate, refuses it (a clean 502, or a failover) when it does not, and trusts a
//! `ca_file` only for its provider's host. An upstream that offers HTTP/2 gets it, on one
//! multiplexed connection, unless the provider turns it off.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use abroute_gateway::config::{GatewayConfig, ProviderConfig};
use abroute_gateway::mock::{MockControl, router};
use common::*;
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

/// What the TLS server saw of one handshake: the SNI name and the ALPN protocol.
type Hello = (Option<String>, Option<Vec<u8>>);

/// The mock upstream behind TLS, on 127.0.0.1, with a certificate for `localhost` and
/// `127.0.0.1`.
struct TlsUpstream {
    addr: SocketAddr,
    control: MockControl,
    /// Handshakes that completed, with what the client offered.
    hellos: Arc<Mutex<Vec<Hello>>>,
    /// Handshakes that failed (the client refused the certificate).
    failed: Arc<AtomicU64>,
    /// The certificate, as PEM.
    cert_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl TlsUpstream {
    /// A server that speaks HTTP/1.1 only.
    async fn start() -> TlsUpstream {
        TlsUpstream::start_with(&[b"http/1.1"]).await
    }

    /// A server whose ALPN offers these protocols; it serves HTTP/2 on connections that agree
    /// on `h2`.
    async fn start_with(alpn: &[&[u8]]) -> TlsUpstream {
        let made = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        let cert_pem = made.cert.pem();
        let cert: CertificateDer<'static> = made.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
        let crypto = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(crypto)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key.into())
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let control = MockControl::new();
        let hellos = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let service = TowerToHyperService::new(router(control.clone()));
        let task = tokio::spawn({
            let hellos = Arc::clone(&hellos);
            let failed = Arc::clone(&failed);
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let service = service.clone();
                    let hellos = Arc::clone(&hellos);
                    let failed = Arc::clone(&failed);
                    tokio::spawn(async move {
                        let tls = match acceptor.accept(tcp).await {
                            Ok(tls) => tls,
                            Err(_) => {
                                failed.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                        };
                        let session = tls.get_ref().1;
                        let h2 = session.alpn_protocol() == Some(b"h2");
                        hellos.lock().unwrap().push((
                            session.server_name().map(str::to_owned),
                            session.alpn_protocol().map(<[u8]>::to_vec),
                        ));
                        let io = TokioIo::new(tls);
                        let _ = if h2 {
                            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                .serve_connection(io, service)
                                .await
                        } else {
                            hyper::server::conn::http1::Builder::new()
                                .serve_connection(io, service)
                                .await
                        };
                    });
                }
            }
        });
        TlsUpstream {
            addr,
            control,
            hellos,
            failed,
            cert_pem,
            task,
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn hellos(&self) -> Vec<Hello> {
        self.hellos.lock().unwrap().clone()
    }

    fn write_cert(&self, dir: &std::path::Path) -> PathBuf {
        let path = dir.join("upstream-cert.pem");
        std::fs::write(&path, &self.cert_pem).unwrap();
        path
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn provider(name: &str, base_url: String, ca_file: Option<PathBuf>) -> ProviderConfig {
    ProviderConfig {
        name: name.to_owned(),
        base_url: Some(base_url),
        mock: false,
        api_key: Some(format!("sk-{name}")),
        api_key_env: None,
        ca_file,
        http2: true,
    }
}

/// The test config (every model on the plain-HTTP built-in mock) with these providers first.
fn config_with(providers: Vec<ProviderConfig>) -> GatewayConfig {
    let mut config = test_config();
    let any = config.providers.pop().unwrap();
    config.providers = providers;
    config.providers.push(any);
    config
}

fn single_model_router(name: &str, model: &str) -> String {
    format!(
        r#"{{ "name": "{name}", "defaultRoute": {{ "route_id": "default", "variants": [
        {{ "variant": {{ "variant_id": "only", "model_id": "{model}" }}, "weight": 100 }} ] }} }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chats_reach_an_https_upstream_trusted_through_ca_file() {
    let upstream = TlsUpstream::start().await;
    upstream.control.capture(true);
    let dir = temp_dir("tls-trusted");
    let ca = upstream.write_cert(&dir);
    let base_url = format!("https://localhost:{}/v1", upstream.port());
    let h = Harness::start(config_with(vec![provider(
        "secure",
        base_url.clone(),
        Some(ca),
    )]))
    .await;
    // The banner shows the https base as it is.
    let banner = h.gateway.banner();
    assert!(
        banner.contains(&format!("secure/* → {base_url} (with key)")),
        "{banner}"
    );

    // Through a router.
    let r = h
        .create(&single_model_router("tls", "secure/gpt-4.1"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h.chat(&chat_body("tls", "")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-abroute-model"), "secure/gpt-4.1");
    let body = r.json();
    assert_eq!(body["model"], "gpt-4.1");
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("gpt-4.1"),
        "{body}"
    );
    assert_eq!(
        attempt_models(&body),
        vec![("secure/gpt-4.1".to_owned(), "success".to_owned())]
    );
    // The TLS server got the request as a provider should: its path under the base URL, the
    // provider's key instead of the client's, the bare model name.
    let seen = upstream.control.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].headers["authorization"], "Bearer sk-secure");
    let sent: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(sent["model"], "gpt-4.1");

    // A stream passes through TLS frame by frame.
    let (status, headers, frames) = h.stream(&chat_body("tls", r#", "stream": true"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text: String = frames
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(sse_content(&text).contains("gpt-4.1"), "{text}");
    assert!(text.contains("[DONE]"), "{text}");

    // A model named directly (no router) goes the same way.
    let r = h
        .chat(
            r#"{ "model": "secure/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}] }"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["model"], "gpt-4o-mini");

    // Connections are pooled: more requests than handshakes.
    for _ in 0..10 {
        let r = h.chat(&chat_body("tls", "")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert_eq!(upstream.control.hits("gpt-4.1"), 12);
    let hellos = upstream.hellos();
    assert!(
        !hellos.is_empty() && hellos.len() <= 3,
        "{} handshakes for 13 requests",
        hellos.len()
    );
    // Every handshake named the host (SNI) and agreed on HTTP/1.1 (ALPN).
    for (sni, alpn) in &hellos {
        assert_eq!(sni.as_deref(), Some("localhost"));
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    }
    assert_eq!(upstream.failed.load(Ordering::SeqCst), 0);
    // Plain http still works beside it (the `*` provider is the mock over http).
    let r = h
        .chat(
            r#"{ "model": "plain/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}] }"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(h.mock.hits("gpt-4o-mini"), 1);
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_clean_502_or_a_failover() {
    let upstream = TlsUpstream::start().await;
    let dir = temp_dir("tls-untrusted");
    let ca = upstream.write_cert(&dir);
    let port = upstream.port();
    let h = Harness::start(config_with(vec![
        // No ca_file: the self-signed certificate is not among Mozilla's roots.
        provider("untrusted", format!("https://localhost:{port}/v1"), None),
        // The same server by its address, with the certificate as ca_file: trusted for the
        // host `127.0.0.1` (where it is configured) only, not for `localhost`.
        provider("scoped", format!("https://127.0.0.1:{port}/v1"), Some(ca)),
    ]))
    .await;

    let model = "untrusted/gpt-4.1";
    // Alone in its router: an OpenAI-shaped 502, no panic, no hang.
    let name = "untrusted";
    let r = h.create(&single_model_router(name, model)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h.chat(&chat_body(name, "")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{model}: {}", r.text());
    let body = r.json();
    assert_eq!(body["error"]["code"], "upstream_unavailable", "{body}");
    assert_eq!(body["error"]["type"], "api_error", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");

    // With a backup: the failed handshake fails over to it.
    let failover = format!("{name}-failover");
    let r = h
        .create(&failover_router(&failover, model, "backup/gpt-4o-mini"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h.chat(&chat_body(&failover, "")).await;
    assert_eq!(r.status, StatusCode::OK, "{model}: {}", r.text());
    assert_eq!(r.header("x-abroute-model"), "backup/gpt-4o-mini");
    let attempts = attempt_models(&r.json());
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].0, model);
    assert!(attempts[0].1.starts_with("failure"), "{attempts:?}");
    assert_eq!(
        attempts[1],
        ("backup/gpt-4o-mini".to_owned(), "success".to_owned())
    );
    // The refused handshakes never reached HTTP.
    assert_eq!(upstream.control.hits("gpt-4.1"), 0);
    assert!(upstream.failed.load(Ordering::SeqCst) >= 2);

    // The provider with the ca_file reaches the same server (its certificate names
    // `127.0.0.1` too).
    let r = h
        .chat(r#"{ "model": "scoped/gpt-4.1", "messages": [{"role": "user", "content": "Hi"}] }"#)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(upstream.control.hits("gpt-4.1"), 1);
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_ca_file_stops_the_start() {
    let dir = temp_dir("tls-bad-ca");
    let missing = dir.join("missing.pem");
    let e = Harness::try_start(config_with(vec![provider(
        "secure",
        "https://localhost:1/v1".to_owned(),
        Some(missing.clone()),
    )]))
    .await
    .err()
    .unwrap();
    assert!(e.contains("providers[0].ca_file: "), "{e}");
    assert!(e.contains(&missing.display().to_string()), "{e}");
    assert!(e.contains("cannot read"), "{e}");

    // A key is not a certificate.
    let key_only = dir.join("key.pem");
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(&key_only, made.signing_key.serialize_pem()).unwrap();
    let e = Harness::try_start(config_with(vec![
        provider("plain", "http://127.0.0.1:1/v1".to_owned(), None),
        provider(
            "secure",
            "https://localhost:1/v1".to_owned(),
            Some(key_only.clone()),
        ),
    ]))
    .await
    .err()
    .unwrap();
    assert!(e.contains("providers[1].ca_file: "), "{e}");
    assert!(e.contains(&key_only.display().to_string()), "{e}");
    assert!(e.contains("no certificate"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_when_the_upstream_offers_it_on_one_connection() {
    let upstream = TlsUpstream::start_with(&[b"h2", b"http/1.1"]).await;
    upstream.control.capture(true);
    let dir = temp_dir("tls-h2");
    let ca = upstream.write_cert(&dir);
    let base_url = format!("https://localhost:{}/v1", upstream.port());
    let mut h1_only = provider("h1only", base_url.clone(), Some(ca.clone()));
    h1_only.http2 = false;
    let h = Harness::start(config_with(vec![
        provider("multi", base_url, Some(ca)),
        h1_only,
    ]))
    .await;
    let r = h.create(&single_model_router("h2", "multi/gpt-4.1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // The first request agrees on h2 (the server then speaks nothing else on the connection).
    let r = h.chat(&chat_body("h2", "")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-abroute-model"), "multi/gpt-4.1");
    assert_eq!(
        upstream.hellos(),
        vec![(Some("localhost".to_owned()), Some(b"h2".to_vec()))]
    );
    // Concurrent requests and a stream share that one connection.
    let body = chat_body("h2", "");
    let (a, b, c, d) = tokio::join!(h.chat(&body), h.chat(&body), h.chat(&body), h.chat(&body));
    for r in [a, b, c, d] {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let (status, _, frames) = h.stream(&chat_body("h2", r#", "stream": true"#)).await;
    assert_eq!(status, StatusCode::OK);
    let text: String = frames
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(sse_content(&text).contains("gpt-4.1"), "{text}");
    assert_eq!(upstream.control.hits("gpt-4.1"), 6);
    assert_eq!(
        upstream.hellos().len(),
        1,
        "one connection for six requests"
    );
    // Hop-by-hop headers did not reach the HTTP/2 upstream, the provider's key did.
    let seen = upstream.control.seen();
    assert_eq!(seen[0].headers["authorization"], "Bearer sk-multi");
    assert!(!seen[0].headers.contains_key("connection"));

    // `http2 = false`: the same server, offered HTTP/1.1 only.
    let r = h
        .chat(
            r#"{ "model": "h1only/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}] }"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let hellos = upstream.hellos();
    assert_eq!(hellos.len(), 2);
    assert_eq!(hellos[1].1.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(upstream.failed.load(Ordering::SeqCst), 0);
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server that accepts TCP connections and never answers the TLS handshake: the connect
/// timeout (which covers the handshake) fails the attempt and the request fails over, long
/// before the attempt timeout would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_cut_by_the_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let task = tokio::spawn({
        let held = Arc::clone(&held);
        async move {
            while let Ok((tcp, _)) = listener.accept().await {
                // Keep the socket open, say nothing.
                held.lock().unwrap().push(tcp);
            }
        }
    });
    let mut config = config_with(vec![provider(
        "stalled",
        format!("https://localhost:{port}/v1"),
        None,
    )]);
    config.limits.connect_timeout = std::time::Duration::from_millis(300);
    config.limits.attempt_timeout = std::time::Duration::from_secs(20);
    let h = Harness::start(config).await;
    let r = h
        .create(&failover_router(
            "stalled",
            "stalled/gpt-4.1",
            "backup/gpt-4o-mini",
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h.chat(&chat_body("stalled", "")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-abroute-model"), "backup/gpt-4o-mini");
    let body = r.json();
    let attempts = attempt_models(&body);
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts[0].1.starts_with("failure"), "{attempts:?}");
    // Cut at the connect timeout (0.3 s), not the attempt timeout (20 s).
    let total = body["metadata"]["total_duration_ms"].as_u64().unwrap();
    assert!(total < 10_000, "took {total} ms");
    assert!(
        !held.lock().unwrap().is_empty(),
        "the TCP connection was made"
    );
    h.stop().await;
    task.abort();
}
