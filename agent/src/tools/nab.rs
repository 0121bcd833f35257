//! The Numenta Anomaly Benchmark's scoring rules, written from their published
//! description (Lavin and Ahmad, "Evaluating Real-time Anomaly Detection Algorithms — the
//! Numenta Anomaly Benchmark", 2015, and the benchmark's documentation), for the
//! `nab_score` bench and `capstan detect`'s figures:
//!
//! - **Probation.** The first `min(⌊0.15 · n⌋, 0.15 · 5000)` rows of an `n`-row file
//!   (15 %, at most 750 rows) let a detector learn: detections there are ignored. A
//!   window is still scored, from its rows after the probation.
//! - **Windows.** Each labelled anomaly is a window of rows. In a window only the first
//!   detection counts, worth `A_TP · σ(p)`, where `p = −(end − i + 1) / length` is its
//!   position (−1 on the window's first row, −1/length on its last) and
//!   `σ(p) = 2 / (1 + e^{5p}) − 1` is the scaled sigmoid: early detection earns almost
//!   `A_TP`, detection on the last row about a quarter of it. A window with no detection
//!   costs `A_FN`.
//! - **False positives.** A detection outside every window costs `A_FP · σ(p)` (σ is
//!   negative there), `p` being its distance past the end of the preceding window in
//!   that window's lengths: just after a window it costs almost nothing, from about one
//!   length on almost `A_FP`, and σ is −1 beyond 3 lengths and where no window precedes.
//! - **Profiles.** `standard` (A_TP 1, A_FP 0.11, A_FN 1), `reward_low_FP_rate` (A_FP
//!   0.22) and `reward_low_FN_rate` (A_FN 2).
//! - **Threshold.** A detection is a row whose anomaly score is at or above the
//!   threshold; for each profile, the one threshold that maximises the corpus's total
//!   is chosen (every distinct score is tried).
//! - **Normalisation.** `100 · (raw − null) / (perfect − null)`, where the null detector
//!   detects nothing (`−A_FN` a window) and the perfect one detects each window on its
//!   first row (`A_TP · σ(−1)` a window).

/// A scoring profile's weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// NAB's name for it.
    pub name: &'static str,
    /// Weight of a true positive.
    pub tp: f64,
    /// Weight of a false positive.
    pub fp: f64,
    /// Weight of a missed window.
    pub fn_: f64,
}

/// NAB's three profiles.
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FP_rate",
        tp: 1.0,
        fp: 0.22,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FN_rate",
        tp: 1.0,
        fp: 0.11,
        fn_: 2.0,
    },
];

/// Rows of an `n`-row file whose detections are ignored: 15 %, at most 750.
pub fn probation(n: usize) -> usize {
    // floor(0.15 n) in integers; the cap is 0.15 · 5000.
    (n * 15 / 100).min(750)
}

/// The scaled sigmoid.
pub fn sigma(p: f64) -> f64 {
    if p > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * p).exp()) - 1.0
    }
}

/// One labelled file: its windows as inclusive row ranges (sorted, disjoint) and one
/// anomaly score per row.
#[derive(Debug, Clone)]
pub struct File {
    /// A name for reports.
    pub name: String,
    /// Windows as `(first row, last row)`.
    pub windows: Vec<(usize, usize)>,
    /// One score per row.
    pub scores: Vec<f64>,
}

impl File {
    /// The window holding row `i`.
    fn window_of(&self, i: usize) -> Option<usize> {
        let k = self.windows.partition_point(|(a, _)| *a <= i);
        (k > 0 && i <= self.windows[k - 1].1).then(|| k - 1)
    }

    /// What a detection at row `i` (after the probation) is worth.
    fn detection(&self, i: usize, profile: Profile) -> Detection {
        if let Some(w) = self.window_of(i) {
            let (_, b) = self.windows[w];
            let len = (b - self.windows[w].0 + 1) as f64;
            return Detection::Hit(w, profile.tp * sigma(-((b - i + 1) as f64) / len));
        }
        // The last window that ended before row i.
        let k = self.windows.partition_point(|(_, b)| *b < i);
        let s = match k.checked_sub(1).map(|w| self.windows[w]) {
            Some((a, b)) => sigma((i - b) as f64 / (b - a + 1) as f64),
            None => -1.0,
        };
        Detection::FalseAlarm(profile.fp * s)
    }
}

/// A detection's worth.
enum Detection {
    /// In window `.0`, worth `.1` if it is the window's first.
    Hit(usize, f64),
    /// Outside every window: adds `.1` (negative).
    FalseAlarm(f64),
}

