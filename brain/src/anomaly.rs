//! The anomaly detector: the forecaster's residual, and the range the values have kept.
//!
//! **What the scaling acts on** (`anomaly`, `onset`). For each point, the residual is the
//! value minus what the forecaster expected for it. The residual's median and median
//! absolute deviation over the last 2,000 residuals (at least 30) give
//! `z = (r - median) / (1.4826 × MAD)`; `|z| ≥ threshold` (2.5 by default) is an
//! anomalous point, and an anomaly *starts* (`onset`) where such a point's `|z|` also
//! exceeds every `|z|` of the previous 500 points (an escalation starts again). So an
//! incident counts once. Onsets are what the daemon journals and, when configured,
//! answers with emergency scaling.
//!
//! **How surprising a point is** (`score`, in [0, 1]). The score ranks points for an
//! operator or a benchmark (NAB sweeps a threshold over it). It is a tail probability `p`
//! put on a scale where the user's threshold sits at one half:
//! `score = ln p / (ln p + ln p_T)`, with `p_T = P(|N(0, 1)| ≥ threshold)` (1.24 % at
//! 2.5 σ). So `score ≥ 0.5` exactly when the point is at least as rare as a
//! threshold-σ event; 0 means nothing unusual (`p = 1`). Two kinds of evidence give `p`,
//! and only at their onsets (a point that does not beat the previous 500 points on that
//! evidence has `p = 1` from it), so an event scores once, early:
//! - the residual: `p = max(P(|N(0, 1)| ≥ |z|), (1 + k) / (n + 1))`, where `k` of the
//!   last `n` (up to 5,000) points had a `|z|` at least as large. A residual is as rare
//!   as both the normal model and the series' own record say: a series whose residuals
//!   have heavy tails does not alarm on every large `|z|` (a conformal p-value, as KNN
//!   CAD's);
//! - the breakout: a value beyond the whole range of the last `n` values (up to 5,000,
//!   about 17 days of 5-minute points), by `e` residual-σ:
//!   `p = 1 / ((n + 1)(1 + e))`, the chance that the newest of `n + 1` exchangeable
//!   values is their extreme, smaller the farther out it lies. A series that leaves
//!   everything it has done for weeks is the surest sign of an incident.
//!
//! The parameters were fixed on the 17 realAWSCloudwatch files of NAB and checked on
//! the 7 realKnownCause files held back (`cargo bench -p capstan --features full --bench
//! nab_score`; figures in docs/performance.md).
//!
//! The excess of an anomalous point is not learned: the forecaster sees it clipped to
//! twice the threshold, so a spike does not bend the forecast. A run of anomalies
//! longer than half an hour (at least three points) is a new normal (a level shift):
//! from then on points are learned as they are.
//!
//! Per point: O(1) amortized (the residual's median every 100 points, the range per
//! block of 100 values, the conformal count only at a residual onset). Memory: about
//! 40 KB a series.
//!
//! Pure: no I/O, no clock.

use std::collections::VecDeque;

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
/// Points the score's empirical tail probabilities look back over.
const TAIL_WINDOW: usize = 5000;
/// Values per block of the running range.
const BLOCK: usize = 100;
/// Values the range needs before a breakout counts.
const MIN_RANGE: usize = 50;
/// The smallest tail probability a score is computed from (keeps `ln p` finite).
const MIN_P: f64 = 1e-300;

/// What the detector said about one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The forecast for this point, if one was made.
    pub expected: Option<f64>,
    /// Robust z-score of the residual (0 without enough history).
    pub z: f64,
    /// How surprising the point is, in [0, 1], 0.5 at the threshold's tail probability
    /// (see the module documentation).
    pub score: f64,
    /// `|z| >= threshold`: this point is anomalous.
    pub anomaly: bool,
    /// An anomaly starts (or escalates) here: anomalous, and `|z|` beats every `|z|` of
    /// the previous 500 points.
    pub onset: bool,
}

/// `erfc(x)` for `x ≥ 0`, to a relative error below 1.2e-7 (the Chebyshev fit of
/// Press et al., *Numerical Recipes*, 6.2).
fn erfc(x: f64) -> f64 {
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.5 * x);
    let poly = [
        0.170_872_77,
        -0.822_152_23,
        1.488_515_87,
        -1.135_203_98,
        0.278_868_07,
        -0.186_288_06,
        0.096_784_18,
        0.374_091_96,
        1.000_023_68,
        -1.265_512_23,
    ]
    .iter()
    .fold(0.0, |acc, c| acc * t + c);
    t * (-x * x + poly).exp()
}

/// `P(|N(0, 1)| ≥ a)`.
fn normal_tail(a: f64) -> f64 {
    erfc(a / std::f64::consts::SQRT_2)
}

/// The maximum of the last `window` values pushed, as a monotonic queue.
#[derive(Debug, Clone)]
struct Peaks {
    window: u64,
    queue: VecDeque<(u64, f64)>,
}

