//! Model ids: `provider/model`, split in one place.
//!
//! Inworld names models `provider/model` (`openai/gpt-4.1`). Health groups failures by
//! provider, selection ignores whole providers, the catalog checks ids, HTTP hosts strip the
//! provider for upstreams that take bare names and pick the upstream by it. Every one of them
//! reads the id through [`ModelId`], so the rule (the provider is the part before the *first*
//! `/`, the name is everything after it) cannot drift between them.

use std::fmt;

/// A model id, split at its first `/` into a provider and a name. Borrowed and `Copy`: making
/// one costs a byte search and allocates nothing.
///
/// ```
/// use abroute::ModelId;
///
/// let id = ModelId::new("openai/gpt-4.1");
/// assert_eq!(id.provider(), Some("openai"));
/// assert_eq!(id.name(), "gpt-4.1");
/// assert_eq!(id.as_str(), "openai/gpt-4.1");
///
/// // A bare name has no provider; a model name may hold more slashes.
/// assert_eq!(ModelId::new("gpt-4.1").provider(), None);
/// assert_eq!(ModelId::new("gpt-4.1").name(), "gpt-4.1");
/// assert_eq!(ModelId::new("groq/meta/llama-3").name(), "meta/llama-3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelId<'a> {
    full: &'a str,
    /// The byte offset of the first `/`, if any.
    slash: Option<usize>,
}

impl<'a> ModelId<'a> {
    /// Reads `full` as a model id. Any string is one: the checks of an id's shape
    /// (`provider/model`, no whitespace) belong to the catalog.
    pub fn new(full: &'a str) -> ModelId<'a> {
        ModelId {
            full,
            slash: full.find('/'),
        }
    }

    /// The id as given.
    pub fn as_str(&self) -> &'a str {
        self.full
    }

    /// The part before the first `/` (possibly empty, for `/gpt-4.1`), or `None` when there
    /// is no `/`.
    pub fn provider(&self) -> Option<&'a str> {
        self.slash.map(|i| &self.full[..i])
    }

    /// The provider when there is one and it is not empty: the key health and upstreams group
    /// by.
    pub fn named_provider(&self) -> Option<&'a str> {
        self.provider().filter(|p| !p.is_empty())
    }

    /// The part after the first `/`, or the whole id when there is no `/`: what an upstream
    /// that takes bare model names is sent.
    pub fn name(&self) -> &'a str {
        self.slash.map_or(self.full, |i| &self.full[i + 1..])
    }
}

impl fmt::Display for ModelId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::ModelId;

    #[test]
    fn splits_at_the_first_slash() {
        let cases = [
            ("openai/gpt-4.1", Some("openai"), "gpt-4.1"),
            ("gpt-4.1", None, "gpt-4.1"),
            ("/gpt-4.1", Some(""), "gpt-4.1"),
            ("openai/", Some("openai"), ""),
            ("a/b/c", Some("a"), "b/c"),
            ("", None, ""),
        ];
        for (full, provider, name) in cases {
            let id = ModelId::new(full);
            assert_eq!(id.provider(), provider, "{full}");
            assert_eq!(id.name(), name, "{full}");
            assert_eq!(id.as_str(), full);
            assert_eq!(id.to_string(), full);
        }
        assert_eq!(ModelId::new("/x").named_provider(), None);
        assert_eq!(ModelId::new("p/x").named_provider(), Some("p"));
    }
}
