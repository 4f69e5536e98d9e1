//! Sticky assignment through the public API: golden vectors (and their Python reproduction),
//! determinism, balance, minimal disruption, salt independence, fallbacks and errors.
//!
//! Every key set is deterministic and every property test has a fixed seed, so nothing here
//! can flake. Disruption is measured exactly, over all 65,536 buckets of both tables; the
//! million-key measurements live in `benches/src/bin/disruption.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use abroute::sticky::{
    MAX_STICKY_VARIANTS, STICKY_ALGORITHM, STICKY_SLOT_BITS, STICKY_SLOTS, StickyError, StickyTable,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use serde_json::{Value, json};
use xxhash_rust::xxh3::xxh3_64_with_seed;

// ---------------------------------------------------------------------------------------------
// Helpers

fn build(salt: &[u8], variants: &[(&str, u32)]) -> StickyTable {
    match StickyTable::new(salt, variants) {
        Ok(t) => t,
        Err(e) => panic!("{variants:?} should build: {e}"),
    }
}

/// `(v0, w0), (v1, w1), …`
fn numbered(weights: &[u32]) -> Vec<(String, u32)> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| (format!("v{i}"), w))
        .collect()
}

fn refs(v: &[(String, u32)]) -> Vec<(&str, u32)> {
    v.iter().map(|(id, w)| (id.as_str(), *w)).collect()
}

/// The variant id owning every bucket.
fn owners(t: &StickyTable) -> Vec<&str> {
    (0..STICKY_SLOTS as u32)
        .map(|b| match t.variant_at(b) {
            Some(i) => t.variant_id(i),
            None => panic!("bucket {b} has no owner"),
        })
        .collect()
}

/// The exact fraction of buckets whose variant id differs, and the part of it between
/// variants other than `pivot`.
fn moved(a: &StickyTable, b: &StickyTable, pivot: Option<&str>) -> (f64, f64) {
    let (oa, ob) = (owners(a), owners(b));
    let mut m = 0usize;
    let mut cross = 0usize;
    for (x, y) in oa.iter().zip(&ob) {
        if x != y {
            m += 1;
            if pivot.is_some_and(|p| *x != p && *y != p) {
                cross += 1;
            }
        }
    }
    let n = STICKY_SLOTS as f64;
    (m as f64 / n, cross as f64 / n)
}

/// Total-variation distance between two splits, over the union of their ids.
fn tv(a: &[(&str, u32)], b: &[(&str, u32)]) -> f64 {
    let ids: BTreeSet<&str> = a.iter().chain(b).map(|&(id, _)| id).collect();
    let total = |s: &[(&str, u32)]| s.iter().map(|&(_, w)| f64::from(w)).sum::<f64>();
    let share = |s: &[(&str, u32)], id: &str, t: f64| {
        s.iter()
            .find(|&&(x, _)| x == id)
            .map_or(0.0, |&(_, w)| f64::from(w) / t)
    };
    let (ta, tb) = (total(a), total(b));
    0.5 * ids
        .iter()
        .map(|id| (share(a, id, ta) - share(b, id, tb)).abs())
        .sum::<f64>()
}

/// The best worst-case movement any stateless scheme can guarantee: `2·TV / (1 + TV)`.
fn optimal_bound(d: f64) -> f64 {
    2.0 * d / (1.0 + d)
}

fn fallback_ids<'t>(t: &'t StickyTable, key: &[u8]) -> (&'t str, Vec<&'t str>) {
    let a = t.assign(key);
    (
        t.variant_id(a.variant()),
        t.fallbacks(&a).map(|i| t.variant_id(i)).collect(),
    )
}

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x5717_c4ab),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Weights for 1 to `max_len` variants: mostly `1..=1000`, some 0, some huge.
fn weights(max_len: usize) -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(
        prop_oneof![6 => 1u32..=1000, 2 => Just(0u32), 1 => 1u32..=u32::MAX],
        1..=max_len,
    )
    .prop_filter("at least one positive weight", |w| w.iter().any(|&x| x > 0))
}

// ---------------------------------------------------------------------------------------------
// Golden vectors

const GOLDEN: &str = "tests/data/sticky_golden.json";
const REFERENCE: &str = "tests/reference/sticky_reference.py";

fn manifest_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A key in a golden row: UTF-8 text, or raw bytes in hex.
enum Key {
    Text(String),
    Bytes(Vec<u8>),
}

