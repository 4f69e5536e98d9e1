//! `abroute check FILE...`: validates router files (and gateway configs and state files) for
//! pipelines. Every problem is one line, `file: json.path: message`; the exit code is 0 when
//! there is none, 1 otherwise.
//!
//! - a directory stands for its `*.json` files (not hidden), as the watcher reads them;
//! - a `.toml` file is read as a gateway config;
//! - a JSON object with `abroute_state` is read as a state file;
//! - any other file holds one router. `--strict` requires every route's weights to add up to
//!   exactly 100, as Inworld does. A router name defined in two files is a problem too.
//!
//! A router that leaves out its `name`, a `route_id` or a `variant_id` is accepted with the ids
//! derived (docs/config.md, "Routers without ids"): each derived id is a warning line
//! (`file: json.path: warning: ...`), which does not fail the check, and a last warning per
//! file advises explicit ids for sticky experiments, since a file's derived ids follow its order.

use std::path::{Path, PathBuf};

use abroute::ValidationOptions;

use crate::config::GatewayConfig;
use crate::routerfile::{self, Problem};
use crate::store;

/// What `check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Files read.
    pub files: usize,
    /// Routers that are valid.
    pub routers: usize,
    /// Every problem, in file order.
    pub problems: Vec<Problem>,
    /// Warnings, which do not fail the check: the ids derived for routers that left them out.
    pub warnings: Vec<Problem>,
}

impl CheckReport {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn expand(paths: &[PathBuf], report: &mut CheckReport) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            match routerfile::router_files(p) {
                Ok(files) if files.is_empty() => report.problems.push(Problem::root(
                    p,
                    "the directory holds no router file (*.json)",
                )),
                Ok(files) => out.extend(files),
                Err(e) => report
                    .problems
                    .push(Problem::root(p, format!("cannot list the directory: {e}"))),
            }
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Checks every file; see the [module documentation](self).
pub fn check(paths: &[PathBuf], strict: bool) -> CheckReport {
    let options = if strict {
        ValidationOptions::strict()
    } else {
        ValidationOptions::default()
    };
    let mut report = CheckReport::default();
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for file in expand(paths, &mut report) {
        report.files += 1;
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                report
                    .problems
                    .push(Problem::root(&file, format!("cannot read the file: {e}")));
                continue;
            }
        };
        if file.extension().is_some_and(|e| e == "toml") {
            // From the file, so relative paths resolve and `ca_file`s are read and checked.
            if let Err(e) = GatewayConfig::from_file(&file) {
                for line in e.message.lines() {
                    report.problems.push(Problem {
                        file: file.clone(),
                        path: "(config)".into(),
                        message: line.to_owned(),
                    });
                }
            }
            continue;
        }
        if is_state_file(&text) {
            match store::parse_state(&text, &options) {
                Ok(routers) => {
                    for name in routers.keys() {
                        note_name(&mut names, &mut report, name, &file);
                    }
                    report.routers += routers.len();
                }
                Err(problems) => report
                    .problems
                    .extend(problems.into_iter().map(|p| state_problem(&file, &p))),
            }
            continue;
        }
        match routerfile::parse_router_derived(&text, &file, &options) {
            Ok((config, derived)) => {
                report.routers += 1;
                note_name(&mut names, &mut report, &config.name, &file);
                report.warnings.extend(derived_warnings(&file, &derived));
            }
            Err(problems) => report.problems.extend(problems),
        }
    }
    report
}

/// One warning per derived id, then the advice, for a router file that left ids out.
fn derived_warnings(file: &Path, derived: &[abroute::DerivedId]) -> Vec<Problem> {
    if derived.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<Problem> = derived
        .iter()
        .map(|d| Problem {
            file: file.to_owned(),
            path: d.path.to_string(),
            message: format!("warning: not given, derived as {:?}", d.value),
        })
        .collect();
    out.push(Problem::root(
        file,
        format!(
            "warning: {} id(s) derived; explicit ids are advised for sticky experiments: a \
             derived route_id or variant_id follows the file's order and models, so reordering \
             them moves sticky users (a router created through the management API stores its \
             derived ids explicitly)",
            derived.len()
        ),
    ));
    out
}

fn note_name(
    names: &mut Vec<(String, PathBuf)>,
    report: &mut CheckReport,
    name: &str,
    file: &Path,
) {
    if let Some((_, first)) = names.iter().find(|(n, _)| n == name) {
        report.problems.push(Problem {
            file: file.to_owned(),
            path: "name".into(),
            message: format!("router {name:?} is already defined in {}", first.display()),
        });
    } else {
        names.push((name.to_owned(), file.to_owned()));
    }
}

fn is_state_file(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        abroute_state: Option<serde_json::Value>,
    }
    serde_json::from_str::<Probe>(text).is_ok_and(|p| p.abroute_state.is_some())
}

/// A state-file problem (` path: message` or `line:col: message`) as a [`Problem`].
fn state_problem(file: &Path, p: &str) -> Problem {
    match p.strip_prefix(' ').and_then(|p| p.split_once(": ")) {
        Some((path, message)) => Problem {
            file: file.to_owned(),
            path: path.to_owned(),
            message: message.to_owned(),
        },
        None => Problem::root(file, p.trim()),
    }
}