/// NAB's raw score of `file` under `profile`, detecting where `score >= threshold`.
pub fn raw_score(file: &File, profile: Profile, threshold: f64) -> f64 {
    let start = probation(file.scores.len());
    let mut first: Vec<Option<f64>> = vec![None; file.windows.len()];
    let mut fp = 0.0;
    for (i, s) in file.scores.iter().enumerate().skip(start) {
        if *s < threshold {
            continue;
        }
        match file.detection(i, profile) {
            Detection::Hit(w, v) => {
                first[w].get_or_insert(v);
            }
            Detection::FalseAlarm(v) => fp += v,
        }
    }
    fp + first.iter().map(|v| v.unwrap_or(-profile.fn_)).sum::<f64>()
}

/// The null detector's total: every window missed.
pub fn null_score(files: &[File], profile: Profile) -> f64 {
    files
        .iter()
        .map(|f| -profile.fn_ * f.windows.len() as f64)
        .sum()
}

/// The perfect detector's total: every window detected on its first row.
pub fn perfect_score(files: &[File], profile: Profile) -> f64 {
    files
        .iter()
        .map(|f| profile.tp * sigma(-1.0) * f.windows.len() as f64)
        .sum()
}

/// A profile's result over a corpus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// The profile.
    pub profile: Profile,
    /// The threshold that maximises the corpus's raw score (`f64::INFINITY` when
    /// detecting nothing is best).
    pub threshold: f64,
    /// The corpus's raw score at that threshold.
    pub raw: f64,
    /// The null detector's.
    pub null: f64,
    /// The perfect detector's.
    pub perfect: f64,
    /// `100 · (raw − null) / (perfect − null)`.
    pub score: f64,
}

/// The threshold that maximises the corpus's total under `profile`, and that total: a
/// sweep down the distinct scores, each detection added once (a window keeps its
/// earliest detection), `O(N log N)` over all rows.
pub fn best_threshold(files: &[File], profile: Profile) -> (f64, f64) {
    let mut events: Vec<(f64, usize, usize)> = Vec::new();
    for (f, file) in files.iter().enumerate() {
        let start = probation(file.scores.len());
        for (i, s) in file.scores.iter().enumerate().skip(start) {
            if !s.is_nan() {
                events.push((*s, f, i));
            }
        }
    }
    events.sort_by(|a, b| b.0.total_cmp(&a.0));
    // Per window: its earliest detected row and what it earns.
    let mut first: Vec<Vec<Option<(usize, f64)>>> =
        files.iter().map(|f| vec![None; f.windows.len()]).collect();
    let mut total = null_score(files, profile);
    let mut best = (f64::INFINITY, total);
    let mut k = 0;
    while k < events.len() {
        let s = events[k].0;
        while k < events.len() && events[k].0 == s {
            let (_, f, i) = events[k];
            match files[f].detection(i, profile) {
                Detection::Hit(w, v) => match first[f][w] {
                    None => {
                        total += v + profile.fn_;
                        first[f][w] = Some((i, v));
                    }
                    Some((j, old)) if i < j => {
                        total += v - old;
                        first[f][w] = Some((i, v));
                    }
                    Some(_) => {}
                },
                Detection::FalseAlarm(v) => total += v,
            }
            k += 1;
        }
        if total > best.1 {
            best = (s, total);
        }
    }
    best
}

