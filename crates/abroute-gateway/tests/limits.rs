//! The gateway under slow, idle, abusive and broken peers, end to end over loopback: client
//! timeouts, the connection limit, load shedding, and upstreams that misbehave in every way a
//! socket allows. Every limit is set small here, so each test takes about a second.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use abroute_gateway::config::{GatewayConfig, ProviderConfig};
use abroute_gateway::mock::Behaviour;
use common::{Harness, chat_body, test_config};
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Generous: every wait of these tests ends well before it.
const BOUND: Duration = Duration::from_secs(10);

/// Reads until the peer closes (or `BOUND`); what was read.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + BOUND;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "still open after {BOUND:?}: {}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// Reads one response head (to its blank line) from `s`, within `BOUND`; empty when the
/// connection is closed first.
async fn read_head(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(BOUND, async {
        while !out.ends_with(b"\r\n\r\n") {
            // A connection closed (or reset) before a head: what came.
            if !matches!(s.read(&mut byte).await, Ok(1)) {
                break;
            }
            out.push(byte[0]);
        }
    })
    .await
    .expect("a response head in time");
    String::from_utf8_lossy(&out).into_owned()
}

fn raw_chat(body: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        common::ADMIN,
        body.len()
    )
}

async fn connect(h: &Harness) -> TcpStream {
    TcpStream::connect(h.gateway.addr()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_slow_bodies_and_idle_connections_are_cut() {
    let mut config = test_config();
    config.limits.header_timeout = Duration::from_millis(300);
    config.limits.body_timeout = Duration::from_millis(300);
    let h = Harness::start(config).await;

    // Half a head, then nothing: closed after the header timeout.
    let mut half = connect(&h).await;
    half.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // Served beside it meanwhile.
    assert_eq!(
        h.chat(&chat_body("none", "")).await.status,
        StatusCode::NOT_FOUND
    );
    let _ = read_to_close(&mut half).await;
    assert!(started.elapsed() >= Duration::from_millis(200));

    // An idle keep-alive connection: closed after its answer, once the timeout passes.
    let mut idle = connect(&h).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut idle).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let _ = read_to_close(&mut idle).await;

    // A body trickled: 408, then closed.
    let mut slow = connect(&h).await;
    let body = chat_body("none", "");
    let full = raw_chat(&body);
    let cut = full.len() - body.len() / 2;
    slow.write_all(&full.as_bytes()[..cut]).await.unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut slow).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");

    let text = h.request(Method::GET, "/metrics", "", None).await.text();
    assert!(
        text.contains("abroute_client_timeouts_total{phase=\"body\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("abroute_client_timeouts_total{phase=\"head\"}"),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_limit_only_operations_are_served_then_nothing() {
    let mut config = test_config();
    config.limits.max_connections = Some(3);
    config.limits.reserved_connections = 1;
    let h = Harness::start(config).await;
    // Three idle connections fill the served ones (each answered once, so surely accepted).
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect(&h).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_head(&mut s).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // A reserved connection: chat is refused at once, in the OpenAI shape.
    let mut extra = connect(&h).await;
    extra
        .write_all(raw_chat(&chat_body("compare", "")).as_bytes())
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut extra).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"code\":\"overloaded\""), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // ... and the operations endpoints are still served there.
    let mut ops = connect(&h).await;
    ops.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&read_to_close(&mut ops).await).into_owned();
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("abroute_shed_requests_total{reason=\"connections\"} 1"),
        "{metrics}"
    );
    // With the reserved one taken too, a new connection is closed at once.
    let mut reserved = connect(&h).await;
    reserved.write_all(b"GET /hea").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = connect(&h).await;
    let started = Instant::now();
    let _ = refused
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    assert!(read_to_close(&mut refused).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5), "refused fast");
    // Freed, they serve again.
    drop(held);
    drop(reserved);
    let end = Instant::now() + BOUND;
    loop {
        let mut s = connect(&h).await;
        let _ = s
            .write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await;
        if !read_head(&mut s).await.is_empty() {
            break;
        }
        assert!(Instant::now() < end, "served again after the others closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = h.chat(&chat_body("compare-frontier-models", "")).await;
    assert_ne!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_in_flight_limit_is_shed_and_the_rest_succeed() {
    let mut config = test_config();
    config.limits.max_in_flight = Some(4);
    config.seed_router = true;
    let h = Harness::start(config).await;
    for m in ["gpt-4o-mini", "gpt-3.5-turbo", "gpt-4.1"] {
        h.mock
            .set(m, Behaviour::head_delay(Duration::from_millis(300)));
    }
    let burst = 24;
    let mut tasks = Vec::new();
    for _ in 0..burst {
        let client = common::client();
        let base = h.base.clone();
        tasks.push(tokio::spawn(async move {
            common::request(
                &client,
                &base,
                Method::POST,
                "/v1/chat/completions",
                &chat_body("compare-frontier-models", ""),
                Some(common::ADMIN),
            )
            .await
        }));
    }
    let (mut ok, mut shed) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(r.header("retry-after"), "1");
                let body = r.json();
                assert_eq!(body["error"]["code"], "overloaded", "{body}");
                assert_eq!(body["error"]["type"], "api_error", "{body}");
                shed += 1;
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert_eq!(ok + shed, burst);
    assert!(ok >= 4, "at least the limit served: {ok}");
    assert!(shed >= 1, "some shed: {shed}");
    // The operations endpoints and the management API are never shed.
    let text = h.request(Method::GET, "/metrics", "", None).await.text();
    assert!(
        text.contains(&format!(
            "abroute_shed_requests_total{{reason=\"in_flight\"}} {shed}"
        )),
        "{text}"
    );
    // Once the burst is over, everything is served again.
    let r = h.chat(&chat_body("compare-frontier-models", "")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    h.stop().await;
}

/// How a fault-injecting upstream misbehaves on every connection.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Accepts, reads, never answers.
    Never,
    /// Answers bytes that are not HTTP.
    Garbage,
    /// Sends a head promising 100 bytes, then closes.
    CloseAfterHead,
    /// A complete HTTP answer whose JSON is cut short.
    TruncatedJson,
    /// A 10 MB JSON answer.
    Huge,
    /// `application/json` over plain text.
    ContentTypeLie,
    /// A 1 MB header.
    EnormousHeader,
    /// An event stream that sends its head, then nothing.
    SilentStream,
}

impl Fault {
    fn answer(self) -> Vec<u8> {
        let json_head = |len: usize| {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
            )
        };
        match self {
            Fault::Never | Fault::SilentStream => Vec::new(),
            Fault::Garbage => {
                b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02 not http at all\r\n\r\n".to_vec()
            }
            Fault::CloseAfterHead => json_head(100).into_bytes(),
            Fault::TruncatedJson => {
                let body = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"mess"#;
                let mut a = json_head(body.len()).into_bytes();
                a.extend_from_slice(body.as_bytes());
                a
            }
            Fault::Huge => {
                let filler = "a".repeat(10 * 1024 * 1024);
                let body =
                    format!(r#"{{"id":"x","object":"chat.completion","filler":"{filler}"}}"#);
                let mut a = json_head(body.len()).into_bytes();
                a.extend_from_slice(body.as_bytes());
                a
            }
            Fault::ContentTypeLie => {
                let body = "I am not JSON, whatever my head says";
                let mut a = json_head(body.len()).into_bytes();
                a.extend_from_slice(body.as_bytes());
                a
            }
            Fault::EnormousHeader => {
                let big = "b".repeat(1024 * 1024);
                format!(
                    "HTTP/1.1 200 OK\r\nx-big: {big}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
                )
                .into_bytes()
            }
        }
    }
}

/// An upstream on loopback that answers every request with `fault`, until the test ends.
async fn fault_upstream(fault: Fault) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Bounded: the test makes a handful of requests.
        for _ in 0..64 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = tokio::time::timeout(BOUND, s.read(&mut buf)).await;
                match fault {
                    Fault::Never => tokio::time::sleep(BOUND).await,
                    Fault::SilentStream => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                        let _ = s.write_all(head.as_bytes()).await;
                        tokio::time::sleep(BOUND).await;
                    }
                    _ => {
                        let _ = s.write_all(&fault.answer()).await;
                        let _ = s.shutdown().await;
                    }
                }
            });
        }
    });
    addr
}

