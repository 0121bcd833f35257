//! Build facts and link flags for the `capstan` binary.
//!
//! `CAPSTAN_FEATURES` (the optional parts compiled in, from cargo's `CARGO_FEATURE_*`)
//! and `CAPSTAN_REVISION` (the source's git commit, or the `CAPSTAN_REVISION` variable
//! where the source has no `.git`, as in an image build) are set for the crate, so that
//! `capstan --version` and `capstan_build_info` say what a binary is.
//!
//! The binary is position-independent (ASLR), so the loader applies tens of thousands
//! of relative relocations at every start; as a RELA table they are about 1 MB that is
//! read at start and stays resident. Packed as DT_RELR (`-z pack-relative-relocs`,
//! binutils 2.38+) they take a few KB. The loader must understand DT_RELR (glibc 2.36+),
//! so the flag is used only when the C library this build links against says so
//! (it defines the `GLIBC_ABI_DT_RELR` version), and never when cross-compiling.

use std::path::Path;
use std::process::Command;

fn main() {
    facts();
    relr();
    layout();
}

/// Code layout: `CAPSTAN_SYMBOL_ORDER` names a file of symbols (one per line) that the
/// linker places first, together, in that order. scripts/build-release.sh writes it from
/// the functions a running agent executes, so the few pages of code a node runs are
/// contiguous instead of spread over the whole binary (the kernel maps code in 64 KiB
/// blocks around each page touched, so scattered code costs resident memory for every
/// feature compiled in, used or not). LLD only (Rust's default linker on x86_64 Linux).
fn layout() {
    println!("cargo:rerun-if-env-changed=CAPSTAN_SYMBOL_ORDER");
    if let Ok(file) = std::env::var("CAPSTAN_SYMBOL_ORDER")
        && !file.is_empty()
    {
        println!("cargo:rerun-if-changed={file}");
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={file}");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// `CAPSTAN_FEATURES` and `CAPSTAN_REVISION`.
fn facts() {
    // The umbrella features are not parts of their own.
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(str::to_owned))
        .filter(|f| f != "FULL" && f != "DEFAULT")
        .map(|f| f.to_ascii_lowercase().replace('_', "-"))
        .collect();
    features.sort();
    println!("cargo:rustc-env=CAPSTAN_FEATURES={}", features.join(","));

    println!("cargo:rerun-if-env-changed=CAPSTAN_REVISION");
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let revision = std::env::var("CAPSTAN_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CAPSTAN_REVISION={revision}");
    // A new commit, or a checkout of another branch, changes the revision.
    for path in ["HEAD", "refs/heads", "packed-refs"] {
        watch(git(&[
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            path,
        ]));
    }
    if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&[
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            &head,
        ]));
    }
}

/// Reruns the script when `path` changes; a path that does not exist is not named, or
/// cargo would rerun the script on every build.
fn watch(path: Option<String>) {
    if let Some(p) = path.filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={p}");
    }
}

/// Packed relative relocations, where the C library supports them.
fn relr() {
    println!("cargo:rerun-if-env-changed=CAPSTAN_NO_RELR");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let native = var("HOST") == var("TARGET");
    let linux_gnu = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if !native || !linux_gnu || std::env::var_os("CAPSTAN_NO_RELR").is_some() {
        return;
    }
    let multiarch = format!("{}-linux-gnu", var("CARGO_CFG_TARGET_ARCH"));
    let candidates = [
        format!("/lib/{multiarch}/libc.so.6"),
        format!("/usr/lib/{multiarch}/libc.so.6"),
        "/lib64/libc.so.6".to_owned(),
        "/usr/lib64/libc.so.6".to_owned(),
    ];
    let relr = candidates.iter().map(Path::new).any(|p| {
        std::fs::read(p).is_ok_and(|bytes| {
            bytes
                .windows(b"GLIBC_ABI_DT_RELR".len())
                .any(|w| w == b"GLIBC_ABI_DT_RELR")
        })
    });
    if relr {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