/// The corpus's normalised score under `profile`, at its best threshold.
pub fn score(files: &[File], profile: Profile) -> Outcome {
    let (threshold, raw) = best_threshold(files, profile);
    let null = null_score(files, profile);
    let perfect = perfect_score(files, profile);
    Outcome {
        profile,
        threshold,
        raw,
        null,
        perfect,
        score: 100.0 * (raw - null) / (perfect - null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: Profile = PROFILES[0];

    fn file(n: usize, windows: Vec<(usize, usize)>, detections: &[usize]) -> File {
        let mut scores = vec![0.0; n];
        for &i in detections {
            scores[i] = 1.0;
        }
        File {
            name: "hand-made".into(),
            windows,
            scores,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_probation_is_fifteen_percent_capped_at_750_rows() {
        assert_eq!(probation(100), 15);
        assert_eq!(probation(4032), 604);
        assert_eq!(probation(5000), 750);
        assert_eq!(probation(22695), 750, "not 3,404");
    }

    #[test]
    fn a_detection_on_a_windows_first_row_earns_sigma_of_minus_one() {
        // 100 rows (probation 15), one window over rows 20..=29.
        let f = file(100, vec![(20, 29)], &[20]);
        // σ(−1) = 2 / (1 + e^−5) − 1 = 0.986614...
        assert!(close(raw_score(&f, STANDARD, 0.5), 0.986_614_298_151_430_3));
        // A later detection in the same window adds nothing.
        let f = file(100, vec![(20, 29)], &[20, 25]);
        assert!(close(raw_score(&f, STANDARD, 0.5), 0.986_614_298_151_430_3));
    }

    #[test]
    fn a_detection_on_a_windows_last_row_earns_a_quarter() {
        // p = −(29 − 29 + 1) / 10 = −0.1; σ(−0.1) = 2 / (1 + e^−0.5) − 1 = 0.244918...
        let f = file(100, vec![(20, 29)], &[29]);
        assert!(close(raw_score(&f, STANDARD, 0.5), 0.244_918_662_403_709_1));
    }

    #[test]
    fn a_false_positive_costs_up_to_a_fp_by_its_distance_past_the_last_window() {
        // A missed window (−1) and a detection 21 rows after its end: p = 2.1,
        // σ(2.1) = 2 / (1 + e^10.5) − 1 = −0.999944..., times A_FP 0.11.
        let f = file(100, vec![(20, 29)], &[50]);
        let fp = 0.11 * (2.0 / (1.0 + 10.5f64.exp()) - 1.0);
        assert!(close(raw_score(&f, STANDARD, 0.5), -1.0 + fp));
        assert!(close(fp, -0.109_993_942_147_954_8));
        // Right after the window it costs almost nothing: p = 0.1, σ = −0.244918...
        let f = file(100, vec![(20, 29)], &[30]);
        assert!(close(
            raw_score(&f, STANDARD, 0.5),
            -1.0 - 0.11 * 0.244_918_662_403_709_1
        ));
        // Before any window: the full A_FP.
        let f = file(100, vec![(60, 69)], &[40]);
        assert!(close(raw_score(&f, STANDARD, 0.5), -1.0 - 0.11));
        // More than three window lengths on: the full A_FP too.
        let f = file(100, vec![(20, 29)], &[61]);
        assert!(close(raw_score(&f, STANDARD, 0.5), -1.0 - 0.11));
    }

    #[test]
    fn a_file_longer_than_5000_rows_ends_its_probation_at_row_750() {
        // 6,000 rows: 15 % would be 900, NAB's cap is 750. A window at 780..=819 is
        // found at 800 (p = −0.5); a detection at 749 is ignored, one at 760 (before
        // any window) costs A_FP.
        let f = file(6000, vec![(780, 819)], &[749, 760, 800]);
        let tp = 2.0 / (1.0 + (-2.5f64).exp()) - 1.0;
        assert!(close(raw_score(&f, STANDARD, 0.5), tp - 0.11));
        // A window that ends inside the probation can only be missed.
        let f = file(6000, vec![(700, 739)], &[710]);
        assert!(close(raw_score(&f, STANDARD, 0.5), -1.0));
    }

    #[test]
    fn the_profiles_weigh_misses_and_false_alarms_as_published() {
        let f = file(100, vec![(20, 29), (60, 69)], &[40]);
        // Two windows missed and a false positive 11 rows after a 10-row window.
        let fp = sigma(1.1);
        assert!(close(raw_score(&f, PROFILES[0], 0.5), -2.0 + 0.11 * fp));
        assert!(close(raw_score(&f, PROFILES[1], 0.5), -2.0 + 0.22 * fp));
        assert!(close(raw_score(&f, PROFILES[2], 0.5), -4.0 + 0.11 * fp));
    }

    #[test]
    fn the_perfect_detector_scores_100_and_the_null_one_0() {
        let files = vec![
            file(100, vec![(20, 29), (60, 69)], &[20, 60]),
            file(6000, vec![(3000, 3099)], &[3000]),
        ];
        for profile in PROFILES {
            let r = score(&files, profile);
            assert!(close(r.score, 100.0), "{r:?}");
            assert!(close(r.perfect, 3.0 * sigma(-1.0)));
        }
        let silent = vec![file(100, vec![(20, 29)], &[])];
        let r = score(&silent, STANDARD);
        assert!(close(r.score, 0.0) && r.threshold.is_infinite(), "{r:?}");
    }

    #[test]
    fn the_sweep_finds_the_best_of_every_threshold() {
        // Graded scores from a fixed LCG: the sweep's total equals the brute-force
        // maximum over every distinct score.
        let mut x = 42u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let files: Vec<File> = (0..3)
            .map(|k| File {
                name: format!("f{k}"),
                windows: vec![(200, 239), (500, 539 + k)],
                scores: (0..800).map(|_| next()).collect(),
            })
            .collect();
        for profile in PROFILES {
            let (t, total) = best_threshold(&files, profile);
            let mut candidates: Vec<f64> = files.iter().flat_map(|f| f.scores.clone()).collect();
            candidates.push(f64::INFINITY);
            let brute = candidates
                .iter()
                .map(|t| files.iter().map(|f| raw_score(f, profile, *t)).sum::<f64>())
                .fold(f64::NEG_INFINITY, f64::max);
            assert!(close(total, brute), "{total} vs {brute}");
            let at_t: f64 = files.iter().map(|f| raw_score(f, profile, t)).sum();
            assert!(close(at_t, total));
        }
    }
}
