//! The anomaly detector: a robust z-score of the forecaster's residual.
//!
//! For each point, the residual is the value minus what the forecaster expected for it.
//! The residual's median and median absolute deviation over the last 2,000 residuals
//! (at least 30) give `z = (r - median) / (1.4826 × MAD)`; `|z| ≥ threshold` (2.5 by
//! default) is an anomalous point.
//!
//! Scores report the onset of an anomaly, not every point of it: a point scores only
//! when its `|z|` exceeds every `|z|` of the previous 500 points (an escalation still
//! scores), and then `score = |z| / (|z| + threshold)`, in [0, 1) with 0.5 at the
//! threshold; other points score 0. So an incident counts once, and a threshold on the
//! score (NAB's protocol) picks onsets. On the NAB series in `testdata/` this scores
//! above NAB's Windowed Gaussian (`cargo bench -p capstan --features full --bench nab_score`).
//!
//! The excess of an anomalous point is not learned: the forecaster sees it clipped to
//! twice the threshold, so a spike does not bend the forecast. A run of anomalies
//! longer than half an hour (at least three points) is a new normal (a level shift):
//! from then on points are learned as they are.
//!
//! Pure: no I/O, no clock.

use super::forecast::{ForecastConfig, Forecaster};

/// Consistency constant of the MAD for a normal distribution.
const MAD_TO_SIGMA: f64 = 1.4826;
/// The same for the mean absolute deviation.
const MEAN_AD_TO_SIGMA: f64 = 1.2533;
/// Residuals needed before anything is called an anomaly.
const MIN_RESIDUALS: usize = 30;
/// Residuals the median and MAD are taken over.
const WINDOW: usize = 2000;
/// Points an onset must beat to score.
const ONSET_LOOKBACK: usize = 500;
/// The median and MAD are recomputed every this many points (they move slowly).
const REFRESH: usize = 100;

/// What the detector said about one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The forecast for this point, if one was made.
    pub expected: Option<f64>,
    /// Robust z-score of the residual (0 without enough history).
    pub z: f64,
    /// `|z| / (|z| + threshold)` at an onset (see the module documentation), else 0.
    pub score: f64,
    /// `|z| >= threshold`: this point is anomalous.
    pub anomaly: bool,
    /// `score >= 0.5`: an anomaly starts (or escalates) here.
    pub onset: bool,
}

/// The detector (see the module documentation).
#[derive(Debug, Clone)]
pub struct Detector {
    forecaster: Forecaster,
    threshold: f64,
    max_streak: usize,
    /// Recent residuals in arrival order.
    recent: std::collections::VecDeque<f64>,
    /// Scratch space for the medians.
    scratch: Vec<f64>,
    /// Median and scale of the residuals, refreshed every `REFRESH` points.
    stats: Option<(f64, f64)>,
    since_refresh: usize,
    /// `|z|` of the last `ONSET_LOOKBACK` points (index, value), a monotonic queue for
    /// their maximum.
    peaks: std::collections::VecDeque<(u64, f64)>,
    n: u64,
    streak: usize,
}

impl Detector {
    /// A detector over a forecaster with `cfg`, flagging `|z| >= threshold`.
    pub fn new(cfg: ForecastConfig, threshold: f64) -> Self {
        Self {
            forecaster: Forecaster::new(cfg),
            threshold: if threshold.is_finite() && threshold > 0.0 {
                threshold
            } else {
                2.5
            },
            // Half an hour of anomalies in a row, at least three points, is a new level.
            max_streak: (cfg.steps_per_day / 48).max(3),
            recent: std::collections::VecDeque::new(),
            scratch: Vec::new(),
            stats: None,
            since_refresh: 0,
            peaks: std::collections::VecDeque::new(),
            n: 0,
            streak: 0,
        }
    }

    /// The forecaster inside.
    pub const fn forecaster(&self) -> &Forecaster {
        &self.forecaster
    }

    /// The median of unsorted `v`, in linear time (reorders `v`).
    fn select_median(v: &mut [f64]) -> f64 {
        let n = v.len();
        let (_, upper, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
        let upper = *upper;
        if n % 2 == 1 {
            upper
        } else {
            let lower = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lower + upper) / 2.0
        }
    }

    fn remember(&mut self, r: f64) {
        self.recent.push_back(r);
        if self.recent.len() > WINDOW {
            self.recent.pop_front();
        }
    }

    fn statistics(&mut self) -> Option<(f64, f64)> {
        if self.recent.len() < MIN_RESIDUALS {
            return None;
        }
        if self.stats.is_none() || self.since_refresh >= REFRESH {
            self.scratch.clear();
            self.scratch.extend(self.recent.iter().copied());
            let med = Self::select_median(&mut self.scratch);
            for v in &mut self.scratch {
                *v = (*v - med).abs();
            }
            let mut scale = MAD_TO_SIGMA * Self::select_median(&mut self.scratch);
            if scale <= 0.0 {
                // Mostly-flat residuals: the mean absolute deviation still sees the rest.
                scale =
                    MEAN_AD_TO_SIGMA * self.scratch.iter().sum::<f64>() / self.scratch.len() as f64;
            }
            self.stats = Some((med, scale));
            self.since_refresh = 0;
        }
        self.since_refresh += 1;
        self.stats
    }

