//! The fleet's router store: PostgreSQL, behind an interface shaped like etcd's.
//!
//! Several gateways share their routers through one database. Every change gets a store-wide
//! [`Revision`]; a write is a compare-and-set ([`Expect`]); a replica watches for changes after
//! the revision it serves ([`PostgresStore::watch`]) and is pushed each one within milliseconds.
//! `docs/fleet.md` is the long form; here is what the code relies on.
//!
//! # Tables
//!
//! Created and migrated by [`PostgresStore::connect`] itself, in the first schema of the user's
//! `search_path` (`public` by default), under a transaction-scoped advisory lock so that
//! replicas starting together do not race:
//!
//! - `abroute_schema (version)`: one row, the schema version ([`SCHEMA_VERSION`]). A database
//!   at a newer version than this gateway knows is refused, never downgraded.
//! - `abroute_revision (revision, compacted)`: one row. `revision` is the store's revision; every
//!   writer increments it (`UPDATE … SET revision = revision + 1 RETURNING revision`) first in
//!   its transaction, which locks the row until that transaction commits or rolls back. Writers
//!   therefore commit one at a time in revision order: whoever reads revision *n* in a snapshot
//!   sees every change up to *n*. A sequence would not do: its numbers are handed out at
//!   `nextval`, not at commit, so revision 8 can commit before 7, and a watcher that read 8
//!   would never look back for 7. A conflict rolls the increment back, so no revision is
//!   skipped. `compacted` is the compaction horizon (below).
//! - `abroute_routers (name primary key, config jsonb, mod_revision, tombstone, updated_at)`:
//!   a router's latest version and the revision of its last change. A delete keeps the row as
//!   a tombstone (`config` null) with the delete's revision, so a watcher learns of it.
//!
//! # Reading and watching
//!
//! [`load_all`](PostgresStore::load_all) and [`changes_since`](PostgresStore::changes_since) read
//! the revision row and the routers in one `REPEATABLE READ` snapshot: the revision and the
//! rows agree. A watcher ([`PostgresStore::watch`]) owns its own connection (notifications
//! arrive on a connection, not on a pool), `LISTEN`s on it *before* it reads, then reads every
//! row changed after its cursor. Each writing transaction also `NOTIFY`s; PostgreSQL delivers it
//! at commit. The notification is a wake-up and nothing more (its payload is not trusted): the
//! watcher reads from its cursor again, so notifications may be coalesced or lost without harm.
//! Listening first closes the gap between the read and the subscription: a change committed
//! after the read sends a notification the watcher already listens for. A periodic catch-up
//! (every [`WatchOptions::catch_up_every`]) covers what notifications cannot: a row written by
//! another tool without `NOTIFY`. A lost connection is re-opened with backoff and jitter
//! (100 ms doubling to 10 s by default), listened on, and caught up.
//!
//! # Compaction
//!
//! [`compact`](PostgresStore::compact) deletes tombstones older than a retention and raises
//! `compacted` to the highest revision it deleted. A reader whose cursor is below `compacted`
//! may have missed a delete, so it gets a [`WatchItem::Reset`] with the whole state instead of
//! changes, and replaces everything it holds.
//!
//! # TLS and secrets
//!
//! `sslmode` in the URL: `disable`, `prefer` (the default, as libpq's), `require` (encrypted,
//! the server's certificate not checked, as libpq does), `verify-full` (the chain checked
//! against Mozilla's roots and the CA file, if any, and the host name against the
//! certificate). rustls with the `ring` provider, as for the upstreams. The password never
//! appears in an error or a log: [`redact`] shows a URL with `***` in its place, and every
//! error names the store by that form.
//!
//! # How an etcd backend maps onto this one to one
//!
//! | here | etcd v3 |
//! |---|---|
//! | [`Revision`] | the store revision (`header.revision`) |
//! | [`StoredRouter::mod_revision`] | `kv.mod_revision` |
//! | [`Expect::Absent`] | `Txn` compare `create_revision(key) == 0` |
//! | [`Expect::At`]`(r)` | `Txn` compare `mod_revision(key) == r` |
//! | [`Expect::Any`] | a plain `Put` (a delete: compare `create_revision(key) > 0`) |
//! | [`Conflict::current`] | the key's `mod_revision` read in the `Txn`'s failure branch |
//! | [`load_all`](PostgresStore::load_all) | `Range` over the prefix; its `header.revision` |
//! | [`watch`](PostgresStore::watch)`(from)` | `Watch` with `start_revision = from + 1` |
//! | [`Event::Put`] / [`Event::Delete`] | `PUT` / `DELETE` events |
//! | [`WatchItem::Reset`] | `ErrCompacted`: `Range` again and watch from its revision |
//! | [`compact`](PostgresStore::compact) | `Compact` (our horizon *h* is etcd's compact revision *h* + 1) |

use std::collections::hash_map::RandomState;
use std::error::Error as _;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard, Notify, mpsc, oneshot};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Client, IsolationLevel, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{RouterStore, StoreError, StoreFuture, Stored};
use abroute::RouterConfig;

