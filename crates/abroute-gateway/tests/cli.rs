//! The `abroute` binary itself: check, simulate, explain, and serve with a SIGTERM.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{SEED, temp_dir};

fn abroute() -> Command {
    Command::new(env!("CARGO_BIN_EXE_abroute"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const CONDITIONAL: &str = r#"{ "name": "tiers", "routes": [
  { "route": { "route_id": "premium", "variants": [
      { "variant": { "variant_id": "big", "model_id": "openai/gpt-4.1",
                     "model_selection": { "models": ["openai/gpt-4o"] } }, "weight": 100 } ] },
    "condition": { "cel_expression": "tier == \"premium\"" } } ],
  "defaultRoute": { "route_id": "default", "variants": [
      { "variant": { "variant_id": "a", "model_id": "openai/gpt-4o-mini" }, "weight": 1 },
      { "variant": { "variant_id": "b", "model_id": "openai/gpt-3.5-turbo" }, "weight": 3 } ] } }"#;

#[test]
fn check_accepts_a_router_without_ids_and_warns_with_the_ids_derived() {
    let dir = temp_dir("check-derived");
    let file = write(
        &dir,
        "user-aware.json",
        include_str!("../../abroute/tests/data/user_aware.json"),
    );
    let out = abroute().arg("check").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "warnings do not fail: {out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let f = file.display();
    assert_eq!(
        lines[0],
        format!("{f}: name: warning: not given, derived as \"user-aware\"")
    );
    assert_eq!(
        lines[1],
        format!("{f}: routes[0].route.route_id: warning: not given, derived as \"route-1\"")
    );
    assert_eq!(lines.len(), 8, "{stdout}");
    assert!(
        lines[7].contains("7 id(s) derived; explicit ids are advised for sticky experiments"),
        "{stdout}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("1 valid router(s), 0 problem(s), 8 warning(s)"),
        "{stderr}"
    );
}

#[test]
fn check_prints_every_problem_with_file_and_path() {
    let dir = temp_dir("check");
    let good = write(&dir, "good.json", SEED);
    let out = abroute().arg("check").arg(&good).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty());

    let bad = write(
        &dir,
        "bad.json",
        &SEED
            .replace("\"weight\": 34", "\"wieght\": 34")
            .replace("\"route_id\": \"default\"", "\"route_id\": \"\""),
    );
    let syntax = write(&dir, "syntax.json", "{ \"name\": ");
    let out = abroute()
        .args(["check"])
        .arg(&good)
        .arg(&bad)
        .arg(&syntax)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "{}: defaultRoute.variants[2]: unknown field `wieght`, expected one of `variant`, `weight`",
            bad.display()
        ),
        "{stdout}"
    );
    assert_eq!(
        lines[2],
        format!(
            "{}: name: EOF while parsing a value at line 1 column 10",
            syntax.display()
        )
    );

    // Strict: weights must add up to 100.
    let uneven = write(&dir, "uneven.json", CONDITIONAL);
    let out = abroute().arg("check").arg(&uneven).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = abroute()
        .args(["check", "--strict"])
        .arg(&uneven)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.trim(),
        format!(
            "{}: defaultRoute.variants: the weights add up to 4; strict mode (as in Inworld) requires exactly 100",
            uneven.display()
        )
    );

    // A directory: its router files; the same name twice is a problem.
    let d = dir.join("routers");
    std::fs::create_dir_all(&d).unwrap();
    write(&d, "a.json", SEED);
    write(&d, "b.json", SEED);
    write(&d, ".hidden.json", "not json");
    let out = abroute().arg("check").arg(&d).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("b.json: name: router \"compare-frontier-models\" is already defined in"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");

    // A gateway config.
    let toml = write(
        &dir,
        "gateway.toml",
        "[limits]\nattempt_timeout = \"soon\"\n",
    );
    let out = abroute().arg("check").arg(&toml).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with(&format!("{}: (config): line 2", toml.display())),
        "{stdout}"
    );

    // A provider's `ca_file` is read relative to the config, and checked.
    let toml = write(
        &dir,
        "tls.toml",
        "[[providers]]\nname = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\nca_file = \"missing-ca.pem\"\n",
    );
    let out = abroute().arg("check").arg(&toml).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("providers[0].ca_file") && stdout.contains("missing-ca.pem"),
        "{stdout}"
    );
}

