//! Rewriting a request body for one attempt, byte for byte.
//!
//! [`rewrite`] copies the body into one allocation of exactly the right size, changing only:
//!
//! 1. **`model`**: every top-level `model` value becomes the attempt's model (a duplicate
//!    `model` key is rewritten too, so no reader can pick a different one);
//! 2. **generation parameters**: the variant's `text_generation_config` (or, when the variant has
//!    none, the router's `defaults.text_generation_config`: the variant's replaces the default as a
//!    whole, as in Inworld) is mapped to the API's field names (table below). A parameter the body
//!    already has is replaced in place under [`Precedence::Router`] (the default) or kept under
//!    [`Precedence::Request`]; one it lacks is inserted right after `model`;
//! 3. **`extra_body`**: the router's own keys (`metadata`, `models`, `fallback`,
//!    `prompt_variables`) are removed, and `extra_body` itself when nothing else is left in it
//!    (an earlier duplicate `extra_body` is removed whole).
//!
//! Every other byte (whitespace, key order, number spelling such as `1e400` or `1.0`, escapes,
//! a `"model"` key inside a message) is copied as it was. Removing a member removes the comma
//! that separated it, so the output is always valid JSON.
//!
//! | `text_generation_config` | chat completions | responses | messages |
//! |---|---|---|---|
//! | `max_tokens` | `max_tokens` (and `max_completion_tokens` if the body uses it) | `max_output_tokens` | `max_tokens` |
//! | `temperature`, `top_p` | same | same | same |
//! | `frequency_penalty`, `presence_penalty`, `seed`, `repetition_penalty` | same | not sent | not sent |
//! | `stop_sequences` | `stop` | not sent | `stop_sequences` |
//! | `logit_bias` (`[{token_id, bias_value}]`) | `logit_bias` as `{"token_id": bias}` | not sent | not sent |
//! | `reasoning` (`{effort, max_tokens}`) | `reasoning_effort` = `effort` | `reasoning` = `{"effort"}` | `thinking` = `{"type": "enabled", "budget_tokens": max_tokens}` |
//! | any other key | same name | same name | same name |
//!
//! camelCase spellings (`maxTokens`, `topP`, ...) are read too; `null` values are skipped.
//!
//! 4. **message templates**: when the variant (or the router's `defaults`) has
//!    `message_templates`, they go in front of the request's messages, filled in from
//!    `extra_body.prompt_variables` (see [`template`](crate::template)).
//!
//! [`set_model`] is the same byte-preserving copy for a request that names no router: only its
//! top-level `model` string changes (to strip the provider prefix before a pass-through, say).

use serde_json::Value;

use crate::extract::{Api, Extracted, Member, MemberKind};
use crate::json::{Counter, Kind, Scanner, Sink, Span, StrSpan, ValueSpan, write_str, write_value};
use crate::list::SmallList;
use crate::template::{MessageTemplates, Selection, Vars};

/// Which value wins when the body and the router's generation config both set a parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Precedence {
    /// The router's config wins (the default): every request of a variant runs with the
    /// variant's settings, so an experiment compares what it says it compares.
    #[default]
    Router,
    /// The request's own value wins; the config only fills in what the body lacks.
    Request,
}

/// What to write for one attempt.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rewrite<'r> {
    /// The model to call (the attempt's model id, possibly without its provider prefix).
    pub model: &'r str,
    /// The effective `text_generation_config`: the variant's own, else the router's
    /// `defaults.text_generation_config` (see [`AttemptSettings`](crate::AttemptSettings)).
    pub generation: Option<&'r Value>,
    /// The same parameters mapped and rendered ahead of time ([`GenerationParams`], as
    /// [`Prepared`](crate::Prepared) keeps them per router); when given, `generation` is not
    /// read and the rewrite only copies their bytes. The output is the same either way.
    pub rendered: Option<&'r GenerationParams>,
    /// Who wins when both set a parameter.
    pub precedence: Precedence,
    /// The effective `message_templates` as configured: the variant's own, else the router's
    /// `defaults.message_templates`. Parsed on each call when `templates` is `None`.
    pub message_templates: Option<&'r Value>,
    /// The same templates parsed ahead of time ([`MessageTemplates`], as
    /// [`Prepared`](crate::Prepared) keeps them per router); when given, `message_templates`
    /// is not read. The output is the same either way.
    pub templates: Option<&'r MessageTemplates>,
}

/// The names a parameter is written under; the first is used when inserting.
#[derive(Debug, Clone, Copy)]
enum Names<'r> {
    Static(&'static [&'static str]),
    One(&'r str),
}

impl Default for Names<'_> {
    fn default() -> Self {
        Names::Static(&[])
    }
}

