//! The state file: the routers of `[store] path`, as one JSON file written atomically.
//!
//! Every router created or changed through the management API is written here *before* the API
//! answers. A write replaces the whole file the safe way: write `<file>.tmp`, `fsync` it,
//! `rename` it over the file, `fsync` the directory. A crash at any point leaves either the old
//! file or the new one, never a mix. The file is read and written on tokio's blocking pool,
//! never on the async threads.
//!
//! The file is
//!
//! ```json
//! { "abroute_state": 2, "revision": 7, "mod_revisions": { "r": 7 },
//!   "routers": [ { "name": "r", "defaultRoute": { ... } } ] }
//! ```
//!
//! `revision` is the store's revision (one more with every change written) and `mod_revisions`
//! the revision of each router's last change, so that a compare-and-set (an `etag`) holds across
//! a restart. A file of format 1 (no revisions) is read as if its routers had been written one
//! at a time in the file's order: revision = the number of routers, router *i* at revision *i*
//! (1-based); it is written back as format 2 at the next change. The same file is a fleet
//! replica's local copy of the last snapshot it applied, the revision then being the shared
//! store's.
//!
//! At start, a missing file is an empty store (the first run). A file that is not exactly this
//! (bad JSON, a router that does not parse or validate, a name twice) stops the start with an
//! error naming the file and the position (`line:column` for syntax, the JSON path otherwise):
//! the gateway never silently starts empty.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use abroute::{ConfigErrors, JsonPath, RouterConfig, ValidationOptions};
use serde_json::Value;

use super::local::{LocalState, Shared};
use super::{Expect, Revision, RouterStore, StoreError, StoreFuture, Stored, Watch};

/// The value of `abroute_state` this version writes (it reads format 1 too).
pub const STATE_FORMAT: u64 = 2;

/// A state file's content: the revision and every router with its mod_revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// The store's revision.
    pub revision: Revision,
    /// Every router by name, with the revision of its last change.
    pub routers: BTreeMap<String, (RouterConfig, Revision)>,
}

/// A [`RouterStore`] backed by one JSON file.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    /// What the file holds. Held across a write, so writes never interleave.
    shared: Arc<Shared>,
}

/// A state file that could not be loaded: the file and every problem, each with its position.
#[derive(Debug)]
pub struct StoreOpenError {
    /// The state file.
    pub file: PathBuf,
    /// `line:column: message` or `json.path: message`, one per problem.
    pub problems: Vec<String>,
}

impl fmt::Display for StoreOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}:{}", self.file.display(), p)?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreOpenError {}

impl FileStore {
    /// Opens the state file at `path`, validating every router with `options` (on the
    /// blocking pool). A missing file is an empty store; its directory must exist.
    ///
    /// # Errors
    ///
    /// Every problem in the file, each with its position; or why it could not be read.
    pub async fn open(
        path: &Path,
        options: &ValidationOptions,
    ) -> Result<FileStore, StoreOpenError> {
        let owned = path.to_owned();
        let options = *options;
        let read = tokio::task::spawn_blocking(move || read_state_file(&owned, &options))
            .await
            .unwrap_or_else(|e| {
                Err(StoreOpenError {
                    file: path.to_owned(),
                    problems: vec![format!(" cannot read: {e}")],
                })
            })?;
        Ok(FileStore {
            path: path.to_owned(),
            shared: Shared::new(LocalState::new(read.routers, read.revision)),
        })
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored names, sorted.
    pub async fn names(&self) -> Vec<String> {
        self.shared.lock().await.routers.keys().cloned().collect()
    }

    /// Forgets the history kept for watchers (as a compaction): a watcher behind the current
    /// revision gets a reset. Returns the horizon.
    pub async fn compact(&self) -> Revision {
        self.shared.lock().await.compact()
    }

    /// Replaces the whole file with `state` (a fleet replica's local copy of the snapshot it
    /// applied), written atomically on the blocking pool.
    ///
    /// # Errors
    ///
    /// When the file cannot be written; it is then as it was.
    pub async fn replace(&self, state: State) -> Result<(), StoreError> {
        let mut current = self.shared.lock().await;
        let next = LocalState::new(state.routers, state.revision);
        self.write_file(&next).await?;
        *current = next;
        drop(current);
        self.shared.changed(state.revision);
        Ok(())
    }

    /// Writes `state` to the file, on the blocking pool.
    async fn write_file(&self, state: &LocalState) -> Result<(), StoreError> {
        let path = self.path.clone();
        let bytes = render_state_at(state.revision, &state.routers);
        let written = tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await;
        let failed = |e: &dyn fmt::Display| {
            StoreError::Unavailable(format!("cannot write {}: {e}", self.path.display()))
        };
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failed(&e)),
            Err(e) => Err(failed(&e)),
        }
    }

    /// Applies a put (`Some`) or delete of `name` to a copy, writes the copy, and keeps it only
    /// when the write succeeded.
    async fn write(
        &self,
        name: &str,
        config: Option<&RouterConfig>,
        expect: Expect,
    ) -> Result<Revision, StoreError> {
        let mut current = self.shared.lock().await;
        let mut next = current.clone();
        let revision = next
            .write(name, config, expect)
            .map_err(StoreError::Conflict)?;
        self.write_file(&next).await?;
        *current = next;
        drop(current);
        self.shared.changed(revision);
        Ok(revision)
    }
}