pub use super::revision::{
    Conflict, Event, Expect, Revision, StoredRouter, Watch, WatchItem, WatchStatus,
};

/// The schema version this gateway creates and reads.
pub const SCHEMA_VERSION: i32 = 1;

/// The channel writers `NOTIFY` and watchers `LISTEN` on.
pub const CHANNEL: &str = "abroute_routers";

/// The advisory lock held while the schema is checked and migrated ("abroute" in ASCII).
const MIGRATION_LOCK: i64 = 0x0061_6272_6f75_7465;

/// How long one operation may take before the connection is taken for lost.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The connect timeout when the URL sets none (libpq waits forever by default).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The migrations, in order: `MIGRATIONS[v]` takes the schema from version `v` to `v + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = ["
    CREATE TABLE abroute_schema (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        version integer NOT NULL
    );
    INSERT INTO abroute_schema (version) VALUES (0);
    CREATE TABLE abroute_revision (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        revision bigint NOT NULL CHECK (revision >= 0),
        compacted bigint NOT NULL CHECK (compacted >= 0)
    );
    INSERT INTO abroute_revision (revision, compacted) VALUES (0, 0);
    CREATE TABLE abroute_routers (
        name text PRIMARY KEY,
        config jsonb,
        mod_revision bigint NOT NULL,
        tombstone boolean NOT NULL DEFAULT false,
        updated_at timestamptz NOT NULL DEFAULT now(),
        CHECK (tombstone = (config IS NULL))
    );
    CREATE INDEX abroute_routers_by_mod_revision ON abroute_routers (mod_revision);
"];

/// What a store error is about; [`PostgresError`]'s message says the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PostgresErrorKind {
    /// The URL cannot be read, or asks for something unsupported.
    MalformedUrl,
    /// TLS could not be set up (the CA file) or the handshake failed (the certificate).
    Tls,
    /// The server cannot be reached, or the connection was lost or did not answer in time.
    Unreachable,
    /// The server refused the user or the password.
    AuthenticationFailed,
    /// The user may not create or use the store's tables.
    PermissionDenied,
    /// The database named in the URL does not exist.
    NoSuchDatabase,
    /// The store's schema is one this gateway cannot use (newer than it knows).
    Schema,
    /// Any other error reported by the server.
    Database,
}

/// A store error: what kind, and a message for a human that names the store by its
/// [redacted](redact) URL and never holds the password.
#[derive(Debug, Clone)]
pub struct PostgresError {
    kind: PostgresErrorKind,
    message: String,
}

impl PostgresError {
    /// What the error is about.
    pub fn kind(&self) -> PostgresErrorKind {
        self.kind
    }

    /// Whether the store is away (unreachable, lost, too slow): worth retrying later, and a
    /// management write answers 503 for it.
    pub fn is_unavailable(&self) -> bool {
        self.kind == PostgresErrorKind::Unreachable
    }
}

impl fmt::Display for PostgresError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PostgresError {}

/// A write that did not happen: its expectation failed, or the store did.
#[derive(Debug, Clone)]
pub enum PutError {
    /// The router is not as the write expected; nothing was written.
    Conflict(Conflict),
    /// The store could not be written (whether the write committed is then unknown only when
    /// the connection was lost during the commit).
    Store(PostgresError),
}

impl fmt::Display for PutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Conflict(c) => write!(f, "conflict: {c}"),
            PutError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PutError {}

impl From<PostgresError> for PutError {
    fn from(e: PostgresError) -> PutError {
        PutError::Store(e)
    }
}

