//! Message templates, typed once: what a `message_templates` value must be, and the checked
//! messages it gives.
//!
//! A variant (or a router's `defaults`) may hold `message_templates`, a list of messages that an
//! adapter puts in front of a request's own (`abroute_http::template` fills in their
//! placeholders). The config keeps the JSON value as given, so that it round-trips; this module
//! is the one place that says whether such a value is usable, and reads it into
//! [`MessageTemplate`]s: [`validate`](crate::validate) reports every [`TemplateProblem`] with its
//! path, and compiling stores each variant's effective list in its
//! [`CompiledVariant`](crate::CompiledVariant) ([`message_templates`]), so an adapter never
//! parses a template again and cannot disagree with validation.
//!
//! [`message_templates`]: crate::CompiledVariant::message_templates
//!
//! ```
//! use abroute::config::{MessageTemplate, TemplateProblem, TemplateProblemKind};
//! use serde_json::json;
//!
//! let list = MessageTemplate::parse_list(&json!([
//!     {"role": "system", "content": "You are {{agent}}."},
//!     {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "u"}
//! ]))
//! .unwrap();
//! assert_eq!(list[0].role(), "system");
//! assert!(list[0].is_system() && !list[1].is_system());
//! assert_eq!(list[1].message()["name"], "u");
//!
//! let problems = MessageTemplate::parse_list(&json!([{"content": 5}])).unwrap_err();
//! assert_eq!(problems, [
//!     TemplateProblem { index: Some(0), kind: TemplateProblemKind::MissingRole },
//!     TemplateProblem {
//!         index: Some(0),
//!         kind: TemplateProblemKind::ContentWrongType { found: "a number" },
//!     },
//! ]);
//! ```

use serde_json::{Map, Value};

use super::kind_of;
use crate::error::{ConfigError, ConfigErrorKind as K, JsonPath};

/// One message of a `message_templates` list, checked: a JSON object with a non-empty string
/// `role` and a `content` that is a string or a list of parts. Other members are kept as given.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageTemplate {
    /// The message object as given; `role` and `content` are checked.
    message: Map<String, Value>,
}

/// What is wrong with a `message_templates` value, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateProblem {
    /// The message's index in the list; `None` when the value is not a list.
    pub index: Option<usize>,
    /// What is wrong.
    pub kind: TemplateProblemKind,
}

/// The ways a `message_templates` value can be unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateProblemKind {
    /// The value is not a list.
    NotAList {
        /// What it is instead (`an object`, `a string`, ...).
        found: &'static str,
    },
    /// A message is not an object.
    NotAnObject {
        /// What it is instead.
        found: &'static str,
    },
    /// A message has no `role`.
    MissingRole,
    /// A message's `role` is the empty string.
    EmptyRole,
    /// A message's `role` is not a string.
    RoleNotAString {
        /// What it is instead.
        found: &'static str,
    },
    /// A message has no `content`.
    MissingContent,
    /// A message's `content` is neither a string nor a list of parts.
    ContentWrongType {
        /// What it is instead.
        found: &'static str,
    },
}

/// Where a `content` value stands when it is missing or malformed.
static NULL: Value = Value::Null;

impl MessageTemplate {
    /// Reads a `message_templates` value: a list of message objects, each with a non-empty
    /// string `role` and a `content` that is a string or a list of parts.
    ///
    /// # Errors
    ///
    /// Every problem, in list order (for one message: its `role`, then its `content`).
    pub fn parse_list(value: &Value) -> Result<Vec<MessageTemplate>, Vec<TemplateProblem>> {
        let Value::Array(list) = value else {
            return Err(vec![TemplateProblem {
                index: None,
                kind: TemplateProblemKind::NotAList {
                    found: kind_of(value),
                },
            }]);
        };
        let mut problems = Vec::new();
        let mut messages = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            let before = problems.len();
            let mut problem = |kind| {
                problems.push(TemplateProblem {
                    index: Some(i),
                    kind,
                });
            };
            let Value::Object(obj) = t else {
                problem(TemplateProblemKind::NotAnObject { found: kind_of(t) });
                continue;
            };
            match obj.get("role") {
                None => problem(TemplateProblemKind::MissingRole),
                Some(Value::String(r)) if r.is_empty() => problem(TemplateProblemKind::EmptyRole),
                Some(Value::String(_)) => {}
                Some(other) => problem(TemplateProblemKind::RoleNotAString {
                    found: kind_of(other),
                }),
            }
            match obj.get("content") {
                None => problem(TemplateProblemKind::MissingContent),
                Some(Value::String(_) | Value::Array(_)) => {}
                Some(other) => problem(TemplateProblemKind::ContentWrongType {
                    found: kind_of(other),
                }),
            }
            if problems.len() == before {
                messages.push(MessageTemplate {
                    message: obj.clone(),
                });
            }
        }
        if problems.is_empty() {
            Ok(messages)
        } else {
            Err(problems)
        }
    }

    /// The `role` (never empty).
    pub fn role(&self) -> &str {
        match self.message.get("role") {
            Some(Value::String(r)) => r,
            _ => "",
        }
    }

    /// The `content`: a string, or a list of parts.
    pub fn content(&self) -> &Value {
        self.message.get("content").unwrap_or(&NULL)
    }

    /// The message object as given, `role` and `content` included.
    pub fn message(&self) -> &Map<String, Value> {
        &self.message
    }

    /// Whether the role is `system` or `developer`: an instruction rather than a turn of the
    /// conversation (the messages API puts these in `system`).
    pub fn is_system(&self) -> bool {
        matches!(self.role(), "system" | "developer")
    }
}

impl TemplateProblem {
    /// The problem as a validation error, for the `message_templates` value at `path`.
    pub fn to_config_error(&self, path: &JsonPath) -> ConfigError {
        let at = match self.index {
            Some(i) => path.index(i),
            None => path.clone(),
        };
        match self.kind {
            TemplateProblemKind::NotAList { found } => ConfigError::new(
                at,
                K::WrongType {
                    expected: "a list of messages",
                    found,
                },
            ),
            TemplateProblemKind::NotAnObject { found } => ConfigError::new(
                at,
                K::WrongType {
                    expected: "a message object with `role` and `content`",
                    found,
                },
            ),
            TemplateProblemKind::MissingRole => {
                ConfigError::new(at, K::MissingField { field: "role" })
            }
            TemplateProblemKind::EmptyRole => {
                ConfigError::new(at.key("role"), K::Empty { what: "role" })
            }
            TemplateProblemKind::RoleNotAString { found } => ConfigError::new(
                at.key("role"),
                K::WrongType {
                    expected: "a string",
                    found,
                },
            ),
            TemplateProblemKind::MissingContent => {
                ConfigError::new(at, K::MissingField { field: "content" })
            }
            TemplateProblemKind::ContentWrongType { found } => ConfigError::new(
                at.key("content"),
                K::WrongType {
                    expected: "a string or a list of parts",
                    found,
                },
            ),
        }
    }
}

/// Reads the `message_templates` value at `path` ([`MessageTemplate::parse_list`]), each
/// problem as a validation error with its path.
pub(crate) fn message_templates(
    value: &Value,
    path: &JsonPath,
) -> Result<Vec<MessageTemplate>, Vec<ConfigError>> {
    MessageTemplate::parse_list(value)
        .map_err(|problems| problems.iter().map(|p| p.to_config_error(path)).collect())
}