impl RouterStore for FileStore {
    fn load_all(&self) -> StoreFuture<'_, Stored> {
        Box::pin(async move { Ok(self.shared.lock().await.stored()) })
    }

    fn put<'a>(&'a self, router: &'a RouterConfig, expect: Expect) -> StoreFuture<'a, Revision> {
        Box::pin(self.write(&router.name, Some(router), expect))
    }

    fn delete<'a>(&'a self, name: &'a str, expect: Expect) -> StoreFuture<'a, Revision> {
        Box::pin(self.write(name, None, expect))
    }

    fn watch(&self, from: Revision) -> Watch {
        self.shared.watch(from)
    }
}

/// Reads and validates the state file at `path` (blocking).
fn read_state_file(path: &Path, options: &ValidationOptions) -> Result<State, StoreOpenError> {
    let fail = |problems: Vec<String>| StoreOpenError {
        file: path.to_owned(),
        problems,
    };
    match fs::read_to_string(path) {
        Ok(text) => parse_state_file(&text, options).map_err(fail),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = parent_dir(path);
            if !dir.is_dir() {
                return Err(fail(vec![format!(
                    " the directory {} does not exist",
                    dir.display()
                )]));
            }
            Ok(State::default())
        }
        Err(e) => Err(fail(vec![format!(" cannot read: {e}")])),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The state file's text for these routers, every one at revision `routers.len()` (a store
/// written one router at a time in name order).
pub fn render_state(routers: &BTreeMap<String, RouterConfig>) -> Vec<u8> {
    let at: BTreeMap<String, (RouterConfig, Revision)> = routers
        .iter()
        .enumerate()
        .map(|(i, (name, c))| (name.clone(), (c.clone(), Revision(i as u64 + 1))))
        .collect();
    render_state_at(Revision(at.len() as u64), &at)
}

/// The state file's text for these routers at `revision`.
fn render_state_at(
    revision: Revision,
    routers: &BTreeMap<String, (RouterConfig, Revision)>,
) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        abroute_state: u64,
        revision: u64,
        mod_revisions: BTreeMap<&'a str, u64>,
        routers: Vec<&'a RouterConfig>,
    }
    let doc = Doc {
        abroute_state: STATE_FORMAT,
        revision: revision.0,
        mod_revisions: routers
            .iter()
            .map(|(n, (_, r))| (n.as_str(), r.0))
            .collect(),
        routers: routers.values().map(|(c, _)| c).collect(),
    };
    let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Reads a state file's text: every router, or every problem with its position.
///
/// # Errors
///
/// `line:column: message` for syntax errors, ` json.path: message` for the rest.
pub fn parse_state(
    text: &str,
    options: &ValidationOptions,
) -> Result<BTreeMap<String, RouterConfig>, Vec<String>> {
    let state = parse_state_file(text, options)?;
    Ok(state
        .routers
        .into_iter()
        .map(|(n, (c, _))| (n, c))
        .collect())
}

