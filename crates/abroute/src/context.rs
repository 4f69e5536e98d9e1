//! The request context: what a routing decision may look at.
//!
//! A [`RequestContext`] borrows everything it can from the request: the sticky key (`user`),
//! metadata for conditions, and optionally the uniform 64-bit value a random pick uses. Building
//! one allocates nothing unless it holds more than four metadata entries or more than four
//! request models: the first few of each are kept inline, because a context is built on every
//! request's hot path.
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
use std::fmt;

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

/// How many metadata entries a [`RequestContext`] keeps without allocating.
const INLINE_METADATA: usize = 4;
/// How many request models a [`RequestContext`] keeps without allocating.
const INLINE_MODELS: usize = 4;

/// Up to `N` items inline; past that, all of them on the heap. Either way the items are one
/// contiguous slice, so [`RequestContext::models`] can hand out `&[_]`.
///
/// Not `smallvec::SmallVec`: its array parameter makes it invariant in `T`, which would make
/// `RequestContext<'a>` invariant in `'a` (a context borrowing longer-lived data could no longer
/// be passed where a shorter one is expected; the condition evaluator relies on that). This one
/// is a plain array and a `Vec`, covariant and free of `unsafe`.
#[derive(Clone)]
struct Inline<T, const N: usize> {
    /// The items while there are at most `N` (`items[..len]`); placeholders after them.
    items: [T; N],
    len: usize,
    /// Every item, once there were more than `N` (then `items` holds only placeholders).
    heap: Vec<T>,
}

impl<T: Default, const N: usize> Default for Inline<T, N> {
    fn default() -> Self {
        Inline {
            items: std::array::from_fn(|_| T::default()),
            len: 0,
            heap: Vec::new(),
        }
    }
}

impl<T: Default, const N: usize> Inline<T, N> {
    #[inline]
    fn as_slice(&self) -> &[T] {
        if self.heap.is_empty() {
            &self.items[..self.len]
        } else {
            &self.heap
        }
    }

    #[inline]
    fn as_mut_slice(&mut self) -> &mut [T] {
        if self.heap.is_empty() {
            &mut self.items[..self.len]
        } else {
            &mut self.heap
        }
    }

    #[inline]
    fn push(&mut self, item: T) {
        if self.heap.is_empty() {
            if let Some(slot) = self.items.get_mut(self.len) {
                *slot = item;
                self.len += 1;
                return;
            }
            // The first item past `N`: move them all to the heap, keeping their order.
            self.heap.reserve(2 * N + 1);
            self.heap.extend(self.items.iter_mut().map(std::mem::take));
            self.len = 0;
        }
        self.heap.push(item);
    }
}

impl<T: Default + fmt::Debug, const N: usize> fmt::Debug for Inline<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// One metadata entry (a named pair, so the inline list can hold placeholders).
#[derive(Debug, Clone)]
struct Entry<'a> {
    key: Cow<'a, str>,
    value: MetadataValue<'a>,
}

impl Default for Entry<'_> {
    fn default() -> Self {
        Entry {
            key: Cow::Borrowed(""),
            value: MetadataValue::Null,
        }
    }
}

/// Everything about one request that routing may use. Cheap to build; borrows from the request.
#[derive(Debug, Clone, Default)]
pub struct RequestContext<'a> {
    user: Option<&'a str>,
    metadata: Inline<Entry<'a>, INLINE_METADATA>,
    models: Inline<Cow<'a, str>, INLINE_MODELS>,
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

    /// [`with_user`](Self::with_user) in place.
    pub fn set_user(&mut self, user: &'a str) {
        self.user = Some(user);
    }

    /// Adds one metadata key for conditions. A later value for the same key replaces it.
    pub fn with_metadata(
        mut self,
        key: impl Into<Cow<'a, str>>,
        value: impl Into<MetadataValue<'a>>,
    ) -> RequestContext<'a> {
        self.set_metadata(key, value);
        self
    }

    /// [`with_metadata`](Self::with_metadata) in place, for a caller that adds keys in a loop
    /// (and would otherwise move the whole context per key).
    pub fn set_metadata(
        &mut self,
        key: impl Into<Cow<'a, str>>,
        value: impl Into<MetadataValue<'a>>,
    ) {
        let key = key.into();
        let value = value.into();
        match self
            .metadata
            .as_mut_slice()
            .iter_mut()
            .find(|e| e.key == key)
        {
            Some(slot) => slot.value = value,
            None => self.metadata.push(Entry { key, value }),
        }
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
        for m in models {
            self.push_model(m);
        }
        self
    }

    /// Appends one request model in place (see [`with_models`](Self::with_models)), for a
    /// caller that reads them one by one and would otherwise move the whole context.
    pub fn push_model(&mut self, model: impl Into<Cow<'a, str>>) {
        self.models.push(model.into());
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
        self.models.as_slice()
    }

    /// The sticky key, if any.
    pub fn user(&self) -> Option<&'a str> {
        self.user
    }

    /// The metadata value for `key`, if present.
    pub fn metadata(&self, key: &str) -> Option<&MetadataValue<'a>> {
        self.metadata
            .as_slice()
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    /// Every metadata entry, in insertion order.
    pub fn metadata_entries(&self) -> impl Iterator<Item = (&str, &MetadataValue<'a>)> {
        self.metadata
            .as_slice()
            .iter()
            .map(|e| (e.key.as_ref(), &e.value))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_then_heap_keeps_order_and_replaces() {
        for n in [
            0,
            1,
            INLINE_METADATA,
            INLINE_METADATA + 1,
            3 * INLINE_METADATA + 2,
        ] {
            let mut ctx = RequestContext::new();
            for i in 0..n {
                ctx.set_metadata(format!("k{i}"), i as i64);
            }
            // Replacing keeps the position, before and after spilling.
            ctx = ctx.with_metadata("k0", "first");
            let keys: Vec<&str> = ctx.metadata_entries().map(|(k, _)| k).collect();
            let mut want: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
            if n == 0 {
                want.push("k0".into());
            }
            assert_eq!(keys, want);
            assert_eq!(ctx.metadata("k0"), Some(&MetadataValue::from("first")));
            if n > 1 {
                let last = format!("k{}", n - 1);
                assert_eq!(ctx.metadata(&last), Some(&MetadataValue::Int(n as i64 - 1)));
            }
            assert_eq!(ctx.metadata("absent"), None);
        }
        for n in [0, 1, INLINE_MODELS, INLINE_MODELS + 1, 3 * INLINE_MODELS] {
            let models: Vec<String> = (0..n).map(|i| format!("p/m{i}")).collect();
            let ctx = RequestContext::new()
                .with_models(models.iter().take(2).map(String::as_str))
                .with_models(models.iter().skip(2).map(String::as_str));
            assert_eq!(ctx.models(), models.as_slice());
            let cloned = ctx.clone();
            assert_eq!(cloned.models(), models.as_slice());
            assert_eq!(format!("{:?}", ctx.models()), format!("{models:?}"));
        }
    }

    #[test]
    fn debug_shows_only_the_entries() {
        let ctx = RequestContext::new().with_metadata("tier", "gold");
        let text = format!("{ctx:?}");
        assert!(text.contains("tier"), "{text}");
        assert_eq!(text.matches("key:").count(), 1, "{text}");
    }
}
