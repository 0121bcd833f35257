//! The layout's rules, checked on the sources: the arrows between the workspace's
//! crates point one way, and no two modules of `brain` or folders of `agent` depend on
//! each other (ARCHITECTURE.md, "Invariants").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, with the code of its test modules cut off (a test may
/// reach anywhere).
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text
                    .split("#[cfg(test)]\nmod tests")
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                out.push((path, code));
            }
        }
    }
    out
}

/// The modules a piece of code names as `crate::<m>` (or `super::<m>` at the top).
fn named(code: &str, prefixes: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in prefixes {
        for piece in code.split(prefix).skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut c = path[i..].to_vec();
            c.push(node.to_owned());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

/// The graph of `root`'s top-level modules (a file or a folder each), from the
/// modules each one's code names (tests and the crate root left out).
fn module_graph(root: &Path, prefixes: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let files = sources(root);
    let top = |path: &Path| -> String {
        let rel = path.strip_prefix(root).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        first.trim_end_matches(".rs").to_owned()
    };
    let known: BTreeSet<String> = files.iter().map(|(p, _)| top(p)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in &files {
        let from = top(path);
        if from == "lib" || from == "main" || from.ends_with("tests") || from == "testutil" {
            continue;
        }
        let to = graph.entry(from.clone()).or_default();
        for m in named(code, prefixes) {
            if m != from && known.contains(&m) && !m.ends_with("tests") && m != "testutil" {
                to.insert(m);
            }
        }
    }
    graph
}

#[test]
fn agent_folders_and_brain_modules_depend_on_each_other_without_cycles() {
    let agent = module_graph(&workspace().join("agent/src"), &["crate::"]);
    assert!(agent.contains_key("pass") && agent["cli"].contains("pass"));
    assert_eq!(cycle(&agent), None, "agent: {agent:#?}");
    let brain = module_graph(&workspace().join("brain/src"), &["crate::", "super::"]);
    assert!(brain["fleet"].contains("budget"));
    assert_eq!(cycle(&brain), None, "brain: {brain:#?}");
}

#[test]
fn the_cycle_finder_finds_one() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

/// The workspace crates a crate's manifest depends on (normal dependencies only).
fn crate_deps(dir: &str) -> BTreeSet<String> {
    let manifest = std::fs::read_to_string(workspace().join(dir).join("Cargo.toml")).unwrap();
    let mut deps = BTreeSet::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps && line.starts_with("capstan-") {
            let name = line.split(['.', ' ', '=']).next().unwrap_or_default();
            deps.insert(name.to_owned());
        }
    }
    deps
}

/// Collectors never call providers, providers never read telemetry, and the pure
/// decision code knows only the config.
#[test]
fn crates_depend_one_way() {
    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|s| (*s).to_owned()).collect() };
    assert_eq!(crate_deps("config"), set(&[]));
    assert_eq!(crate_deps("collectors"), set(&[]));
    assert_eq!(crate_deps("providers"), set(&[]));
    assert_eq!(crate_deps("brain"), set(&["capstan-config"]));
    assert_eq!(
        crate_deps("agent"),
        set(&[
            "capstan-brain",
            "capstan-collectors",
            "capstan-config",
            "capstan-providers"
        ])
    );
}