/// Reads a state file's text of either format: the revision and every router with its
/// mod_revision (format 1: counted from the routers present, in the file's order), or every
/// problem with its position.
///
/// # Errors
///
/// `line:column: message` for syntax errors, ` json.path: message` for the rest.
pub fn parse_state_file(text: &str, options: &ValidationOptions) -> Result<State, Vec<String>> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        if text.trim().is_empty() {
            vec![
                " the file is empty; a state file is written whole or not at all, so this one \
                  was not written by abroute (delete it to start empty)"
                    .to_owned(),
            ]
        } else {
            vec![format!("{}:{}: {e}", e.line(), e.column())]
        }
    })?;
    let Value::Object(obj) = &doc else {
        return Err(vec![
            " (root): expected an object with `abroute_state` and `routers`".into(),
        ]);
    };
    let mut problems = Vec::new();
    let format = obj.get("abroute_state").and_then(Value::as_u64);
    let known: &[&str] = if format == Some(1) {
        &["abroute_state", "routers"]
    } else {
        &["abroute_state", "revision", "mod_revisions", "routers"]
    };
    for key in obj.keys() {
        if !known.contains(&key.as_str()) {
            let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            problems.push(format!(
                " {key}: unknown field `{key}`, expected {}",
                expected.join(" or ")
            ));
        }
    }
    match obj.get("abroute_state") {
        Some(v) if matches!(v.as_u64(), Some(1 | STATE_FORMAT)) => {}
        Some(v) => problems.push(format!(
            " abroute_state: format {v} is not one this version reads (1 or {STATE_FORMAT})"
        )),
        None => problems.push(" (root): missing field `abroute_state`".into()),
    }
    let stated = |key: &str, problems: &mut Vec<String>| match obj.get(key) {
        None if format == Some(1) => None,
        Some(v) if v.as_u64().is_some() => v.as_u64(),
        _ => {
            problems.push(format!(" {key}: expected a revision (a whole number)"));
            None
        }
    };
    let revision = stated("revision", &mut problems);
    let mod_revisions = match obj.get("mod_revisions") {
        None if format == Some(1) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        _ => {
            problems.push(" mod_revisions: expected an object of router names to revisions".into());
            None
        }
    };
    let mut routers = BTreeMap::new();
    match obj.get("routers") {
        Some(Value::Array(list)) => {
            for (i, value) in list.iter().enumerate() {
                let prefix = JsonPath::root().key("routers").index(i);
                let mut located = |errors: ConfigErrors| {
                    problems.extend(
                        errors
                            .prefixed(&prefix)
                            .into_iter()
                            .map(|e| format!(" {}: {}", e.path, e.kind)),
                    );
                };
                let config = match RouterConfig::from_value(value) {
                    Ok(c) => c,
                    Err(errors) => {
                        located(errors);
                        continue;
                    }
                };
                // Validation only: the engine compiles each router once, at the start, and names
                // any problem compiling finds beyond these (a catalog or template error).
                if let Err(errors) = abroute::validate::validate(&config, options) {
                    located(errors);
                    continue;
                }
                let name = config.name.clone();
                // Format 1: as if written one at a time in the file's order.
                let at = match &mod_revisions {
                    Some(m) => m.get(&name).and_then(Value::as_u64).unwrap_or_else(|| {
                        problems.push(format!(" mod_revisions: no revision for router {name:?}"));
                        0
                    }),
                    None => i as u64 + 1,
                };
                if routers
                    .insert(name.clone(), (config, Revision(at)))
                    .is_some()
                {
                    problems.push(format!(
                        " {}: router {name:?} appears more than once",
                        prefix.key("name")
                    ));
                }
            }
        }
        Some(_) => problems.push(" routers: expected an array of routers".into()),
        None => problems.push(" (root): missing field `routers`".into()),
    }
    let revision = Revision(revision.unwrap_or(routers.len() as u64));
    if let Some((name, (_, at))) = routers.iter().find(|(_, (_, at))| *at > revision) {
        problems.push(format!(
            " mod_revisions.{name}: revision {at} is ahead of the file's revision {revision}"
        ));
    }
    if problems.is_empty() {
        Ok(State { revision, routers })
    } else {
        Err(problems)
    }
}

