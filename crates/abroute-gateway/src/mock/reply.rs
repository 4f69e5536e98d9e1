//! What the mock says, whatever the API: which API a request is for (by its path), the few
//! request fields the mock reads, and the reply itself (its words cut to the request's token
//! limit, its token counts, its id). `chat`, `messages` and `responses` put a reply into each
//! API's own answer and events.

use bytes::Bytes;

use super::{chat, messages, responses};

/// The API a request is for, by the ending of its path (as the gateway routes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    /// OpenAI chat completions (`…/chat/completions`, and any other path).
    Chat,
    /// Anthropic messages (`…/messages`).
    Messages,
    /// OpenAI's Responses API (`…/responses`).
    Responses,
}

impl Api {
    pub(super) fn of_path(path: &str) -> Api {
        let path = path.trim_end_matches('/');
        if path.ends_with("/messages") {
            Api::Messages
        } else if path.ends_with("/responses") {
            Api::Responses
        } else {
            Api::Chat
        }
    }
}

/// `stream_options` of a chat completion request.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// The request fields the mock reads; the others are ignored.
#[derive(Debug, serde::Deserialize)]
pub(super) struct MockRequest {
    pub model: Option<String>,
    #[serde(default)]
    pub stream: bool,
    /// Chat completions (deprecated there) and messages.
    pub max_tokens: Option<u64>,
    /// Chat completions.
    pub max_completion_tokens: Option<u64>,
    /// Responses.
    pub max_output_tokens: Option<u64>,
    /// Chat completions.
    pub stream_options: Option<StreamOptions>,
    /// Responses echo the caller's map back.
    pub metadata: Option<serde_json::Value>,
}

impl MockRequest {
    /// The most output tokens the request allows, as its API names the limit.
    fn token_limit(&self, api: Api) -> Option<u64> {
        match api {
            Api::Chat => self.max_completion_tokens.or(self.max_tokens),
            Api::Messages => self.max_tokens,
            Api::Responses => self.max_output_tokens,
        }
    }
}

/// One reply: the words the mock says (one token each), cut to the request's limit.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    /// The answer's id, in the API's own style (`chatcmpl-…`, `msg_…`, `resp_…`).
    pub id: String,
    /// The model, as the mock received it.
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    /// The words said, each one token.
    pub words: Vec<String>,
    /// True when the token limit cut the reply short.
    pub truncated: bool,
    /// The prompt's tokens: its body's bytes / 4, rounded up.
    pub input_tokens: u64,
}

impl Reply {
    /// The reply to request number `n` of `api`, for `model`, whose body was `prompt_bytes`
    /// long, with at most `limit` output tokens.
    pub(super) fn new(
        api: Api,
        n: u64,
        model: &str,
        prompt_bytes: usize,
        limit: Option<u64>,
    ) -> Reply {
        let mut words = reply_words(model);
        let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let truncated = words.len() > limit;
        words.truncate(limit);
        let id = match api {
            Api::Chat => format!("chatcmpl-mock-{n}"),
            Api::Messages => format!("msg_mock_{n}"),
            Api::Responses => format!("resp_mock_{n}"),
        };
        Reply {
            id,
            model: model.to_owned(),
            created: super::unix_now(),
            words,
            truncated,
            input_tokens: u64::try_from(prompt_bytes.div_ceil(4)).unwrap_or(u64::MAX),
        }
    }

    /// The whole text.
    pub(super) fn text(&self) -> String {
        self.words.join(" ")
    }

    /// The text in stream pieces, one a token: `Hello!`, ` This`, ` is`, …
    pub(super) fn pieces(&self) -> impl Iterator<Item = String> + '_ {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { w.clone() } else { format!(" {w}") })
    }

    /// The output tokens.
    pub(super) fn output_tokens(&self) -> u64 {
        u64::try_from(self.words.len()).unwrap_or(u64::MAX)
    }
}

/// The reply text: it names the model.
fn reply_words(model: &str) -> Vec<String> {
    format!("Hello! This is {model}, answering from the abroute mock upstream.")
        .split(' ')
        .map(str::to_owned)
        .collect()
}

/// The body frames of the answer to `request`, and their content type: one JSON object, or
/// the SSE events of a stream.
pub(super) fn answer(
    api: Api,
    n: u64,
    model: &str,
    body: &[u8],
    request: &MockRequest,
) -> (Vec<Bytes>, &'static str) {
    let reply = Reply::new(api, n, model, body.len(), request.token_limit(api));
    if request.stream {
        let events = match api {
            Api::Chat => chat::events(
                &reply,
                request
                    .stream_options
                    .as_ref()
                    .is_some_and(|o| o.include_usage),
            ),
            Api::Messages => messages::events(&reply),
            Api::Responses => responses::events(&reply, request),
        };
        (events, "text/event-stream")
    } else {
        let json = match api {
            Api::Chat => chat::answer(&reply),
            Api::Messages => messages::answer(&reply),
            Api::Responses => responses::answer(&reply, request),
        };
        (vec![Bytes::from(json)], "application/json")
    }
}

/// An error body in the API's shape: OpenAI's `{"error": {...}}`, or Anthropic's
/// `{"type": "error", "error": {...}}` for messages.
pub(super) fn error_body(api: Api, status: u16, model: &str) -> String {
    let message = format!("the mock upstream was told to answer {status} for {model}");
    if api == Api::Messages {
        return messages::error_body(status, &message);
    }
    let (kind, code) = match status {
        429 => ("rate_limit_error", "rate_limit_exceeded"),
        400..=499 => ("invalid_request_error", "mock_client_error"),
        _ => ("api_error", "mock_server_error"),
    };
    serde_json::json!({"error": {"message": message, "type": kind, "code": code, "param": null }})
        .to_string()
}

/// One server-sent event: `data: {json}`, after `event: {name}` when named (Anthropic's
/// messages and OpenAI's Responses name every event by its `type`).
pub(super) fn sse(name: Option<&str>, data: &serde_json::Value) -> Bytes {
    Bytes::from(match name {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_api() {
        assert_eq!(Api::of_path("/v1/chat/completions"), Api::Chat);
        assert_eq!(Api::of_path("/v1/messages"), Api::Messages);
        assert_eq!(Api::of_path("/v1/responses/"), Api::Responses);
        assert_eq!(Api::of_path("/anything"), Api::Chat);
    }

    #[test]
    fn a_limit_cuts_the_reply() {
        let full = Reply::new(Api::Chat, 0, "m", 10, None);
        assert!(!full.truncated);
        assert_eq!(full.output_tokens(), 10);
        assert_eq!(full.input_tokens, 3);
        assert_eq!(full.pieces().collect::<String>(), full.text());
        let cut = Reply::new(Api::Messages, 1, "m", 10, Some(3));
        assert!(cut.truncated);
        assert_eq!(cut.text(), "Hello! This is");
        assert_eq!(cut.id, "msg_mock_1");
        let exact = Reply::new(Api::Responses, 2, "m", 10, Some(10));
        assert!(!exact.truncated, "a limit the reply fits is no cut");
    }
}