impl Peaks {
    const fn new(window: usize) -> Self {
        Self {
            window: window as u64,
            queue: VecDeque::new(),
        }
    }

    /// Whether `a`, the value of point `n`, beats every value of the previous `window`
    /// points; records it.
    fn beats(&mut self, n: u64, a: f64) -> bool {
        while self.queue.front().is_some_and(|(i, _)| i + self.window < n) {
            self.queue.pop_front();
        }
        let beats = self.queue.front().is_none_or(|(_, v)| a > *v);
        while self.queue.back().is_some_and(|(_, v)| *v <= a) {
            self.queue.pop_back();
        }
        self.queue.push_back((n, a));
        beats
    }
}

/// The minimum and maximum of the last `TAIL_WINDOW` values (to a block of `BLOCK`):
/// full blocks' extremes, their combined extremes, and the open block's.
#[derive(Debug, Clone)]
struct Range {
    blocks: VecDeque<(f64, f64)>,
    closed: (f64, f64),
    open: (f64, f64),
    open_len: usize,
}

impl Range {
    const EMPTY: (f64, f64) = (f64::INFINITY, f64::NEG_INFINITY);

    const fn new() -> Self {
        Self {
            blocks: VecDeque::new(),
            closed: Self::EMPTY,
            open: Self::EMPTY,
            open_len: 0,
        }
    }

    /// Values in the range.
    fn len(&self) -> usize {
        self.blocks.len() * BLOCK + self.open_len
    }

    /// How far `y` lies outside the range (0 inside it), once it holds `MIN_RANGE`
    /// values.
    fn excess(&self, y: f64) -> Option<f64> {
        if self.len() < MIN_RANGE {
            return None;
        }
        let lo = self.closed.0.min(self.open.0);
        let hi = self.closed.1.max(self.open.1);
        Some((y - hi).max(lo - y).max(0.0))
    }

    fn push(&mut self, y: f64) {
        self.open = (self.open.0.min(y), self.open.1.max(y));
        self.open_len += 1;
        if self.open_len == BLOCK {
            self.blocks.push_back(self.open);
            if self.blocks.len() > TAIL_WINDOW / BLOCK {
                self.blocks.pop_front();
            }
            self.closed = self
                .blocks
                .iter()
                .fold(Self::EMPTY, |(lo, hi), (l, h)| (lo.min(*l), hi.max(*h)));
            self.open = Self::EMPTY;
            self.open_len = 0;
        }
    }
}

/// The detector (see the module documentation).
#[derive(Debug, Clone)]
pub struct Detector {
    forecaster: Forecaster,
    threshold: f64,
    /// `ln P(|N(0, 1)| ≥ threshold)`: where the score is one half.
    ln_p_threshold: f64,
    max_streak: usize,
    /// Recent residuals in arrival order.
    recent: VecDeque<f64>,
    /// Scratch space for the medians.
    scratch: Vec<f64>,
    /// Median and scale of the residuals, refreshed every `REFRESH` points.
    stats: Option<(f64, f64)>,
    since_refresh: usize,
    /// `|z|` of the last `ONSET_LOOKBACK` points.
    peaks: Peaks,
    /// `|z|` of the last `TAIL_WINDOW` scored points, for the conformal tail.
    tail: VecDeque<f32>,
    /// The values' range over the last `TAIL_WINDOW` points.
    range: Range,
    /// Breakout excesses (in σ) of the last `ONSET_LOOKBACK` points.
    breakouts: Peaks,
    n: u64,
    streak: usize,
}

