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
//! { "abroute_state": 1, "routers": [ { "name": "...", "defaultRoute": { ... } } ] }
//! ```
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

use abroute::{ConfigErrors, JsonPath, RouterConfig, ValidationOptions};
use serde_json::Value;
use tokio::sync::Mutex;

use super::{RouterStore, StoreError, StoreFuture, Stored};

/// The value of `abroute_state` this version writes and reads.
pub const STATE_FORMAT: u64 = 1;

/// A [`RouterStore`] backed by one JSON file.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    /// What the file holds. Held across a write, so writes never interleave.
    routers: Mutex<BTreeMap<String, RouterConfig>>,
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
            routers: Mutex::new(read),
        })
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored names, sorted.
    pub async fn names(&self) -> Vec<String> {
        self.routers.lock().await.keys().cloned().collect()
    }

    /// Applies `change` to a copy, writes the copy (on the blocking pool) when `change` says it
    /// changed something, and keeps it only when the write succeeded.
    async fn update(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, RouterConfig>) -> bool,
    ) -> Result<(), StoreError> {
        let mut current = self.routers.lock().await;
        let mut next = current.clone();
        if !change(&mut next) {
            return Ok(());
        }
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || {
            write_atomically(&path, &render_state(&next)).map(|()| next)
        })
        .await;
        let failed = |e: &dyn fmt::Display| {
            StoreError::Unavailable(format!("cannot write {}: {e}", self.path.display()))
        };
        match written {
            Ok(Ok(next)) => {
                *current = next;
                Ok(())
            }
            Ok(Err(e)) => Err(failed(&e)),
            Err(e) => Err(failed(&e)),
        }
    }
}

impl RouterStore for FileStore {
    fn load_all(&self) -> StoreFuture<'_, Stored> {
        Box::pin(async move {
            let routers = self.routers.lock().await.values().cloned().collect();
            Ok(Stored { routers })
        })
    }

    fn put<'a>(&'a self, router: &'a RouterConfig) -> StoreFuture<'a, ()> {
        Box::pin(self.update(|m| {
            m.insert(router.name.clone(), router.clone());
            true
        }))
    }

    fn delete<'a>(&'a self, name: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(self.update(|m| m.remove(name).is_some()))
    }
}

/// Reads and validates the state file at `path` (blocking).
fn read_state_file(
    path: &Path,
    options: &ValidationOptions,
) -> Result<BTreeMap<String, RouterConfig>, StoreOpenError> {
    let fail = |problems: Vec<String>| StoreOpenError {
        file: path.to_owned(),
        problems,
    };
    match fs::read_to_string(path) {
        Ok(text) => parse_state(&text, options).map_err(fail),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = parent_dir(path);
            if !dir.is_dir() {
                return Err(fail(vec![format!(
                    " the directory {} does not exist",
                    dir.display()
                )]));
            }
            Ok(BTreeMap::new())
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

/// The state file's text for these routers.
pub fn render_state(routers: &BTreeMap<String, RouterConfig>) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct State<'a> {
        abroute_state: u64,
        routers: Vec<&'a RouterConfig>,
    }
    let doc = State {
        abroute_state: STATE_FORMAT,
        routers: routers.values().collect(),
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
    for key in obj.keys() {
        if key != "abroute_state" && key != "routers" {
            problems.push(format!(
                " {key}: unknown field `{key}`, expected `abroute_state` or `routers`"
            ));
        }
    }
    match obj.get("abroute_state") {
        Some(v) if v.as_u64() == Some(STATE_FORMAT) => {}
        Some(v) => problems.push(format!(
            " abroute_state: format {v} is not one this version reads ({STATE_FORMAT})"
        )),
        None => problems.push(" (root): missing field `abroute_state`".into()),
    }
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
                if let Err(errors) = config.compile_with(options) {
                    located(errors);
                    continue;
                }
                let name = config.name.clone();
                if routers.insert(name.clone(), config).is_some() {
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
    if problems.is_empty() {
        Ok(routers)
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
            .put(&RouterConfig::from_json(ROUTER).unwrap())
            .await
            .unwrap();
        let again = FileStore::open(&path, &opts).await.unwrap();
        assert_eq!(again.names().await, vec!["r".to_owned()]);
        again.delete("r").await.unwrap();
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
            .put(&RouterConfig::from_json(ROUTER).unwrap())
            .await
            .unwrap_err();
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(store.load_all().await.unwrap().routers.is_empty());
        // Deleting what is not stored writes nothing, so it cannot fail.
        store.delete("r").await.unwrap();
    }
}