/// The URL with its password (in the user part or a `password` parameter) replaced by `***`,
/// for logs and messages. Works on any text, valid URL or not, and errs on the side of hiding:
/// the user part runs to the *last* `@`, so a password holding a raw `@`, `/` or `?` is hidden
/// whole (tokio-postgres itself ends it at the first `@`).
pub fn redact(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    if let Some(scheme) = url.find("://") {
        let (head, tail) = url.split_at(scheme + 3);
        out.push_str(head);
        rest = tail;
        if let Some(at) = rest.rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            out.push_str(&rest[..colon]);
            out.push_str(":***");
            rest = &rest[at..];
        }
    }
    // `password=` as a query parameter or in a `key=value` connection string.
    while let Some(at) = rest.find("password=") {
        let starts_key = at == 0 || matches!(rest.as_bytes()[at - 1], b'?' | b'&' | b' ' | b'\t');
        let value = at + "password=".len();
        out.push_str(&rest[..value]);
        rest = &rest[value..];
        if starts_key {
            let end = match rest.strip_prefix('\'') {
                Some(quoted) => quoted.find('\'').map_or(rest.len(), |q| q + 2),
                None => rest.find(['&', ' ', '\t', '#']).unwrap_or(rest.len()),
            };
            out.push_str("***");
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// How the connection is encrypted (`sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

/// Where and how to connect: everything a new connection needs, parsed once.
struct Target {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// The redacted URL.
    shown: String,
    /// `host:port` of each host, for "cannot reach …".
    address: String,
    /// Forms of the password scrubbed from any text that reaches an error, as a second line
    /// of defence (no message is built from the password in the first place).
    secrets: Vec<String>,
}

type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;
type Connection = tokio_postgres::Connection<Socket, TlsStream>;

impl Target {
    fn parse(url: &str, ca_file: Option<&Path>) -> Result<Target, PostgresError> {
        let shown = redact(url);
        let malformed = |why: String| PostgresError {
            kind: PostgresErrorKind::MalformedUrl,
            message: format!(
                "the store URL {shown} is malformed: {why} (expected \
                 postgresql://user:password@host:port/database?sslmode=...)"
            ),
        };
        if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
            return Err(malformed(
                "it does not start with postgresql:// or postgres://".into(),
            ));
        }
        // `sslmode` beyond what tokio-postgres reads, and `sslrootcert`, are ours: take them
        // out and hand it the rest.
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = TlsMode::Prefer;
        let mut root_cert: Option<PathBuf> = None;
        let mut kept = Vec::new();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match key {
                "sslmode" => {
                    mode = match value {
                        "disable" => TlsMode::Disable,
                        "prefer" => TlsMode::Prefer,
                        "require" => TlsMode::Require,
                        "verify-full" => TlsMode::VerifyFull,
                        "verify-ca" => {
                            return Err(malformed(
                                "sslmode=verify-ca is not supported: use verify-full, which \
                                 also checks the host name"
                                    .into(),
                            ));
                        }
                        other => {
                            return Err(malformed(format!(
                                "sslmode={other:?} is not one of disable, prefer, require, \
                                 verify-full"
                            )));
                        }
                    }
                }
                "sslrootcert" => {
                    let path = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                    root_cert = Some(PathBuf::from(path.as_ref()));
                }
                _ => kept.push(param),
            }
        }
        kept.push(match mode {
            TlsMode::Disable => "sslmode=disable",
            TlsMode::Prefer => "sslmode=prefer",
            TlsMode::Require | TlsMode::VerifyFull => "sslmode=require",
        });
        let rebuilt = format!("{base}?{}", kept.join("&"));
        let mut config: tokio_postgres::Config =
            rebuilt.parse().map_err(|e: tokio_postgres::Error| {
                let why = match e.source() {
                    Some(cause) => cause.to_string(),
                    None => e.to_string(),
                };
                malformed(why)
            })?;
        if config.get_hosts().is_empty() {
            return Err(malformed("it names no host".into()));
        }
        if config.get_user().is_none() {
            return Err(malformed("it names no user".into()));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("abroute");
        }
        let ports = config.get_ports();
        let address = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    Host::Tcp(h) if h.contains(':') => format!("[{h}]:{port}"),
                    Host::Tcp(h) => format!("{h}:{port}"),
                    Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut secrets = Vec::new();
        if let Some(pw) = config.get_password() {
            secrets.push(String::from_utf8_lossy(pw).into_owned());
        }
        // As written (percent-encoded), as tokio-postgres reads it: up to the first `@`.
        if let Some((_, pw)) = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .and_then(|(creds, _)| creds.split_once(':'))
        {
            secrets.push(pw.to_owned());
        }
        // Short passwords are not scrubbed: they would mangle every message and, as said, no
        // message is built from the password anyway.
        secrets.retain(|s| s.len() >= 4);
        let ca_file = ca_file.map(Path::to_owned).or(root_cert);
        let tls = tls_connector(mode, ca_file.as_deref()).map_err(|why| PostgresError {
            kind: PostgresErrorKind::Tls,
            message: format!("the store {shown}: {why}"),
        })?;
        Ok(Target {
            config,
            tls,
            shown,
            address,
            secrets,
        })
    }

    /// Text that is about to go into an error, with any form of the password replaced.
    fn scrub(&self, mut text: String) -> String {
        for s in &self.secrets {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), "***");
            }
        }
        text
    }

    fn fail(&self, kind: PostgresErrorKind, what: String) -> PostgresError {
        PostgresError {
            kind,
            message: self.scrub(format!("the store {}: {what}", self.shown)),
        }
    }

    /// An error of the client or the server, with what it means for the store.
    fn error(&self, e: &tokio_postgres::Error) -> PostgresError {
        use PostgresErrorKind as K;
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            let text = match db.detail() {
                Some(d) => format!("{} ({}: {d})", db.message(), code.code()),
                None => format!("{} ({})", db.message(), code.code()),
            };
            let (kind, what) = if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            {
                (
                    K::AuthenticationFailed,
                    format!("authentication failed: {text}"),
                )
            } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
                (
                    K::PermissionDenied,
                    format!(
                        "permission denied: {text}; the store's user needs CREATE on the schema \
                         for the first start, then SELECT, INSERT, UPDATE and DELETE on the \
                         abroute_* tables"
                    ),
                )
            } else if *code == SqlState::INVALID_CATALOG_NAME {
                (K::NoSuchDatabase, text)
            } else if code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
            {
                (
                    K::Unreachable,
                    format!("the server at {} is not available: {text}", self.address),
                )
            } else {
                (K::Database, text)
            };
            return self.fail(kind, what);
        }
        // tokio-postgres shows its error kind alone and the cause as the source.
        let head = e.to_string();
        let mut cause = String::new();
        let mut source = e.source();
        while let Some(s) = source {
            cause.push_str(": ");
            cause.push_str(&s.to_string());
            source = s.source();
        }
        let (kind, what) = match head.as_str() {
            "error connecting to server" | "timeout waiting for server" => (
                K::Unreachable,
                format!("cannot reach {}{cause}", self.address),
            ),
            "connection closed" | "error communicating with the server" => (
                K::Unreachable,
                format!("the connection to {} was lost{cause}", self.address),
            ),
            "error performing TLS handshake" => {
                (K::Tls, format!("TLS with {} failed{cause}", self.address))
            }
            "authentication error" => (
                K::AuthenticationFailed,
                format!("authentication failed{cause}"),
            ),
            "invalid connection string" | "invalid configuration" => {
                (K::MalformedUrl, format!("{head}{cause}"))
            }
            _ => (K::Database, format!("{head}{cause}")),
        };
        self.fail(kind, what)
    }

    fn timed_out(&self) -> PostgresError {
        self.fail(
            PostgresErrorKind::Unreachable,
            format!(
                "no answer from {} within {} s",
                self.address,
                OPERATION_TIMEOUT.as_secs()
            ),
        )
    }

    /// A new connection, and the connection object the caller must drive.
    async fn connect(&self) -> Result<(Client, Connection), PostgresError> {
        self.config
            .connect(self.tls.clone())
            .await
            .map_err(|e| self.error(&e))
    }

    /// A new connection driven by a task of its own.
    async fn open(&self) -> Result<Client, PostgresError> {
        let (client, connection) = self.connect().await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "store connection ended");
            }
        });
        Ok(client)
    }
}

