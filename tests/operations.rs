//! Operations: the systemd unit, the generated man page, completions and config schema,
//! the annotated config, and JSON logs. Uses the real tools: `systemd-analyze` and, for
//! the schema, Python's `jsonschema` (scripts/test.sh installs what is missing).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (scripts/test.sh installs it)"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn capstan(args: &[&str]) -> String {
    let (ok, stdout, stderr) = run(Command::new(BIN).args(args));
    assert!(ok, "capstan {args:?}: {stderr}");
    stdout
}

#[test]
fn generated_files_are_fresh() {
    let files: [(&[&str], &str); 5] = [
        (&["man"], "packaging/man/capstan.1"),
        (
            &["completions", "bash"],
            "packaging/completions/capstan.bash",
        ),
        (&["completions", "zsh"], "packaging/completions/_capstan"),
        (
            &["completions", "fish"],
            "packaging/completions/capstan.fish",
        ),
        (&["config-schema"], "packaging/schema/capstan.schema.json"),
    ];
    let mut stale = Vec::new();
    for (args, file) in files {
        let committed = std::fs::read_to_string(repo().join(file)).unwrap_or_default();
        if capstan(args) != committed {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "stale: {stale:?}; run scripts/generate.sh and commit the result"
    );
}

/// Every property name the schema knows, at any depth.
fn schema_keys(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            for child in map.values() {
                schema_keys(child, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| schema_keys(i, out)),
        _ => {}
    }
}

#[test]
fn the_annotated_config_is_valid_and_names_every_key() {
    let file = repo().join("packaging/capstan.toml");
    let summary = capstan(&["validate", "--config", file.to_str().unwrap()]);
    assert!(summary.contains("valid"), "{summary}");
    let text = std::fs::read_to_string(&file).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&capstan_config::json_schema()).unwrap();
    let mut keys = Default::default();
    schema_keys(&schema, &mut keys);
    assert!(keys.len() > 60, "{keys:?}");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| {
            !(text.contains(&format!("{k} ="))
                || text.contains(&format!("[{k}]"))
                || text.contains(&format!(".{k}]"))
                || text.contains(&format!("[[{k}]]")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "packaging/capstan.toml lacks {missing:?}"
    );
}

#[test]
fn the_schema_accepts_every_shipped_config_and_rejects_unknown_keys() {
    let schema = repo().join("packaging/schema/capstan.schema.json");
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.push(repo().join("packaging/capstan.toml"));
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        bad.path(),
        "[agent]\nlisten = \"127.0.0.1:1\"\nlisten_port = 9\n",
    )
    .unwrap();
    // tomllib is Python's own TOML reader; jsonschema checks against draft 2020-12.
    let check = r#"
import json, sys, tomllib, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
for path in sys.argv[2:]:
    errors = [e.message for e in v.iter_errors(tomllib.load(open(path, "rb")))]
    print(path, "ok" if not errors else "invalid: " + "; ".join(errors))
"#;
    let (ok, out, err) = run(Command::new("python3")
        .arg("-c")
        .arg(check)
        .arg(&schema)
        .args(&files)
        .arg(bad.path()));
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), files.len() + 1, "{out}");
    for line in &lines[..files.len()] {
        assert!(line.ends_with(" ok"), "{line}");
    }
    assert!(
        lines[files.len()].contains("invalid") && lines[files.len()].contains("listen_port"),
        "{out}"
    );
}

/// The unit with `/usr/bin/capstan` pointing at the built binary, in a temp dir, and a
/// MANPATH holding the generated man page, so `verify` can check every command.
fn unit_for_verify(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(repo().join("systemd/capstan.service"))
        .unwrap()
        .replace("/usr/bin/capstan", BIN);
    let path = dir.join("capstan.service");
    std::fs::write(&path, unit).unwrap();
    let man1 = dir.join("man/man1");
    std::fs::create_dir_all(&man1).unwrap();
    std::fs::copy(
        repo().join("packaging/man/capstan.1"),
        man1.join("capstan.1"),
    )
    .unwrap();
    path
}

#[test]
fn the_systemd_unit_verifies_and_is_rated_ok_or_better() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_verify(dir.path());
    let (ok, out, err) = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", dir.path().join("man")));
    assert!(ok && err.trim().is_empty(), "verify: {out}{err}");

    let (_, out, err) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit));
    let verdict = format!("{out}{err}");
    let line = verdict
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{verdict}"));
    // e.g. "→ Overall exposure level for capstan.service: 1.5 OK 🙂"
    let mut words = line.rsplit(':').next().unwrap().split_whitespace();
    let score: f64 = words.next().unwrap().parse().unwrap();
    let rating = words.next().unwrap();
    eprintln!("systemd-analyze security --offline=true: {score} {rating}");
    assert!(
        ["PERFECT", "SAFE", "OK"].contains(&rating),
        "exposure {score} {rating}; the goal is OK or better"
    );
}

#[test]
fn sysusers_and_tmpfiles_create_the_user_and_directories_in_a_private_root() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let (ok, out, err) = run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(repo().join("systemd/capstan.sysusers")));
    assert!(ok, "sysusers: {out}{err}");
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let entry = passwd
        .lines()
        .find(|l| l.starts_with("capstan:"))
        .unwrap_or_else(|| panic!("no capstan user in {passwd}"));
    assert!(
        entry.ends_with(":/var/lib/capstan:/usr/sbin/nologin"),
        "{entry}"
    );
    let uid: u32 = entry.split(':').nth(2).unwrap().parse().unwrap();

    let (ok, out, err) = run(Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .arg(repo().join("systemd/capstan.tmpfiles")));
    assert!(ok, "tmpfiles: {out}{err}");
    for (dir, mode, owner) in [
        ("etc/capstan", 0o755, 0),
        ("var/lib/capstan", 0o750, uid),
        ("var/lib/capstan/journal", 0o750, uid),
    ] {
        let meta = std::fs::metadata(root.path().join(dir)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{dir}");
        assert_eq!(meta.uid(), owner, "{dir}");
    }
}

#[test]
fn logs_can_be_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("capstan.toml");
    std::fs::write(
        &config,
        "[agent]\nlisten = \"127.0.0.1:0\"\ninterval = \"1s\"\n[[pool]]\nname = \"p\"\nprovider = { type = \"dry-run\", initial = 1 }\nmin = 1\nmax = 2\ntargets = [{ metric = \"cpu.utilization\", value = 50 }]\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .env("CAPSTAN_AGENT__STATE_DIR", dir.path().join("state"))
        .env("CAPSTAN_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let first = std::io::BufRead::lines(std::io::BufReader::new(stderr))
        .next()
        .map(Result::unwrap);
    let _ = child.kill();
    let _ = child.wait();
    let first = first.expect("a log line");
    let v: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(v["level"], "INFO", "{first}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("listening on http://127.0.0.1:"),
        "{first}"
    );
}