impl Key {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Key::Text(s) => s.as_bytes().to_vec(),
            Key::Bytes(b) => b.clone(),
        }
    }
}

/// The keys of every golden case: each XXH3 length class (0, 1–3, 4–8, 9–16, 17–128, 129–240,
/// over 240, over 1,024), Unicode, NUL bytes, and bytes that are not UTF-8.
fn golden_keys(case: usize) -> Vec<Key> {
    let mut keys = vec![
        Key::Text(String::new()),
        Key::Text("a".into()),
        Key::Text("abc".into()),
        Key::Text("user-42".into()),
        Key::Text(format!("user-{:07}", 1_234_567 + case)),
        Key::Text("alice@example.com".into()),
        Key::Text("0b5c6f1e-9d2a-4c1b-8e7f-3a2b1c0d9e8f".into()),
        Key::Text(format!(
            "{:08x}-1111-4222-8333-{:012x}",
            case, 0x4444_5555_6666u64
        )),
        Key::Text("f47ac10b-58cc-4372-a567-0e02b2c3d479".into()),
        Key::Text("用户-42".into()),
        Key::Text("ユーザー🙂".into()),
        Key::Text("Zoë Ångström".into()),
        Key::Text("nul\u{0}inside".into()),
        Key::Text("k".repeat(200)),
        Key::Text(format!("long-key-{case}-").repeat(18)),
        Key::Text("x".repeat(1025)),
        Key::Bytes(vec![0xff, 0x00, 0xfe, 0x01]),
        Key::Bytes(vec![0x00]),
        Key::Text(case.to_string()),
        Key::Text(format!("session:{}", case * 7919)),
    ];
    if case == 0 {
        keys.push(Key::Text("é".repeat(2600))); // 5,200 bytes: several XXH3 stripes
    }
    keys
}

/// `(variant_id, weight)` in config order, owned.
type Split = Vec<(String, u32)>;