impl<'r> Names<'r> {
    fn first(&self) -> &'r str {
        match *self {
            Names::Static(list) => list.first().copied().unwrap_or_default(),
            Names::One(s) => s,
        }
    }

    fn matches(&self, body: &[u8], key: &StrSpan) -> bool {
        match *self {
            Names::Static(list) => list.iter().any(|n| key.eq_str(body, n)),
            Names::One(s) => key.eq_str(body, s),
        }
    }

    fn overlaps(&self, other: &Names<'_>) -> bool {
        let list = |n: &Names<'r>| -> (&'static [&'static str], Option<&'r str>) {
            match *n {
                Names::Static(l) => (l, None),
                Names::One(s) => (&[], Some(s)),
            }
        };
        let (a_list, a_one) = list(self);
        let (b_list, b_one) = match *other {
            Names::Static(l) => (l, None),
            Names::One(s) => (&[][..], Some(s)),
        };
        a_list
            .iter()
            .copied()
            .chain(a_one)
            .any(|a| b_list.iter().copied().chain(b_one).any(|b| a == b))
    }
}

/// A replacement: what to write in place of a span.
#[derive(Debug, Clone, Copy, Default)]
enum Repl<'r> {
    /// Nothing (a removal).
    #[default]
    Nothing,
    /// A JSON string.
    Str(&'r str),
    /// A JSON value, written compactly.
    Json(&'r Value),
    /// Inworld's `[{token_id, bias_value}]` as OpenAI's `{"token_id": bias}`.
    LogitBias(&'r Value),
    /// `{"effort": "<effort>"}`.
    Effort(&'r str),
    /// `{"type": "enabled", "budget_tokens": <n>}`.
    Thinking(&'r Value),
    /// A value rendered ahead of time ([`GenerationParams`]).
    Bytes(&'r [u8]),
    /// Bytes already rendered into the scratch buffer: `start..end`. Every edit's replacement
    /// is rendered before the output is sized: a parameter's value, the model string, or (for
    /// the last `model`, or a new `"model":` member when the body has none) the model followed
    /// by every parameter to insert (`,"name":value`).
    Rendered(usize, usize),
    /// Message templates, filled in as they are written.
    Templates(TemplateEdit),
}

/// Where message templates go.
#[derive(Debug, Clone, Copy)]
enum TemplateEdit {
    /// Before the first element of a list (right after its `[`), with a comma when the list
    /// has elements.
    Prepend { which: Selection, nonempty: bool },
    /// A string value becomes a list: the templates, then the string as a message (or, for
    /// `system`, as a text block).
    Wrap { which: Selection, string: Span },
    /// A new member `,"name":[templates]` before the body's closing brace.
    Member {
        which: Selection,
        name: &'static str,
    },
}

/// One parameter of the generation config, mapped to the API.
#[derive(Debug, Clone, Copy, Default)]
struct Param<'r> {
    names: Names<'r>,
    repl: Repl<'r>,
    present: bool,
}

/// A span of the body and what replaces it.
#[derive(Debug, Clone, Copy, Default)]
struct Edit<'r> {
    start: usize,
    end: usize,
    repl: Repl<'r>,
}

/// What happens to one member.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Action {
    #[default]
    Keep,
    Remove,
    /// Replace the value with the parameter at this index.
    Param(usize),
    /// Replace the value with the model (and the inserts when this is the last `model`).
    Model,
    /// Keep `extra_body` but remove the router's keys from it.
    FilterExtra,
}

fn effort(v: &Value) -> Option<&str> {
    let e = match v {
        Value::String(s) => s.as_str(),
        Value::Object(m) => m.get("effort")?.as_str()?,
        _ => return None,
    };
    (!e.is_empty() && !e.eq_ignore_ascii_case("unspecified")).then_some(e)
}

/// Maps one `text_generation_config` entry to the API, or `None` when the API has no such
/// parameter.
fn map_param<'r>(api: Api, key: &'r str, v: &'r Value) -> Option<Param<'r>> {
    use Api::{ChatCompletions as C, Messages as M, Responses as R};
    if v.is_null() || key == "model" || key == "extra_body" {
        return None;
    }
    let canonical: &'r str = match key {
        "maxTokens" => "max_tokens",
        "topP" => "top_p",
        "frequencyPenalty" => "frequency_penalty",
        "presencePenalty" => "presence_penalty",
        "repetitionPenalty" => "repetition_penalty",
        "stopSequences" => "stop_sequences",
        "logitBias" => "logit_bias",
        other => other,
    };
    let (names, repl) = match (canonical, api) {
        ("max_tokens", C) => (
            Names::Static(&["max_tokens", "max_completion_tokens"]),
            Repl::Json(v),
        ),
        ("max_tokens", R) => (Names::One("max_output_tokens"), Repl::Json(v)),
        ("frequency_penalty" | "presence_penalty" | "seed" | "repetition_penalty", R | M)
        | ("logit_bias", R | M)
        | ("stop_sequences", R) => return None,
        ("stop_sequences", C) => (Names::One("stop"), Repl::Json(v)),
        ("logit_bias", C) => (Names::One("logit_bias"), Repl::LogitBias(v)),
        ("reasoning", C) => (Names::One("reasoning_effort"), Repl::Str(effort(v)?)),
        ("reasoning", R) => (Names::One("reasoning"), Repl::Effort(effort(v)?)),
        ("reasoning", M) => {
            let budget = v.get("max_tokens").or_else(|| v.get("maxTokens"))?;
            if !budget.is_u64() {
                return None;
            }
            (Names::One("thinking"), Repl::Thinking(budget))
        }
        _ => (Names::One(canonical), Repl::Json(v)),
    };
    Some(Param {
        names,
        repl,
        present: false,
    })
}

/// The parameters of a `text_generation_config` mapped to `api`, in the config's order, each
/// name at most once (the first entry that claims a name wins).
fn mapped_params<'r>(api: Api, generation: &'r Value, mut push: impl FnMut(Param<'r>)) {
    let Value::Object(map) = generation else {
        return;
    };
    let mut seen: SmallList<Names<'r>, 8> = SmallList::default();
    for (k, v) in map {
        if let Some(p) = map_param(api, k, v)
            && !seen.iter().any(|q| q.overlaps(&p.names))
        {
            seen.push(p.names);
            push(p);
        }
    }
}

/// [`Names`] that own their one name, to be kept beyond the config.
#[derive(Debug, Clone)]
enum OwnedNames {
    Static(&'static [&'static str]),
    One(Box<str>),
}

