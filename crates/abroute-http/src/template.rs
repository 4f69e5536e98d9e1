//! Message templates and prompt variables: Inworld's `message_templates`, filled from the
//! request's `extra_body.prompt_variables`.
//!
//! A router (in `defaults`) or a variant may hold `message_templates`: a list of messages such as
//! `{"role": "system", "content": "You are {{agent_name}}, who loves {{item}}."}`. A variant's
//! list replaces the router's as a whole, as `text_generation_config` does. For every attempt
//! of a variant that has templates, the rewrite puts the templates' messages in front of the
//! request's own, with each `{{name}}` replaced by `extra_body.prompt_variables.name`:
//!
//! | API | where the templates go |
//! |---|---|
//! | chat completions | before the first element of `messages` |
//! | responses | before the first item of `input`; a string `input` becomes `[templates..., {"role": "user", "content": input}]` |
//! | messages (Anthropic) | `system` and `developer` templates become text blocks before the body's `system` (a string `system` becomes `[blocks..., {"type": "text", "text": system}]`, an empty one `[blocks...]`); the others go before the first element of `messages` |
//!
//! A list the body lacks is created (`"messages": [templates]`); a list that is neither an
//! array nor (where allowed) a string is left alone, and the upstream answers for it. As in
//! Inworld, only the router's templates are filled in: the request's own messages are never
//! searched for placeholders.
//!
//! **Placeholders** are `{{name}}`, with optional spaces inside the braces (`{{ name }}`);
//! `name` is one or more ASCII letters, digits, `_`, `-` or `.`. Any other `{{` is text. A
//! placeholder may stand anywhere in a template message's strings (usually `content`).
//!
//! **Values** come from the last `prompt_variables` object (the last key wins, as everywhere in
//! a body). A string is inserted as its text; a number or a boolean as written (`1e400` stays
//! `1e400`); an object or a list as its JSON text; `null` and a variable the request does not
//! send as nothing (the empty string, as Mustache and Jinja render an undefined variable). The
//! rewrite copies a string value's escaped bytes as they are: nothing is decoded or re-encoded.
//!
//! Templates are checked and typed once, by the core, when a router is compiled
//! ([`abroute::CompiledVariant::message_templates`]: the variant's own, else the router's
//! defaults); [`MessageTemplates::from_messages`] turns that list into pieces of ready-made JSON
//! bytes between placeholders, with no checks of its own, once per loaded router
//! ([`Prepared`](crate::Prepared) keeps them), so a rewrite only copies
//! bytes and looks variables up.

use std::fmt;

use serde_json::{Map, Value};

use crate::json::{Kind, Sink, SinkWriter, StrSpan, ValueSpan, write_str_content, write_value};
use crate::list::SmallList;

/// A template message's JSON bytes, split at its placeholders.
#[derive(Debug, Clone, Default)]
struct Pieces {
    bytes: Box<[u8]>,
    parts: Box<[Part]>,
}

/// One piece: literal bytes, or a placeholder's variable name (both ranges of `Pieces::bytes`).
#[derive(Debug, Clone, Copy)]
enum Part {
    Text(u32, u32),
    Var(u32, u32),
}

/// Parses the placeholder starting at `at` (its first `{`): the name's range and where the
/// placeholder ends.
fn placeholder(bytes: &[u8], at: usize) -> Option<(usize, usize, usize)> {
    let mut i = at.checked_add(2)?;
    if bytes.get(at..i)? != b"{{" {
        return None;
    }
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    let start = i;
    while bytes
        .get(i)
        .is_some_and(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        i += 1;
    }
    let end = i;
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    (end > start && bytes.get(i..i + 2) == Some(b"}}")).then_some((start, end, i + 2))
}