    /// Whether `a` (this point's `|z|`) beats every `|z|` of the lookback; records it.
    fn onset(&mut self, a: f64) -> bool {
        let n = self.n;
        while self
            .peaks
            .front()
            .is_some_and(|(i, _)| i + (ONSET_LOOKBACK as u64) < n)
        {
            self.peaks.pop_front();
        }
        let beats = self.peaks.front().is_none_or(|(_, v)| a > *v);
        while self.peaks.back().is_some_and(|(_, v)| *v <= a) {
            self.peaks.pop_back();
        }
        self.peaks.push_back((n, a));
        beats
    }

    /// Scores `y`, then learns it unless it is an anomaly. A non-finite `y` is a gap.
    pub fn observe(&mut self, y: f64) -> Verdict {
        self.n += 1;
        let expected = self.forecaster.expected();
        let none = Verdict {
            expected,
            z: 0.0,
            score: 0.0,
            anomaly: false,
            onset: false,
        };
        if !y.is_finite() {
            self.forecaster.skip();
            return none;
        }
        let Some(f) = expected else {
            self.forecaster.observe(y);
            return none;
        };
        let r = y - f;
        let mut verdict = none;
        if let Some((med, scale)) = self.statistics() {
            let z = if scale > 0.0 {
                (r - med) / scale
            } else if (r - med).abs() > 0.0 {
                f64::INFINITY.copysign(r - med)
            } else {
                0.0
            };
            let a = z.abs();
            let onset = self.onset(a);
            let score = if !onset {
                0.0
            } else if a.is_infinite() {
                1.0
            } else {
                a / (a + self.threshold)
            };
            verdict = Verdict {
                expected,
                z,
                score,
                anomaly: a >= self.threshold,
                onset: score >= 0.5,
            };
        }
        self.remember(r);
        if verdict.anomaly {
            self.streak += 1;
            if self.streak <= self.max_streak
                && let Some((med, scale)) = self.stats
            {
                // The excess is not learned: the forecaster sees the value clipped to
                // twice the threshold, so a spike does not bend the forecast.
                let bound = 2.0 * self.threshold * scale;
                self.forecaster
                    .observe(f + (r - med).clamp(-bound, bound) + med);
                return verdict;
            }
        } else {
            self.streak = 0;
        }
        self.forecaster.observe(y);
        verdict
    }

    /// The threshold in use.
    pub const fn threshold(&self) -> f64 {
        self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ForecastConfig {
        ForecastConfig {
            steps_per_day: 48,
            horizon: 1,
        }
    }

    /// A daily cycle plus roughly normal noise (a sum of four uniforms from a fixed LCG).
    fn wave(t: usize) -> f64 {
        let day = (t % 48) as f64 / 48.0 * std::f64::consts::TAU;
        let mut x = (t as u64)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut noise = 0.0;
        for _ in 0..4 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            noise += (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        }
        50.0 + 20.0 * day.sin() + 2.0 * noise
    }

    #[test]
    fn a_spike_is_flagged_and_not_learned() {
        let mut d = Detector::new(cfg(), 2.5);
        let mut flagged = Vec::new();
        for t in 0..48 * 8 {
            let y = if t == 48 * 7 + 10 { 400.0 } else { wave(t) };
            let v = d.observe(y);
            assert!((0.0..=1.0).contains(&v.score));
            if v.anomaly {
                flagged.push(t);
            }
        }
        assert!(flagged.contains(&(48 * 7 + 10)), "{flagged:?}");
        // After the spike the forecast is back on the wave.
        let next = d.forecaster().forecast().unwrap();
        assert!((next - wave(48 * 8)).abs() < 5.0, "{next}");
        // Noise alone is flagged rarely: the residual's tails are heavier than a
        // normal's, since the forecaster also chases noise.
        assert!(flagged.len() < 48 * 8 / 10, "{flagged:?}");
    }

    #[test]
    fn a_lasting_level_shift_becomes_the_new_normal() {
        let mut d = Detector::new(cfg(), 2.5);
        for t in 0..48 * 7 {
            d.observe(wave(t));
        }
        let mut flags = Vec::new();
        for t in 48 * 7..48 * 9 {
            flags.push(d.observe(wave(t) + 100.0).anomaly);
        }
        assert!(flags[0], "the shift is flagged");
        assert!(!flags[flags.len() - 1], "and, a day later, learned");
    }

    #[test]
    fn scores_map_the_threshold_to_one_half() {
        let mut d = Detector::new(cfg(), 2.0);
        assert_eq!(d.threshold(), 2.0);
        let v = d.observe(f64::NAN);
        assert_eq!((v.score, v.anomaly), (0.0, false));
        assert_eq!(Detector::new(cfg(), f64::NAN).threshold(), 2.5);
    }
}
