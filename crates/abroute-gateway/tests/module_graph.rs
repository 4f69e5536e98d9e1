//! The shape of the house, checked: no two modules of a crate import each other, directly or
//! through others.
//!
//! For each crate of the workspace, every top-level module (a file or a directory under `src/`;
//! a directory's submodules count as that module) is a node, and a `crate::x` path in the code
//! of module `y` (a `use` or a path, outside comments and `#[cfg(test)]` modules) is an edge
//! `y -> x`; a name the crate root re-exports (`crate::Foo` for `pub use x::Foo`) counts as
//! `x`. Any cycle fails the test, naming its modules. docs/design.md has the map this keeps.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The crates checked, from this crate's directory.
const CRATES: [&str; 3] = ["../abroute", "../abroute-http", "."];

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for the crate root and `main.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?.to_owned();
    if !["mod", "lib", "main"].contains(&stem.as_str()) {
        parts.push(stem);
    }
    parts.into_iter().next()
}

/// `text` without comments, string literals' contents and `#[cfg(test)]` items.
fn code_of(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i = text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i..].starts_with(b"#[cfg(test)]") {
            // Skip the item: to the end of its block, or of its line for a `;` item.
            let mut depth = 0usize;
            i += "#[cfg(test)]".len();
            while i < b.len() {
                match b[i] {
                    b'{' => depth += 1,
                    b'}' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    b';' if depth == 0 => {
                        i += 1;
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
        } else {
            let c = text[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segment of each item of a `{ ... }` group (after `crate::`).
fn group_heads(group: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut at_item = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    at_item = true;
                }
            }
            '}' => {
                if depth == 1 {
                    break;
                }
                depth = depth.saturating_sub(1);
            }
            ',' if depth == 1 => at_item = true,
            c if depth == 1 && at_item && (c.is_ascii_alphabetic() || c == '_') => {
                heads.push(ident_at(&group[i..]));
                at_item = false;
            }
            _ => {}
        }
    }
    heads
}

/// Every name `crate::<name>` refers to in `code`.
fn crate_refs(code: &str) -> Vec<&str> {
    let mut refs = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if rest.starts_with('{') {
            refs.extend(group_heads(rest));
        } else {
            refs.push(ident_at(rest));
        }
    }
    refs
}

/// What the crate root re-exports: a name -> the module it comes from.
fn root_exports(root: &str, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for stmt in code_of(root).split(';') {
        let stmt = stmt.trim();
        let Some(path) = stmt
            .strip_prefix("pub use ")
            .or_else(|| stmt.strip_prefix("pub(crate) use "))
        else {
            continue;
        };
        let module = ident_at(path);
        if !modules.contains(module) {
            continue;
        }
        let names: Vec<&str> = match path.rfind('{') {
            Some(open) => path[open + 1..].trim_end_matches('}').split(',').collect(),
            None => vec![path.rsplit("::").next().unwrap_or("")],
        };
        for name in names {
            let name = name.trim();
            let name = name.rsplit(" as ").next().unwrap_or(name).trim();
            let name = name.rsplit("::").next().unwrap_or(name);
            if !name.is_empty() && name != "self" {
                map.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    map
}

/// The module graph of the crate at `dir`.
fn graph(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let src = dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let root = fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let exports = root_exports(&root, &modules);
    let mut edges: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for file in &files {
        let Some(from) = module_of(&src, file) else {
            continue;
        };
        let text = fs::read_to_string(file).unwrap_or_default();
        for name in crate_refs(&code_of(&text)) {
            let to = if modules.contains(name) {
                Some(name.to_owned())
            } else {
                exports.get(name).cloned()
            };
            if let Some(to) = to.filter(|t| *t != from) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

/// The strongly connected sets of more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        g: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_module_imports_one_that_imports_it() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    for krate in CRATES {
        let dir = here.join(krate);
        let g = graph(&dir);
        assert!(g.len() > 3, "{}: no modules found", dir.display());
        for cycle in cycles(&g) {
            let edges: Vec<String> = cycle
                .iter()
                .flat_map(|m| {
                    g[m].iter()
                        .filter(|t| cycle.contains(t))
                        .map(move |t| format!("{m} -> {t}"))
                })
                .collect();
            problems.push(format!(
                "{}: the modules {} import each other ({})",
                dir.file_name()
                    .map_or(krate.into(), |n| n.to_string_lossy()),
                cycle.join(", "),
                edges.join(", ")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_edges_and_cycles() {
    let code = code_of(
        "use crate::a::X; // crate::b\nuse crate::{c::Y, d};\nfn f() { crate::e::g(); \"crate::s\"; }\n\
         #[cfg(test)]\nmod tests { use crate::t; }\n",
    );
    assert_eq!(crate_refs(&code), ["a", "c", "d", "e"]);
    let modules: BTreeSet<String> = ["x", "y"].iter().map(|s| s.to_string()).collect();
    let exports = root_exports("pub use x::{A, B as C};\npub use y::D;\nmod z;", &modules);
    assert_eq!(exports.get("A").map(String::as_str), Some("x"));
    assert_eq!(exports.get("C").map(String::as_str), Some("x"));
    assert_eq!(exports.get("D").map(String::as_str), Some("y"));
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b) in [("p", "q"), ("q", "r"), ("r", "p"), ("r", "s")] {
        g.entry(a.into()).or_default().insert(b.into());
        g.entry(b.into()).or_default();
    }
    assert_eq!(cycles(&g), vec![vec!["p", "q", "r"]]);
}
