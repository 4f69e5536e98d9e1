//! The router store: a JSON state file written atomically, loaded at start.
//!
//! Every router created or changed through the management API is written here *before* the API
//! answers (the adapter's [`RouterStore`] contract). A write replaces the whole file the safe
//! way: write `<file>.tmp`, `fsync` it, `rename` it over the file, `fsync` the directory. A crash
//! at any point leaves either the old file or the new one, never a mix.
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
use std::sync::{Mutex, PoisonError};

use abroute::{JsonPath, RouterConfig, ValidationOptions};
use abroute_http::{RouterStore, StoreError};
use serde_json::Value;

pub mod postgres;
pub mod revision;

/// The value of `abroute_state` this version writes and reads.
pub const STATE_FORMAT: u64 = 1;

/// A [`RouterStore`] backed by one JSON file (or by memory only, without a path).
#[derive(Debug)]
pub struct FileStore {
    path: Option<PathBuf>,
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
    /// A store that keeps routers in memory only: nothing survives a restart.
    pub fn memory() -> FileStore {
        FileStore {
            path: None,
            routers: Mutex::new(BTreeMap::new()),
        }
    }

    /// Opens the state file at `path`, validating every router with `options`. A missing file
    /// is an empty store; its directory must exist.
    ///
    /// # Errors
    ///
    /// Every problem in the file, each with its position; or why it could not be read.
    pub fn open(path: &Path, options: &ValidationOptions) -> Result<FileStore, StoreOpenError> {
        let fail = |problems: Vec<String>| StoreOpenError {
            file: path.to_owned(),
            problems,
        };
        let routers = match fs::read_to_string(path) {
            Ok(text) => parse_state(&text, options).map_err(fail)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = parent_dir(path);
                if !dir.is_dir() {
                    return Err(fail(vec![format!(
                        " the directory {} does not exist",
                        dir.display()
                    )]));
                }
                BTreeMap::new()
            }
            Err(e) => return Err(fail(vec![format!(" cannot read: {e}")])),
        };
        Ok(FileStore {
            path: Some(path.to_owned()),
            routers: Mutex::new(routers),
        })
    }

    /// The state file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The stored names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RouterConfig>> {
        self.routers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` to a copy, writes it, and keeps it only when the write succeeded.
    fn update(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, RouterConfig>),
    ) -> Result<(), StoreError> {
        let mut current = self.lock();
        let mut next = current.clone();
        change(&mut next);
        if let Some(path) = &self.path {
            write_atomically(path, &render_state(&next))
                .map_err(|e| StoreError::new(format!("cannot write {}: {e}", path.display())))?;
        }
        *current = next;
        Ok(())
    }
}

impl RouterStore for FileStore {
    fn save(&self, router: &RouterConfig) -> Result<(), StoreError> {
        self.update(|m| {
            m.insert(router.name.clone(), router.clone());
        })
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        if !self.lock().contains_key(name) {
            return Ok(());
        }
        self.update(|m| {
            m.remove(name);
        })
    }

    fn load(&self) -> Result<Vec<RouterConfig>, StoreError> {
        Ok(self.lock().values().cloned().collect())
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
                let config = match RouterConfig::from_value(value) {
                    Ok(c) => c,
                    Err(errors) => {
                        problems.extend(
                            errors
                                .prefixed(&prefix)
                                .into_iter()
                                .map(|e| format!(" {}: {}", e.path, e.kind)),
                        );
                        continue;
                    }
                };
                if let Err(errors) = config.compile_with(options) {
                    problems.extend(
                        errors
                            .prefixed(&prefix)
                            .into_iter()
                            .map(|e| format!(" {}: {}", e.path, e.kind)),
                    );
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

    #[test]
    fn round_trip() {
        let d = dir();
        let path = d.join("state.json");
        let opts = ValidationOptions::default();
        let store = FileStore::open(&path, &opts).unwrap();
        assert!(store.load().unwrap().is_empty());
        store
            .save(&RouterConfig::from_json(ROUTER).unwrap())
            .unwrap();
        let again = FileStore::open(&path, &opts).unwrap();
        assert_eq!(again.names(), vec!["r".to_owned()]);
        again.delete("r").unwrap();
        assert!(FileStore::open(&path, &opts).unwrap().names().is_empty());
        assert!(!d.join("state.json.tmp").exists());
    }

    #[test]
    fn corrupt_files_name_the_position() {
        let d = dir();
        let path = d.join("state.json");
        let opts = ValidationOptions::default();
        fs::write(&path, "{\"abroute_state\": 1,\n \"routers\": [}").unwrap();
        let e = FileStore::open(&path, &opts).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:2:", path.display())), "{e}");
        let bad = ROUTER.replace("\"weight\": 1", "\"weight\": 0");
        fs::write(
            &path,
            format!("{{\"abroute_state\": 1, \"routers\": [{bad}]}}"),
        )
        .unwrap();
        let e = FileStore::open(&path, &opts).unwrap_err().to_string();
        assert!(e.contains(": routers[0].defaultRoute"), "{e}");
        fs::write(&path, "").unwrap();
        assert!(FileStore::open(&path, &opts).is_err());
    }
}
