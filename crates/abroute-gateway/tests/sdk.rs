//! The official OpenAI and Anthropic Python SDKs against the gateway: `tests/sdk/test_sdk.py`
//! (unittest) drives a gateway this test starts on a free loopback port, twice: the embedded
//! default (the seed's router, the built-in mock in process, auth off) and a gateway whose
//! provider is the standalone `abroute mock`, a separate process over loopback HTTP.
//!
//! Each run also gets a model whose upstream fails, for the suite's failover check: in the
//! embedded default the mock is scripted to answer 503 for it; in the loopback run it belongs
//! to a provider whose port is closed.
//!
//! Without `python3` (or `$PYTHON`) and the pinned SDKs
//! (`pip install -r crates/abroute-gateway/tests/sdk/requirements.txt`) the tests say they
//! skipped and pass, unless `ABROUTE_REQUIRE_SDK_TESTS=1` (as CI sets it), which makes that a
//! failure, and also requires the pinned versions.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use abroute_gateway::config::GatewayConfig;
use abroute_gateway::mock::{Behaviour, MockControl};
use abroute_gateway::{Gateway, StartOptions};

const REQUIREMENTS: &str = "tests/sdk/requirements.txt";
const SUITE: &str = "tests/sdk/test_sdk.py";
const REQUIRE: &str = "ABROUTE_REQUIRE_SDK_TESTS";

fn manifest_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// The `name==version` pins of the requirements file.
fn pins() -> Vec<(String, String)> {
    std::fs::read_to_string(manifest_path(REQUIREMENTS))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, version) = l.split_once("==").expect("exact pins only");
            (name.trim().to_owned(), version.trim().to_owned())
        })
        .collect()
}

/// True when the suite can run; false (after saying so) when it must skip. Panics when it
/// cannot run and [`REQUIRE`] is set, or when the installed SDKs are not the pinned ones then.
fn sdks_ready(test: &str) -> bool {
    let require = std::env::var(REQUIRE).is_ok_and(|v| v == "1");
    let python = python();
    let pins = pins();
    let names: Vec<&str> = pins.iter().map(|(n, _)| n.as_str()).collect();
    let probe = format!(
        "import importlib.metadata as m, importlib.util as u\nfor n in {names:?}:\n    \
         assert u.find_spec(n), f'no module named {{n!r}}'\n    print(n, m.version(n))"
    );
    let out = Command::new(&python).args(["-c", &probe]).output();
    let why = match &out {
        Ok(o) if o.status.success() => None,
        // The exception's own line, the last of its traceback.
        Ok(o) => Some(
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_owned(),
        ),
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = why {
        assert!(
            !require,
            "{REQUIRE}=1 but `{python}` cannot import the SDKs of {REQUIREMENTS}: {why}"
        );
        // Straight to the stderr handle: the test harness captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: `{python}` with the SDKs is not available ({why}); \
             `pip install -r crates/abroute-gateway/{REQUIREMENTS}` to run it, and set \
             {REQUIRE}=1 to make this a failure"
        );
        return false;
    }
    let installed = String::from_utf8_lossy(&out.unwrap().stdout).into_owned();
    for (name, version) in &pins {
        let have = installed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or("?");
        if have != version {
            assert!(
                !require,
                "{REQUIRE}=1 but `{python}` has {name} {have}, and {REQUIREMENTS} pins {version}"
            );
            let _ = writeln!(
                std::io::stderr(),
                "{test}: {name} {have} is installed, {REQUIREMENTS} pins {version}"
            );
        }
    }
    true
}

/// Runs the suite against `base`, with `failing` as the model whose upstream fails, and
/// asserts that every test ran and passed.
async fn run_suite(base: String, failing: &'static str) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(manifest_path(SUITE))
            .env("ABROUTE_SDK_BASE", base)
            .env("ABROUTE_SDK_FAILING_MODEL", failing)
            .env("ABROUTE_SDK_BACKUP_MODEL", "openai/gpt-4o-mini")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .expect("runs the SDK suite")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK suite failed:\n{stdout}\n{stderr}"
    );
    // unittest reports on stderr: `Ran N tests`, then `OK`, or `OK (skipped=N)` when some
    // skipped, which they must not here.
    assert!(
        stderr.lines().any(|l| l == "OK"),
        "a test skipped, or unexpected output:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_against_the_embedded_default() {
    if !sdks_ready("sdks_against_the_embedded_default") {
        return;
    }
    let mut config = GatewayConfig::demo();
    config.listen = "127.0.0.1:0".parse().unwrap();
    let mock = MockControl::new();
    // The upstream sees the model without its provider (`openai/broken` → `broken`).
    mock.set("broken", Behaviour::status(503));
    let gateway = Gateway::start(
        config,
        StartOptions {
            mock_control: Some(mock.clone()),
        },
    )
    .await
    .expect("the demo gateway starts");
    assert_eq!(gateway.mock_addr(), None, "the mock is called in process");
    run_suite(format!("http://{}", gateway.addr()), "openai/broken").await;
    assert!(mock.hits("broken") > 0, "the failing model was tried");
    gateway.shutdown().await;
}

/// The standalone `abroute mock`, stopped when dropped.
struct MockProcess {
    child: Child,
    addr: String,
}

impl MockProcess {
    fn start() -> MockProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_abroute"))
            .args(["mock", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts abroute mock");
        let stdout = child.stdout.take().unwrap();
        let mut process = MockProcess {
            child,
            addr: String::new(),
        };
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("abroute mock upstream listening on http://") {
                process.addr = rest.trim().to_owned();
                break;
            }
        }
        assert!(!process.addr.is_empty(), "abroute mock names its address");
        process
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_against_a_standalone_mock_over_loopback() {
    if !sdks_ready("sdks_against_a_standalone_mock_over_loopback") {
        return;
    }
    let mock = MockProcess::start();
    // A port nobody listens on: the provider `down` fails every connection.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = GatewayConfig::from_toml_str(&format!(
        r#"
listen = "127.0.0.1:0"
seed_router = true

[auth]
enabled = false

[[providers]]
name = "openai"
base_url = "http://{mock}/v1"
api_key = "sk-upstream-key"

[[providers]]
name = "down"
base_url = "http://{closed}/v1"
"#,
        mock = mock.addr,
    ))
    .unwrap();
    let gateway = Gateway::start(config, StartOptions::default())
        .await
        .expect("the gateway starts");
    run_suite(format!("http://{}", gateway.addr()), "down/gpt-4.1").await;
    gateway.shutdown().await;
    drop(mock);
}