/// The TLS settings for `mode`: rustls with `ring`, and the checks the mode asks for.
fn tls_connector(mode: TlsMode, ca_file: Option<&Path>) -> Result<MakeRustlsConnect, String> {
    let crypto = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(crypto.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let config = if mode == TlsMode::VerifyFull {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca_file {
            for cert in crate::upstream::read_ca_file(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: a CA certificate: {e}", path.display()))?;
            }
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto)
            .build()
            .map_err(|e| format!("cannot set up TLS certificate checks: {e}"))?;
        builder.with_webpki_verifier(verifier).with_no_client_auth()
    } else {
        builder
            // `require` and `prefer` encrypt without checking who answers, as libpq does.
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(crypto)))
            .with_no_client_auth()
    };
    Ok(MakeRustlsConnect::new(config))
}

/// Accepts any server certificate (`sslmode=require`), but still checks that the server holds
/// its key, so the session is encrypted to whoever answered.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A router store in PostgreSQL. Cheap to share behind an `Arc`; its reads and writes go
/// through one connection, re-opened on the next call when it was lost. Watchers have
/// connections of their own.
pub struct PostgresStore {
    target: Arc<Target>,
    session: Mutex<Option<Client>>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.target.shown)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgresql://user:password@host:port/db?sslmode=…`),
    /// creates or migrates the schema, and checks that the user may use it. `ca_file` (or the
    /// URL's `sslrootcert`) adds trusted roots for `sslmode=verify-full`.
    ///
    /// # Errors
    ///
    /// A [`PostgresError`] naming what is wrong: a malformed URL, an unreachable `host:port`, a
    /// refused password, a missing database, missing permissions, a schema too new, TLS.
    pub async fn connect(
        url: &str,
        ca_file: Option<&Path>,
    ) -> Result<PostgresStore, PostgresError> {
        let target = Arc::new(Target::parse(url, ca_file)?);
        let mut client = target.open().await?;
        match tokio::time::timeout(OPERATION_TIMEOUT, migrate(&mut client)).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(newer))) => {
                return Err(target.fail(
                    PostgresErrorKind::Schema,
                    format!(
                        "its schema is at version {newer}, newer than this gateway's \
                         ({SCHEMA_VERSION}): upgrade the gateway"
                    ),
                ));
            }
            Ok(Err(e)) => return Err(target.error(&e)),
            Err(_) => return Err(target.timed_out()),
        }
        let missing = client
            .query_one(
                "SELECT has_table_privilege('abroute_routers', 'SELECT, INSERT, UPDATE, DELETE'),
                        has_table_privilege('abroute_revision', 'SELECT, UPDATE')",
                &[],
            )
            .await
            .map_err(|e| target.error(&e))?;
        let routers: bool = missing.try_get(0).map_err(|e| target.error(&e))?;
        let revision: bool = missing.try_get(1).map_err(|e| target.error(&e))?;
        if !(routers && revision) {
            return Err(target.fail(
                PostgresErrorKind::PermissionDenied,
                format!(
                    "permission denied: the user {:?} needs SELECT, INSERT, UPDATE and DELETE on \
                     abroute_routers and SELECT and UPDATE on abroute_revision",
                    target.config.get_user().unwrap_or_default()
                ),
            ));
        }
        Ok(PostgresStore {
            target,
            session: Mutex::new(Some(client)),
        })
    }

    /// The store's URL with the password [redacted](redact), for logs.
    pub fn url(&self) -> &str {
        &self.target.shown
    }

    /// The connection for one operation, opened anew when there is none or it was lost.
    async fn session(&self) -> Result<MutexGuard<'_, Option<Client>>, PostgresError> {
        let mut slot = self.session.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = None;
            *slot = Some(self.target.open().await?);
        }
        Ok(slot)
    }

    /// The result of one operation on `slot`'s connection; a connection that timed out or
    /// broke is dropped, so the next operation opens a new one.
    fn settle<T>(
        &self,
        slot: &mut Option<Client>,
        result: Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>,
    ) -> Result<T, PostgresError> {
        let e = match result {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => self.target.error(&e),
            Err(_) => self.target.timed_out(),
        };
        if e.is_unavailable() {
            *slot = None;
        }
        Err(e)
    }

    /// Every router, with the store's revision, read in one snapshot.
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    pub async fn load_all(&self) -> Result<(Revision, Vec<StoredRouter>), PostgresError> {
        match self.read(None).await? {
            WatchItem::Reset { revision, routers } => Ok((revision, routers)),
            WatchItem::Changes { .. } => Err(self.target.fail(
                PostgresErrorKind::Database,
                "the full read came back as changes".into(),
            )),
        }
    }

    /// Every change after `since`, in one snapshot: the changes (possibly none) up to the
    /// store's revision, or a [`WatchItem::Reset`] when `since` is below the compaction
    /// horizon or above the store's revision.
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    pub async fn changes_since(&self, since: Revision) -> Result<WatchItem, PostgresError> {
        self.read(Some(since)).await
    }

    async fn read(&self, since: Option<Revision>) -> Result<WatchItem, PostgresError> {
        let mut slot = self.session().await?;
        let Some(client) = slot.as_mut() else {
            return Err(self.target.timed_out());
        };
        let result = tokio::time::timeout(OPERATION_TIMEOUT, read_since(client, since)).await;
        self.settle(&mut slot, result).map(|(item, _)| item)
    }

    /// Writes `config` as router `name` if `expect` holds; the revision of the change.
    ///
    /// # Errors
    ///
    /// [`PutError::Conflict`] with the router's current mod_revision when `expect` does not
    /// hold; [`PutError::Store`] when the store cannot be written.
    pub async fn put(
        &self,
        name: &str,
        config: &Value,
        expect: Expect,
    ) -> Result<Revision, PutError> {
        self.write(name, Some(config), expect).await
    }

    /// Deletes router `name` if it exists and `expect` holds; the revision of the change.
    ///
    /// # Errors
    ///
    /// [`PutError::Conflict`] when there is no such router (`current: None`, whatever
    /// `expect`) or `expect` does not hold; [`PutError::Store`] when the store cannot be
    /// written.
    pub async fn delete(&self, name: &str, expect: Expect) -> Result<Revision, PutError> {
        self.write(name, None, expect).await
    }

    async fn write(
        &self,
        name: &str,
        config: Option<&Value>,
        expect: Expect,
    ) -> Result<Revision, PutError> {
        let mut slot = self.session().await?;
        let Some(client) = slot.as_mut() else {
            return Err(self.target.timed_out().into());
        };
        let result = tokio::time::timeout(
            OPERATION_TIMEOUT,
            write_router(client, name, config, expect),
        )
        .await;
        self.settle(&mut slot, result)?.map_err(PutError::Conflict)
    }

    /// Deletes the tombstones of routers deleted more than `retention` ago and raises the
    /// compaction horizon to the highest revision deleted; the horizon. A reader whose cursor
    /// is below it gets a [`WatchItem::Reset`].
    ///
    /// # Errors
    ///
    /// When the store cannot be written.
    pub async fn compact(&self, retention: Duration) -> Result<Revision, PostgresError> {
        let mut slot = self.session().await?;
        let Some(client) = slot.as_mut() else {
            return Err(self.target.timed_out());
        };
        let result = tokio::time::timeout(OPERATION_TIMEOUT, compact(client, retention)).await;
        self.settle(&mut slot, result)
    }

    /// Watches for changes after `from`, with the default [`WatchOptions`].
    pub fn watch(&self, from: Revision) -> Watch {
        self.watch_with(from, WatchOptions::default())
    }

    /// Watches for changes after `from`: a task of its own, on a connection of its own, hands
    /// every change on in revision order, each exactly once, or a reset. It keeps going
    /// through connection losses and stops when the [`Watch`]'s receiver is dropped.
    pub fn watch_with(&self, from: Revision, options: WatchOptions) -> Watch {
        let (tx, rx) = mpsc::channel(options.capacity.max(1));
        let status = Arc::new(WatchStatus::new(false, from));
        tokio::spawn(run_watch(
            self.target.clone(),
            from,
            options,
            tx,
            status.clone(),
        ));
        Watch { items: rx, status }
    }
}

