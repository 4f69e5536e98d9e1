//! A watched directory of router files, hot-swapped on change (Kubernetes ConfigMap style).
//!
//! Every `interval` the watcher reads the directory's router files (`*.json`, not hidden;
//! ConfigMap mounts are symlinks through a hidden `..data` link, which reading follows) and
//! compares their contents with the last set it applied. On a change, it reads and validates
//! *every* file first; if any is invalid, it logs every problem (`file: json.path: message`) and
//! keeps the routers it has, untouched. Otherwise it upserts each new or changed router and
//! removes the routers whose files are gone, all in one batch sent to the
//! [engine writer](crate::writer): one new snapshot. Routers from the directory cannot be
//! changed through the management API (409, see [`GatewayHost`](crate::host::GatewayHost)): the
//! files are their source of truth. Files are read on tokio's blocking pool.

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use abroute::{Change, RouterConfig, ValidationOptions};

use crate::routerfile::{self, Problem};
use crate::writer::EngineWriter;

/// The names of the routers that came from the watched directory.
pub type WatchedNames = Arc<Mutex<BTreeSet<String>>>;

/// A hash of the directory's router files: names and contents.
///
/// # Errors
///
/// When the directory or a file cannot be read.
pub fn fingerprint(dir: &Path) -> std::io::Result<u64> {
    let mut h = DefaultHasher::new();
    for file in routerfile::router_files(dir)? {
        file.file_name().hash(&mut h);
        std::fs::read(&file)?.hash(&mut h);
    }
    Ok(h.finish())
}

/// What one application changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Routers added or changed.
    pub upserted: usize,
    /// Routers removed (their files are gone).
    pub removed: usize,
    /// Routers unchanged.
    pub unchanged: usize,
}

/// Makes the engine hold exactly `routers` among the watched names, as one snapshot: every new
/// or changed router and every removal is sent to the writer as a single [`Engine::apply`]
/// batch, so no request ever sees some of the directory's files applied and others not.
///
/// The names are protected from the API from before the batch is sent until after it applied
/// (new names join the old ones for that time), then become exactly the directory's.
///
/// [`Engine::apply`]: abroute::Engine::apply
pub async fn apply(
    writer: &EngineWriter,
    watched: &WatchedNames,
    routers: Vec<RouterConfig>,
) -> Applied {
    let mut out = Applied::default();
    let new: BTreeSet<String> = routers.iter().map(|r| r.name.clone()).collect();
    let mut changes = Vec::with_capacity(routers.len());
    let old = {
        let mut names = watched.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = writer.engine().load();
        for router in routers {
            let same = snapshot
                .router(&router.name)
                .is_some_and(|r| *r.config() == router);
            if same {
                out.unchanged += 1;
            } else {
                changes.push(Change::Upsert(router));
            }
        }
        for gone in names.difference(&new) {
            if snapshot.router(gone).is_some() {
                changes.push(Change::Remove(gone.clone()));
            }
        }
        if changes.is_empty() {
            *names = new;
            return out;
        }
        let old = names.clone();
        names.extend(new.iter().cloned());
        old
    };
    let summary: Vec<(bool, String)> = changes
        .iter()
        .map(|c| (matches!(c, Change::Upsert(_)), c.name().to_owned()))
        .collect();
    let applied = writer.apply(changes).await;
    let mut names = watched.lock().unwrap_or_else(PoisonError::into_inner);
    match applied {
        Ok(version) => {
            for (upsert, name) in summary {
                if upsert {
                    out.upserted += 1;
                    tracing::info!(router = %name, version, source = "watch", "router loaded");
                } else {
                    out.removed += 1;
                    tracing::info!(router = %name, version, source = "watch", "router removed (its file is gone)");
                }
            }
            *names = new;
        }
        Err(e) => {
            // Validated with the engine's options already; this would be a bug (or the
            // gateway is stopping). Nothing changed.
            tracing::error!(errors = %e, "the engine refused the watched directory");
            *names = old;
        }
    }
    out
}

/// Watches `dir`, forever (spawn it).
#[derive(Debug)]
pub struct DirWatcher {
    /// The directory.
    pub dir: PathBuf,
    /// How often to look.
    pub interval: Duration,
    /// Where the directory's changes go.
    pub writer: EngineWriter,
    /// The names that came from the directory.
    pub watched: WatchedNames,
    /// The engine's validation options.
    pub options: ValidationOptions,
}