impl OwnedNames {
    fn as_names(&self) -> Names<'_> {
        match self {
            OwnedNames::Static(list) => Names::Static(list),
            OwnedNames::One(s) => Names::One(s),
        }
    }
}

/// One parameter, mapped and rendered.
#[derive(Debug, Clone)]
struct RenderedParam {
    names: OwnedNames,
    bytes: Box<[u8]>,
}

/// A `text_generation_config` mapped to one API and rendered once, so that a rewrite copies
/// bytes instead of mapping names and formatting numbers on every request. [`rewrite`] gives
/// the same output with these as with the config itself.
#[derive(Debug, Clone, Default)]
pub struct GenerationParams {
    params: Vec<RenderedParam>,
}

impl GenerationParams {
    /// Maps and renders `generation` for `api`.
    pub fn new(api: Api, generation: &Value) -> GenerationParams {
        let mut params = Vec::new();
        mapped_params(api, generation, |p| {
            let mut bytes = Vec::new();
            write_repl(&mut bytes, p.repl);
            let names = match p.names {
                Names::Static(list) => OwnedNames::Static(list),
                Names::One(s) => OwnedNames::One(s.into()),
            };
            params.push(RenderedParam {
                names,
                bytes: bytes.into(),
            });
        });
        GenerationParams { params }
    }

    /// How many parameters there are.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
}