/// Settings of a watcher.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// How often the watcher reads from its cursor without being woken (a change whose
    /// `NOTIFY` was lost or never sent). Default 5 s.
    pub catch_up_every: Duration,
    /// The first wait before reconnecting; doubled after each failure. Default 100 ms.
    pub backoff_min: Duration,
    /// The longest wait before reconnecting. Default 10 s.
    pub backoff_max: Duration,
    /// How many items wait for the reader before the watcher waits too. Default 64.
    pub capacity: usize,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            catch_up_every: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            capacity: 64,
        }
    }
}

fn revision(value: i64) -> Revision {
    Revision(u64::try_from(value).unwrap_or(0))
}

fn sql_revision(r: Revision) -> i64 {
    i64::try_from(r.0).unwrap_or(i64::MAX)
}

/// Creates or migrates the schema under the migration lock. `Ok(Err(v))`: the database is at
/// version `v`, newer than this gateway's.
async fn migrate(client: &mut Client) -> Result<Result<(), i32>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    // After the lock, so this statement's snapshot sees what the lock's last holder committed.
    let exists: bool = tx
        .query_one("SELECT to_regclass('abroute_schema') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    let version: i32 = if exists {
        tx.query_one("SELECT version FROM abroute_schema", &[])
            .await?
            .try_get(0)?
    } else {
        0
    };
    if version > SCHEMA_VERSION {
        return Ok(Err(version));
    }
    if version == SCHEMA_VERSION {
        // Nothing to create: no DDL, so a user without CREATE on the schema can start.
        tx.rollback().await?;
        return Ok(Ok(()));
    }
    for (from, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.batch_execute(sql).await?;
        let to = i32::try_from(from + 1).unwrap_or(SCHEMA_VERSION);
        tx.execute("UPDATE abroute_schema SET version = $1", &[&to])
            .await?;
    }
    tx.commit().await?;
    Ok(Ok(()))
}

