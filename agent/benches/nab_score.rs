//! Anomaly quality: `capstan detect` (the same code, `capstan::analysis::detect`) scored
//! on the NAB series in `testdata/nab/` with NAB's scoring rules, written from their
//! published description:
//! - windows from `labels/combined_windows.json`; the first 15 % of each file is a
//!   probationary period whose detections are ignored;
//! - in a window only the first detection counts, worth `A_TP × σ(p)` with `p` its
//!   position relative to the window's end (−1 at the start, 0 at the end) and the
//!   scaled sigmoid `σ(p) = 2 / (1 + e^{5p}) − 1`; a window without detection costs
//!   `A_FN`;
//! - a detection outside every window costs `A_FP × σ(p)` with `p` its distance past the
//!   end of the preceding window in window lengths (σ is −1 beyond 3 lengths, and with
//!   no preceding window);
//! - the standard profile: A_TP = 1, A_FN = 1, A_FP = 0.11;
//! - the score threshold is the one that maximises the corpus's total, as NAB does, and
//!   the total is normalised to 100 × (raw − null) / (perfect − null), where the null
//!   detector detects nothing and the perfect one detects each window at its start.
//!
//! NAB's published results (Windowed Gaussian 39.6, KNN CAD 58.0) are over its whole
//! 58-file corpus; this scores the 24 files of the realAWSCloudwatch and
//! realKnownCause categories that `testdata/` carries.
//!
//! `cargo bench -p capstan --features full --bench nab_score`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;

const A_TP: f64 = 1.0;
const A_FN: f64 = 1.0;
const A_FP: f64 = 0.11;
const PROBATION: f64 = 0.15;

fn sigma(p: f64) -> f64 {
    if p > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * p).exp()) - 1.0
    }
}

/// One file: its timestamps, windows (as row index ranges), and per-row scores.
struct File {
    name: String,
    windows: Vec<(usize, usize)>,
    scores: Vec<f64>,
}

/// NAB's raw score of `file` with detections where `score >= threshold`.
fn raw_score(file: &File, threshold: f64) -> f64 {
    let n = file.scores.len();
    let probation = (PROBATION * n as f64) as usize;
    let mut total = 0.0;
    let mut detected = vec![false; file.windows.len()];
    for (i, s) in file.scores.iter().enumerate() {
        if *s < threshold || i < probation {
            continue;
        }
        if let Some(w) = file.windows.iter().position(|(a, b)| i >= *a && i <= *b) {
            if !detected[w] {
                detected[w] = true;
                let (a, b) = file.windows[w];
                let len = (b - a + 1) as f64;
                let p = -((b - i + 1) as f64) / len;
                total += A_TP * sigma(p);
            }
        } else {
            let prev = file
                .windows
                .iter()
                .filter(|(_, b)| *b < i)
                .max_by_key(|(_, b)| *b);
            let s = match prev {
                Some((a, b)) => sigma((i - b) as f64 / (b - a + 1) as f64),
                None => -1.0,
            };
            total += A_FP * s;
        }
    }
    total - A_FN * detected.iter().filter(|d| !**d).count() as f64
}

fn perfect_score(files: &[File]) -> f64 {
    files
        .iter()
        .map(|f| {
            f.windows
                .iter()
                .map(|(a, b)| A_TP * sigma(-((b - a + 1) as f64) / (b - a + 1) as f64))
                .sum::<f64>()
        })
        .sum()
}

fn self_check() {
    // One window over rows 10..=19 in a 100-row file (probation ends at row 15).
    let f = |scores: Vec<f64>| File {
        name: "toy".into(),
        windows: vec![(20, 29)],
        scores,
    };
    let mut s = vec![0.0; 100];
    assert!(
        (raw_score(&f(s.clone()), 0.5) + 1.0).abs() < 1e-12,
        "a missed window costs A_FN"
    );
    s[20] = 1.0;
    assert!(
        (raw_score(&f(s.clone()), 0.5) - sigma(-1.0)).abs() < 1e-12,
        "earliest detection"
    );
    s[25] = 1.0;
    assert!(
        (raw_score(&f(s.clone()), 0.5) - sigma(-1.0)).abs() < 1e-12,
        "only the first counts"
    );
    s[90] = 1.0;
    assert!(
        (raw_score(&f(s.clone()), 0.5) - sigma(-1.0) + A_FP).abs() < 1e-12,
        "a late FP costs A_FP"
    );
    s[3] = 1.0;
    assert!(
        (raw_score(&f(s), 0.5) - sigma(-1.0) + A_FP).abs() < 1e-12,
        "probation is ignored"
    );
}

fn main() {
    self_check();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/nab");
    let windows: BTreeMap<String, Vec<[String; 2]>> = serde_json::from_str(
        &std::fs::read_to_string(data.join("labels/combined_windows.json")).unwrap(),
    )
    .unwrap();
    let threshold = 2.5;
    let mut files = Vec::new();
    for category in ["realAWSCloudwatch", "realKnownCause"] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(data.join("data").join(category))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        for path in paths {
            let key = format!("{category}/{}", path.file_name().unwrap().to_string_lossy());
            let points = capstan::trace::read_csv(&path).unwrap();
            let verdicts = capstan::analysis::detect(&points, threshold).unwrap();
            let parse = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap();
            let rows = |t: NaiveDateTime| points.iter().position(|p| p.at >= t);
            let spans = windows
                .get(&key)
                .map(|w| {
                    w.iter()
                        .filter_map(|[a, b]| {
                            let start = rows(parse(a))?;
                            let end = points.iter().rposition(|p| p.at <= parse(b))?;
                            Some((start, end))
                        })
                        .collect()
                })
                .unwrap_or_default();
            files.push(File {
                name: key,
                windows: spans,
                scores: verdicts.iter().map(|v| v.score).collect(),
            });
        }
    }
    let null: f64 = files.iter().map(|f| -A_FN * f.windows.len() as f64).sum();
    let perfect = perfect_score(&files);
    // NAB picks the threshold that maximises the corpus's raw score.
    let (best_t, best) = (0..=1001)
        .map(|k| f64::from(k) / 1000.0)
        .map(|t| (t, files.iter().map(|f| raw_score(f, t)).sum::<f64>()))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    let normalised = 100.0 * (best - null) / (perfect - null);
    println!("| file | windows | raw score at the chosen threshold |");
    println!("|---|---|---|");
    for f in &files {
        println!(
            "| {} | {} | {:.3} |",
            f.name,
            f.windows.len(),
            raw_score(f, best_t)
        );
    }
    println!(
        "\nNAB standard profile on {} files: {normalised:.1} (raw {best:.2}, null {null:.0}, perfect {perfect:.2}); \
         score threshold {best_t:.3} (|z| ≥ {:.2})",
        files.len(),
        threshold * best_t / (1.0 - best_t).max(1e-9)
    );
    println!("Reference (whole NAB corpus): Windowed Gaussian 39.6, KNN CAD 58.0.");
}