fn provider(name: &str, addr: SocketAddr) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        base_url: Some(format!("http://{addr}/v1")),
        mock: false,
        api_key: None,
        api_key_env: None,
        ca_file: None,
        http2: true,
    }
}

const FAULTS: [(&str, Fault, &str); 8] = [
    ("never", Fault::Never, "timeout"),
    ("garbage", Fault::Garbage, "server_error"),
    ("closehead", Fault::CloseAfterHead, "server_error"),
    ("truncated", Fault::TruncatedJson, "server_error"),
    ("huge", Fault::Huge, "server_error"),
    ("ctlie", Fault::ContentTypeLie, "server_error"),
    ("bighead", Fault::EnormousHeader, "server_error"),
    ("silent", Fault::SilentStream, "server_error"),
];

async fn fault_config() -> GatewayConfig {
    let mut config = test_config();
    config.limits.max_upstream_body_bytes = 1024 * 1024;
    config.limits.max_upstream_head_bytes = 16 * 1024;
    config.limits.upstream_idle_timeout = Duration::from_millis(300);
    for (name, fault, _) in FAULTS {
        config
            .providers
            .push(provider(name, fault_upstream(fault).await));
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_fault_fails_over_or_answers_a_clear_error() {
    let h = Harness::start(fault_config().await).await;
    for (name, _, class) in FAULTS {
        let body = h
            .fails_over_to_backup(&format!("r-{name}"), &format!("{name}/m"), class)
            .await;
        assert_eq!(
            body["metadata"]["served_model_id"], "openai/backup",
            "{name}"
        );
    }
    // Alone, each is a clear 502 (504 when it timed out), in the OpenAI shape.
    for (name, _, class) in FAULTS {
        let router = format!(
            r#"{{ "name": "alone-{name}", "defaultRoute": {{ "route_id": "d", "variants": [
            {{ "variant": {{ "variant_id": "v", "model_id": "{name}/m" }}, "weight": 100 }} ] }} }}"#
        );
        assert_eq!(h.create(&router).await.status, StatusCode::OK);
        let r = h.chat(&chat_body(&format!("alone-{name}"), "")).await;
        let expected = if class == "timeout" {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        };
        assert_eq!(r.status, expected, "{name}: {}", r.text());
        assert!(r.json()["error"]["message"].is_string(), "{name}");
    }
    // Still serving.
    let r = h.request(Method::GET, "/healthz", "", None).await;
    assert_eq!(r.status, StatusCode::OK);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_silent_after_its_first_event_is_ended() {
    let mut config = test_config();
    config.limits.upstream_idle_timeout = Duration::from_millis(300);
    config.seed_router = true;
    let h = Harness::start(config).await;
    // Tokens every 2 s: the first event is sent, then the silence ends the stream.
    for m in ["gpt-4o-mini", "gpt-3.5-turbo", "gpt-4.1"] {
        h.mock.set(
            m,
            Behaviour::ok().with_token_interval(Duration::from_secs(2)),
        );
    }
    let started = Instant::now();
    let client = common::client();
    let req = http::Request::builder()
        .method(Method::POST)
        .uri(format!("{}/v1/chat/completions", h.base))
        .header("authorization", format!("Bearer {}", common::ADMIN))
        .body(http_body_util::Full::new(bytes::Bytes::from(chat_body(
            "compare-frontier-models",
            r#", "stream": true"#,
        ))))
        .unwrap();
    let response = client.request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let collected = tokio::time::timeout(
        BOUND,
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await;
    // The stream tap (issue 17) ends the broken stream well formed: the events sent, then one
    // error event in the OpenAI shape, then a clean end of the body.
    let body = collected
        .expect("ended in time")
        .expect("a clean end of the body, not a cut")
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    let last = text.trim_end().rsplit("\n\n").next().unwrap_or("");
    assert!(last.starts_with("data: {\"error\""), "{text}");
    assert!(
        text.contains("chat.completion.chunk"),
        "the first event came: {text}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Counted as a stall, not a reset.
    let m = h.request(Method::GET, "/metrics", "", None).await.text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("abroute_stream_errors_total")
                && l.contains("cause=\"upstream_stalled\"")),
        "{m}"
    );
    h.stop().await;
}

