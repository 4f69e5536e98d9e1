//! A watched directory of router files, hot-swapped on change (Kubernetes ConfigMap style).
//!
//! Every `interval` the watcher reads the directory's router files (`*.json`, not hidden;
//! ConfigMap mounts are symlinks through a hidden `..data` link, which reading follows) and
//! compares their contents with the last set it applied. On a change, it reads and validates
//! *every* file first; if any is invalid, it logs every problem (`file: json.path: message`) and
//! keeps the routers it has, untouched. Otherwise it upserts each new or changed router and
//! removes the routers whose files are gone, all in one engine batch: one new snapshot. Routers
//! from the directory cannot be changed through the management API (409): the files are their
//! source of truth.

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use abroute::{Change, Engine, RouterConfig, ValidationOptions};

use crate::routerfile::{self, Problem};

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
/// or changed router and every removal is published in a single [`Engine::apply`] batch, so no
/// request ever sees some of the directory's files applied and others not.
pub fn apply(engine: &Engine, watched: &WatchedNames, routers: Vec<RouterConfig>) -> Applied {
    let mut names = watched.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = Applied::default();
    let new: BTreeSet<String> = routers.iter().map(|r| r.name.clone()).collect();
    let mut changes = Vec::with_capacity(routers.len());
    {
        let snapshot = engine.load();
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
    }
    if changes.is_empty() {
        *names = new;
        return out;
    }
    let summary: Vec<(bool, String)> = changes
        .iter()
        .map(|c| (matches!(c, Change::Upsert(_)), c.name().to_owned()))
        .collect();
    match engine.apply(changes) {
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
            // Validated with the engine's options already; this would be a bug. Nothing changed.
            tracing::error!(errors = %e, "the engine refused the watched directory");
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
    /// The engine to update.
    pub engine: Arc<Engine>,
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
    pub fn load_now(&self) -> Result<(Applied, u64), Vec<Problem>> {
        let print = fingerprint(&self.dir).map_err(|e| {
            vec![Problem::root(
                &self.dir,
                format!("cannot read the directory: {e}"),
            )]
        })?;
        let routers = routerfile::read_dir(&self.dir, &self.options)?;
        Ok((apply(&self.engine, &self.watched, routers), print))
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
                    let applied = apply(&self.engine, &self.watched, routers);
                    metrics::counter!("abroute_config_changes_total", "source" => "watch", "result" => "applied").increment(1);
                    tracing::info!(
                        dir = %self.dir.display(),
                        upserted = applied.upserted,
                        removed = applied.removed,
                        unchanged = applied.unchanged,
                        version = self.engine.version(),
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