impl Pieces {
    fn new(bytes: Vec<u8>) -> Pieces {
        let mut parts = Vec::new();
        let mut text = 0;
        let mut i = 0;
        while let Some(off) = bytes
            .get(i..)
            .and_then(|b| b.windows(2).position(|w| w == b"{{"))
        {
            let at = i + off;
            match placeholder(&bytes, at) {
                Some((start, end, after)) => {
                    if text < at {
                        parts.push(Part::Text(text as u32, at as u32));
                    }
                    parts.push(Part::Var(start as u32, end as u32));
                    text = after;
                    i = after;
                }
                None => i = at + 1,
            }
        }
        if text < bytes.len() {
            parts.push(Part::Text(text as u32, bytes.len() as u32));
        }
        Pieces {
            bytes: bytes.into(),
            parts: parts.into(),
        }
    }

    fn range(&self, start: u32, end: u32) -> &[u8] {
        self.bytes
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    fn write<W: Sink>(&self, out: &mut W, vars: &Vars<'_>) {
        for part in self.parts.iter() {
            match *part {
                Part::Text(s, e) => out.put(self.range(s, e)),
                Part::Var(s, e) => vars.write(out, self.range(s, e)),
            }
        }
    }

    fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.parts.iter().filter_map(|p| match *p {
            Part::Var(s, e) => std::str::from_utf8(self.range(s, e)).ok(),
            Part::Text(..) => None,
        })
    }
}

/// One template message, ready to write.
#[derive(Debug, Clone)]
struct TemplateMessage {
    /// `role` is `system` or `developer`: for the messages API it goes into `system`.
    system: bool,
    /// The message object, compact.
    message: Pieces,
    /// For a system message: its content as Anthropic text blocks, comma-separated.
    blocks: Pieces,
}

/// Which of the templates a list receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selection {
    /// Every message (chat completions, responses).
    All,
    /// The messages that are not system messages (the messages API's `messages`).
    Conversation,
    /// The system messages as text blocks (the messages API's `system`).
    SystemBlocks,
}

/// A `message_templates` list, parsed once and written by every rewrite that needs it.
#[derive(Debug, Clone, Default)]
pub struct MessageTemplates {
    messages: Box<[TemplateMessage]>,
}

/// Why a `message_templates` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// The template's index in the list, when the problem is in one template.
    pub index: Option<usize>,
    /// What is wrong.
    pub reason: &'static str,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "message_templates[{i}]: {}", self.reason),
            None => write!(f, "message_templates: {}", self.reason),
        }
    }
}

impl std::error::Error for TemplateError {}

impl TemplateError {
    const NOT_A_LIST: TemplateError = TemplateError {
        index: None,
        reason: "must be a list of messages",
    };

    /// The adapter's wording of a problem the core found.
    fn from_problem(p: &abroute::config::TemplateProblem) -> TemplateError {
        use abroute::config::TemplateProblemKind as K;
        let reason = match p.kind {
            K::NotAList { .. } => return TemplateError::NOT_A_LIST,
            K::NotAnObject { .. } => "must be an object with `role` and `content`",
            K::MissingRole => "`role` is missing",
            K::EmptyRole => "`role` must not be empty",
            K::RoleNotAString { .. } => "`role` must be a string",
            K::MissingContent => "`content` is missing",
            K::ContentWrongType { .. } => "`content` must be a string or a list of parts",
            _ => "is not a message template",
        };
        TemplateError {
            index: p.index,
            reason,
        }
    }
}

impl MessageTemplates {
    /// Parses a `message_templates` value: a list of objects, each with a string `role` and a
    /// `content` that is a string or a list of parts. Other members of a template are copied
    /// as they are. The checks are the core's ([`abroute::MessageTemplate::parse_list`], which
    /// validation runs too); a compiled router already holds the checked list
    /// ([`abroute::CompiledVariant::message_templates`]): prefer
    /// [`from_messages`](Self::from_messages) with it.
    ///
    /// # Errors
    ///
    /// A [`TemplateError`] naming the first template that is wrong and what is wrong with it.
    pub fn new(value: &Value) -> Result<MessageTemplates, TemplateError> {
        match abroute::MessageTemplate::parse_list(value) {
            Ok(messages) => Ok(MessageTemplates::from_messages(&messages)),
            Err(problems) => Err(problems
                .first()
                .map_or(TemplateError::NOT_A_LIST, TemplateError::from_problem)),
        }
    }