/// This process's resident memory, from `/proc/self/statm` (`None` off Linux).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Memory comes back after the faults: after a warm-up of ten rounds (the allocator's arenas
/// reach the level they keep), 30 more rounds of every fast fault (each alone, so every round
/// reads the 10 MB answer up to the 1 MiB limit, the enormous head, the truncated body...)
/// leave the resident memory within 16 MiB of its level after the warm-up. A leak of what one
/// `huge` answer holds (1 MiB) would grow it by 30 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_comes_back_after_the_faults() {
    let Some(_) = rss_bytes() else {
        eprintln!("skipped: no /proc/self/statm");
        return;
    };
    let mut config = fault_config().await;
    // Never eject: every round must reach the faulty upstream.
    config.health.consecutive_failures = u32::MAX;
    config.health.min_requests = u32::MAX;
    let h = Harness::start(config).await;
    // The slow faults (a timeout, a silence) cost time, not memory: they run in the warm-up.
    let fast: Vec<&str> = FAULTS
        .iter()
        .filter(|(_, f, _)| !matches!(f, Fault::Never | Fault::SilentStream))
        .map(|(name, _, _)| *name)
        .collect();
    for (name, _, _) in FAULTS {
        let router = format!(
            r#"{{ "name": "alone-{name}", "defaultRoute": {{ "route_id": "d", "variants": [
            {{ "variant": {{ "variant_id": "v", "model_id": "{name}/m" }}, "weight": 100 }} ] }} }}"#
        );
        assert_eq!(h.create(&router).await.status, StatusCode::OK);
        let r = h.chat(&chat_body(&format!("alone-{name}"), "")).await;
        assert!(r.status.is_server_error(), "{name}: {}", r.text());
    }
    let round = || async {
        for name in &fast {
            let r = h.chat(&chat_body(&format!("alone-{name}"), "")).await;
            assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{name}: {}", r.text());
        }
    };
    // The allocator settles at a level it keeps (its arenas): ten rounds reach it.
    for _ in 0..10 {
        round().await;
    }
    let before = rss_bytes().unwrap();
    let (mut peak, mut after) = (before, u64::MAX);
    for i in 0..30 {
        round().await;
        let now = rss_bytes().unwrap();
        peak = peak.max(now);
        // The level at rest: the least of the last five rounds (a leak raises it too).
        if i >= 25 {
            after = after.min(now);
        }
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "faults: RSS {:.1} MiB after the warm-up, peak {:.1} MiB, {:.1} MiB after {} more faulty answers",
        mib(before),
        mib(peak),
        mib(after),
        30 * fast.len()
    );
    assert!(
        after < before + 16 * 1024 * 1024,
        "RSS grew from {:.1} to {:.1} MiB",
        mib(before),
        mib(after)
    );
    h.stop().await;
}
