//! What this binary is: its version, the source revision it was built from, and the
//! optional parts (cargo features) compiled in. `capstan --version`, the
//! `capstan_build_info` metric and configuration validation read them from here.

/// The optional parts compiled in, in the order `--version` lists them.
pub const FEATURES: &[&str] = &[
    #[cfg(feature = "aws")]
    "aws",
    #[cfg(feature = "aws-ec2")]
    "aws-ec2",
    #[cfg(feature = "azure")]
    "azure",
    #[cfg(feature = "etcd")]
    "etcd",
    #[cfg(feature = "gke")]
    "gke",
    #[cfg(feature = "kubernetes")]
    "kubernetes",
    #[cfg(feature = "nvml")]
    "nvml",
    #[cfg(feature = "tls")]
    "tls",
];

/// Every optional part, in name order; `--features full` builds them all.
pub const ALL_FEATURES: &[&str] = capstan_config::Features::ALL.enabled;

/// The features compiled in, comma-separated (set by `build.rs` from cargo's view).
pub const FEATURES_LIST: &str = env!("CAPSTAN_FEATURES");

/// The git commit the binary was built from (`unknown` when it was built outside a git
/// checkout without `CAPSTAN_REVISION`).
pub const REVISION: &str = env!("CAPSTAN_REVISION");

/// Capstan's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `capstan --version`'s text after the name.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("CAPSTAN_REVISION"),
    "; features: ",
    env!("CAPSTAN_FEATURES"),
    ")"
);

/// The features as configuration validation takes them.
pub const fn config_features() -> capstan_config::Features<'static> {
    capstan_config::Features { enabled: FEATURES }
}

/// The features compiled in for people: `none` for a lean build.
pub fn features_text() -> &'static str {
    if FEATURES_LIST.is_empty() {
        "none"
    } else {
        FEATURES_LIST
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feature_table_agrees_with_cargo() {
        // build.rs reads cargo's CARGO_FEATURE_* variables; the table reads cfg. They
        // must name the same parts, or validation would refuse what the binary can do.
        assert_eq!(FEATURES.join(","), FEATURES_LIST);
        for f in FEATURES {
            assert!(ALL_FEATURES.contains(f), "{f} missing from ALL_FEATURES");
        }
        let mut sorted = ALL_FEATURES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, ALL_FEATURES, "ALL_FEATURES is in name order");
        // Every optional part is a feature of this crate, and `full` has them all.
        let manifest = include_str!("../Cargo.toml");
        let full = manifest
            .lines()
            .find(|l| l.starts_with("full = ["))
            .expect("the full feature");
        for f in ALL_FEATURES {
            assert!(full.contains(&format!("\"{f}\"")), "full lacks {f}");
        }
    }

    #[test]
    fn the_version_line_names_the_revision_and_the_features() {
        assert!(VERSION_LINE.starts_with(VERSION));
        assert!(VERSION_LINE.contains(&format!("(revision {REVISION}; features: ")));
        assert!(!REVISION.is_empty());
    }

    #[test]
    fn validation_refuses_exactly_what_this_build_lacks() {
        let text = "[[pool]]\nname = \"web\"\nmin = 1\nmax = 3\nprovider = { type = \"gke\", project = \"p\", location = \"europe-west1\", cluster = \"c\", node_pool = \"np\" }\ntargets = [{ metric = \"cpu.utilization\", value = 60 }]\n";
        let r = capstan_config::from_str_for(
            "t.toml".as_ref(),
            text,
            std::iter::empty(),
            config_features(),
        );
        if cfg!(feature = "gke") {
            r.unwrap();
        } else {
            let lines = r
                .expect_err("a build without gke refuses a gke pool")
                .lines();
            assert!(
                lines[0].contains("provider type \"gke\" is not built into this capstan")
                    && lines[0].contains("`--features gke`"),
                "{lines:?}"
            );
        }
    }
}
