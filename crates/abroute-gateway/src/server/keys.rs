//! The keys step of the start: which API keys the gateway checks, and secrets read from the
//! environment.
//!
//! With `[auth] enabled`, the configured keys (inline or from an environment variable), or one
//! made at start with every permission when none is configured. With auth off (the demo mode),
//! chat is open and the management API is reached with an internal key that the gateway puts
//! on every management request itself, so the adapter's checks stay in one place.

use abroute_http::{ApiKeys, Permission, Permissions};
use http::HeaderValue;

use super::{AuthMode, StartError, start_error};
use crate::config::{AuthConfig, parse_permission};

/// The keys a gateway checks.
pub(super) struct Keys {
    /// What the management API checks (with the internal key when auth is off).
    pub(super) api: ApiKeys,
    /// How it authorizes, for the banner.
    pub(super) mode: AuthMode,
    /// With auth off: the internal key put on every management request.
    pub(super) internal: Option<HeaderValue>,
    /// What chat and `/v1/models` check; `None` with auth off.
    pub(super) chat: Option<ApiKeys>,
}

/// The keys of `[auth]`.
///
/// # Errors
///
/// A key without a value, or whose environment variable is not set.
pub(super) fn keys(auth: &AuthConfig) -> Result<Keys, StartError> {
    if !auth.enabled {
        let internal = format!("internal-{}", random_hex());
        let api = ApiKeys::new()
            .with_key(&internal, Permissions::ALL)
            .open_chat();
        let header = HeaderValue::from_str(&format!("Bearer {internal}"))
            .map_err(|_| start_error("internal key"))?;
        return Ok(Keys {
            api,
            mode: AuthMode::Off,
            internal: Some(header),
            chat: None,
        });
    }
    let mut keys = ApiKeys::new();
    for (i, k) in auth.keys.iter().enumerate() {
        let secret = match (&k.key, &k.key_env) {
            (Some(key), _) => key.clone(),
            (None, Some(var)) => env_secret(var, &format!("auth.keys[{i}]"))?,
            (None, None) => return Err(start_error(format!("auth.keys[{i}]: no key"))),
        };
        let perms = k
            .permissions
            .iter()
            .filter_map(|p| parse_permission(p))
            .fold(Permissions::NONE, union);
        keys = keys.with_key(secret, perms);
    }
    let mode = if keys.is_empty() {
        let key = format!("abr-{}", random_hex());
        keys = keys.with_key(&key, Permissions::ALL);
        AuthMode::Generated(key)
    } else {
        AuthMode::Configured {
            keys: keys.len(),
            chat_open: auth.chat_open,
        }
    };
    if auth.chat_open {
        keys = keys.open_chat();
    }
    Ok(Keys {
        api: keys.clone(),
        mode,
        internal: None,
        chat: Some(keys),
    })
}

/// The value of the environment variable `var`, for `what` (named in the error).
///
/// # Errors
///
/// When it is not set, or empty.
pub(super) fn env_secret(var: &str, what: &str) -> Result<String, StartError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(start_error(format!(
            "{what}: the environment variable {var} is not set (or empty)"
        ))),
    }
}

/// 16 random bytes as hex, from the OS.
fn random_hex() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !filled {
        use std::hash::{BuildHasher, Hasher};
        for chunk in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The union of two permission sets.
fn union(a: Permissions, b: Permissions) -> Permissions {
    [Permission::Read, Permission::Write, Permission::Chat]
        .into_iter()
        .filter(|p| a.contains(*p) || b.contains(*p))
        .fold(Permissions::NONE, Permissions::with)
}