/// Replaces `path` with `bytes` atomically and durably: temporary file, fsync, rename, fsync of
/// the directory.
///
/// # Errors
///
/// Any I/O error; the old file is then untouched (a stray `.tmp` may remain).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    // The rename is durable only once the directory entry is.
    File::open(parent_dir(path))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTER: &str = r#"{ "name": "r", "defaultRoute": { "route_id": "d", "variants": [
        { "variant": { "variant_id": "a", "model_id": "m/a" }, "weight": 1 } ] } }"#;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "abroute-store-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn round_trip() {
        let d = dir();
        let path = d.join("state.json");
        let opts = ValidationOptions::default();
        let store = FileStore::open(&path, &opts).await.unwrap();
        assert!(store.load_all().await.unwrap().routers.is_empty());
        store
            .put(&RouterConfig::from_json(ROUTER).unwrap(), Expect::Any)
            .await
            .unwrap();
        let again = FileStore::open(&path, &opts).await.unwrap();
        assert_eq!(again.names().await, vec!["r".to_owned()]);
        again.delete("r", Expect::Any).await.unwrap();
        assert!(
            FileStore::open(&path, &opts)
                .await
                .unwrap()
                .names()
                .await
                .is_empty()
        );
        assert!(!d.join("state.json.tmp").exists());
    }

    #[tokio::test]
    async fn corrupt_files_name_the_position() {
        let d = dir();
        let path = d.join("state.json");
        let opts = ValidationOptions::default();
        fs::write(&path, "{\"abroute_state\": 1,\n \"routers\": [}").unwrap();
        let e = FileStore::open(&path, &opts).await.unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:2:", path.display())), "{e}");
        let bad = ROUTER.replace("\"weight\": 1", "\"weight\": 0");
        fs::write(
            &path,
            format!("{{\"abroute_state\": 1, \"routers\": [{bad}]}}"),
        )
        .unwrap();
        let e = FileStore::open(&path, &opts).await.unwrap_err().to_string();
        assert!(e.contains(": routers[0].defaultRoute"), "{e}");
        fs::write(&path, "").unwrap();
        assert!(FileStore::open(&path, &opts).await.is_err());
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing() {
        let d = dir().join("gone");
        fs::create_dir_all(&d).unwrap();
        let path = d.join("state.json");
        let store = FileStore::open(&path, &ValidationOptions::default())
            .await
            .unwrap();
        fs::remove_dir_all(&d).unwrap();
        let e = store
            .put(&RouterConfig::from_json(ROUTER).unwrap(), Expect::Any)
            .await
            .unwrap_err();
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(store.load_all().await.unwrap().routers.is_empty());
        // Deleting what is not stored writes nothing, so it cannot fail to write (it is a
        // conflict: there is no such router).
        assert_eq!(
            store.delete("r", Expect::Any).await,
            Err(StoreError::Conflict(super::super::Conflict {
                current: None
            }))
        );
    }

    #[tokio::test]
    async fn revisions_survive_a_restart_and_format_1_is_counted() {
        let d = dir().join("rev");
        fs::create_dir_all(&d).unwrap();
        let path = d.join("state.json");
        let opts = ValidationOptions::default();
        // Format 1: revision = the routers present, each at its 1-based place in the file.
        let b = ROUTER.replace("\"name\": \"r\"", "\"name\": \"b\"");
        fs::write(
            &path,
            format!("{{\"abroute_state\": 1, \"routers\": [{ROUTER}, {b}]}}"),
        )
        .unwrap();
        let store = FileStore::open(&path, &opts).await.unwrap();
        let stored = store.load_all().await.unwrap();
        assert_eq!(stored.revision, Revision(2));
        let at: Vec<_> = stored
            .routers
            .iter()
            .map(|r| (r.name.as_str(), r.mod_revision.get()))
            .collect();
        assert_eq!(at, vec![("b", 2), ("r", 1)]);
        // A write goes on from there and is written as format 2.
        let r = RouterConfig::from_json(ROUTER).unwrap();
        assert_eq!(
            store.put(&r, Expect::At(Revision(1))).await.unwrap(),
            Revision(3)
        );
        let text = fs::read_to_string(&path).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["abroute_state"], 2);
        assert_eq!(doc["revision"], 3);
        assert_eq!(doc["mod_revisions"]["r"], 3);
        let again = FileStore::open(&path, &opts).await.unwrap();
        assert!(matches!(
            again.put(&r, Expect::At(Revision(1))).await,
            Err(StoreError::Conflict(c)) if c.current == Some(Revision(3))
        ));
        // A router missing from mod_revisions, or one ahead of the file's revision, is refused.
        fs::write(&path, text.replace("\"r\": 3", "\"r\": 9")).unwrap();
        let e = FileStore::open(&path, &opts).await.unwrap_err().to_string();
        assert!(e.contains("mod_revisions.r: revision 9 is ahead"), "{e}");
        fs::write(&path, text.replace("\"r\": 3", "\"x\": 3")).unwrap();
        let e = FileStore::open(&path, &opts).await.unwrap_err().to_string();
        assert!(e.contains("no revision for router \"r\""), "{e}");
    }
}
