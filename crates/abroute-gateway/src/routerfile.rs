//! Router files: one router JSON per file, read and validated with every problem located as
//! `file: json.path: message`; and `key=value` metadata for the command line.

use std::fmt;
use std::path::{Path, PathBuf};

use abroute::{JsonPath, RouterConfig, ValidationOptions};
use serde_json::Value;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// Where in it, as a JSON path (`defaultRoute.variants[0].weight`, or `(root)`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    /// `file: json.path: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.path,
            self.message
        )
    }
}

impl Problem {
    /// A problem at the root of `file`.
    pub fn root(file: &Path, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_owned(),
            path: JsonPath::root().to_string(),
            message: message.into(),
        }
    }
}

/// Reads and validates one router from `text` (named `file` in problems).
///
/// # Errors
///
/// Every problem: syntax (with line and column), structure, then meaning (validation runs only
/// on a router that parsed).
pub fn parse_router(
    text: &str,
    file: &Path,
    options: &ValidationOptions,
) -> Result<RouterConfig, Vec<Problem>> {
    parse_router_derived(text, file, options).map(|(config, _)| config)
}

/// [`parse_router`], with the ids the file left out and reading derived
/// ([`RouterConfig::from_json_derived`]).
///
/// # Errors
///
/// As [`parse_router`].
pub fn parse_router_derived(
    text: &str,
    file: &Path,
    options: &ValidationOptions,
) -> Result<(RouterConfig, Vec<abroute::DerivedId>), Vec<Problem>> {
    let located = |e: abroute::ConfigErrors| -> Vec<Problem> {
        e.into_iter()
            .map(|e| Problem {
                file: file.to_owned(),
                path: e.path.to_string(),
                message: e.kind.to_string(),
            })
            .collect()
    };
    let (config, derived) = RouterConfig::from_json_derived(text).map_err(located)?;
    config.compile_with(options).map_err(located)?;
    Ok((config, derived))
}

/// Reads and validates the router in `file`.
///
/// # Errors
///
/// As [`parse_router`], or one problem when the file cannot be read.
pub fn read_router(file: &Path, options: &ValidationOptions) -> Result<RouterConfig, Vec<Problem>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| vec![Problem::root(file, format!("cannot read the file: {e}"))])?;
    parse_router(&text, file, options)
}

/// Whether a directory entry is a router file: `*.json`, not hidden (Kubernetes keeps its
/// `..data` links hidden).
pub fn is_router_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.') && name.ends_with(".json")
}

/// The router files of a directory, sorted by name.
///
/// # Errors
///
/// When the directory cannot be listed.
pub fn router_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if is_router_file(&path) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every router file of `dir`: all routers, or every problem (names given twice
/// included).
///
/// # Errors
///
/// Every problem of every file.
pub fn read_dir(
    dir: &Path,
    options: &ValidationOptions,
) -> Result<Vec<RouterConfig>, Vec<Problem>> {
    let files = router_files(dir).map_err(|e| {
        vec![Problem::root(
            dir,
            format!("cannot list the directory: {e}"),
        )]
    })?;
    let mut routers: Vec<(PathBuf, RouterConfig)> = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match read_router(&file, options) {
            Ok(r) => {
                if let Some((first, _)) = routers.iter().find(|(_, c)| c.name == r.name) {
                    problems.push(Problem {
                        file: file.clone(),
                        path: "name".into(),
                        message: format!(
                            "router {:?} is already defined in {}",
                            r.name,
                            first.display()
                        ),
                    });
                } else {
                    routers.push((file, r));
                }
            }
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() {
        Ok(routers.into_iter().map(|(_, r)| r).collect())
    } else {
        Err(problems)
    }
}

/// Parses `key=value` metadata. The value is read as JSON when it is JSON (`seats=12`,
/// `vip=true`, `tags=["a"]`, `name="x"`), else taken as a string (`tier=premium`).
///
/// # Errors
///
/// When there is no `=` or the key is empty.
pub fn parse_metadata(text: &str) -> Result<(String, Value), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("metadata {text:?} must be written key=value"))?;
    if k.is_empty() {
        return Err(format!("metadata {text:?} has an empty key"));
    }
    let value = serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_types() {
        assert_eq!(
            parse_metadata("tier=premium").unwrap().1,
            Value::from("premium")
        );
        assert_eq!(parse_metadata("seats=12").unwrap().1, Value::from(12));
        assert_eq!(parse_metadata("vip=true").unwrap().1, Value::from(true));
        assert_eq!(parse_metadata("e=").unwrap().1, Value::from(""));
        assert!(parse_metadata("novalue").is_err());
        assert!(parse_metadata("=x").is_err());
    }

    #[test]
    fn problems_are_located() {
        let p = parse_router(
            r#"{"name": "x", "defaultRoute": {"route_id": "d", "variants": [
                {"variant": {"variant_id": "a", "model_id": "m"}, "wieght": 1}]}}"#,
            Path::new("r.json"),
            &ValidationOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            p[0].to_string(),
            "r.json: defaultRoute.variants[0]: unknown field `wieght`, expected one of `variant`, `weight`"
        );
        let p = parse_router("{", Path::new("r.json"), &ValidationOptions::default()).unwrap_err();
        assert!(p[0].to_string().starts_with("r.json: (root): "), "{}", p[0]);
    }
}