/// The templates' edits: inside the conversation and (messages API) `system` values, in body
/// order, then new members for those the body lacks. A value whose member is otherwise
/// replaced, or that is neither a list nor (where one may be) a string, is left alone.
fn template_edits(
    ex: &Extracted<'_>,
    templates: &MessageTemplates,
    actions: &SmallList<Action, 16>,
    edits: &mut SmallList<Edit<'static>, 4>,
) {
    let body = ex.body();
    let (conversation, name) = match ex.api() {
        Api::ChatCompletions => (Selection::All, "messages"),
        Api::Responses => (Selection::All, "input"),
        Api::Messages => (Selection::Conversation, "messages"),
    };
    // (value, which templates, member name, whether a string value may be wrapped)
    type Target = (Option<ValueSpan>, Selection, &'static str, bool);
    let mut targets: [Option<Target>; 2] = [
        Some((
            ex.conversation(),
            conversation,
            name,
            ex.api() == Api::Responses,
        )),
        (ex.api() == Api::Messages).then(|| (ex.system(), Selection::SystemBlocks, "system", true)),
    ];
    // Edits inside values go in body order (new members all go last).
    let at = |t: &Option<Target>| t.and_then(|t| t.0).map_or(usize::MAX, |v| v.span.start);
    if at(&targets[1]) < at(&targets[0]) {
        targets.swap(0, 1);
    }
    let kept = |v: ValueSpan| {
        let members = ex.members();
        members
            .iter()
            .position(|m| m.value().span.start == v.span.start)
            .and_then(|i| actions.get(i))
            .is_some_and(|a| *a == Action::Keep)
    };
    let mut tail: SmallList<Edit<'static>, 2> = SmallList::default();
    for &(value, which, name, wraps) in targets.iter().flatten() {
        if !templates.has(which) {
            continue;
        }
        match value {
            None => tail.push(Edit {
                start: ex.object_end(),
                end: ex.object_end(),
                repl: Repl::Templates(TemplateEdit::Member { which, name }),
            }),
            Some(v) if !kept(v) => {}
            Some(v) if v.kind == Kind::Array => {
                let after = v.span.start + 1;
                let nonempty = body
                    .get(after..)
                    .and_then(|b| b.iter().find(|c| !c.is_ascii_whitespace()))
                    .is_some_and(|&c| c != b']');
                edits.push(Edit {
                    start: after,
                    end: after,
                    repl: Repl::Templates(TemplateEdit::Prepend { which, nonempty }),
                });
            }
            Some(v) if v.kind == Kind::String && wraps => edits.push(Edit {
                start: v.span.start,
                end: v.span.end,
                repl: Repl::Templates(TemplateEdit::Wrap {
                    which,
                    string: v.span,
                }),
            }),
            Some(_) => {}
        }
    }
    for e in tail.iter() {
        edits.push(*e);
    }
}

/// Writes the templates of one edit.
fn write_templates<W: Sink>(
    out: &mut W,
    edit: TemplateEdit,
    templates: &MessageTemplates,
    vars: &Vars<'_>,
    body: &[u8],
) {
    match edit {
        TemplateEdit::Prepend { which, nonempty } => {
            templates.write(out, which, vars);
            if nonempty {
                out.put(b",");
            }
        }
        TemplateEdit::Wrap { which, string } => {
            out.put(b"[");
            templates.write(out, which, vars);
            // An empty `system` goes (Anthropic refuses empty text blocks); an empty `input`
            // stays the user's message.
            if which != Selection::SystemBlocks {
                out.put(br#",{"role":"user","content":"#);
                out.put(string.of(body));
                out.put(b"}");
            } else if string.len() > 2 {
                out.put(br#",{"type":"text","text":"#);
                out.put(string.of(body));
                out.put(b"}");
            }
            out.put(b"]");
        }
        TemplateEdit::Member { which, name } => {
            out.put(b",");
            write_str(out, name);
            out.put(b":[");
            templates.write(out, which, vars);
            out.put(b"]");
        }
    }
}

/// Rewrites the extracted body for one attempt. The result is one allocation of exactly its
/// length.
pub fn rewrite(ex: &Extracted<'_>, rw: &Rewrite<'_>) -> Vec<u8> {
    let body = ex.body();
    let members = ex.members();

    // The generation parameters, mapped.
    let mut params: SmallList<Param<'_>, 8> = SmallList::default();
    if let Some(rendered) = rw.rendered {
        for p in &rendered.params {
            params.push(Param {
                names: p.names.as_names(),
                repl: Repl::Bytes(&p.bytes),
                present: false,
            });
        }
    } else if let Some(generation) = rw.generation {
        mapped_params(ex.api(), generation, |p| params.push(p));
    }

    // One pass over the members: what happens to each, and which parameters the body has.
    let mut actions: SmallList<Action, 16> = SmallList::default();
    for (i, m) in members.iter().enumerate() {
        let action = match m.kind {
            MemberKind::Model => Action::Model,
            MemberKind::ExtraBody => extra_body_action(ex, i),
            MemberKind::Router | MemberKind::Other => {
                // The parameters do not overlap, so a key names at most one.
                let mut named = None;
                for (k, p) in params.iter_mut().enumerate() {
                    if p.names.matches(body, &m.key()) {
                        p.present = true;
                        named = Some(k);
                        break;
                    }
                }
                match (named, rw.precedence) {
                    (Some(k), Precedence::Router) => Action::Param(k),
                    _ => Action::Keep,
                }
            }
        };
        actions.push(action);
    }

    // Every replacement is rendered once, into a stack buffer: each parameter's value first,
    // then the model (with the parameters to insert after it). Sizing and writing the output
    // then only copy bytes.
    let mut scratch = Scratch::default();
    for p in params.iter_mut() {
        let start = scratch.len();
        write_repl(&mut scratch, p.repl);
        p.repl = Repl::Rendered(start, scratch.len());
    }
    let model_alone = {
        let start = scratch.len();
        write_str(&mut scratch, rw.model);
        Repl::Rendered(start, scratch.len())
    };
    let model_then_inserts = {
        let start = scratch.len();
        if ex.model_member().is_none() {
            scratch.put(b"\"model\":");
        }
        scratch.copy_own(model_alone);
        for p in params.iter().filter(|p| !p.present) {
            scratch.put(b",");
            write_str(&mut scratch, p.names.first());
            scratch.put(b":");
            scratch.copy_own(p.repl);
        }
        // A comma only when a member stays after the new `model` (every member may be
        // removed: a body holding only an `extra_body` of router keys, or an empty one).
        if ex.model_member().is_none() && actions.iter().any(|a| *a != Action::Remove) {
            scratch.put(b",");
        }
        Repl::Rendered(start, scratch.len())
    };

    let mut edits: SmallList<Edit<'_>, 8> = SmallList::default();
    if ex.model_member().is_none() {
        edits.push(Edit {
            start: ex.object_start() + 1,
            end: ex.object_start() + 1,
            repl: model_then_inserts,
        });
    }
    member_edits(
        members,
        &actions,
        &mut edits,
        |i, action, edits| match action {
            Action::Model => Some(if Some(i) == ex.model_member() {
                model_then_inserts
            } else {
                model_alone
            }),
            Action::Param(p) => params.get(p).map(|p| p.repl),
            Action::FilterExtra => {
                let extra = ex.extra_members();
                let mut sub: SmallList<Action, 8> = SmallList::default();
                for m in extra.iter() {
                    sub.push(if m.kind == MemberKind::Router {
                        Action::Remove
                    } else {
                        Action::Keep
                    });
                }
                member_edits(extra, &sub, edits, |_, _, _| None);
                None
            }
            Action::Keep | Action::Remove => None,
        },
    );

    // Message templates: parsed here only when not given parsed.
    let parsed;
    let templates = match (rw.templates, rw.message_templates) {
        (Some(t), _) => Some(t),
        (None, Some(v)) => {
            parsed = MessageTemplates::new(v).ok();
            parsed.as_ref()
        }
        (None, None) => None,
    }
    .filter(|t| !t.is_empty());
    let rendered = scratch.bytes();
    if let Some(t) = templates {
        let mut template_edit_list: SmallList<Edit<'static>, 4> = SmallList::default();
        template_edits(ex, t, &actions, &mut template_edit_list);
        if template_edit_list.len() > 0 {
            return write_with_templates(ex, t, rendered, &edits, &template_edit_list);
        }
    }

    // Size exactly, then write once.
    let piece = |repl: Repl<'_>| match repl {
        Repl::Rendered(start, end) => rendered.get(start..end).unwrap_or_default(),
        _ => &[],
    };
    let mut size = body.len();
    for e in edits.iter() {
        size = size - (e.end - e.start) + piece(e.repl).len();
    }
    let mut out = Vec::with_capacity(size);
    let mut pos = 0;
    for e in edits.iter() {
        out.put(&body[pos..e.start]);
        out.put(piece(e.repl));
        pos = e.end;
    }
    out.put(&body[pos..]);
    debug_assert_eq!(out.len(), size);
    out
}

/// [`rewrite`]'s last step when templates are written: both edit lists are in body order (the
/// templates' come after a member's edit at the same offset); sized exactly, written once.
fn write_with_templates(
    ex: &Extracted<'_>,
    templates: &MessageTemplates,
    rendered: &[u8],
    edits: &SmallList<Edit<'_>, 8>,
    template_edits: &SmallList<Edit<'static>, 4>,
) -> Vec<u8> {
    let body = ex.body();
    let vars = Vars::new(body, ex.prompt_variables());
    // One function for both passes (generic, so the counting pass is inlined too).
    fn emit<W: Sink>(
        out: &mut W,
        repl: Repl<'_>,
        rendered: &[u8],
        templates: &MessageTemplates,
        vars: &Vars<'_>,
        body: &[u8],
    ) {
        match repl {
            Repl::Rendered(start, end) => out.put(rendered.get(start..end).unwrap_or_default()),
            Repl::Templates(edit) => write_templates(out, edit, templates, vars, body),
            _ => {}
        }
    }
    let edits = Merged::new(edits, template_edits);
    let mut size = Counter(body.len());
    for e in edits.clone() {
        size.0 -= e.end - e.start;
        emit(&mut size, e.repl, rendered, templates, &vars, body);
    }
    let size = size.0;
    let mut out = Vec::with_capacity(size);
    let mut pos = 0;
    for e in edits {
        out.put(&body[pos..e.start]);
        emit(&mut out, e.repl, rendered, templates, &vars, body);
        pos = e.end;
    }
    out.put(&body[pos..]);
    debug_assert_eq!(out.len(), size);
    out
}

/// Two lists of edits, each in body order, merged by offset (the first list first on ties).
#[derive(Clone)]
struct Merged<'l, 'r> {
    a: &'l SmallList<Edit<'r>, 8>,
    b: &'l SmallList<Edit<'static>, 4>,
    i: usize,
    j: usize,
}

impl<'l, 'r> Merged<'l, 'r> {
    fn new(a: &'l SmallList<Edit<'r>, 8>, b: &'l SmallList<Edit<'static>, 4>) -> Self {
        Merged { a, b, i: 0, j: 0 }
    }
}

impl<'r> Iterator for Merged<'_, 'r> {
    type Item = Edit<'r>;

    fn next(&mut self) -> Option<Edit<'r>> {
        match (self.a.get(self.i), self.b.get(self.j)) {
            (Some(x), Some(y)) if y.start < x.start => {
                self.j += 1;
                Some(*y)
            }
            (Some(x), _) => {
                self.i += 1;
                Some(*x)
            }
            (None, Some(y)) => {
                self.j += 1;
                Some(*y)
            }
            (None, None) => None,
        }
    }
}

