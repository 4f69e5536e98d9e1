//! API keys and permissions, compared in constant time, never logged.
//!
//! A key carries any set of three permissions: [`Permission::Read`] (list and get routers),
//! [`Permission::Write`] (create, update, delete) and [`Permission::Chat`] (send requests
//! through the [`AbrouteLayer`](crate::AbrouteLayer)). Permissions are independent: a write key
//! does not read unless it also has `Read`. Chat can be left open to every caller
//! ([`ApiKeys::open_chat`]).
//!
//! The key is read from `Authorization: Bearer <key>`, `Authorization: Basic <key>` (Inworld's
//! spelling: the whole credential is the key, it is not decoded) or `x-api-key: <key>` (what
//! Anthropic's SDKs send). Every configured key is compared with every request, byte by byte
//! with no early exit, so the time taken does not say how much of a key was right or which key
//! matched. `Debug` prints how many keys there are, never a key, and no error echoes one.

use std::fmt;

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// One permission a key may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// List and get routers.
    Read,
    /// Create, update and delete routers.
    Write,
    /// Send chat requests through the layer.
    Chat,
}

impl Permission {
    fn bit(self) -> u8 {
        match self {
            Permission::Read => 1,
            Permission::Write => 2,
            Permission::Chat => 4,
        }
    }

    /// The lowercase name: `read`, `write` or `chat`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Chat => "chat",
        }
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Permissions(u8);

impl Permissions {
    /// No permission.
    pub const NONE: Permissions = Permissions(0);
    /// Read only.
    pub const READ: Permissions = Permissions(1);
    /// Write only.
    pub const WRITE: Permissions = Permissions(2);
    /// Chat only.
    pub const CHAT: Permissions = Permissions(4);
    /// Read and write: an administrator.
    pub const ADMIN: Permissions = Permissions(3);
    /// Every permission.
    pub const ALL: Permissions = Permissions(7);

    /// This set plus `p`.
    pub fn with(self, p: Permission) -> Permissions {
        Permissions(self.0 | p.bit())
    }

    /// Whether the set holds `p`.
    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }
}

impl From<Permission> for Permissions {
    fn from(p: Permission) -> Permissions {
        Permissions(p.bit())
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No key, or a key that is not configured: 401.
    Unauthorized,
    /// A valid key without the permission: 403.
    Forbidden(Permission),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Unauthorized => f.write_str("no valid API key"),
            AuthError::Forbidden(p) => write!(f, "the API key lacks the {} permission", p.as_str()),
        }
    }
}

impl std::error::Error for AuthError {}

/// The configured API keys.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<(Box<[u8]>, Permissions)>,
    chat_open: bool,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.keys.len())
            .field("chat_open", &self.chat_open)
            .finish()
    }
}

impl ApiKeys {
    /// No key: every request that needs a permission is refused (chat too, unless opened).
    pub fn new() -> ApiKeys {
        ApiKeys::default()
    }

    /// Adds a key with its permissions. An empty key is ignored (it could never be presented).
    pub fn with_key(mut self, key: impl AsRef<[u8]>, permissions: Permissions) -> ApiKeys {
        let key = key.as_ref();
        if !key.is_empty() {
            self.keys.push((key.into(), permissions));
        }
        self
    }

    /// Lets chat requests through without a key.
    pub fn open_chat(mut self) -> ApiKeys {
        self.chat_open = true;
        self
    }

    /// Whether chat needs no key.
    pub fn is_chat_open(&self) -> bool {
        self.chat_open
    }

    /// How many keys are configured.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks that the request's key has `needed`.
    ///
    /// # Errors
    ///
    /// [`AuthError::Unauthorized`] without a valid key, [`AuthError::Forbidden`] for a valid key
    /// lacking the permission.
    pub fn authorize(&self, headers: &HeaderMap, needed: Permission) -> Result<(), AuthError> {
        if needed == Permission::Chat && self.chat_open {
            return Ok(());
        }
        let Some(presented) = presented_key(headers) else {
            return Err(AuthError::Unauthorized);
        };
        let granted = self.permissions_of(presented);
        match granted {
            None => Err(AuthError::Unauthorized),
            Some(p) if p.contains(needed) => Ok(()),
            Some(_) => Err(AuthError::Forbidden(needed)),
        }
    }