impl DirWatcher {
    /// Loads the directory once (for the start). Problems stop the start.
    ///
    /// # Errors
    ///
    /// Every problem in every file.
    pub async fn load_now(&self) -> Result<(Applied, u64), Vec<Problem>> {
        let dir = self.dir.clone();
        let options = self.options;
        let read = tokio::task::spawn_blocking(move || {
            let print = fingerprint(&dir).map_err(|e| {
                vec![Problem::root(
                    &dir,
                    format!("cannot read the directory: {e}"),
                )]
            })?;
            Ok((routerfile::read_dir(&dir, &options)?, print))
        })
        .await
        .unwrap_or_else(|e| {
            Err(vec![Problem::root(
                &self.dir,
                format!("cannot read the directory: {e}"),
            )])
        });
        let (routers, print) = read?;
        Ok((apply(&self.writer, &self.watched, routers).await, print))
    }

    /// Looks every `interval` and applies valid changes; `last` is the fingerprint already
    /// applied.
    pub async fn run(self, mut last: u64) {
        let mut failed_print = None;
        loop {
            tokio::time::sleep(self.interval).await;
            let dir = self.dir.clone();
            let print = match tokio::task::spawn_blocking(move || fingerprint(&dir)).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the watched directory; keeping the routers loaded");
                    continue;
                }
                Err(_) => continue,
            };
            if print == last || Some(print) == failed_print {
                continue;
            }
            let dir = self.dir.clone();
            let options = self.options;
            let read =
                tokio::task::spawn_blocking(move || routerfile::read_dir(&dir, &options)).await;
            match read {
                Ok(Ok(routers)) => {
                    let applied = apply(&self.writer, &self.watched, routers).await;
                    metrics::counter!("abroute_config_changes_total", "source" => "watch", "result" => "applied").increment(1);
                    tracing::info!(
                        dir = %self.dir.display(),
                        upserted = applied.upserted,
                        removed = applied.removed,
                        unchanged = applied.unchanged,
                        version = self.writer.engine().version(),
                        "watched directory applied"
                    );
                    last = print;
                    failed_print = None;
                }
                Ok(Err(problems)) => {
                    metrics::counter!("abroute_config_changes_total", "source" => "watch", "result" => "rejected").increment(1);
                    for p in &problems {
                        tracing::warn!(problem = %p, "invalid router file");
                    }
                    tracing::warn!(
                        dir = %self.dir.display(),
                        problems = problems.len(),
                        "the watched directory is invalid; keeping the routers loaded"
                    );
                    failed_print = Some(print);
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use abroute::Engine;

    use super::*;
    use crate::store::MemoryStore;

    fn router(name: &str, model: &str) -> String {
        format!(
            r#"{{"name": "{name}", "defaultRoute": {{"route_id": "d", "variants": [
              {{"variant": {{"variant_id": "v", "model_id": "{model}"}}, "weight": 1}}]}}}}"#
        )
    }

    #[tokio::test]
    async fn a_directory_change_is_one_snapshot_version() {
        let dir = std::env::temp_dir().join(format!("abroute-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["a", "b", "c"] {
            std::fs::write(dir.join(format!("{name}.json")), router(name, "m/one")).unwrap();
        }
        let engine = Arc::new(Engine::new());
        let (writer, _task) =
            EngineWriter::spawn(Arc::clone(&engine), Arc::new(MemoryStore::new()));
        let watcher = DirWatcher {
            dir: dir.clone(),
            interval: Duration::from_secs(3600),
            writer: writer.clone(),
            watched: Arc::new(Mutex::new(BTreeSet::new())),
            options: ValidationOptions::default(),
        };
        let v0 = engine.version();
        let (applied, _) = watcher.load_now().await.unwrap();
        assert_eq!(applied.upserted, 3);
        assert_eq!(engine.version(), v0 + 1, "three files, one version");
        assert_eq!(engine.load().names(), vec!["a", "b", "c"]);
        // Two changed, one gone, one unchanged: one more version, all of it at once.
        std::fs::write(dir.join("a.json"), router("a", "m/two")).unwrap();
        std::fs::write(dir.join("d.json"), router("d", "m/two")).unwrap();
        std::fs::remove_file(dir.join("c.json")).unwrap();
        let routers = routerfile::read_dir(&dir, &ValidationOptions::default()).unwrap();
        let applied = apply(&writer, &watcher.watched, routers).await;
        assert_eq!(
            applied,
            Applied {
                upserted: 2,
                removed: 1,
                unchanged: 1
            }
        );
        assert_eq!(engine.version(), v0 + 2);
        let snapshot = engine.load();
        assert_eq!(snapshot.names(), vec!["a", "b", "d"]);
        assert_eq!(snapshot.router("a").unwrap().compiled().version(), v0 + 2);
        assert_eq!(snapshot.router("b").unwrap().compiled().version(), v0 + 1);
        let names = watcher.watched.lock().unwrap().clone();
        assert_eq!(names, BTreeSet::from(["a".into(), "b".into(), "d".into()]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
