//! OpenAI's Responses API: a `response` object whose `output` is one assistant `message` with
//! one `output_text` part (the SDKs' `output_text` is computed from it), or the stream OpenAI
//! sends (`response.created`, `response.in_progress`, `response.output_item.added`,
//! `response.content_part.added`, a `response.output_text.delta` a token,
//! `response.output_text.done`, `response.content_part.done`, `response.output_item.done`, and
//! `response.completed`, or `response.incomplete` when `max_output_tokens` cut it), each event
//! named on an `event:` line and numbered by `sequence_number`.

use bytes::Bytes;
use serde_json::{Value, json};

use super::reply::{MockRequest, Reply, sse};

/// The output message's id, beside the response's (`resp_mock_N` → `msg_mock_N`).
fn item_id(reply: &Reply) -> String {
    reply.id.replacen("resp_", "msg_", 1)
}

/// `completed`, or `incomplete` when the token limit cut the reply.
fn status(reply: &Reply) -> &'static str {
    if reply.truncated {
        "incomplete"
    } else {
        "completed"
    }
}

fn text_part(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] })
}

fn message_item(reply: &Reply, status: &str, content: Value) -> Value {
    json!({
        "id": item_id(reply), "type": "message", "status": status, "role": "assistant",
        "content": content
    })
}

fn usage(reply: &Reply) -> Value {
    let output = reply.output_tokens();
    json!({
        "input_tokens": reply.input_tokens,
        "input_tokens_details": { "cached_tokens": 0, "cache_write_tokens": 0 },
        "output_tokens": output,
        "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": reply.input_tokens + output
    })
}

/// The `response` object in a given state: `in_progress` (no output, no usage yet), or done
/// (`completed` / `incomplete`, with its output and usage).
fn response(reply: &Reply, request: &MockRequest, done: bool) -> Value {
    let (state, output, usage, completed_at) = if done {
        let status = status(reply);
        let item = message_item(reply, status, json!([text_part(&reply.text())]));
        let completed_at = (!reply.truncated).then_some(reply.created);
        (status, json!([item]), usage(reply), json!(completed_at))
    } else {
        ("in_progress", json!([]), Value::Null, Value::Null)
    };
    let incomplete = if done && reply.truncated {
        json!({ "reason": "max_output_tokens" })
    } else {
        Value::Null
    };
    let metadata = request
        .metadata
        .as_ref()
        .filter(|m| m.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    json!({
        "id": reply.id,
        "object": "response",
        "created_at": reply.created,
        "status": state,
        "background": false,
        "completed_at": completed_at,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": null,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": null,
        "model": reply.model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": { "effort": null, "summary": null },
        "service_tier": "default",
        "store": false,
        "temperature": 1.0,
        "text": { "format": { "type": "text" }, "verbosity": "medium" },
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": null,
        "metadata": metadata
    })
}

/// The `response` object.
pub(super) fn answer(reply: &Reply, request: &MockRequest) -> String {
    response(reply, request, true).to_string()
}

/// The SSE events of a streamed reply, `response.completed` (or `response.incomplete`) last.
pub(super) fn events(reply: &Reply, request: &MockRequest) -> Vec<Bytes> {
    let item = item_id(reply);
    let mut out = Vec::with_capacity(reply.words.len() + 8);
    let mut push = |mut v: Value| {
        let name = v["type"].as_str().unwrap_or_default().to_owned();
        v["sequence_number"] = json!(out.len());
        out.push(sse(Some(&name), &v));
    };
    push(json!({ "type": "response.created", "response": response(reply, request, false) }));
    push(json!({ "type": "response.in_progress", "response": response(reply, request, false) }));
    push(json!({
        "type": "response.output_item.added", "output_index": 0,
        "item": message_item(reply, "in_progress", json!([]))
    }));
    push(json!({
        "type": "response.content_part.added", "item_id": item, "output_index": 0,
        "content_index": 0, "part": text_part("")
    }));
    for piece in reply.pieces() {
        push(json!({
            "type": "response.output_text.delta", "item_id": item, "output_index": 0,
            "content_index": 0, "delta": piece, "logprobs": []
        }));
    }
    let text = reply.text();
    push(json!({
        "type": "response.output_text.done", "item_id": item, "output_index": 0,
        "content_index": 0, "text": text, "logprobs": []
    }));
    push(json!({
        "type": "response.content_part.done", "item_id": item, "output_index": 0,
        "content_index": 0, "part": text_part(&text)
    }));
    push(json!({
        "type": "response.output_item.done", "output_index": 0,
        "item": message_item(reply, status(reply), json!([text_part(&text)]))
    }));
    let terminal = if reply.truncated {
        "response.incomplete"
    } else {
        "response.completed"
    };
    push(json!({ "type": terminal, "response": response(reply, request, true) }));
    out
}

#[cfg(test)]
mod tests {
    use super::super::reply::Api;
    use super::*;

    fn request(json: &str) -> MockRequest {
        serde_json::from_str(json).unwrap()
    }

    fn parse(events: &[Bytes]) -> Vec<Value> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let s = std::str::from_utf8(e).unwrap();
                let (name, data) = s.trim_end().split_once('\n').unwrap();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], name.strip_prefix("event: ").unwrap());
                assert_eq!(data["sequence_number"], i);
                data
            })
            .collect()
    }

    #[test]
    fn an_answer_has_its_text_in_output() {
        let req = request(r#"{"model": "m", "metadata": {"k": "v"}}"#);
        let v: Value =
            serde_json::from_str(&answer(&Reply::new(Api::Responses, 3, "m", 8, None), &req))
                .unwrap();
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "completed");
        assert_eq!(v["id"], "resp_mock_3");
        assert_eq!(v["output"][0]["id"], "msg_mock_3");
        assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
        assert!(
            v["output"][0]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("This is m,")
        );
        assert_eq!(v["usage"]["output_tokens"], 10);
        assert_eq!(v["usage"]["input_tokens"], 2);
        assert_eq!(v["metadata"], json!({"k": "v"}));
        assert_eq!(v["incomplete_details"], Value::Null);
    }

    #[test]
    fn a_cut_stream_ends_incomplete() {
        let req = request(r#"{"model": "m", "stream": true, "max_output_tokens": 4}"#);
        let ev = parse(&events(
            &Reply::new(Api::Responses, 0, "m", 0, Some(4)),
            &req,
        ));
        assert_eq!(ev[0]["type"], "response.created");
        assert_eq!(ev[0]["response"]["status"], "in_progress");
        let deltas: String = ev
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .map(|e| e["delta"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(deltas, "Hello! This is m,");
        let last = ev.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(last["response"]["status"], "incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(last["response"]["max_output_tokens"], 4);
        assert_eq!(last["response"]["usage"]["output_tokens"], 4);
    }
}