/// The age of a change when it was read: its revision, and how long before the read it was
/// written (by the server's clock, so the replica's clock does not matter).
type Age = (Revision, Duration);

/// One snapshot: everything (`since: None`, or a cursor the history no longer covers), or
/// the changes after `since` with the age of each.
async fn read_since(
    client: &mut Client,
    since: Option<Revision>,
) -> Result<(WatchItem, Vec<Age>), tokio_postgres::Error> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let row = tx
        .query_one("SELECT revision, compacted FROM abroute_revision", &[])
        .await?;
    let now = revision(row.try_get(0)?);
    let compacted = revision(row.try_get(1)?);
    let mut ages = Vec::new();
    let item = match since {
        Some(cursor) if cursor >= compacted && cursor <= now => {
            // `updated_at` is the write's own statement time, just before its commit.
            let rows = tx
                .query(
                    "SELECT name, config, mod_revision, tombstone,
                         GREATEST(EXTRACT(EPOCH FROM clock_timestamp() - updated_at), 0)::float8
                     FROM abroute_routers
                     WHERE mod_revision > $1 ORDER BY mod_revision",
                    &[&sql_revision(cursor)],
                )
                .await?;
            let mut events = Vec::with_capacity(rows.len());
            for row in rows {
                let name: String = row.try_get(0)?;
                let mod_revision = revision(row.try_get(2)?);
                let tombstone: bool = row.try_get(3)?;
                let age: f64 = row.try_get(4)?;
                ages.push((
                    mod_revision,
                    Duration::try_from_secs_f64(age).unwrap_or_default(),
                ));
                events.push(if tombstone {
                    Event::Delete { name, mod_revision }
                } else {
                    Event::Put {
                        name,
                        config: row.try_get(1)?,
                        mod_revision,
                    }
                });
            }
            WatchItem::Changes {
                revision: now,
                events,
            }
        }
        _ => {
            let rows = tx
                .query(
                    "SELECT name, config, mod_revision FROM abroute_routers
                     WHERE NOT tombstone ORDER BY name",
                    &[],
                )
                .await?;
            let mut routers = Vec::with_capacity(rows.len());
            for row in rows {
                routers.push(StoredRouter {
                    name: row.try_get(0)?,
                    config: row.try_get(1)?,
                    mod_revision: revision(row.try_get(2)?),
                });
            }
            WatchItem::Reset {
                revision: now,
                routers,
            }
        }
    };
    tx.commit().await?;
    Ok((item, ages))
}

