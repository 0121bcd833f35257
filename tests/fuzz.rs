//! Fuzzing what a stranger can hand the agent: the config loader (TOML text → a
//! validated config) and the report decoder (a `POST /v1/reports` body → a report the
//! leader takes). cargo-fuzz needs a nightly toolchain; these are proptest runs over
//! arbitrary input and over structured mutations of valid input (the shipped examples;
//! a full report with host, GPU, workload and interruption readings).
//!
//! What must hold for every case: no panic; a config is either valid (and then keeps
//! the validated model's invariants) or refused with a typed error whose every problem
//! names a key and a place in the file; a report is either taken or refused with a
//! typed rejection: a 4xx/503 status, one of the documented reasons, and the failing
//! field where there is one.
//!
//! Cases per property: `CAPSTAN_FUZZ_CASES` (default 1,000: the form CI runs, a few
//! seconds). `bench/fuzz.sh` runs 100,000 each in release and prints the time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use capstan::cluster::identity::Secret;
use capstan::cluster::ingest::{Ingest, Settings};
use capstan::telemetry::metrics::REJECT_REASONS;
use capstan_collectors::NodeReport;
use capstan_config::raw::ClusterAuth;

fn cases() -> u32 {
    std::env::var("CAPSTAN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000)
}

/// A runner of `cases()` cases on a fresh random seed each run, so every run searches
/// further (`PROPTEST_RNG_SEED=N` repeats one); it writes no regression files: a failure
/// prints the shrunk input.
fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

fn run<S: Strategy>(
    name: &str,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let n = cases();
    if let Err(e) = runner().run(&strategy, check) {
        panic!("{name}: {e}");
    }
    eprintln!(
        "fuzz {name}: {n} cases in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// How many cases ended in each outcome, to show that a run's mutations reach every
/// outcome a property is about (the decoder, the validator, acceptance).
#[derive(Default)]
struct Outcomes(std::sync::Mutex<BTreeMap<&'static str, u32>>);

impl Outcomes {
    fn count(&self, outcome: &'static str) {
        *self.0.lock().unwrap().entry(outcome).or_default() += 1;
    }

    fn assert_reached(self, wanted: &[&str]) {
        let seen = self.0.into_inner().unwrap();
        eprintln!("outcomes: {seen:?}");
        for w in wanted {
            assert!(seen.contains_key(w), "no case ended {w:?}: {seen:?}");
        }
    }
}

// ---------------------------------------------------------------------------------
// The config loader

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every shipped config: the examples and the packaged one.
fn seeds() -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.push(repo().join("packaging/capstan.toml"));
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

/// Values a hostile or careless hand writes where a value goes.
const HOSTILE_VALUES: &[&str] = &[
    "-1",
    "0",
    "1e308",
    "-1e308",
    "nan",
    "inf",
    "-inf",
    "18446744073709551616",
    "-9223372036854775809",
    "\"\"",
    "\"-5m\"",
    "\"1000000000000d\"",
    "\"0s\"",
    "\"\\u0000\"",
    "\"\u{202e}evil\"",
    "[]",
    "[[]]",
    "{}",
    "{ a = { b = { c = 1 } } }",
    "true",
    "1979-05-27T07:32:00Z",
    "\"http://\"",
    "\"0.0.0.0:99999\"",
    "\"/\"",
    "\"../../etc/passwd\"",
    "'''\nmulti\n'''",
];

/// TOML fragments to splice in.
const FRAGMENTS: &[&str] = &[
    "[[pool]]\n",
    "[cluster]\n",
    "[cluster.etcd]\n",
    "[cluster.tls]\n",
    "[agent]\n",
    "[[scrape]]\n",
    "[[group]]\n",
    "[budget]\n",
    "[[pool.schedule]]\n",
    "name = \"x\"\n",
    "min = 5\nmax = 1\n",
    "targets = [{ metric = \"cpu.utilization\", value = 0 }]\n",
    "provider = { type = \"aws\" }\n",
    "provider = { type = \"dry-run\", initial = 4294967295 }\n",
    "coordinator = \"etcd\"\n",
    "endpoints = [\"http://x\"]\n",
    "[[pool]]\nname = \"local\"\n",
    "= = =\n",
    "\"\n",
    "[\n",
    "\u{feff}",
    "\0",
];

#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Truncate(usize),
    ReplaceValue(usize, usize),
    Splice(usize, usize),
    Bytes(usize, Vec<u8>),
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<usize>();
    prop_oneof![
        at.prop_map(Edit::DeleteLine),
        at.prop_map(Edit::DuplicateLine),
        (at, any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        at.prop_map(Edit::Truncate),
        (at, 0..HOSTILE_VALUES.len()).prop_map(|(a, v)| Edit::ReplaceValue(a, v)),
        (at, 0..FRAGMENTS.len()).prop_map(|(a, f)| Edit::Splice(a, f)),
        (at, proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(a, b)| Edit::Bytes(a, b)),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let pick = |i: usize, n: usize| if n == 0 { 0 } else { i % n };
    match edit {
        Edit::DeleteLine(i) if !lines.is_empty() => {
            let i = pick(*i, lines.len());
            lines.remove(i);
        }
        Edit::DuplicateLine(i) if !lines.is_empty() => {
            let i = pick(*i, lines.len());
            lines.insert(i, lines[i].clone());
        }
        Edit::SwapLines(a, b) if !lines.is_empty() => {
            let (a, b) = (pick(*a, lines.len()), pick(*b, lines.len()));
            lines.swap(a, b);
        }
        Edit::Truncate(i) => {
            let mut cut = pick(*i, text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            return text[..cut].to_owned();
        }
        Edit::ReplaceValue(i, v) => {
            // The value of the i-th `key = value` line (or of an inline table's key).
            let with_value: Vec<usize> = (0..lines.len())
                .filter(|&k| lines[k].contains(" = "))
                .collect();
            if !with_value.is_empty() {
                let k = with_value[pick(*i, with_value.len())];
                let eq = lines[k].find(" = ").unwrap_or(0);
                let key = lines[k][..eq].to_owned();
                lines[k] = format!("{key} = {}", HOSTILE_VALUES[*v]);
            }
        }
        Edit::Splice(i, f) => {
            let i = pick(*i, lines.len() + 1);
            lines.insert(i, FRAGMENTS[*f].trim_end_matches('\n').to_owned());
        }
        Edit::Bytes(i, bytes) => {
            let mut raw = text.as_bytes().to_vec();
            let at = pick(*i, raw.len() + 1);
            raw.splice(at..at, bytes.iter().copied());
            return String::from_utf8_lossy(&raw).into_owned();
        }
        _ => {}
    }
    lines.join("\n")
}

/// A config's outcome keeps the loader's promises; returns which it was (`valid`,
/// `syntax`, `invalid`).
fn check_config(text: &str) -> Result<&'static str, TestCaseError> {
    let name = Path::new("fuzz.toml");
    let lines = text.lines().count().max(1);
    match capstan_config::from_str(name, text, std::iter::empty()) {
        Ok(cfg) => {
            for p in &cfg.pools {
                prop_assert!(
                    p.min <= p.max,
                    "pool {}: min {} > max {}",
                    p.name,
                    p.min,
                    p.max
                );
                prop_assert!(
                    p.max <= p.emergency_max,
                    "pool {}: max above emergency_max",
                    p.name
                );
                prop_assert!(!p.name.is_empty());
            }
            prop_assert!(cfg.agent.interval > Duration::ZERO);
            Ok("valid")
        }
        Err(capstan_config::ConfigError::Syntax {
            line,
            column,
            message,
            ..
        }) => {
            prop_assert!(line >= 1 && column >= 1 && !message.is_empty());
            prop_assert!(line <= lines + 1, "syntax error on line {line} of {lines}");
            Ok("syntax")
        }
        Err(capstan_config::ConfigError::Invalid { problems, .. }) => {
            prop_assert!(!problems.is_empty(), "refused without a problem");
            for p in &problems {
                prop_assert!(!p.message.is_empty(), "{p:?}");
                prop_assert!(!p.key.is_empty() || p.message.contains("empty"), "{p:?}");
                if let capstan_config::Location::File { line, column } = p.location {
                    prop_assert!(line >= 1 && column >= 1 && line <= lines + 1, "{p:?}");
                }
            }
            Ok("invalid")
        }
        Err(e @ capstan_config::ConfigError::Io { .. }) => {
            Err(TestCaseError::fail(format!("I/O from a string: {e}")))
        }
    }
}

#[test]
fn fuzz_config_loader_over_arbitrary_text() {
    run(
        "config loader, arbitrary text",
        prop_oneof![
            any::<String>(),
            proptest::collection::vec(any::<u8>(), 0..512)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            proptest::collection::vec(
                prop_oneof![
                    proptest::sample::select(FRAGMENTS).prop_map(str::to_owned),
                    proptest::sample::select(HOSTILE_VALUES).prop_map(str::to_owned),
                    "[a-z_.]{1,12}".prop_map(|k| format!("{k} = ")),
                ],
                0..24
            )
            .prop_map(|parts| parts.concat()),
        ],
        |text| check_config(&text).map(drop),
    );
}

#[test]
fn fuzz_config_loader_over_mutated_examples() {
    let seeds = seeds();
    assert!(seeds.len() >= 3, "the shipped examples");
    for s in &seeds {
        assert_eq!(check_config(s).unwrap(), "valid");
    }
    let n = seeds.len();
    let seen = Outcomes::default();
    run(
        "config loader, mutated examples",
        (0..n, proptest::collection::vec(edit(), 1..6)),
        |(seed, edits)| {
            let text = edits.iter().fold(seeds[seed].clone(), |t, e| apply(&t, e));
            seen.count(check_config(&text)?);
            Ok(())
        },
    );
    // The mutations reach the validator, and some leave a config that still loads.
    seen.assert_reached(&["valid", "syntax", "invalid"]);
}

// ---------------------------------------------------------------------------------
// The report decoder

fn ingest() -> Ingest {
    Ingest::new(
        Settings {
            token: Some(Secret::new("fuzz-secret")),
            // Any node id gets past the token, so every body reaches the checks.
            auth: ClusterAuth::SharedToken,
            max_nodes: 5_000,
            workload_ranges: [("rps".to_owned(), (0.0, Some(1e6)))].into(),
            pools: ["web".to_owned()].into(),
            interval: Duration::from_secs(10),
            node_expiry: Duration::from_secs(300),
            previous: None,
        },
        Arc::new(capstan::clock::SystemClock),
    )
}

/// A report with every part filled, as an agent sends it.
fn full_report() -> serde_json::Value {
    // In the past, as every report is by the time it arrives (the leader's clock is
    // the system's).
    let at = "2026-01-01T00:00:00Z";
    serde_json::json!({
        "version": 1,
        "node_id": "i-0123456789abcdef0",
        "pool": "web",
        "at": at,
        "host": {
            "cpu_percent": 42.5,
            "cpu_per_core_percent": [40.0, 45.0],
            "cores": 2,
            "load": {"one": 0.5, "five": 0.4, "fifteen": 0.3},
            "memory": {"total_bytes": 8_000_000_000_u64, "used_bytes": 2_000_000_000_u64, "available_bytes": 6_000_000_000_u64},
            "swap": {"total_bytes": 0, "used_bytes": 0},
            "disks": [{"mount_point": "/", "total_bytes": 100, "available_bytes": 50}],
            "network": [{"interface": "eth0", "rx_bytes_per_second": 10.0, "tx_bytes_per_second": 20.0}]
        },
        "workload": {"rps": 120.0, "queue": 3.0},
        "interruption": {"kind": "spot-interruption", "at": at},
        "gpus": [{
            "index": 0, "uuid": "GPU-1", "name": "NVIDIA H100",
            "utilization_percent": 80.0, "memory_utilization_percent": 50.0,
            "memory_used_bytes": 1000, "memory_total_bytes": 2000,
            "temperature_celsius": 60.0, "power_watts": 300.0, "power_limit_watts": 700.0,
            "sm_clock_mhz": 1980, "memory_clock_mhz": 2619,
            "throttle_reasons": [], "ecc_corrected": 0, "ecc_uncorrected": 0, "xid_errors": []
        }]
    })
}

/// Finite numbers (JSON has no NaN or infinity) at and past the edges of a reading.
fn hostile_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(1e308),
        Just(-1e308),
        Just(-1.0),
        Just(0.0),
        Just(f64::MIN_POSITIVE),
        Just(101.0),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()),
    ]
}

fn hostile_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    // The oversized string is rarer than the rest: in a value of many leaves it would
    // otherwise make most bodies too large, and those stop before the decoder.
    let leaf = prop_oneof![
        4 => Just(Value::Null),
        4 => any::<bool>().prop_map(Value::Bool),
        4 => any::<i64>().prop_map(|n| json!(n)),
        4 => any::<u64>().prop_map(|n| json!(n)),
        4 => hostile_number().prop_map(|f| json!(f)),
        4 => ".{0,40}".prop_map(Value::String),
        1 => Just(Value::String("x".repeat(70_000))),
        4 => Just(Value::String("2999-01-01T00:00:00Z".into())),
        4 => Just(Value::String("NaN".into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum ReportEdit {
    /// Replace the value at the n-th place (depth-first) with a hostile one.
    Replace(usize, serde_json::Value),
    /// Remove the n-th key.
    Remove(usize),
    /// Add a key to the n-th object.
    Add(usize, String, serde_json::Value),
    /// Replace the n-th number with another of its kind (a float, or a whole number),
    /// so that the body gets past the decoder and the checks meet readings out of range
    /// or out of order (used above total).
    Number(usize, f64, u64),
}

fn report_edit() -> impl Strategy<Value = ReportEdit> {
    prop_oneof![
        (any::<usize>(), hostile_json()).prop_map(|(i, v)| ReportEdit::Replace(i, v)),
        any::<usize>().prop_map(ReportEdit::Remove),
        (any::<usize>(), "[a-z_]{1,12}", hostile_json())
            .prop_map(|(i, k, v)| ReportEdit::Add(i, k, v)),
        (
            any::<usize>(),
            hostile_number(),
            prop_oneof![Just(0), Just(u64::MAX), any::<u64>()]
        )
            .prop_map(|(i, f, n)| ReportEdit::Number(i, f, n)),
    ]
}

/// The places in `v`, depth-first: `(parent path, key or index)`.
fn places(v: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, child) in m {
                path.push(k.clone());
                out.push(path.clone());
                places(child, path, out);
                path.pop();
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(i.to_string());
                out.push(path.clone());
                places(child, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// `path` as a JSON pointer.
fn pointer(path: &[String]) -> String {
    path.iter()
        .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn apply_report_edit(v: &mut serde_json::Value, e: &ReportEdit) {
    let mut all = Vec::new();
    places(v, &mut Vec::new(), &mut all);
    if all.is_empty() {
        return;
    }
    match e {
        ReportEdit::Replace(i, new) => {
            if let Some(slot) = v.pointer_mut(&pointer(&all[i % all.len()])) {
                *slot = new.clone();
            }
        }
        ReportEdit::Remove(i) => {
            let path = &all[i % all.len()];
            let (last, parent) = path.split_last().unwrap();
            match v.pointer_mut(&pointer(parent)) {
                Some(serde_json::Value::Object(m)) => {
                    m.remove(last);
                }
                Some(serde_json::Value::Array(a)) => {
                    if let Ok(k) = last.parse::<usize>()
                        && k < a.len()
                    {
                        a.remove(k);
                    }
                }
                _ => {}
            }
        }
        ReportEdit::Number(i, float, whole) => {
            let numbers: Vec<&Vec<String>> = all
                .iter()
                .filter(|p| matches!(v.pointer(&pointer(p)), Some(serde_json::Value::Number(_))))
                .collect();
            if numbers.is_empty() {
                return;
            }
            let at = pointer(numbers[i % numbers.len()]);
            if let Some(slot) = v.pointer_mut(&at) {
                *slot = if slot.is_f64() {
                    serde_json::json!(float)
                } else {
                    serde_json::json!(whole)
                };
            }
        }
        ReportEdit::Add(i, key, new) => {
            let objects: Vec<Vec<String>> = std::iter::once(Vec::new())
                .chain(all)
                .filter(|p| matches!(v.pointer(&pointer(p)), Some(serde_json::Value::Object(_))))
                .collect();
            let path = &objects[i % objects.len()];
            if let Some(serde_json::Value::Object(m)) = v.pointer_mut(&pointer(path)) {
                m.insert(key.clone(), new.clone());
            }
        }
    }
}

/// A body's outcome keeps ingest's promises; returns the reason it was refused for, or
/// `taken`.
fn check_report(ingest: &Ingest, body: &[u8]) -> Result<&'static str, TestCaseError> {
    // The decoder alone: a typed answer either way.
    let decoded = NodeReport::decode(body);
    match ingest.accept(Some("Bearer fuzz-secret"), None, body) {
        Ok(_) => {
            let report = decoded.map_err(|e| {
                TestCaseError::fail(format!("taken, but the decoder refuses it: {e}"))
            })?;
            prop_assert!(report.workload.values().all(|v| v.is_finite() && *v >= 0.0));
            if let Some(h) = &report.host {
                prop_assert!(h.cpu_percent.is_finite());
            }
            Ok("taken")
        }
        Err(r) => {
            prop_assert!(
                matches!(r.status, 400 | 401 | 403 | 408 | 413 | 422 | 429 | 503),
                "status {}",
                r.status
            );
            prop_assert!(REJECT_REASONS.contains(&r.reason), "reason {}", r.reason);
            prop_assert!(!r.error.is_empty());
            if let Some(f) = &r.field {
                prop_assert!(!f.is_empty());
            }
            if r.reason == "invalid" {
                prop_assert!(r.field.is_some(), "invalid without the field: {}", r.error);
            }
            // What goes on the wire.
            prop_assert!(serde_json::to_string(&r).is_ok());
            Ok(r.reason)
        }
    }
}

#[test]
fn fuzz_report_decoder_over_arbitrary_bytes() {
    let ingest = ingest();
    run(
        "report decoder, arbitrary bytes",
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..1024),
            hostile_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        ],
        |body| check_report(&ingest, &body).map(drop),
    );
}

#[test]
fn fuzz_report_decoder_over_mutated_reports() {
    let ingest = ingest();
    let seed = full_report();
    // The seed itself is taken, or the mutations start from a refusal.
    ingest
        .accept(
            Some("Bearer fuzz-secret"),
            None,
            &serde_json::to_vec(&seed).unwrap(),
        )
        .expect("the full report is taken");
    let seen = Outcomes::default();
    run(
        "report decoder, mutated reports",
        (
            proptest::collection::vec(report_edit(), 1..5),
            any::<u16>(),
            proptest::option::of((any::<usize>(), any::<u8>())),
        ),
        |(edits, node, flip)| {
            let mut v = seed.clone();
            // A node id of its own, mostly, so the rate limit does not answer first.
            v["node_id"] = serde_json::json!(format!("n{node}"));
            for e in &edits {
                apply_report_edit(&mut v, e);
            }
            let mut body = serde_json::to_vec(&v).unwrap();
            if let Some((at, byte)) = flip
                && !body.is_empty()
            {
                let at = at % body.len();
                body[at] = byte;
            }
            seen.count(check_report(&ingest, &body)?);
            Ok(())
        },
    );
    // The mutations reach past the decoder: some are taken, some refused as invalid.
    seen.assert_reached(&["taken", "invalid", "malformed"]);
}
