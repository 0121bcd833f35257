//! Golden tests: every `fixtures/invalid-*.toml` fails with the messages listed in the
//! `.expected` file beside it (one expected substring per line, each matched against the
//! error output, which lists every problem), and the shipped example is valid.

use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn no_env() -> std::iter::Empty<(String, String)> {
    std::iter::empty()
}

#[test]
fn every_invalid_fixture_fails_with_its_expected_messages() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("invalid-") && name.ends_with(".toml")
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected at least 10 invalid fixtures, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let expected_file = file.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_file)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_file.display()));
        let relative = Path::new("fixtures").join(file.file_name().unwrap());
        let text = std::fs::read_to_string(file).unwrap();
        match capstan_config::from_str(&relative, &text, no_env()) {
            Ok(_) => failures.push(format!("{}: loaded, but should fail", file.display())),
            Err(err) => {
                let output = err.lines().join("\n");
                for want in expected.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    if !output.contains(want) {
                        failures.push(format!(
                            "{}: missing {want:?} in:\n{output}",
                            file.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn shipped_examples_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg =
                capstan_config::load_with_env(&path, no_env()).unwrap_or_else(|e| panic!("{e}"));
            assert!(!cfg.pools.is_empty(), "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn embedded_default_round_trips_through_the_raw_schema() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/standalone.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let raw = capstan_config::raw_from_str(&path, &text).unwrap();
    let cfg = capstan_config::from_str(&path, &text, no_env()).unwrap();
    assert_eq!(raw.pools.len(), cfg.pools.len());
    assert_eq!(cfg.pools[0].name, "local");
    assert!(matches!(
        cfg.pools[0].provider,
        capstan_config::ProviderConfig::DryRun(capstan_config::raw::DryRunProviderConfig {
            initial: 2,
            state_file: None,
            instance_type: None,
        })
    ));
    assert_eq!(cfg.agent.interval, std::time::Duration::from_secs(5));
}

#[test]
fn environment_overrides_file_keys() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/standalone.toml");
    let env = [
        ("CAPSTAN_AGENT__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        (
            "CAPSTAN_AGENT__STATE_DIR".to_owned(),
            "elsewhere".to_owned(),
        ),
        ("CAPSTAN_JOURNAL__RETENTION_DAYS".to_owned(), "3".to_owned()),
    ];
    let cfg = capstan_config::load_with_env(&path, env).unwrap();
    assert_eq!(cfg.agent.listen.to_string(), "127.0.0.1:0");
    assert_eq!(cfg.agent.state_dir, PathBuf::from("elsewhere"));
    assert_eq!(cfg.journal.retention_days, 3);
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/standalone.toml");
    let env = [(
        "CAPSTAN_JOURNAL__RETENTION_DAYS".to_owned(),
        "soon".to_owned(),
    )];
    let err = capstan_config::load_with_env(&path, env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("environment variable CAPSTAN_JOURNAL__RETENTION_DAYS"),
        "{err}"
    );
    assert!(err.contains("journal.retention_days"), "{err}");
    let env = [("CAPSTAN_AGENT__INTERVAL".to_owned(), "0s".to_owned())];
    let err = capstan_config::load_with_env(&path, env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("CAPSTAN_AGENT__INTERVAL"), "{err}");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let err = capstan_config::load_with_env(Path::new("/nonexistent/capstan.toml"), no_env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/capstan.toml"), "{err}");
}

/// A build without a provider's, a coordinator's or TLS's feature refuses the config
/// that needs it, naming the key, its line and the feature; with every feature, the same
/// config loads.
#[test]
fn a_config_needing_a_feature_the_build_lacks_is_refused_where_it_asks_for_it() {
    let text = r#"
[cluster]
coordinator = "etcd"
token_file = "/etc/capstan/token"
advertise_url = "https://10.0.0.1:9465"

[cluster.etcd]
endpoints = ["http://127.0.0.1:2379"]
allow_plaintext = true

[cluster.tls]
listen = "0.0.0.0:9465"
ca_file = "/etc/capstan/ca.pem"
cert_file = "/etc/capstan/cert.pem"
key_file = "/etc/capstan/key.pem"

[[pool]]
name = "web"
min = 1
max = 5
provider = { type = "aws", region = "us-east-1", asg = "web" }
targets = [{ metric = "cpu.utilization", value = 60 }]

[[pool]]
name = "local"
min = 1
max = 5
provider = { type = "dry-run" }
targets = [{ metric = "cpu.utilization", value = 60 }]
"#;
    let name = Path::new("lean.toml");
    let lean = capstan_config::Features { enabled: &["nvml"] };
    let err = capstan_config::from_str_for(name, text, no_env(), lean)
        .expect_err("a lean build must refuse etcd, TLS and an AWS pool");
    let lines = err.lines();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].starts_with("lean.toml:3:15: cluster.coordinator: coordinator \"etcd\" is not built into this capstan (its features: nvml); use a build with `--features etcd`"), "{}", lines[0]);
    assert!(
        lines[1].starts_with("lean.toml:10:1: cluster.tls:")
            || lines[1].contains("cluster.tls: [cluster.tls]"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("`--features tls`"), "{}", lines[1]);
    assert!(lines[2].contains("pool[0].provider.type (pool \"web\"): provider type \"aws\" is not built into this capstan"), "{}", lines[2]);
    assert!(
        lines[2].contains("`--features aws` (or `--features full`)"),
        "{}",
        lines[2]
    );

    // The dry-run pool and the standalone coordinator need nothing.
    let none = capstan_config::Features { enabled: &[] };
    let standalone = "[[pool]]\nname = \"local\"\nmin = 1\nmax = 5\nprovider = { type = \"dry-run\" }\ntargets = [{ metric = \"cpu.utilization\", value = 60 }]\n";
    capstan_config::from_str_for(name, standalone, no_env(), none).unwrap();

    // Everything compiled in: the same file is valid.
    capstan_config::from_str_for(name, text, no_env(), capstan_config::Features::ALL).unwrap();
}