/// One write (`config: None` deletes) in one transaction: take the next revision (locking the
/// counter row until commit), check the expectation, write, notify.
async fn write_router(
    client: &mut Client,
    name: &str,
    config: Option<&Value>,
    expect: Expect,
) -> Result<Result<Revision, Conflict>, tokio_postgres::Error> {
    // READ COMMITTED: each statement sees what committed before it started, so the router read
    // after the counter's lock was taken is the latest there is.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await?;
    let next: i64 = tx
        .query_one(
            "UPDATE abroute_revision SET revision = revision + 1 RETURNING revision",
            &[],
        )
        .await?
        .try_get(0)?;
    let current = tx
        .query_opt(
            "SELECT mod_revision FROM abroute_routers WHERE name = $1 AND NOT tombstone",
            &[&name],
        )
        .await?
        .map(|row| row.try_get::<_, i64>(0))
        .transpose()?
        .map(revision);
    let holds = expect.admits(current) && (config.is_some() || current.is_some());
    if !holds {
        // The increment goes too: no revision is skipped.
        tx.rollback().await?;
        return Ok(Err(Conflict { current }));
    }
    match config {
        Some(config) => {
            tx.execute(
                "INSERT INTO abroute_routers (name, config, mod_revision, tombstone, updated_at)
                 VALUES ($1, $2, $3, false, clock_timestamp())
                 ON CONFLICT (name) DO UPDATE SET config = EXCLUDED.config,
                     mod_revision = EXCLUDED.mod_revision, tombstone = false,
                     updated_at = EXCLUDED.updated_at",
                &[&name, config, &next],
            )
            .await?
        }
        None => {
            tx.execute(
                "UPDATE abroute_routers SET config = NULL, tombstone = true, mod_revision = $2,
                     updated_at = clock_timestamp()
                 WHERE name = $1",
                &[&name, &next],
            )
            .await?
        }
    };
    // Delivered at commit, to every listener: a wake-up, the payload only for people reading.
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &next.to_string()])
        .await?;
    tx.commit().await?;
    Ok(Ok(revision(next)))
}

async fn compact(
    client: &mut Client,
    retention: Duration,
) -> Result<Revision, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // The counter row first, as writers take it, so compaction and a write never wait for
    // each other in opposite orders.
    tx.execute("SELECT 1 FROM abroute_revision FOR UPDATE", &[])
        .await?;
    let horizon: i64 = tx
        .query_one(
            "WITH gone AS (
                 DELETE FROM abroute_routers
                 WHERE tombstone AND updated_at <= now() - make_interval(secs => $1)
                 RETURNING mod_revision)
             UPDATE abroute_revision
             SET compacted = GREATEST(compacted, COALESCE((SELECT max(mod_revision) FROM gone), 0))
             RETURNING compacted",
            &[&retention.as_secs_f64()],
        )
        .await?
        .try_get(0)?;
    tx.commit().await?;
    Ok(revision(horizon))
}

/// A watcher's connection, listening: the client, a wake-up per notification (coalesced), and
/// a signal when the connection ends.
async fn listen(
    target: &Target,
) -> Result<(Client, Arc<Notify>, oneshot::Receiver<()>), PostgresError> {
    let (client, mut connection) = target.connect().await?;
    let wake = Arc::new(Notify::new());
    let (ended, ended_rx) = oneshot::channel::<()>();
    let woken = wake.clone();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => woken.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "store watch connection ended");
                    break;
                }
                None => break,
            }
        }
        drop(ended);
    });
    let listen = format!("LISTEN {CHANNEL}");
    match tokio::time::timeout(OPERATION_TIMEOUT, client.batch_execute(&listen)).await {
        Ok(Ok(())) => Ok((client, wake, ended_rx)),
        Ok(Err(e)) => Err(target.error(&e)),
        Err(_) => Err(target.timed_out()),
    }
}

/// `base` shortened by up to half at random, so replicas that lost the store together do not
/// come back in step.
pub fn jittered(base: Duration) -> Duration {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0);
    let fraction = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    base.mul_f64(1.0 - fraction / 2.0)
}

async fn run_watch(
    target: Arc<Target>,
    mut cursor: Revision,
    options: WatchOptions,
    tx: mpsc::Sender<WatchItem>,
    status: Arc<WatchStatus>,
) {
    let mut backoff = options.backoff_min;
    loop {
        let listening = tokio::select! {
            r = listen(&target) => r,
            () = tx.closed() => return,
        };
        match listening {
            Ok((mut client, wake, mut ended)) => loop {
                // Listening already: whatever commits after this read wakes us.
                let read =
                    tokio::time::timeout(OPERATION_TIMEOUT, read_since(&mut client, Some(cursor)));
                let (item, ages) = match read.await {
                    Ok(Ok(read)) => read,
                    Ok(Err(e)) => {
                        let e = target.error(&e);
                        tracing::warn!(error = %e, "store watch: catch-up failed; reconnecting");
                        break;
                    }
                    Err(_) => {
                        tracing::warn!(error = %target.timed_out(), "store watch: catch-up timed out; reconnecting");
                        break;
                    }
                };
                if !status.set_up(true) {
                    tracing::info!(store = %target.shown, revision = cursor.0, "store watch: connected");
                }
                backoff = options.backoff_min;
                let revision = item.revision();
                let send = match &item {
                    WatchItem::Changes { events, .. } => !events.is_empty(),
                    WatchItem::Reset { .. } => true,
                };
                let read_at = Instant::now();
                for (r, age) in ages {
                    status.note_committed(r, read_at.checked_sub(age).unwrap_or(read_at));
                }
                if send && tx.send(item).await.is_err() {
                    return;
                }
                cursor = revision;
                status.set_revision(cursor);
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(options.catch_up_every) => {}
                    _ = &mut ended => {
                        tracing::warn!(store = %target.shown, "store watch: connection lost; reconnecting");
                        break;
                    }
                    () = tx.closed() => return,
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "store watch: cannot connect");
            }
        }
        status.set_up(false);
        tokio::select! {
            () = tokio::time::sleep(jittered(backoff)) => {}
            () = tx.closed() => return,
        }
        backoff = (backoff * 2).min(options.backoff_max);
    }
}

