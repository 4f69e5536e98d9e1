//! OpenAI chat completions: a `chat.completion`, or a stream of `chat.completion.chunk`
//! events ending with `data: [DONE]`, with every field the official SDKs' types require.

use bytes::Bytes;
use serde_json::{Value, json};

use super::reply::{Reply, sse};

fn finish_reason(reply: &Reply) -> &'static str {
    if reply.truncated { "length" } else { "stop" }
}

fn usage(reply: &Reply) -> Value {
    let output = reply.output_tokens();
    json!({
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": output,
        "total_tokens": reply.input_tokens + output,
        "prompt_tokens_details": { "cached_tokens": 0, "audio_tokens": 0 },
        "completion_tokens_details": {
            "reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
        }
    })
}

/// The `chat.completion` object.
pub(super) fn answer(reply: &Reply) -> String {
    json!({
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant", "content": reply.text(), "refusal": null, "annotations": []
            },
            "logprobs": null,
            "finish_reason": finish_reason(reply)
        }],
        "usage": usage(reply),
        "service_tier": "default",
        "system_fingerprint": null
    })
    .to_string()
}

/// The SSE events of a streamed reply: the role, one chunk a token, the finish reason, with
/// `include_usage` a last chunk with no choices and the usage (every chunk before it says
/// `"usage": null`, as OpenAI's do), and `data: [DONE]`.
pub(super) fn events(reply: &Reply, include_usage: bool) -> Vec<Bytes> {
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut v = json!({
            "id": reply.id, "object": "chat.completion.chunk", "created": reply.created,
            "model": reply.model, "service_tier": "default", "system_fingerprint": null,
            "choices": choices
        });
        if include_usage {
            v["usage"] = usage.unwrap_or(Value::Null);
        }
        sse(None, &v)
    };
    let choice = |delta: Value, finish: Option<&str>| json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]);
    let mut out = Vec::with_capacity(reply.words.len() + 4);
    out.push(chunk(
        choice(
            json!({"role": "assistant", "content": "", "refusal": null}),
            None,
        ),
        None,
    ));
    for piece in reply.pieces() {
        out.push(chunk(choice(json!({ "content": piece }), None), None));
    }
    out.push(chunk(choice(json!({}), Some(finish_reason(reply))), None));
    if include_usage {
        out.push(chunk(json!([]), Some(usage(reply))));
    }
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::super::reply::Api;
    use super::*;

    fn data(event: &Bytes) -> Value {
        let s = std::str::from_utf8(event).unwrap();
        serde_json::from_str(s.trim().strip_prefix("data: ").unwrap()).unwrap()
    }

    #[test]
    fn events_end_with_done() {
        let ev = events(&Reply::new(Api::Chat, 0, "gpt-4.1", 0, None), false);
        assert!(ev.last().unwrap().starts_with(b"data: [DONE]"));
        let text: String = ev[1..ev.len() - 2]
            .iter()
            .map(|b| {
                data(b)["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert!(text.contains("This is gpt-4.1"), "{text}");
        assert!(
            ev[..ev.len() - 1]
                .iter()
                .all(|e| data(e).get("usage").is_none())
        );
    }

    #[test]
    fn include_usage_adds_a_last_chunk_with_usage() {
        let reply = Reply::new(Api::Chat, 0, "gpt-4.1", 40, Some(2));
        let ev = events(&reply, true);
        let last = data(&ev[ev.len() - 2]);
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["completion_tokens"], 2);
        assert_eq!(last["usage"]["prompt_tokens"], 10);
        let finish = data(&ev[ev.len() - 3]);
        assert_eq!(finish["choices"][0]["finish_reason"], "length");
        assert_eq!(finish["usage"], Value::Null);
    }

    #[test]
    fn a_cut_answer_ends_with_length() {
        let v: Value =
            serde_json::from_str(&answer(&Reply::new(Api::Chat, 0, "m", 0, Some(1)))).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["choices"][0]["message"]["content"], "Hello!");
        assert_eq!(v["usage"]["completion_tokens"], 1);
    }
}