    /// The byte pieces of templates the core already checked (a compiled variant's effective
    /// [`message_templates`](abroute::CompiledVariant::message_templates)). Cannot fail.
    pub fn from_messages(templates: &[abroute::MessageTemplate]) -> MessageTemplates {
        let messages = templates
            .iter()
            .map(|t| {
                let system = t.is_system();
                let mut message = Vec::new();
                // Writing into a Vec cannot fail; the bytes are `write_value`'s for the object.
                let _ = serde_json::to_writer(SinkWriter(&mut message), t.message());
                let mut blocks = Vec::new();
                if system {
                    match t.content() {
                        Value::Array(parts) => {
                            for (k, p) in parts.iter().enumerate() {
                                if k > 0 {
                                    blocks.push(b',');
                                }
                                write_value(&mut blocks, p);
                            }
                        }
                        other => {
                            let mut block = Map::new();
                            block.insert("type".into(), Value::from("text"));
                            block.insert("text".into(), other.clone());
                            write_value(&mut blocks, &Value::Object(block));
                        }
                    }
                }
                TemplateMessage {
                    system,
                    message: Pieces::new(message),
                    blocks: Pieces::new(blocks),
                }
            })
            .collect();
        MessageTemplates { messages }
    }

    /// How many template messages there are.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The variable names the templates use, in order of appearance (repeats included).
    pub fn variables(&self) -> impl Iterator<Item = &str> + '_ {
        // A system message's blocks hold the same placeholders as the message.
        self.messages.iter().flat_map(|m| m.message.names())
    }

    fn selected(&self, which: Selection) -> impl Iterator<Item = &TemplateMessage> + '_ {
        self.messages.iter().filter(move |m| match which {
            Selection::All => true,
            Selection::Conversation => !m.system,
            Selection::SystemBlocks => m.system && !m.blocks.bytes.is_empty(),
        })
    }

    /// True when `which` selects at least one template.
    pub(crate) fn has(&self, which: Selection) -> bool {
        self.selected(which).next().is_some()
    }

    /// Writes the selected templates, filled in, separated by commas.
    pub(crate) fn write<W: Sink>(&self, out: &mut W, which: Selection, vars: &Vars<'_>) {
        for (k, m) in self.selected(which).enumerate() {
            if k > 0 {
                out.put(b",");
            }
            match which {
                Selection::SystemBlocks => m.blocks.write(out, vars),
                Selection::All | Selection::Conversation => m.message.write(out, vars),
            }
        }
    }
}

/// The request's `prompt_variables`: keys and values as spans of the body.
#[derive(Debug)]
pub(crate) struct Vars<'a> {
    body: &'a [u8],
    entries: SmallList<(StrSpan, ValueSpan), 8>,
}