/// The fleet's store behind the gateway's [`RouterStore`] interface: configs written as JSON,
/// a failed write or read [`StoreError::Unavailable`] with the redacted message.
impl RouterStore for PostgresStore {
    fn load_all(&self) -> StoreFuture<'_, Stored> {
        Box::pin(async move {
            let (revision, routers) = PostgresStore::load_all(self)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            Ok(Stored { revision, routers })
        })
    }

    fn put<'a>(&'a self, router: &'a RouterConfig, expect: Expect) -> StoreFuture<'a, Revision> {
        Box::pin(async move {
            let config = serde_json::to_value(router)
                .map_err(|e| StoreError::Unavailable(format!("cannot encode the router: {e}")))?;
            PostgresStore::put(self, &router.name, &config, expect)
                .await
                .map_err(StoreError::from)
        })
    }

    fn delete<'a>(&'a self, name: &'a str, expect: Expect) -> StoreFuture<'a, Revision> {
        Box::pin(async move {
            PostgresStore::delete(self, name, expect)
                .await
                .map_err(StoreError::from)
        })
    }

    fn watch(&self, from: Revision) -> Watch {
        PostgresStore::watch(self, from)
    }

    fn compact(&self, retention: Duration) -> StoreFuture<'_, Revision> {
        Box::pin(async move {
            PostgresStore::compact(self, retention)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))
        })
    }

    fn shared(&self) -> bool {
        true
    }
}

impl From<PutError> for StoreError {
    fn from(e: PutError) -> StoreError {
        match e {
            PutError::Conflict(c) => StoreError::Conflict(c),
            PutError::Store(e) => StoreError::Unavailable(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_every_password_form() {
        assert_eq!(
            redact("postgresql://app:s3cr%40t@db.example:5432/abroute?sslmode=require"),
            "postgresql://app:***@db.example:5432/abroute?sslmode=require"
        );
        assert_eq!(
            redact("postgres://app@h/db?password=hunter22&sslmode=disable"),
            "postgres://app@h/db?password=***&sslmode=disable"
        );
        assert_eq!(
            redact("host=h user=app password=hunter22 dbname=x"),
            "host=h user=app password=*** dbname=x"
        );
        // An `@` in the password: the last `@` ends the user part.
        assert_eq!(
            redact("postgresql://u:p@ss@h/db"),
            "postgresql://u:***@h/db"
        );
        assert_eq!(redact("postgresql://h/db"), "postgresql://h/db");
        assert_eq!(redact("xpassword=1"), "xpassword=1");
    }

    #[test]
    fn urls_are_checked_before_connecting() {
        let err = |url: &str| {
            Target::parse(url, None)
                .err()
                .map(|e| (e.kind(), e.to_string()))
        };
        let (kind, text) = err("mysql://u:hunter22@h/db").unwrap_or_else(|| panic!("accepted"));
        assert_eq!(kind, PostgresErrorKind::MalformedUrl);
        assert!(
            text.contains("postgresql://") && !text.contains("hunter22"),
            "{text}"
        );
        let (kind, text) =
            err("postgresql://u:hunter22@h:notaport/db").unwrap_or_else(|| panic!("accepted"));
        assert_eq!(kind, PostgresErrorKind::MalformedUrl);
        assert!(
            text.contains("port") && !text.contains("hunter22"),
            "{text}"
        );
        let (_, text) = err("postgresql://u:hunter22@h/db?sslmode=verify-ca")
            .unwrap_or_else(|| panic!("accepted"));
        assert!(text.contains("verify-full"), "{text}");
        let (_, text) = err("postgresql://u:hunter22@h/db?sslmode=always")
            .unwrap_or_else(|| panic!("accepted"));
        assert!(text.contains("\"always\""), "{text}");
        let (kind, text) =
            err("postgresql://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem")
                .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(kind, PostgresErrorKind::Tls);
        assert!(text.contains("/nonexistent.pem"), "{text}");
        for mode in ["disable", "prefer", "require", "verify-full"] {
            let t = Target::parse(&format!("postgresql://u:pw@h:6543/db?sslmode={mode}"), None);
            let t = t.unwrap_or_else(|e| panic!("{mode}: {e}"));
            assert_eq!(t.address, "h:6543");
        }
    }

    #[test]
    fn jitter_stays_within_half() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(1000));
            assert!(
                d >= Duration::from_millis(500) && d <= Duration::from_millis(1000),
                "{d:?}"
            );
        }
    }
}
