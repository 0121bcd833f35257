//! Link flags for the `capstan` binary.
//!
//! The binary is position-independent (ASLR), so the loader applies tens of thousands
//! of relative relocations at every start; as a RELA table they are about 1 MB that is
//! read at start and stays resident. Packed as DT_RELR (`-z pack-relative-relocs`,
//! binutils 2.38+) they take a few KB. The loader must understand DT_RELR (glibc 2.36+),
//! so the flag is used only when the C library this build links against says so
//! (it defines the `GLIBC_ABI_DT_RELR` version), and never when cross-compiling.

use std::path::Path;

fn main() {
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
