//! Graceful shutdown of the built binary under load: SIGTERM while 500 requests and 100
//! streams are in flight. Every request either completes or was never accepted: none is cut
//! mid-answer, and every request the upstream saw was answered whole.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const REQUESTS: usize = 500;
const STREAMS: usize = 100;
/// Generous: the whole test takes a few seconds.
const BOUND: Duration = Duration::from_secs(30);

/// What the slow upstream has seen: requests arrived, and answers written whole.
#[derive(Default)]
struct Seen {
    arrived: AtomicUsize,
    answered: AtomicUsize,
}

/// An upstream that answers a chat request after 1.5 s, or streams 20 events 100 ms apart; one
/// request per connection.
async fn slow_upstream(seen: Arc<Seen>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..4 * (REQUESTS + STREAMS) {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 8192];
                // The head and the body (small: the chat body of one message).
                let complete = |r: &[u8]| {
                    let text = String::from_utf8_lossy(r);
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        return false;
                    };
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    body.len() >= len
                };
                while !complete(&req) {
                    match tokio::time::timeout(BOUND, s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => req.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                seen.arrived.fetch_add(1, Ordering::SeqCst);
                let stream = String::from_utf8_lossy(&req).contains("\"stream\":true")
                    || String::from_utf8_lossy(&req).contains("\"stream\": true");
                let ok = if stream {
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                    let mut ok = s.write_all(head.as_bytes()).await.is_ok();
                    for i in 0..20 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let event = format!(
                            "data: {{\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i} \"}}}}]}}\n\n"
                        );
                        ok &= s.write_all(event.as_bytes()).await.is_ok();
                    }
                    ok && s.write_all(b"data: [DONE]\n\n").await.is_ok()
                } else {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    let body = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"whole"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    s.write_all(answer.as_bytes()).await.is_ok()
                };
                let _ = s.shutdown().await;
                if ok {
                    seen.answered.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    addr
}

/// How one request ended, from the client's side.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// 200 and the whole answer.
    Complete,
    /// No response at all (refused, or closed before anything was answered).
    NotAccepted,
    /// A response started and did not finish, or an error status.
    Cut(String),
}

async fn one(base: String, stream: bool) -> Ended {
    let client = common::client();
    let extra = if stream { r#", "stream": true"# } else { "" };
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(common::chat_body(
            "compare-frontier-models",
            extra,
        ))))
        .unwrap();
    let response = match client.request(req).await {
        Ok(r) => r,
        Err(_) => return Ended::NotAccepted,
    };
    let status = response.status();
    let body = match response.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ended::Cut(format!("{status}: body cut: {e}")),
    };
    let text = String::from_utf8_lossy(&body);
    let whole = if stream {
        text.contains("t19 ") && text.trim_end().ends_with("data: [DONE]")
    } else {
        serde_json::from_slice::<serde_json::Value>(&body)
            .is_ok_and(|v| v["choices"][0]["message"]["content"] == "whole")
    };
    if status == StatusCode::OK && whole {
        Ended::Complete
    } else {
        Ended::Cut(format!("{status}: {text}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_cuts_nothing() {
    let seen = Arc::new(Seen::default());
    let upstream = slow_upstream(Arc::clone(&seen)).await;
    let dir = common::temp_dir("shutdown-load");
    let config = dir.join("abroute.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:0"
seed_router = true

[auth]
enabled = false

[[providers]]
name = "*"
base_url = "http://{upstream}/v1"

[limits]
shutdown_timeout = "20s"
"#
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_abroute"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read to its end: a closed pipe would fail the gateway's next print.
    let (found, address) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let mut found = Some(found);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("abroute gateway listening on http://")
                && let Some(f) = found.take()
            {
                let _ = f.send(rest.trim().to_owned());
            }
        }
    });
    let addr = tokio::time::timeout(BOUND, address)
        .await
        .expect("the banner in time")
        .expect("the banner names the address");
    let base = format!("http://{addr}");
    let mut tasks = Vec::new();
    for i in 0..REQUESTS + STREAMS {
        tasks.push(tokio::spawn(one(base.clone(), i >= REQUESTS)));
    }
    // Every one of them in flight at the upstream.
    let end = Instant::now() + BOUND;
    while seen.arrived.load(Ordering::SeqCst) < REQUESTS + STREAMS {
        assert!(
            Instant::now() < end,
            "only {} arrived",
            seen.arrived.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // More arrive while it drains: each is refused or served whole, never cut.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late: Vec<_> = (0..50)
        .map(|i| tokio::spawn(one(base.clone(), i % 2 == 0)))
        .collect();
    let mut complete = 0;
    for t in tasks {
        match tokio::time::timeout(BOUND, t).await.unwrap().unwrap() {
            Ended::Complete => complete += 1,
            other => panic!("a request in flight at SIGTERM: {other:?}"),
        }
    }
    assert_eq!(complete, REQUESTS + STREAMS);
    let mut late_complete = 0;
    for t in late {
        match tokio::time::timeout(BOUND, t).await.unwrap().unwrap() {
            Ended::Complete => late_complete += 1,
            Ended::NotAccepted => {}
            Ended::Cut(e) => panic!("a request that came during the drain was cut: {e}"),
        }
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    // Nothing the upstream served was lost on the way back.
    assert_eq!(
        seen.answered.load(Ordering::SeqCst),
        REQUESTS + STREAMS + late_complete
    );
}