/// What to do with the `extra_body` member at `i`.
fn extra_body_action(ex: &Extracted<'_>, i: usize) -> Action {
    if Some(i) != ex.extra_body_member() {
        // An earlier duplicate: the last one is what readers see; this one goes.
        return Action::Remove;
    }
    let is_object = ex
        .members()
        .get(i)
        .is_some_and(|m| m.value().kind == crate::json::Kind::Object);
    if !is_object {
        return Action::Keep;
    }
    let extra = ex.extra_members();
    let ours = extra
        .iter()
        .filter(|m| m.kind == MemberKind::Router)
        .count();
    if ours == extra.len() {
        Action::Remove
    } else if ours == 0 {
        Action::Keep
    } else {
        Action::FilterExtra
    }
}

/// Turns per-member actions into edits, in order. A removed member takes the comma before it
/// with it (or, for leading members, the comma after), so the object stays valid JSON.
/// `replace(i, action, edits)` gives the replacement for a member's value, or pushes edits of
/// its own inside the value and returns `None`.
fn member_edits<'r, const N: usize, const M: usize>(
    members: &SmallList<Member, N>,
    actions: &SmallList<Action, M>,
    edits: &mut SmallList<Edit<'r>, 8>,
    mut replace: impl FnMut(usize, Action, &mut SmallList<Edit<'r>, 8>) -> Option<Repl<'r>>,
) {
    let n = members.len();
    let lead = actions.iter().take_while(|a| **a == Action::Remove).count();
    let member = |i: usize| members.get(i).copied().unwrap_or_default();
    if lead > 0 {
        let end = if lead < n {
            member(lead).start()
        } else {
            member(n - 1).value().span.end
        };
        edits.push(Edit {
            start: member(0).start(),
            end,
            repl: Repl::Nothing,
        });
    }
    for (i, action) in actions.iter().copied().enumerate().skip(lead) {
        let m = member(i);
        match action {
            Action::Keep => {}
            Action::Remove => edits.push(Edit {
                // `i > lead >= 0`, so there is a kept or removed member before it.
                start: member(i - 1).value().span.end,
                end: m.value().span.end,
                repl: Repl::Nothing,
            }),
            _ => {
                if let Some(repl) = replace(i, action, edits) {
                    edits.push(Edit {
                        start: m.value().span.start,
                        end: m.value().span.end,
                        repl,
                    });
                }
            }
        }
    }
}

