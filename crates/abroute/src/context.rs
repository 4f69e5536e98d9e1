//! The request context: what a routing decision may look at.
//!
//! A [`RequestContext`] borrows everything it can from the request: the sticky key (`user`),
//! metadata for conditions, and optionally the uniform 64-bit value a random pick uses. Building
//! one without metadata allocates nothing.
//!
//! ```
//! use abroute::RequestContext;
//!
//! let ctx = RequestContext::new()
//!     .with_user("user-42")
//!     .with_metadata("tier", "premium")
//!     .with_metadata("seats", 12)
//!     .with_random(0x9e37_79b9_7f4a_7c15);
//! assert_eq!(ctx.user(), Some("user-42"));
//! assert_eq!(ctx.metadata("seats"), Some(&abroute::MetadataValue::Int(12)));
//! ```

use std::borrow::Cow;

use serde_json::Value;

use crate::catalog::Needs;

/// One typed metadata value. Numbers stay numbers, so `seats > 10` can work in a condition.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MetadataValue<'a> {
    /// JSON `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer too large for `i64`.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A string, borrowed when possible.
    Str(Cow<'a, str>),
    /// A list or map (or any JSON), borrowed from the request body.
    Json(Cow<'a, Value>),
}

impl<'a> From<&'a str> for MetadataValue<'a> {
    fn from(s: &'a str) -> Self {
        MetadataValue::Str(Cow::Borrowed(s))
    }
}

impl From<String> for MetadataValue<'_> {
    fn from(s: String) -> Self {
        MetadataValue::Str(Cow::Owned(s))
    }
}

impl From<bool> for MetadataValue<'_> {
    fn from(b: bool) -> Self {
        MetadataValue::Bool(b)
    }
}

impl From<i64> for MetadataValue<'_> {
    fn from(n: i64) -> Self {
        MetadataValue::Int(n)
    }
}

impl From<i32> for MetadataValue<'_> {
    fn from(n: i32) -> Self {
        MetadataValue::Int(i64::from(n))
    }
}

impl From<u64> for MetadataValue<'_> {
    fn from(n: u64) -> Self {
        match i64::try_from(n) {
            Ok(i) => MetadataValue::Int(i),
            Err(_) => MetadataValue::UInt(n),
        }
    }
}

impl From<f64> for MetadataValue<'_> {
    fn from(x: f64) -> Self {
        MetadataValue::Float(x)
    }
}

impl<'a> From<&'a Value> for MetadataValue<'a> {
    /// Scalars become their typed variant (strings borrowed); arrays and objects stay JSON.
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Null => MetadataValue::Null,
            Value::Bool(b) => MetadataValue::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    MetadataValue::Int(i)
                } else if let Some(u) = n.as_u64() {
                    MetadataValue::UInt(u)
                } else {
                    MetadataValue::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => MetadataValue::Str(Cow::Borrowed(s)),
            other => MetadataValue::Json(Cow::Borrowed(other)),
        }
    }
}

/// Everything about one request that routing may use. Cheap to build; borrows from the request.
#[derive(Debug, Clone, Default)]
pub struct RequestContext<'a> {
    user: Option<&'a str>,
    metadata: Vec<(Cow<'a, str>, MetadataValue<'a>)>,
    models: Vec<Cow<'a, str>>,
    messages: Option<&'a Value>,
    needs: Option<Needs>,
    random: Option<u64>,
}

impl<'a> RequestContext<'a> {
    /// An empty context: no user, no metadata, a fresh random value per pick.
    pub fn new() -> RequestContext<'a> {
        RequestContext::default()
    }

    /// Sets the sticky key (the body's `user`): the same key gets the same variant.
    pub fn with_user(mut self, user: &'a str) -> RequestContext<'a> {
        self.user = Some(user);
        self
    }

    /// Adds one metadata key for conditions. A later value for the same key replaces it.
    pub fn with_metadata(
        mut self,
        key: impl Into<Cow<'a, str>>,
        value: impl Into<MetadataValue<'a>>,
    ) -> RequestContext<'a> {
        let key = key.into();
        let value = value.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Fixes the uniform 64-bit value that a random (non-sticky) pick uses.
    ///
    /// Without it, each pick draws from a fast thread-local generator (the default `std`
    /// feature). Tests and hosts that bring their own randomness use this to be reproducible.
    pub fn with_random(mut self, x: u64) -> RequestContext<'a> {
        self.random = Some(x);
        self
    }

    /// Appends models the request itself wants tried after the configured ones (Inworld's
    /// `extra_body.models`). Duplicates of configured models are skipped by the plan.
    pub fn with_models<I, M>(mut self, models: I) -> RequestContext<'a>
    where
        I: IntoIterator<Item = M>,
        M: Into<Cow<'a, str>>,
    {
        self.models.extend(models.into_iter().map(Into::into));
        self
    }

    /// Sets the request's `messages` (the OpenAI-style array of `{role, content}`), borrowed,
    /// for conditions such as `messages.last().content.matches("(?i).*refund.*")`.
    pub fn with_messages(mut self, messages: &'a Value) -> RequestContext<'a> {
        self.messages = Some(messages);
        self
    }

    /// The request's `messages`, if set.
    pub fn messages(&self) -> Option<&'a Value> {
        self.messages
    }

    /// Declares what the request needs from a model (vision, tools, a response schema, a
    /// context window): with capability routing on, variants whose models cannot serve it are
    /// skipped.
    pub fn with_needs(mut self, needs: Needs) -> RequestContext<'a> {
        self.needs = Some(needs);
        self
    }

    /// What the request needs, if declared.
    pub fn needs(&self) -> Option<&Needs> {
        self.needs.as_ref()
    }

    /// The request's own fallback models.
    pub fn models(&self) -> &[Cow<'a, str>] {
        &self.models
    }

    /// The sticky key, if any.
    pub fn user(&self) -> Option<&'a str> {
        self.user
    }

    /// The metadata value for `key`, if present.
    pub fn metadata(&self, key: &str) -> Option<&MetadataValue<'a>> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Every metadata entry, in insertion order.
    pub fn metadata_entries(&self) -> impl Iterator<Item = (&str, &MetadataValue<'a>)> {
        self.metadata.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The fixed random value, if [`with_random`](Self::with_random) set one.
    pub fn random(&self) -> Option<u64> {
        self.random
    }

    /// The value a random pick uses: the fixed one, or a fresh draw.
    #[inline]
    pub(crate) fn draw(&self) -> u64 {
        match self.random {
            Some(x) => x,
            None => crate::random::next_u64(),
        }
    }
}