#[test]
fn simulate_shows_the_split_and_the_movement() {
    let dir = temp_dir("simulate");
    let seed = write(&dir, "seed.json", SEED);
    let out = abroute()
        .args(["simulate", "--requests", "300000", "--json"])
        .arg(&seed)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let variants = v["routes"][0]["variants"].as_array().unwrap();
    for variant in variants {
        let gap = variant["realized"].as_f64().unwrap() - variant["configured"].as_f64().unwrap();
        assert!(gap.abs() < 0.005, "{variant}");
    }
    assert_eq!(v["requests"], 300000);

    let new = write(
        &dir,
        "new.json",
        &SEED
            .replace(
                "\"weight\": 33 }, { \"variant\": { \"variant_id\": \"openai/gpt-3.5",
                "\"weight\": 50 }, { \"variant\": { \"variant_id\": \"openai/gpt-3.5",
            )
            .replace("\"weight\": 34", "\"weight\": 17"),
    );
    let out = abroute()
        .args([
            "simulate",
            "--users",
            "20000",
            "--requests",
            "100000",
            "--from",
        ])
        .arg(&seed)
        .arg(&new)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("route default (default route): 100000 requests"),
        "{text}"
    );
    assert!(
        text.contains("least possible (total variation distance): 17.000%"),
        "{text}"
    );
    assert!(text.contains('█'), "{text}");

    // Conditions see --metadata.
    let tiers = write(&dir, "tiers.json", CONDITIONAL);
    let out = abroute()
        .args([
            "simulate",
            "--requests",
            "1000",
            "--json",
            "-m",
            "tier=premium",
        ])
        .arg(&tiers)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["routes"][0]["route_id"], "premium");
    assert_eq!(v["routes"][0]["requests"], 1000);
}

#[test]
fn explain_says_why() {
    let dir = temp_dir("explain");
    let tiers = write(&dir, "tiers.json", CONDITIONAL);
    let out = abroute()
        .args(["explain", "--user", "alice", "--metadata", "tier=premium"])
        .arg(&tiers)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("→ 1. route premium: tier == \"premium\"\n       true"),
        "{text}"
    );
    assert!(
        text.contains("variant: big → model openai/gpt-4.1"),
        "{text}"
    );
    assert!(text.contains("assigned: sticky"), "{text}");
    assert!(
        text.contains("2. openai/gpt-4o (variant big, the variant's model_selection.models)"),
        "{text}"
    );

    let out = abroute()
        .args(["explain", "--json", "--metadata", "tier=basic"])
        .arg(&tiers)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["conditions"][0]["outcome"], "false");
    assert_eq!(v["route_id"], "default");
}

/// One HTTP/1.1 request over a plain socket: (status line, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\nauthorization: Basic <your-api-key>\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

#[test]
fn serve_runs_the_demo_and_stops_on_sigterm() {
    let mut child = abroute()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    let mut banner = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if let Some(rest) = line.strip_prefix("abroute gateway listening on http://") {
            addr = Some(rest.trim().to_owned());
        }
        if line.starts_with("curl -N") {
            break;
        }
    }
    let addr = addr.expect("the banner names the address");
    assert!(banner.contains("auth: OFF (demo mode)"), "{banner}");
    let (status, body) = http(&addr, "POST", "/router/v1/routers", SEED);
    assert!(status.contains("200"), "{status} {body}");
    let (status, body) = http(
        &addr,
        "POST",
        "/v1/chat/completions",
        r#"{ "model": "inworld/compare-frontier-models", "messages": [{"role": "user", "content": "Hello!"}] }"#,
    );
    assert!(status.contains("200"), "{status} {body}");
    assert!(body.contains("abroute mock upstream"), "{body}");
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