/// Writes a replacement that is not yet rendered (a parameter's value, or a model string).
fn write_repl<W: Sink>(out: &mut W, repl: Repl<'_>) {
    match repl {
        Repl::Nothing | Repl::Rendered(..) | Repl::Templates(_) => {}
        Repl::Bytes(b) => out.put(b),
        Repl::Str(s) => write_str(out, s),
        Repl::Json(v) => write_value(out, v),
        Repl::LogitBias(v) => write_logit_bias(out, v),
        Repl::Effort(e) => {
            out.put(b"{\"effort\":");
            write_str(out, e);
            out.put(b"}");
        }
        Repl::Thinking(budget) => {
            out.put(b"{\"type\":\"enabled\",\"budget_tokens\":");
            write_value(out, budget);
            out.put(b"}");
        }
    }
}

/// A write buffer on the stack that moves to the heap only past 256 bytes (a long `stop` list,
/// a large `logit_bias`).
struct Scratch {
    inline: [u8; 256],
    len: usize,
    heap: Vec<u8>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            inline: [0; 256],
            len: 0,
            heap: Vec::new(),
        }
    }
}

impl Scratch {
    fn len(&self) -> usize {
        if self.heap.is_empty() {
            self.len
        } else {
            self.heap.len()
        }
    }

    fn bytes(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }

    /// Appends a copy of bytes rendered earlier (a [`Repl::Rendered`] range).
    fn copy_own(&mut self, repl: Repl<'_>) {
        let Repl::Rendered(start, end) = repl else {
            return;
        };
        if !self.heap.is_empty() {
            if start <= end && end <= self.heap.len() {
                self.heap.extend_from_within(start..end);
            }
        } else if start <= end && end <= self.len && self.len + (end - start) <= self.inline.len() {
            self.inline.copy_within(start..end, self.len);
            self.len += end - start;
        } else if let Some(own) = self.inline.get(start..end) {
            // Past the inline buffer: through a copy, as `put` spills.
            let own = own.to_vec();
            self.put(&own);
        }
    }
}

impl Sink for Scratch {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if !self.heap.is_empty() {
            self.heap.extend_from_slice(bytes);
        } else if let Some(dst) = self.inline.get_mut(self.len..self.len + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            self.heap.reserve(self.len + bytes.len());
            self.heap.extend_from_slice(&self.inline[..self.len]);
            self.heap.extend_from_slice(bytes);
        }
    }

    #[inline]
    fn put_quoted(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len() + 2;
        match self.inline.get_mut(self.len..end) {
            Some([open, middle @ .., close]) if self.heap.is_empty() => {
                *open = b'"';
                middle.copy_from_slice(bytes);
                *close = b'"';
                self.len = end;
            }
            _ => {
                self.put(b"\"");
                self.put(bytes);
                self.put(b"\"");
            }
        }
    }
}