impl Detector {
    /// A detector over a forecaster with `cfg`, flagging `|z| >= threshold`.
    pub fn new(cfg: ForecastConfig, threshold: f64) -> Self {
        let threshold = if threshold.is_finite() && threshold > 0.0 {
            threshold
        } else {
            2.5
        };
        Self {
            forecaster: Forecaster::new(cfg),
            threshold,
            ln_p_threshold: normal_tail(threshold).max(MIN_P).ln(),
            // Half an hour of anomalies in a row, at least three points, is a new level.
            max_streak: (cfg.steps_per_day / 48).max(3),
            recent: VecDeque::new(),
            scratch: Vec::new(),
            stats: None,
            since_refresh: 0,
            peaks: Peaks::new(ONSET_LOOKBACK),
            tail: VecDeque::new(),
            range: Range::new(),
            breakouts: Peaks::new(ONSET_LOOKBACK),
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

    /// The residual's tail probability at an onset of `a = |z|`: the normal tail, or
    /// the share of recent points at least as far out, whichever is larger.
    fn residual_p(&self, a: f64) -> f64 {
        if self.tail.len() < MIN_RESIDUALS {
            return 1.0;
        }
        let at_least = self.tail.iter().filter(|v| f64::from(**v) >= a).count();
        let conformal = (1 + at_least) as f64 / (self.tail.len() + 1) as f64;
        normal_tail(a).max(conformal)
    }

    /// The breakout's tail probability for `y` (1 when it is inside the range or not an
    /// onset); records its excess.
    fn breakout_p(&mut self, y: f64, scale: f64) -> f64 {
        let Some(excess) = self.range.excess(y) else {
            return 1.0;
        };
        let e = if excess <= 0.0 {
            0.0
        } else if scale > 0.0 {
            excess / scale
        } else {
            f64::INFINITY
        };
        if !self.breakouts.beats(self.n, e) || e <= 0.0 {
            return 1.0;
        }
        1.0 / ((self.range.len() + 1) as f64 * (1.0 + e))
    }

    /// `p` on the score's scale (see the module documentation).
    fn score_of(&self, p: f64) -> f64 {
        if p >= 1.0 {
            return 0.0;
        }
        let ln_p = p.max(MIN_P).ln();
        ln_p / (ln_p + self.ln_p_threshold)
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
            self.range.push(y);
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
            let beats = self.peaks.beats(self.n, a);
            let residual = if beats && a > 0.0 {
                self.residual_p(a)
            } else {
                1.0
            };
            let p = residual.min(self.breakout_p(y, scale));
            self.tail.push_back(a as f32);
            if self.tail.len() > TAIL_WINDOW {
                self.tail.pop_front();
            }
            verdict = Verdict {
                expected,
                z,
                score: self.score_of(p),
                anomaly: a >= self.threshold,
                onset: beats && a >= self.threshold,
            };
        }
        self.range.push(y);
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
        // A point exactly as rare as a threshold-σ normal event scores one half.
        for t in [1.0, 2.0, 2.5, 4.0] {
            let d = Detector::new(cfg(), t);
            assert!((d.score_of(normal_tail(t)) - 0.5).abs() < 1e-12);
            assert!(d.score_of(normal_tail(t) / 10.0) > 0.5);
            assert!(d.score_of(normal_tail(t) * 10.0) < 0.5);
        }
        assert_eq!(d.score_of(1.0), 0.0);
        assert!(d.score_of(0.0) > 0.99 && d.score_of(0.0) < 1.0);
    }

    #[test]
    fn the_normal_tail_is_accurate() {
        // Reference values of P(|N(0, 1)| >= a).
        for (a, p) in [
            (0.0, 1.0),
            (1.0, 0.317_310_507_862_914),
            (1.959_963_984_540_054, 0.05),
            (2.5, 0.012_419_330_651_552_3),
            (4.0, 6.334_248_366_623_98e-5),
            (6.0, 1.973_175_290_075_5e-9),
        ] {
            let got = normal_tail(a);
            assert!(((got - p) / p).abs() < 2e-7, "{a}: {got} vs {p}");
        }
        assert_eq!(normal_tail(f64::INFINITY), 0.0);
    }

    /// Scores of `y` after a week of the wave (without the last point's score).
    fn scores_after_a_week(tail: &[f64]) -> Vec<f64> {
        let mut d = Detector::new(cfg(), 2.5);
        for t in 0..48 * 7 {
            d.observe(wave(t));
        }
        tail.iter().map(|y| d.observe(*y).score).collect()
    }

    #[test]
    fn a_value_beyond_the_weeks_range_scores_once_and_farther_scores_higher() {
        // The wave spans about 28..72.
        let near = scores_after_a_week(&[80.0, 80.0, 80.0]);
        let far = scores_after_a_week(&[200.0]);
        assert!(near[0] > 0.5, "{near:?}");
        assert!(far[0] > near[0], "{far:?} vs {near:?}");
        // The same level again is no new breakout, and no residual onset either.
        assert!(near[1] < near[0] && near[2] < near[0], "{near:?}");
        // A value inside the range, on the wave, scores nothing.
        let calm = scores_after_a_week(&[wave(48 * 7)]);
        assert!(calm[0] < 0.5, "{calm:?}");
    }

    #[test]
    fn residuals_that_are_often_large_are_not_rare() {
        // Noise with heavy tails for a week (every 20th point jumps by 15), then twelve
        // calm days, more than the onset's lookback. A jump now beats the calm days on
        // both series; but the first series' own record holds dozens as large, so it is
        // less rare there than in a series that never jumped.
        let heavy = |t: usize| wave(t) + if t < 48 * 8 && t % 20 == 7 { 15.0 } else { 0.0 };
        let run = |f: &dyn Fn(usize) -> f64, jump: f64| {
            let mut d = Detector::new(cfg(), 2.5);
            for t in 0..48 * 20 {
                d.observe(f(t));
            }
            let t = 48 * 20;
            d.observe(f(t) + jump)
        };
        let noisy = run(&heavy, 7.0);
        let clean = run(&wave, 7.0);
        assert!(clean.z.abs() > 2.5 && noisy.z.abs() > 2.5);
        assert!(clean.score > 0.5, "{clean:?}");
        assert!(noisy.score < clean.score, "{noisy:?} vs {clean:?}");
    }
}