    /// The permissions of `presented`, or `None` when no configured key equals it. Compares
    /// against every key, each in constant time.
    pub fn permissions_of(&self, presented: &[u8]) -> Option<Permissions> {
        let mut bits = 0u8;
        let mut matched = 0u8;
        for (key, perms) in &self.keys {
            let eq = u8::from(constant_time_eq(key, presented));
            let mask = 0u8.wrapping_sub(eq);
            bits |= perms.0 & mask;
            matched |= eq;
        }
        (std::hint::black_box(matched) == 1).then_some(Permissions(bits))
    }
}

/// The headers that carry a client's credentials: `authorization` and `x-api-key`, the two
/// places [`ApiKeys::authorize`] reads a key from.
pub const CREDENTIAL_HEADERS: [http::HeaderName; 2] =
    [AUTHORIZATION, http::HeaderName::from_static("x-api-key")];

/// Removes the client's credentials from `headers` ([`CREDENTIAL_HEADERS`]): the key a client
/// presents is for abroute, never for an upstream, which gets its own. The one place this rule
/// lives; the layer, the gateway's management wrapper and its upstream client all call it.
pub fn strip_credentials(headers: &mut HeaderMap) {
    for h in &CREDENTIAL_HEADERS {
        headers.remove(h);
    }
}

/// The key in `Authorization: Bearer|Basic <key>` or `x-api-key`.
fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(AUTHORIZATION) {
        let v = v.as_bytes();
        let split = v.iter().position(|&b| b == b' ')?;
        let (scheme, rest) = v.split_at(split);
        if !(scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"basic")) {
            return None;
        }
        let key = rest.trim_ascii();
        return (!key.is_empty()).then_some(key);
    }
    let key = headers.get("x-api-key")?.as_bytes().trim_ascii();
    (!key.is_empty()).then_some(key)
}

/// Whether `a == b`, taking time that depends on `a.len()` only (`a` is the configured key):
/// every byte of `a` is compared, with no early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, &x) in a.iter().enumerate() {
        let y = b.get(i).copied().unwrap_or(!x);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn schemes_and_permissions() {
        let keys = ApiKeys::new()
            .with_key("r-key", Permissions::READ)
            .with_key("w-key", Permissions::WRITE);
        assert_eq!(
            keys.authorize(&headers("Bearer r-key"), Permission::Read),
            Ok(())
        );
        assert_eq!(
            keys.authorize(&headers("basic  r-key "), Permission::Read),
            Ok(())
        );
        assert_eq!(
            keys.authorize(&headers("Bearer r-key"), Permission::Write),
            Err(AuthError::Forbidden(Permission::Write))
        );
        assert_eq!(
            keys.authorize(&headers("Token r-key"), Permission::Read),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            keys.authorize(&headers("Bearer r-ke"), Permission::Read),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            keys.authorize(&headers("Bearer r-key2"), Permission::Read),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            keys.authorize(&HeaderMap::new(), Permission::Read),
            Err(AuthError::Unauthorized)
        );
        let mut x = HeaderMap::new();
        x.insert("x-api-key", "w-key".parse().unwrap());
        assert_eq!(keys.authorize(&x, Permission::Write), Ok(()));
        assert_eq!(
            keys.authorize(&HeaderMap::new(), Permission::Chat),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            keys.clone()
                .open_chat()
                .authorize(&HeaderMap::new(), Permission::Chat),
            Ok(())
        );
    }

    #[test]
    fn debug_never_shows_keys() {
        let keys = ApiKeys::new().with_key("sk-secret-123", Permissions::ALL);
        let shown = format!("{keys:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"x"));
        // A presented key shorter than the configured one whose missing bytes would be zero.
        assert!(!constant_time_eq(b"ab\0", b"ab"));
    }
}
