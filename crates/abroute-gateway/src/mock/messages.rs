//! Anthropic messages: a `message` object, or the stream Anthropic sends (`message_start`,
//! `content_block_start`, `ping`, a `content_block_delta` a token, `content_block_stop`,
//! `message_delta` with the stop reason and usage, `message_stop`), each event named on an
//! `event:` line as Anthropic's SDKs require. Errors in Anthropic's shape.

use bytes::Bytes;
use serde_json::{Value, json};

use super::reply::{Reply, sse};

fn stop_reason(reply: &Reply) -> &'static str {
    if reply.truncated {
        "max_tokens"
    } else {
        "end_turn"
    }
}

fn usage(reply: &Reply, output_tokens: u64) -> Value {
    json!({
        "input_tokens": reply.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard"
    })
}

fn message(reply: &Reply, content: Value, stop: Option<&str>, output_tokens: u64) -> Value {
    json!({
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage(reply, output_tokens)
    })
}

/// The `message` object.
pub(super) fn answer(reply: &Reply) -> String {
    message(
        reply,
        json!([{ "type": "text", "text": reply.text() }]),
        Some(stop_reason(reply)),
        reply.output_tokens(),
    )
    .to_string()
}

/// The SSE events of a streamed reply, `message_stop` last.
pub(super) fn events(reply: &Reply) -> Vec<Bytes> {
    let event = |v: Value| {
        let name = v["type"].as_str().unwrap_or_default().to_owned();
        sse(Some(&name), &v)
    };
    let mut out = Vec::with_capacity(reply.words.len() + 6);
    out.push(event(json!({
        "type": "message_start", "message": message(reply, json!([]), None, 0)
    })));
    out.push(event(json!({
        "type": "content_block_start", "index": 0,
        "content_block": { "type": "text", "text": "" }
    })));
    out.push(event(json!({ "type": "ping" })));
    for piece in reply.pieces() {
        out.push(event(json!({
            "type": "content_block_delta", "index": 0,
            "delta": { "type": "text_delta", "text": piece }
        })));
    }
    out.push(event(json!({ "type": "content_block_stop", "index": 0 })));
    out.push(event(json!({
        "type": "message_delta",
        "delta": { "stop_reason": stop_reason(reply), "stop_sequence": null },
        "usage": {
            "input_tokens": reply.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": reply.output_tokens()
        }
    })));
    out.push(event(json!({ "type": "message_stop" })));
    out
}

/// Anthropic's error body: `{"type": "error", "error": {"type": …, "message": …}}`.
pub(super) fn error_body(status: u16, message: &str) -> String {
    let kind = match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::reply::Api;
    use super::*;

    /// (event name, data) of each event.
    fn parse(events: &[Bytes]) -> Vec<(String, Value)> {
        events
            .iter()
            .map(|e| {
                let s = std::str::from_utf8(e).unwrap();
                let (name, data) = s.trim_end().split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap().to_owned();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(
                    data["type"],
                    name.as_str(),
                    "the event is named by its type"
                );
                (name, data)
            })
            .collect()
    }

    #[test]
    fn a_stream_says_the_text_and_ends_with_usage() {
        let reply = Reply::new(Api::Messages, 7, "claude-x", 20, None);
        let ev = parse(&events(&reply));
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
        assert_eq!(
            names[names.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        let text: String = ev
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(text, reply.text());
        assert_eq!(ev[0].1["message"]["id"], "msg_mock_7");
        let delta = &ev[ev.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(delta["usage"]["output_tokens"], 10);
        assert_eq!(delta["usage"]["input_tokens"], 5);
    }

    #[test]
    fn a_cut_message_stops_at_max_tokens() {
        let v: Value =
            serde_json::from_str(&answer(&Reply::new(Api::Messages, 0, "m", 0, Some(2)))).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["stop_reason"], "max_tokens");
        assert_eq!(v["content"][0]["text"], "Hello! This");
        assert_eq!(v["usage"]["output_tokens"], 2);
    }
}