/// `[{"token_id": "50256", "bias_value": -100}]` → `{"50256":-100}`; an object is written as is.
fn write_logit_bias<W: Sink>(out: &mut W, v: &Value) {
    let Value::Array(items) = v else {
        write_value(out, v);
        return;
    };
    out.put(b"{");
    let mut first = true;
    for item in items {
        let (Some(id), Some(bias)) = (item.get("token_id"), item.get("bias_value")) else {
            continue;
        };
        let id = match id {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => continue,
        };
        if !bias.is_number() {
            continue;
        }
        if !first {
            out.put(b",");
        }
        first = false;
        write_str(out, &id);
        out.put(b":");
        write_value(out, bias);
    }
    out.put(b"}");
}

/// Replaces the top-level `model` of a JSON object body with the string `model`, copying every
/// other byte as it was (whitespace, key order, escapes, number spellings): for a request
/// whose model names no router, passed through with its provider prefix stripped, say. Every
/// top-level `model` member is replaced (a duplicate too, so no reader can pick another); a
/// `"model"` key nested anywhere else is not touched.
///
/// `None` when the body is not a JSON object (validated as [`extract()`](crate::extract())
/// validates a request), or has no top-level `model`, or the last one (what readers see) is
/// not a string: send the body unchanged then. The result is one allocation of exactly its
/// length.
pub fn set_model(body: &[u8], model: &str) -> Option<Vec<u8>> {
    let text = simdutf8::basic::from_utf8(body).ok()?;
    let mut sc = Scanner::from_str(text);
    let mut models: SmallList<ValueSpan, 2> = SmallList::default();
    sc.object(|sc, key| {
        let value = sc.value()?;
        if key.eq_str(body, "model") {
            models.push(value);
        }
        Ok(())
    })
    .ok()?;
    sc.end().ok()?;
    if models.iter().next_back()?.kind != Kind::String {
        return None;
    }
    let mut quoted = Counter(0);
    write_str(&mut quoted, model);
    let replaced: usize = models.iter().map(|v| v.span.len()).sum();
    let mut out = Vec::with_capacity(body.len() - replaced + models.len() * quoted.0);
    let mut pos = 0;
    for v in models.iter() {
        out.put(&body[pos..v.span.start]);
        write_str(&mut out, model);
        pos = v.span.end;
    }
    out.put(&body[pos..]);
    debug_assert_eq!(out.len(), out.capacity());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::extract;

    fn rw(api: Api, body: &str, model: &str, generation: Option<&Value>) -> String {
        let ex = extract(api, body.as_bytes()).unwrap();
        let out = rewrite(
            &ex,
            &Rewrite {
                model,
                generation,
                rendered: None,
                precedence: Precedence::Router,
                ..Default::default()
            },
        );
        assert_eq!(out.capacity(), out.len(), "one allocation of exact size");
        String::from_utf8(out).unwrap()
    }

    /// Found by the `rewrite` fuzz target: with no `model` and every member removed, the new
    /// `model` member must not be followed by a comma.
    #[test]
    fn no_trailing_comma_when_every_member_goes() {
        for (body, want) in [
            ("{\"extra_body\":\n\n{\n\n}\n\n}", "{\"model\":\"m\"\n\n}"),
            (r#"{"extra_body":{}}"#, r#"{"model":"m"}"#),
            (r#"{"extra_body": { } }"#, r#"{"model":"m" }"#),
            (
                r#"{"extra_body":{"metadata":{"a":1}},"extra_body":{"models":[]}}"#,
                r#"{"model":"m"}"#,
            ),
            (r#"{"a":1,"extra_body":{}}"#, r#"{"model":"m","a":1}"#),
            (r#"{"extra_body":{},"a":1}"#, r#"{"model":"m","a":1}"#),
        ] {
            let out = rw(Api::ChatCompletions, body, "m", None);
            assert_eq!(out, want, "{body}");
            serde_json::from_str::<Value>(&out).unwrap();
        }
    }

    #[test]
    fn model_only() {
        assert_eq!(
            rw(
                Api::ChatCompletions,
                r#"{"model":"inworld/r","x":1e400}"#,
                "openai/gpt-4.1",
                None
            ),
            r#"{"model":"openai/gpt-4.1","x":1e400}"#
        );
    }

    #[test]
    fn logit_bias_and_reasoning() {
        let g = serde_json::json!({
            "logit_bias": [{"token_id": "50256", "bias_value": -100}, {"token_id": 7, "bias_value": 2.5}],
            "reasoning": {"effort": "low", "max_tokens": 1024}
        });
        assert_eq!(
            rw(Api::ChatCompletions, r#"{"model":"m"}"#, "x", Some(&g)),
            r#"{"model":"x","logit_bias":{"50256":-100,"7":2.5},"reasoning_effort":"low"}"#
        );
        assert_eq!(
            rw(Api::Responses, r#"{"model":"m"}"#, "x", Some(&g)),
            r#"{"model":"x","reasoning":{"effort":"low"}}"#
        );
        assert_eq!(
            rw(Api::Messages, r#"{"model":"m"}"#, "x", Some(&g)),
            r#"{"model":"x","thinking":{"type":"enabled","budget_tokens":1024}}"#
        );
    }

    #[test]
    fn long_rendered_values_spill_to_the_heap() {
        let stops: Vec<String> = (0..40).map(|i| format!("stop-sequence-{i}")).collect();
        let g = serde_json::json!({"stop_sequences": stops, "temperature": 0.25});
        let out = rw(
            Api::ChatCompletions,
            r#"{"model":"m","stop":1}"#,
            "x",
            Some(&g),
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["stop"], serde_json::json!(stops));
        assert_eq!(v["temperature"], 0.25);
        assert!(out.len() > 600);
    }

    #[test]
    fn rendered_values_near_the_inline_limit() {
        // Values that fit the stack buffer once but not twice (the value, then its copy among
        // the inserts after the model), at every size around the limit.
        for n in 0..40 {
            let stops: Vec<String> = (0..n).map(|i| format!("s{i:03}")).collect();
            let g = serde_json::json!({"stop_sequences": stops, "temperature": 0.25});
            for body in [
                r#"{"model":"m"}"#,
                r#"{"model":"m","stop":1}"#,
                r#"{"a":1}"#,
            ] {
                let out = rw(Api::ChatCompletions, body, "x", Some(&g));
                let v: Value = serde_json::from_str(&out).unwrap();
                assert_eq!(v["stop"], serde_json::json!(stops), "{out}");
                assert_eq!(v["temperature"], 0.25);
                assert_eq!(v["model"], "x");
            }
        }
    }

    #[test]
    fn no_model_member_gets_one() {
        let g = serde_json::json!({"temperature": 0.5});
        assert_eq!(
            rw(Api::ChatCompletions, r#" { "a" : 1 } "#, "x", Some(&g)),
            r#" {"model":"x","temperature":0.5, "a" : 1 } "#
        );
        assert_eq!(
            rw(Api::ChatCompletions, r#"{}"#, "x", None),
            r#"{"model":"x"}"#
        );
    }

    #[test]
    fn scratch_quoted_at_every_fill() {
        // A quoted string written whole inline, across the inline limit, and on the heap.
        for fill in 0..300 {
            for word in ["", "m", "openai/gpt-4o-mini"] {
                fn fill_and_write<W: Sink>(sink: &mut W, fill: usize, word: &str) {
                    sink.put(&vec![b'a'; fill]);
                    write_str(sink, word);
                    sink.put(b"z");
                }
                let mut scratch = Scratch::default();
                let mut want = Vec::new();
                fill_and_write(&mut scratch, fill, word);
                fill_and_write(&mut want, fill, word);
                assert_eq!(scratch.bytes(), want.as_slice(), "{fill} {word}");
            }
        }
    }

    #[test]
    fn set_model_changes_only_the_top_level_model() {
        for (body, want) in [
            (
                r#"{"model":"openai/gpt-4.1","x":1e400}"#,
                r#"{"model":"gpt-4.1","x":1e400}"#,
            ),
            // Whitespace, order, escapes, nested `model` keys and duplicates.
            (
                " {\n \"messages\" : [{\"model\":\"keep\"}],\t\"model\" :\"a\\u002fb\" ,\"s\":\"\\n\"} ",
                " {\n \"messages\" : [{\"model\":\"keep\"}],\t\"model\" :\"gpt-4.1\" ,\"s\":\"\\n\"} ",
            ),
            (
                r#"{"model":1,"mod\u0065l":"p/m"}"#,
                r#"{"model":"gpt-4.1","mod\u0065l":"gpt-4.1"}"#,
            ),
        ] {
            let out = set_model(body.as_bytes(), "gpt-4.1").unwrap();
            assert_eq!(std::str::from_utf8(&out).unwrap(), want, "{body}");
            assert_eq!(out.len(), out.capacity(), "one allocation of exact size");
        }
        // The model is written as a JSON string.
        let out = set_model(br#"{"model":"x"}"#, "a\"b").unwrap();
        assert_eq!(out, br#"{"model":"a\"b"}"#);
    }

    #[test]
    fn set_model_refuses_what_it_cannot_change() {
        for body in [
            "",
            "[]",
            r#"{"messages":[]}"#,
            r#"{"model":null}"#,
            r#"{"model":"a","model":2}"#,
            r#"{"model":"a"} x"#,
            r#"{"model":"a""#,
            "{\"model\":\"\u{1}\"}",
        ] {
            assert!(set_model(body.as_bytes(), "m").is_none(), "{body:?}");
        }
        assert!(set_model(b"{\"model\":\"\xff\"}", "m").is_none());
    }
}
