//! The examples of `docs/config.md` are what the code does.
//!
//! - A ```` ```json ```` block after `<!-- router -->` is a complete router: it reads, validates
//!   and compiles (against the shipped catalog), and reads back unchanged from `to_json_pretty`.
//!   After `<!-- router strict -->` it also passes `ValidationOptions::strict()`.
//! - A ```` ```json ```` block after `<!-- errors -->` (or `<!-- errors strict -->`) is refused,
//!   and the ```` ```text ```` block that follows it is exactly what the code prints: the
//!   reading errors if it does not read, else the validation errors, else the compile errors.
//! - The first router example tries the models its notes (section 1) name, in that order.

use abroute::RouterConfig;
use abroute::validate::{ValidationOptions, validate};

const DOC: &str = include_str!("../../../docs/config.md");

/// One marked example: its marker, the line of its JSON block, the JSON, and the text block
/// after it (for `errors`).
struct Example {
    marker: String,
    line: usize,
    json: String,
    text: Option<String>,
}

/// The fenced block of `lang` that starts at or after `lines[*i]`, its first line's number; the
/// index ends past the closing fence.
fn block(lines: &[&str], i: &mut usize, lang: &str) -> (usize, String) {
    while *i < lines.len() && lines[*i].trim().is_empty() {
        *i += 1;
    }
    let open = format!("```{lang}");
    assert!(
        *i < lines.len() && lines[*i].trim() == open,
        "docs/config.md line {}: expected a {open} block",
        *i + 1
    );
    let start = *i + 1;
    let mut body = Vec::new();
    *i += 1;
    while *i < lines.len() && lines[*i].trim() != "```" {
        body.push(lines[*i]);
        *i += 1;
    }
    assert!(
        *i < lines.len(),
        "docs/config.md line {start}: unclosed block"
    );
    *i += 1;
    (start, body.join("\n"))
}

fn examples() -> Vec<Example> {
    let lines: Vec<&str> = DOC.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let marker = lines[i]
            .trim()
            .strip_prefix("<!-- ")
            .and_then(|m| m.strip_suffix(" -->"))
            .filter(|m| m.starts_with("router") || m.starts_with("errors"))
            .map(str::to_owned);
        i += 1;
        let Some(marker) = marker else { continue };
        let (line, json) = block(&lines, &mut i, "json");
        let text = marker
            .starts_with("errors")
            .then(|| block(&lines, &mut i, "text").1);
        out.push(Example {
            marker,
            line,
            json,
            text,
        });
    }
    out
}

fn options(marker: &str) -> ValidationOptions {
    if marker.ends_with(" strict") {
        ValidationOptions::strict()
    } else {
        ValidationOptions::default()
    }
}

#[test]
fn every_router_example_is_valid() {
    let routers: Vec<Example> = examples()
        .into_iter()
        .filter(|e| e.marker.starts_with("router"))
        .collect();
    assert!(!routers.is_empty(), "docs/config.md has no router example");
    for e in routers {
        let config = RouterConfig::from_json(&e.json)
            .unwrap_or_else(|err| panic!("docs/config.md line {}: not read:\n{err}", e.line));
        for opts in [ValidationOptions::default(), options(&e.marker)] {
            if let Err(err) = validate(&config, &opts) {
                panic!(
                    "docs/config.md line {}: not valid ({opts:?}):\n{err}",
                    e.line
                );
            }
            if let Err(err) = config.compile_with(&opts) {
                panic!("docs/config.md line {}: not compiled:\n{err}", e.line);
            }
        }
        // What is read is written back and read again unchanged.
        assert_eq!(
            RouterConfig::from_json(&config.to_json_pretty()).as_ref(),
            Ok(&config),
            "docs/config.md line {}: round trip",
            e.line
        );
    }
}

#[test]
fn every_error_example_prints_what_the_code_prints() {
    let cases: Vec<Example> = examples()
        .into_iter()
        .filter(|e| e.marker.starts_with("errors"))
        .collect();
    assert!(!cases.is_empty(), "docs/config.md has no error example");
    let mut wrong = Vec::new();
    for e in cases {
        let opts = options(&e.marker);
        let got = match RouterConfig::from_json(&e.json) {
            Err(err) => err.to_string(),
            Ok(config) => match validate(&config, &opts) {
                Err(err) => err.to_string(),
                Ok(()) => match config.compile_with(&opts) {
                    Err(err) => err.to_string(),
                    Ok(_) => "(accepted)".to_owned(),
                },
            },
        };
        let want = e.text.unwrap_or_default();
        if got != want {
            wrong.push(format!(
                "docs/config.md line {}: the doc shows\n{want}\nthe code prints\n{got}\n",
                e.line
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Section 1 names the models each variant of the `premium` route tries, in order.
#[test]
fn the_complete_example_tries_the_models_its_notes_name() {
    let example = examples()
        .into_iter()
        .find(|e| e.marker.starts_with("router"))
        .expect("a router example");
    let router = RouterConfig::from_json(&example.json)
        .and_then(|c| c.compile())
        .expect("valid");
    let premium = &router.conditional_routes()[0];
    let models: Vec<Vec<&str>> = premium
        .variants()
        .iter()
        .map(|v| v.targets().iter().map(|t| t.id()).collect())
        .collect();
    assert_eq!(
        models,
        [
            vec!["openai/gpt-4.1", "openai/gpt-4o", "openai/gpt-4.1-mini"],
            vec!["openai/gpt-5-mini", "openai/gpt-4.1-mini"],
        ]
    );
}