impl<'a> Vars<'a> {
    pub(crate) fn new(body: &'a [u8], entries: SmallList<(StrSpan, ValueSpan), 8>) -> Vars<'a> {
        Vars { body, entries }
    }

    /// The value of `name` (the last entry with that key). Names are ASCII; a key without
    /// escapes is compared as it is written, one with escapes decoded.
    fn get(&self, name: &[u8]) -> Option<ValueSpan> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| {
                if k.escaped {
                    k.decode(self.body).is_ok_and(|d| d.as_bytes() == name)
                } else {
                    k.inner.of(self.body) == name
                }
            })
            .map(|&(_, v)| v)
    }

    /// Writes the value of `name` as the content of a JSON string.
    fn write<W: Sink>(&self, out: &mut W, name: &[u8]) {
        let Some(v) = self.get(name) else {
            return;
        };
        let raw = v.span.of(self.body);
        match v.kind {
            // Already escaped for a JSON string: copied as it is.
            Kind::String => out.put(raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default()),
            Kind::Number | Kind::Bool => out.put(raw),
            Kind::Null => {}
            Kind::Object | Kind::Array => {
                write_str_content(out, &String::from_utf8_lossy(raw));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(p: &Pieces) -> Vec<String> {
        p.parts
            .iter()
            .map(|part| match *part {
                Part::Text(s, e) => String::from_utf8_lossy(p.range(s, e)).into_owned(),
                Part::Var(s, e) => format!("<{}>", String::from_utf8_lossy(p.range(s, e))),
            })
            .collect()
    }

    #[test]
    fn placeholders_split() {
        let p = Pieces::new(b"a {{x}} b {{ y.z }}{{-}}{{}} {{ bad name}} {{{w}}}".to_vec());
        assert_eq!(
            texts(&p),
            [
                "a ",
                "<x>",
                " b ",
                "<y.z>",
                "<->",
                "{{}} {{ bad name}} {",
                "<w>",
                "}"
            ]
        );
        assert_eq!(texts(&Pieces::new(b"{{a}}".to_vec())), ["<a>"]);
        assert_eq!(texts(&Pieces::new(b"{{a}".to_vec())), ["{{a}"]);
        assert!(Pieces::new(Vec::new()).parts.is_empty());
    }

    #[test]
    fn parses_and_refuses() {
        let t = MessageTemplates::new(&serde_json::json!([
            {"role": "system", "content": "You are {{agent}}."},
            {"role": "user", "content": [{"type": "text", "text": "{{q}}"}]}
        ]))
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.variables().collect::<Vec<_>>(), ["agent", "q"]);
        assert!(t.has(Selection::SystemBlocks) && t.has(Selection::Conversation));
        for (bad, msg) in [
            (
                serde_json::json!({}),
                "message_templates: must be a list of messages",
            ),
            (
                serde_json::json!([1]),
                "message_templates[0]: must be an object with `role` and `content`",
            ),
            (
                serde_json::json!([{"content": "x"}]),
                "message_templates[0]: `role` is missing",
            ),
            (
                serde_json::json!([{"role": "user", "content": "x"}, {"role": "", "content": "x"}]),
                "message_templates[1]: `role` must not be empty",
            ),
            (
                serde_json::json!([{"role": 1, "content": "x"}]),
                "message_templates[0]: `role` must be a string",
            ),
            (
                serde_json::json!([{"role": "user"}]),
                "message_templates[0]: `content` is missing",
            ),
            (
                serde_json::json!([{"role": "user", "content": 5}]),
                "message_templates[0]: `content` must be a string or a list of parts",
            ),
        ] {
            assert_eq!(MessageTemplates::new(&bad).unwrap_err().to_string(), msg);
        }
    }

    #[test]
    fn from_messages_writes_the_cores_checked_list() {
        let system = serde_json::json!({"role": "system", "content": "You are {{agent}}."});
        let user = serde_json::json!({"role": "user", "content": [{"type": "text", "text": "{{q}}"}], "name": "u"});
        let config = abroute::RouterConfig::from_value(&serde_json::json!({
            "name": "r",
            "defaults": { "message_templates": [system, user] },
            "defaultRoute": { "route_id": "d", "variants": [
                { "variant": { "variant_id": "a", "model_id": "m" }, "weight": 1 } ] } }))
        .unwrap();
        let router = config.compile().unwrap();
        let list = router.default_route().unwrap().variants()[0]
            .message_templates()
            .unwrap();
        let t = MessageTemplates::from_messages(list);
        assert_eq!(t.len(), 2);
        assert_eq!(t.variables().collect::<Vec<_>>(), ["agent", "q"]);
        assert!(t.has(Selection::SystemBlocks) && t.has(Selection::Conversation));
        let bytes = |v: &Value| serde_json::to_vec(v).unwrap();
        assert_eq!(&*t.messages[0].message.bytes, bytes(&system).as_slice());
        assert_eq!(&*t.messages[1].message.bytes, bytes(&user).as_slice());
        assert_eq!(
            &*t.messages[0].blocks.bytes,
            bytes(&serde_json::json!({"type": "text", "text": "You are {{agent}}."})).as_slice()
        );
        assert!(t.messages[1].blocks.bytes.is_empty());
        // The same pieces as parsing the value.
        let parsed = MessageTemplates::new(&serde_json::json!([system, user])).unwrap();
        for (a, b) in parsed.messages.iter().zip(t.messages.iter()) {
            assert_eq!(a.message.bytes, b.message.bytes);
            assert_eq!(a.blocks.bytes, b.blocks.bytes);
        }
    }
}