/// A change from one split to another, borrowed.
type Change<'a> = (&'a [(&'a str, u32)], &'a [(&'a str, u32)]);

/// The golden cases: `(name, salt, variants)`.
fn golden_cases() -> Vec<(String, String, Split)> {
    let s = |v: &[(&str, u32)]| -> Split { v.iter().map(|&(id, w)| (id.to_owned(), w)).collect() };
    let seed = s(&[
        ("openai/gpt-4o-mini-a", 33),
        ("openai/gpt-3.5-turbo-b", 33),
        ("openai/gpt-4.1-c", 34),
    ]);
    let mut seed_reordered = seed.clone();
    seed_reordered.rotate_left(1);
    seed_reordered.swap(0, 1);
    let sixteen: Vec<u32> = (0..16u32).map(|i| 1 + (i * 37 + 11) % 100).collect();
    let sixty_four: Vec<u32> = (0..64u32).map(|i| 1 + (i * 7919 + 13) % 1000).collect();
    let with_zeros: Vec<u32> = (0..8u32)
        .map(|i| if i % 3 == 1 { 0 } else { 10 + i })
        .collect();
    let router = |route: &str| format!("compare-frontier-models\0{route}");
    vec![
        ("seed-router".into(), router("default"), seed.clone()),
        (
            "seed-router-reordered".into(),
            router("default"),
            seed_reordered,
        ),
        ("seed-router-other-route".into(), router("canary"), seed),
        (
            "ramp-10-90".into(),
            "ramp\0default".into(),
            s(&[("control", 10), ("treatment", 90)]),
        ),
        (
            "ramp-20-80".into(),
            "ramp\0default".into(),
            s(&[("control", 20), ("treatment", 80)]),
        ),
        (
            "add-third".into(),
            "ramp\0default".into(),
            s(&[("control", 34), ("treatment", 33), ("third", 33)]),
        ),
        (
            "zeros".into(),
            "zeros\0default".into(),
            numbered(&with_zeros),
        ),
        ("single".into(), String::new(), s(&[("solo", 7)])),
        (
            "skewed-1-999".into(),
            "skew\0r".into(),
            s(&[("rare", 1), ("common", 999)]),
        ),
        (
            "max-weights".into(),
            "weights\0max".into(),
            s(&[("x", u32::MAX), ("y", u32::MAX), ("z", 1)]),
        ),
        (
            "unicode".into(),
            "маршрутизатор\0по-умолчанию".into(),
            s(&[
                ("模型-甲", 3),
                ("モデル乙", 2),
                ("🙂-variant", 5),
                ("café", 1),
            ]),
        ),
        (
            "sixteen".into(),
            format!("{}\0default", "s".repeat(300)),
            numbered(&sixteen),
        ),
        (
            "sixty-four".into(),
            "big\0default".into(),
            numbered(&sixty_four),
        ),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// XXH3-64 (seed 0) of every bucket's owner index as a little-endian `u16`, in bucket order.
fn table_digest(t: &StickyTable) -> String {
    let mut bytes = Vec::with_capacity(2 * STICKY_SLOTS);
    for b in 0..STICKY_SLOTS as u32 {
        let owner = t.variant_at(b).unwrap_or(usize::MAX) as u16;
        bytes.extend_from_slice(&owner.to_le_bytes());
    }
    format!("{:016x}", xxh3_64_with_seed(&bytes, 0))
}

fn golden_row(t: &StickyTable, key: &Key) -> Value {
    let bytes = key.bytes();
    let a = t.assign(&bytes);
    let mut row = serde_json::Map::new();
    match key {
        Key::Text(s) => row.insert("key".into(), json!(s)),
        Key::Bytes(b) => row.insert("key_hex".into(), json!(hex(b))),
    };
    row.insert("key_hash".into(), json!(format!("{:016x}", a.key_hash())));
    row.insert("bucket".into(), json!(a.bucket()));
    row.insert("variant_id".into(), json!(t.variant_id(a.variant())));
    let fallbacks: Vec<&str> = t.fallbacks(&a).map(|i| t.variant_id(i)).collect();
    row.insert("fallbacks".into(), json!(fallbacks));
    Value::Object(row)
}

/// A JSON object with its fields in the given order, on one line.
fn object_line(fields: &[(&str, &Value)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}: {}", json!(k), v))
        .collect();
    format!("{{{}}}", body.join(", "))
}

/// The golden file: fixed field order, one variant or row per line, so diffs stay readable.
fn generate_golden() -> String {
    let about = json!(
        "Golden vectors of abroute's sticky assignment (docs/sticky.md). Each row: the key \
         (UTF-8 text in `key`, or raw bytes in `key_hex`), its XXH3-64 hash (hex), bucket, \
         variant_id and fallback order under the case's salt and variants. table_xxh3 is \
         XXH3-64 (seed 0) of all 65,536 bucket owners as little-endian u16 indices. Checked \
         by `cargo test -p abroute --test sticky` and reproduced by \
         tests/reference/sticky_reference.py. A changed row breaks stickiness within a major \
         version; regenerate only for a new major version, with ABROUTE_BLESS_STICKY_GOLDEN=1."
    );
    let mut out = String::from("{\n");
    out += &format!("  \"algorithm\": {},\n", json!(STICKY_ALGORITHM));
    out += &format!("  \"slots\": {STICKY_SLOTS},\n");
    out += &format!("  \"about\": {about},\n");
    out += "  \"cases\": [\n";
    let cases = golden_cases();
    for (i, (name, salt, variants)) in cases.iter().enumerate() {
        let t = build(salt.as_bytes(), &refs(variants));
        let counts: Vec<u32> = (0..t.len()).map(|i| t.slot_count(i)).collect();
        out += "    {\n";
        out += &format!("      \"name\": {},\n", json!(name));
        out += &format!("      \"salt\": {},\n", json!(salt));
        out += "      \"variants\": [\n";
        let lines: Vec<String> = variants
            .iter()
            .map(|(id, w)| {
                format!(
                    "        {}",
                    object_line(&[("id", &json!(id)), ("weight", &json!(w))])
                )
            })
            .collect();
        out += &lines.join(",\n");
        out += "\n      ],\n";
        out += &format!("      \"slot_counts\": {},\n", json!(counts));
        out += &format!("      \"table_xxh3\": {},\n", json!(table_digest(&t)));
        out += "      \"rows\": [\n";
        let lines: Vec<String> = golden_keys(i)
            .iter()
            .map(|k| {
                let row = golden_row(&t, k);
                let order = [
                    "key",
                    "key_hex",
                    "key_hash",
                    "bucket",
                    "variant_id",
                    "fallbacks",
                ];
                let fields: Vec<(&str, &Value)> = order
                    .iter()
                    .filter_map(|&f| row.get(f).map(|v| (f, v)))
                    .collect();
                format!("        {}", object_line(&fields))
            })
            .collect();
        out += &lines.join(",\n");
        out += "\n      ]\n";
        out += if i + 1 < cases.len() {
            "    },\n"
        } else {
            "    }\n"
        };
    }
    out += "  ]\n}\n";
    out
}

fn field<'v>(v: &'v Value, name: &str) -> &'v Value {
    match v.get(name) {
        Some(x) => x,
        None => panic!("golden file: missing field {name:?} in {v}"),
    }
}

fn text<'v>(v: &'v Value, name: &str) -> &'v str {
    match field(v, name).as_str() {
        Some(s) => s,
        None => panic!("golden file: {name:?} is not a string"),
    }
}

#[test]
fn golden_vectors_are_unchanged() {
    let path = manifest_path(GOLDEN);
    if std::env::var("ABROUTE_BLESS_STICKY_GOLDEN").is_ok_and(|v| v == "1") {
        // Written aside and renamed, so a test reading it meanwhile sees one file or the other.
        let fresh = path.with_extension("json.new");
        std::fs::write(&fresh, generate_golden()).expect("writes the golden file");
        std::fs::rename(&fresh, &path).expect("replaces the golden file");
    }
    let body = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let golden: Value = serde_json::from_str(&body).expect("the golden file is JSON");
    assert_eq!(text(&golden, "algorithm"), STICKY_ALGORITHM);
    assert_eq!(field(&golden, "slots").as_u64(), Some(STICKY_SLOTS as u64));

    let mut failures: Vec<String> = Vec::new();
    let mut rows = 0usize;
    let (mut empty, mut non_ascii, mut long, mut binary) = (false, false, false, false);
    // (salt, sorted variants, key) → (variant_id, fallbacks): equal across reorderings.
    type Config = (String, Vec<(String, u64)>, String);
    let mut by_config: BTreeMap<Config, (String, String)> = BTreeMap::new();
    let cases = field(&golden, "cases").as_array().expect("cases is a list");
    for case in cases {
        let name = text(case, "name");
        let salt = text(case, "salt");
        let variants: Vec<(String, u32)> = field(case, "variants")
            .as_array()
            .expect("variants is a list")
            .iter()
            .map(|v| {
                let w = field(v, "weight").as_u64().expect("weight is a number");
                (
                    text(v, "id").to_owned(),
                    u32::try_from(w).expect("weight fits u32"),
                )
            })
            .collect();
        let t = build(salt.as_bytes(), &refs(&variants));
        let counts: Vec<u64> = (0..t.len()).map(|i| u64::from(t.slot_count(i))).collect();
        let want: Vec<u64> = field(case, "slot_counts")
            .as_array()
            .expect("slot_counts is a list")
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        if counts != want {
            failures.push(format!("{name}: slot_counts {counts:?}, golden {want:?}"));
        }
        let digest = table_digest(&t);
        if digest != text(case, "table_xxh3") {
            failures.push(format!(
                "{name}: table digest {digest}, golden {}",
                text(case, "table_xxh3")
            ));
        }
        let mut sorted: Vec<(String, u64)> = variants
            .iter()
            .map(|(id, w)| (id.clone(), u64::from(*w)))
            .collect();
        sorted.sort();
        for row in field(case, "rows").as_array().expect("rows is a list") {
            rows += 1;
            let key = match row.get("key_hex") {
                Some(h) => {
                    binary = true;
                    Key::Bytes(unhex(h.as_str().unwrap_or("")).expect("key_hex is hex"))
                }
                None => Key::Text(text(row, "key").to_owned()),
            };
            let bytes = key.bytes();
            empty |= bytes.is_empty();
            long |= bytes.len() > 1024;
            non_ascii |= matches!(&key, Key::Text(s) if !s.is_ascii());
            let got = golden_row(&t, &key);
            for f in ["key_hash", "bucket", "variant_id", "fallbacks"] {
                if got.get(f) != row.get(f) {
                    failures.push(format!(
                        "{name}: key {:?}: {f} is {}, golden {}",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(40)]),
                        got[f],
                        row.get(f).unwrap_or(&Value::Null)
                    ));
                }
            }
            let entry = (
                text(row, "variant_id").to_owned(),
                field(row, "fallbacks").to_string(),
            );
            let config = (salt.to_owned(), sorted.clone(), hex(&bytes));
            if let Some(previous) = by_config.insert(config, entry.clone())
                && previous != entry
            {
                failures.push(format!(
                    "{name}: reordering the variants changed an assignment"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatches (sticky assignments must not change within a major version):\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(rows >= 200, "only {rows} golden rows");
    assert!(
        empty && non_ascii && long && binary,
        "the golden keys lost coverage"
    );
}

/// Runs the Python reference implementation over the golden file.
///
/// Skipped (with a message) when `python3` or its `xxhash` package is missing, unless
/// `ABROUTE_REQUIRE_PYTHON_REFERENCE=1`, in which case a missing interpreter fails the test.
#[test]
fn python_reference_reproduces_golden_vectors() {
    let require = std::env::var("ABROUTE_REQUIRE_PYTHON_REFERENCE").is_ok_and(|v| v == "1");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let probe = Command::new(&python).args(["-c", "import xxhash"]).output();
    let available = matches!(&probe, Ok(o) if o.status.success());
    if !available {
        let why = match &probe {
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        assert!(
            !require,
            "ABROUTE_REQUIRE_PYTHON_REFERENCE=1 but `{python} -c 'import xxhash'` failed: {why}"
        );
        // Straight to the stderr handle: the test harness captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED python_reference_reproduces_golden_vectors: `{python}` with the `xxhash` \
             package is not available ({why}); `pip install xxhash` to run it, and set \
             ABROUTE_REQUIRE_PYTHON_REFERENCE=1 to make this a failure"
        );
        return;
    }
    let out = Command::new(&python)
        .arg(manifest_path(REFERENCE))
        .arg(manifest_path(GOLDEN))
        .output()
        .expect("runs the reference script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python reference disagrees with the golden vectors:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" 0 failed"), "unexpected output:\n{stdout}");
    eprintln!("{stdout}");
}

// ---------------------------------------------------------------------------------------------
// Properties (fixed seeds)

proptest! {
    #![proptest_config(proptest_config(24))]

    /// The same inputs give the same table; the order of the variants changes no assignment and
    /// no fallback order; the key hash and bucket are what the docs say.
    #[test]
    fn deterministic_and_order_free(
        salt in prop::collection::vec(any::<u8>(), 0..40),
        w in weights(24),
        rotate in 0usize..24,
    ) {
        let v = numbered(&w);
        let a = build(&salt, &refs(&v));
        prop_assert_eq!(&a, &build(&salt, &refs(&v)));
        let mut shuffled = v.clone();
        shuffled.reverse();
        let r = rotate % shuffled.len();
        shuffled.rotate_left(r);
        let b = build(&salt, &refs(&shuffled));
        prop_assert_eq!(owners(&a), owners(&b));
        for k in 0..16u32 {
            let key = format!("user-{k}");
            prop_assert_eq!(fallback_ids(&a, key.as_bytes()), fallback_ids(&b, key.as_bytes()));
            let x = a.assign(key.as_bytes());
            prop_assert_eq!(x, a.assign_hashed(a.key_hash(key.as_bytes())));
            prop_assert_eq!(x.key_hash(), b.key_hash(key.as_bytes()));
            prop_assert_eq!(x.bucket(), (x.key_hash() >> (64 - STICKY_SLOT_BITS)) as u32);
            prop_assert_eq!(Some(x.variant()), a.variant_at(x.bucket()));
        }
    }

    /// Every variant owns exactly its largest-remainder quota of buckets (within one bucket of
    /// `weight / sum`), weight 0 owns none, and deterministic keys follow the shares.
    #[test]
    fn balance_is_exact_in_buckets_and_close_in_keys(w in weights(64)) {
        let v = numbered(&w);
        let t = build(b"balance", &refs(&v));
        let total: f64 = w.iter().map(|&x| f64::from(x)).sum();
        let n = STICKY_SLOTS as f64;
        let mut owned = vec![0u32; w.len()];
        for b in 0..STICKY_SLOTS as u32 {
            owned[t.variant_at(b).unwrap_or(0)] += 1;
        }
        const KEYS: usize = 20_000;
        let mut hits = vec![0usize; w.len()];
        for k in 0..KEYS {
            hits[t.assign(format!("balance-key-{k}").as_bytes()).variant()] += 1;
        }
        for (i, &wi) in w.iter().enumerate() {
            let p = f64::from(wi) / total;
            prop_assert_eq!(owned[i], t.slot_count(i));
            prop_assert!((f64::from(t.slot_count(i)) / n - p).abs() < 1.0 / n);
            if wi == 0 {
                prop_assert_eq!(owned[i], 0);
                prop_assert_eq!(hits[i], 0);
            }
            // Six standard deviations of a binomial, plus the one-bucket rounding.
            let share = hits[i] as f64 / KEYS as f64;
            let tolerance = 6.0 * (p * (1.0 - p) / KEYS as f64).sqrt() + 1.0 / n;
            prop_assert!((share - p).abs() <= tolerance, "variant {} share {} want {}", i, share, p);
        }
        prop_assert_eq!(owned.iter().map(|&c| c as usize).sum::<usize>(), STICKY_SLOTS);
    }

    /// Changing one variant's weight (to or from 0 included) moves at most TV + 0.01 of the
    /// users, and almost none of them between the other variants.
    #[test]
    fn one_weight_change_moves_about_tv(
        w in weights(32),
        pick in any::<prop::sample::Index>(),
        new_weight in prop_oneof![Just(0u32), 1u32..=2000],
    ) {
        let j = pick.index(w.len());
        let mut w2 = w.clone();
        w2[j] = new_weight;
        prop_assume!(w2.iter().any(|&x| x > 0));
        let (a, b) = (numbered(&w), numbered(&w2));
        let (ta, tb) = (build(b"one-weight", &refs(&a)), build(b"one-weight", &refs(&b)));
        let pivot = format!("v{j}");
        let (m, cross) = moved(&ta, &tb, Some(&pivot));
        let d = tv(&refs(&a), &refs(&b));
        prop_assert!(m <= d + 0.01, "moved {} TV {}", m, d);
        prop_assert!(cross <= 0.01, "moved between other variants {}", cross);
    }

    /// Any change (every weight, variants added and removed) stays within the best worst-case
    /// guarantee of any stateless scheme, 2·TV / (1 + TV), plus 0.01.
    #[test]
    fn any_change_within_the_optimal_bound(a in weights(40), b in weights(40)) {
        let (va, vb) = (numbered(&a), numbered(&b));
        let (ta, tb) = (build(b"any", &refs(&va)), build(b"any", &refs(&vb)));
        let (m, _) = moved(&ta, &tb, None);
        let d = tv(&refs(&va), &refs(&vb));
        prop_assert!(m <= optimal_bound(d) + 0.01, "moved {} TV {} bound {}", m, d, optimal_bound(d));
    }

    /// Fallbacks: every other positive-weight variant exactly once, never the assigned one,
    /// never a weight-0 one; the same for every replica.
    #[test]
    fn fallbacks_cover_the_others_once(w in weights(40)) {
        let v = numbered(&w);
        let t = build(b"fallbacks", &refs(&v));
        let replica = build(b"fallbacks", &refs(&v));
        let positive: BTreeSet<usize> = (0..w.len()).filter(|&i| w[i] > 0).collect();
        for k in 0..64u32 {
            let key = format!("fallback-{k}");
            let a = t.assign(key.as_bytes());
            prop_assert!(w[a.variant()] > 0);
            let f: Vec<usize> = t.fallbacks(&a).collect();
            prop_assert_eq!(f.len(), positive.len() - 1);
            prop_assert_eq!(t.fallbacks(&a).len(), f.len());
            let set: BTreeSet<usize> = f.iter().copied().collect();
            let mut want = positive.clone();
            want.remove(&a.variant());
            prop_assert_eq!(set, want);
            prop_assert_eq!(&f, &replica.fallbacks(&replica.assign(key.as_bytes())).collect::<Vec<_>>());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The examples, exactly over all buckets

#[test]
fn ramps_adds_removals_and_reorders() {
    let salt = b"compare-frontier-models\0default";
    let changes: [Change<'_>; 8] = [
        (&[("a", 10), ("b", 90)], &[("a", 20), ("b", 80)]),
        (&[("a", 20), ("b", 80)], &[("a", 10), ("b", 90)]),
        (&[("a", 50), ("b", 50)], &[("a", 34), ("b", 33), ("c", 33)]),
        (&[("a", 34), ("b", 33), ("c", 33)], &[("a", 50), ("b", 50)]),
        (
            &[("a", 50), ("b", 50), ("c", 0)],
            &[("a", 50), ("b", 50), ("c", 10)],
        ),
        (
            &[("a", 25), ("b", 25), ("c", 25), ("d", 25)],
            &[("a", 40), ("b", 25), ("c", 25), ("d", 25)],
        ),
        (
            &[("a", 50), ("b", 30), ("c", 20)],
            &[("c", 20), ("a", 50), ("b", 30)],
        ),
        (&[("a", 1), ("b", 999)], &[("a", 2), ("b", 998)]),
    ];
    for (from, to) in changes {
        let (m, _) = moved(&build(salt, from), &build(salt, to), None);
        let d = tv(from, to);
        assert!(m <= d + 0.01, "{from:?} -> {to:?}: moved {m}, TV {d}");
    }
    // Reordering moves nobody at all.
    let (m, _) = moved(
        &build(salt, &[("a", 50), ("b", 30), ("c", 20)]),
        &build(salt, &[("c", 20), ("a", 50), ("b", 30)]),
        None,
    );
    assert_eq!(m, 0.0);
}

#[test]
fn swaps_and_renames_stay_within_the_optimal_bound() {
    // No stateless scheme can keep these within TV + 0.01 for every pair (docs/sticky.md).
    let salt = b"swap\0default";
    let changes: [Change<'_>; 3] = [
        (
            &[("a", 50), ("b", 30), ("c", 20)],
            &[("a", 30), ("b", 50), ("c", 20)],
        ),
        (
            &[("a", 50), ("b", 50), ("c", 0)],
            &[("a", 50), ("b", 0), ("c", 50)],
        ),
        (&[("a", 40), ("b", 60)], &[("a2", 40), ("b", 60)]),
    ];
    for (from, to) in changes {
        let (m, _) = moved(&build(salt, from), &build(salt, to), None);
        let d = tv(from, to);
        assert!(
            m <= optimal_bound(d) + 0.01,
            "{from:?} -> {to:?}: moved {m}, TV {d}"
        );
    }
}

#[test]
fn weight_zero_gets_nobody_and_joining_takes_for_itself() {
    let salt = b"zero";
    let off = build(salt, &[("a", 60), ("b", 40), ("c", 0)]);
    assert_eq!(off.slot_count(2), 0);
    assert!((0..STICKY_SLOTS as u32).all(|b| off.variant_at(b) != Some(2)));
    let on = build(salt, &[("a", 60), ("b", 40), ("c", 25)]);
    let (m, cross) = moved(&off, &on, Some("c"));
    assert!(
        (m - 0.2).abs() <= 0.01,
        "c should take about 20%: moved {m}"
    );
    assert!(cross <= 0.005, "joining moved {cross} between a and b");
}

// ---------------------------------------------------------------------------------------------
// Salts, fallbacks, API

/// Chi-square test of independence on the 4×4 contingency table of two routers' assignments
/// of the same 200,000 keys. With 9 degrees of freedom the 0.1% critical value is 27.88.
#[test]
fn different_salts_assign_independently() {
    let variants = [("a", 10), ("b", 20), ("c", 30), ("d", 40)];
    let chi_square = |s1: &[u8], s2: &[u8]| -> f64 {
        let (t1, t2) = (build(s1, &variants), build(s2, &variants));
        let mut table = [[0f64; 4]; 4];
        for k in 0..200_000u32 {
            let key = format!("user-{k:06}");
            table[t1.assign(key.as_bytes()).variant()][t2.assign(key.as_bytes()).variant()] += 1.0;
        }
        let n: f64 = table.iter().flatten().sum();
        let rows: Vec<f64> = table.iter().map(|r| r.iter().sum()).collect();
        let cols: Vec<f64> = (0..4).map(|j| table.iter().map(|r| r[j]).sum()).collect();
        let mut chi = 0.0;
        for i in 0..4 {
            for j in 0..4 {
                let expected = rows[i] * cols[j] / n;
                chi += (table[i][j] - expected).powi(2) / expected;
            }
        }
        chi
    };
    for (s1, s2) in [
        (&b"router-a\0default"[..], &b"router-b\0default"[..]),
        (b"router-a\0default", b"router-a\0canary"),
        (b"", b"x"),
    ] {
        let chi = chi_square(s1, s2);
        assert!(
            chi < 27.88,
            "salts {s1:?} and {s2:?}: chi-square {chi:.1} with 9 d.f."
        );
    }
    // The test can see dependence: the same salt twice is as dependent as it gets.
    assert!(chi_square(b"same", b"same") > 100_000.0);
}

/// A user's first fallback is where they would go if their variant were removed, so fallback
/// traffic spreads over the others in proportion to their weights.
#[test]
fn fallback_traffic_follows_the_weights() {
    let t = build(b"spread", &[("a", 50), ("b", 30), ("c", 20)]);
    let mut first = [0usize; 3];
    for b in 0..STICKY_SLOTS as u32 {
        let key_hash = u64::from(b) << (64 - STICKY_SLOT_BITS);
        let a = t.assign_hashed(key_hash);
        if a.variant() == 0
            && let Some(f) = t.fallbacks(&a).next()
        {
            first[f] += 1;
        }
    }
    let share_b = first[1] as f64 / (first[1] + first[2]) as f64;
    assert!(
        (share_b - 0.6).abs() < 0.02,
        "b gets {share_b} of a's fallbacks, want 0.6"
    );

    // And it agrees with removing a: most of a's users land on their first fallback.
    let without_a = build(b"spread", &[("b", 30), ("c", 20)]);
    let (mut same, mut total) = (0usize, 0usize);
    for b in 0..STICKY_SLOTS as u32 {
        let a = t.assign_hashed(u64::from(b) << (64 - STICKY_SLOT_BITS));
        if a.variant() == 0 {
            total += 1;
            let f = t.fallbacks(&a).next().map(|i| t.variant_id(i));
            let w = without_a.variant_at(b).map(|i| without_a.variant_id(i));
            same += usize::from(f == w);
        }
    }
    assert!(same as f64 / total as f64 > 0.99, "{same} of {total}");
}

#[test]
fn errors_are_clear() {
    assert_eq!(StickyTable::new(b"s", &[]), Err(StickyError::NoVariants));
    assert_eq!(
        StickyTable::new(b"s", &[("a", 0), ("b", 0)]),
        Err(StickyError::AllWeightsZero)
    );
    let ids: Vec<String> = (0..=MAX_STICKY_VARIANTS).map(|i| format!("v{i}")).collect();
    let many: Vec<(&str, u32)> = ids.iter().map(|s| (s.as_str(), 1)).collect();
    let err = StickyTable::new(b"s", &many).expect_err("too many variants");
    assert_eq!(
        err,
        StickyError::TooManyVariants {
            count: MAX_STICKY_VARIANTS + 1,
            max: MAX_STICKY_VARIANTS
        }
    );
    assert!(err.to_string().contains("at most 4096 variants"), "{err}");
    let dup = StickyTable::new(b"s", &[("a", 1), ("b", 1), ("a", 2)]).expect_err("duplicate");
    assert_eq!(
        dup,
        StickyError::DuplicateVariantId {
            id: "a".into(),
            first: 0,
            second: 2
        }
    );
    assert!(dup.to_string().contains("\"a\""), "{dup}");
    for e in [StickyError::NoVariants, StickyError::AllWeightsZero] {
        assert!(!e.to_string().is_empty());
    }
    // The limit itself is accepted.
    assert_eq!(
        build(b"s", &many[..MAX_STICKY_VARIANTS]).len(),
        MAX_STICKY_VARIANTS
    );
}

#[test]
fn accessors() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<StickyTable>();
    let t = build(b"acc", &[("a", 3), ("b", 0), ("c", 1)]);
    assert_eq!((t.len(), t.is_empty(), t.slots()), (3, false, STICKY_SLOTS));
    assert_eq!(
        (t.variant_id(1), t.weight(1), t.weight(3)),
        ("b", Some(0), None)
    );
    assert_eq!(t.slot_count(0) + t.slot_count(2), STICKY_SLOTS as u32);
    assert_eq!(t.slot_count(9), 0);
    assert_eq!(t.variant_at(STICKY_SLOTS as u32), None);
    assert_eq!(StickyTable::bucket_of(u64::MAX), STICKY_SLOTS as u32 - 1);
    assert!(format!("{t:?}").contains("StickyTable"));
    // A single variant gets everyone and has no fallback.
    let solo = build(b"", &[("solo", 1)]);
    let a = solo.assign(b"anyone");
    assert_eq!((a.variant(), solo.fallbacks(&a).count()), (0, 0));
}
