//! The demand forecaster: an online ensemble of small seasonal models, each updated in
//! O(1) per point, combined by their recent accuracy at the forecast horizon.
//!
//! Experts (46 of them), all run side by side on every point:
//! - the last value (naive);
//! - additive Holt-Winters without trend, with a daily or a weekly season, for a grid
//!   of level (α) and season (γ) rates; the season starts from the first two cycles
//!   (each slot's mean deviation from its cycle's mean), so γ = 0 is a fixed profile;
//! - error-correction models (level + daily season, with or without a weekly season on
//!   top) whose slots learn at `max(γ, 1/visits)`, so they are useful after one cycle;
//! - simple exponential smoothing of the level with errors clipped at three mean
//!   absolute deviations (robust to spikes).
//!
//! Every expert's forecast for `t + h` is kept until the value at `t + h` arrives, and
//! scored; each expert carries an exponentially weighted mean absolute error (λ = 0.98).
//! The forecast is the mean of the five best experts weighted by the inverse of that
//! error. A level shift is absorbed by the fast experts, which then win the weighting;
//! a season that changes is followed by the γ > 0 ones.
//!
//! Gaps: [`Forecaster::skip`] advances time without learning (use it for missing points
//! and for anomalies, which must not be learned).
//!
//! Pure: no I/O, no clock; `t` is the count of points seen.

use serde::{Deserialize, Serialize};

/// Decay of the experts' error averages, per point.
const ERROR_DECAY: f64 = 0.98;
/// Experts combined.
const TOP_K: usize = 5;
/// Holt-Winters grid.
const HW_ALPHAS: [f64; 5] = [0.1, 0.3, 0.6, 0.9, 0.98];
const HW_GAMMAS: [f64; 3] = [0.0, 0.05, 0.2];
/// Error-correction grid.
const EC_ALPHAS: [f64; 3] = [0.02, 0.1, 0.3];
const EC_GAMMAS: [f64; 2] = [0.02, 0.1];
/// Robust level grid.
const SES_ALPHAS: [f64; 3] = [0.02, 0.05, 0.2];

/// How the forecaster sees its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForecastConfig {
    /// Points per day (288 for 5-minute points, 48 for 30-minute ones).
    pub steps_per_day: usize,
    /// Steps ahead to forecast (6 for 30 minutes of 5-minute points).
    pub horizon: usize,
}

impl ForecastConfig {
    /// Points before the forecast is considered warm: two days, enough for the daily
    /// models to start and be scored.
    pub const fn warm_up(&self) -> u64 {
        2 * self.steps_per_day as u64
    }
}

/// Collects the first two cycles of a period, then yields the initial level and season.
#[derive(Debug, Clone)]
struct SeasonInit {
    period: usize,
    buf: Vec<f64>,
}

impl SeasonInit {
    fn new(period: usize) -> Self {
        Self {
            period,
            buf: Vec::with_capacity(2 * period),
        }
    }

    /// Adds the point seen at `t`; once two cycles are in, returns `(level, season)`
    /// with the season indexed by `t mod period`.
    fn push(&mut self, t: u64, y: f64) -> Option<(f64, Vec<f64>)> {
        if self.buf.len() >= 2 * self.period {
            return None;
        }
        self.buf.push(y);
        if self.buf.len() < 2 * self.period {
            return None;
        }
        let m = self.period;
        let mean = |c: &[f64]| c.iter().sum::<f64>() / c.len() as f64;
        let (first, second) = self.buf.split_at(m);
        let (m1, m2) = (mean(first), mean(second));
        let start = t + 1 - 2 * m as u64;
        let mut season = vec![0.0; m];
        for j in 0..m {
            let slot = usize::try_from((start + j as u64) % m as u64).unwrap_or(0);
            season[slot] = ((first[j] - m1) + (second[j] - m2)) / 2.0;
        }
        self.buf = Vec::new();
        Some((m2, season))
    }
}

/// A time's position in the daily and weekly cycles, computed once per point and
/// shared by every expert (no division in the experts' inner loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slots {
    day: usize,
    week: usize,
}

#[derive(Debug, Clone)]
struct HoltWinters {
    weekly: bool,
    alpha: f64,
    gamma: f64,
    level: f64,
    season: Vec<f64>,
}

impl HoltWinters {
    fn update(&mut self, at: Slots, y: f64) {
        let i = if self.weekly { at.week } else { at.day };
        let s = self.season[i];
        let l = self.level;
        self.level = self.alpha * (y - s) + (1.0 - self.alpha) * l;
        self.season[i] = self.gamma * (y - l) + (1.0 - self.gamma) * s;
    }

    fn forecast(&self, at: Slots) -> f64 {
        self.level + self.season[if self.weekly { at.week } else { at.day }]
    }
}

#[derive(Debug, Clone)]
struct ErrorCorrection {
    alpha: f64,
    gamma: f64,
    level: Option<f64>,
    daily: Vec<f64>,
    daily_visits: Vec<u32>,
    weekly: Vec<f64>,
    weekly_visits: Vec<u32>,
}

impl ErrorCorrection {
    fn new(steps_per_day: usize, alpha: f64, gamma: f64, weekly: bool) -> Self {
        let week = if weekly { 7 * steps_per_day } else { 0 };
        Self {
            alpha,
            gamma,
            level: None,
            daily: vec![0.0; steps_per_day],
            daily_visits: vec![0; steps_per_day],
            weekly: vec![0.0; week],
            weekly_visits: vec![0; week],
        }
    }

    fn seasonal(&self, at: Slots) -> f64 {
        let d = self.daily[at.day];
        if self.weekly.is_empty() {
            d
        } else {
            d + self.weekly[at.week]
        }
    }

    fn update(&mut self, at: Slots, y: f64) {
        let level = *self.level.get_or_insert(y);
        let e = y - (level + self.seasonal(at));
        self.level = Some(level + self.alpha * e);
        let mut rest = (1.0 - self.alpha) * e;
        let i = at.day;
        self.daily_visits[i] = self.daily_visits[i].saturating_add(1);
        let rate = self.gamma.max(1.0 / f64::from(self.daily_visits[i]));
        self.daily[i] += rate * rest;
        rest -= rate * rest;
        if !self.weekly.is_empty() {
            let w = at.week;
            self.weekly_visits[w] = self.weekly_visits[w].saturating_add(1);
            let rate = self.gamma.max(1.0 / f64::from(self.weekly_visits[w]));
            self.weekly[w] += rate * rest;
        }
    }

    fn forecast(&self, at: Slots) -> Option<f64> {
        let level = self.level?;
        let seen = self.daily_visits[at.day] > 0
            && (self.weekly.is_empty() || self.weekly_visits[at.week] > 0);
        seen.then(|| level + self.seasonal(at))
    }
}

#[derive(Debug, Clone)]
struct RobustLevel {
    alpha: f64,
    level: Option<f64>,
    mad: Option<f64>,
}

impl RobustLevel {
    fn update(&mut self, y: f64) {
        let Some(level) = self.level else {
            self.level = Some(y);
            return;
        };
        let e = y - level;
        let mad = *self.mad.get_or_insert(e.abs());
        let bound = if mad > 0.0 { 3.0 * mad } else { e.abs() };
        self.mad = Some(0.99 * mad + 0.01 * e.abs());
        self.level = Some(level + self.alpha * e.clamp(-bound, bound));
    }
}

#[derive(Debug, Clone)]
enum Expert {
    Naive,
    /// Holt-Winters waiting for its season's first two cycles (`daily` or weekly).
    PendingHw {
        weekly: bool,
        alpha: f64,
        gamma: f64,
    },
    Hw(HoltWinters),
    Ec(ErrorCorrection),
    Robust(RobustLevel),
}

fn slot(t: u64, period: usize) -> usize {
    usize::try_from(t % period.max(1) as u64).unwrap_or(0)
}

/// The online forecaster (see the module documentation).
#[derive(Debug, Clone)]
pub struct Forecaster {
    cfg: ForecastConfig,
    t: u64,
    last: Option<f64>,
    experts: Vec<Expert>,
    /// Exponentially weighted mean absolute h-step error per expert; NaN before the
    /// first score.
    errors: Vec<f64>,
    /// Forecasts made, by target time modulo `horizon + 1`, one per expert.
    pending: Vec<f64>,
    daily_init: Option<SeasonInit>,
    weekly_init: Option<SeasonInit>,
    /// The combined forecast for `t - 1 + horizon`.
    current: Option<f64>,
    /// `t`'s position in the cycles, advanced with `t`.
    now: Slots,
}

impl Forecaster {
    /// A forecaster that has seen nothing.
    pub fn new(cfg: ForecastConfig) -> Self {
        let cfg = ForecastConfig {
            steps_per_day: cfg.steps_per_day.max(1),
            horizon: cfg.horizon.max(1),
        };
        let mut experts = vec![Expert::Naive];
        for weekly in [false, true] {
            for alpha in HW_ALPHAS {
                for gamma in HW_GAMMAS {
                    experts.push(Expert::PendingHw {
                        weekly,
                        alpha,
                        gamma,
                    });
                }
            }
        }
        for alpha in EC_ALPHAS {
            for gamma in EC_GAMMAS {
                for weekly in [false, true] {
                    experts.push(Expert::Ec(ErrorCorrection::new(
                        cfg.steps_per_day,
                        alpha,
                        gamma,
                        weekly,
                    )));
                }
            }
        }
        for alpha in SES_ALPHAS {
            experts.push(Expert::Robust(RobustLevel {
                alpha,
                level: None,
                mad: None,
            }));
        }
        let n = experts.len();
        Self {
            cfg,
            t: 0,
            last: None,
            experts,
            errors: vec![f64::NAN; n],
            pending: vec![f64::NAN; n * (cfg.horizon + 1)],
            daily_init: Some(SeasonInit::new(cfg.steps_per_day)),
            weekly_init: Some(SeasonInit::new(7 * cfg.steps_per_day)),
            current: None,
            now: Slots { day: 0, week: 0 },
        }
    }

    /// Its configuration.
    pub const fn config(&self) -> ForecastConfig {
        self.cfg
    }

    /// Points seen (observed or skipped).
    pub const fn seen(&self) -> u64 {
        self.t
    }

    /// Whether enough points were seen for the forecast to mean something.
    pub const fn is_warm(&self) -> bool {
        self.t >= self.cfg.warm_up()
    }

    /// The forecast for the point `horizon` steps after the last one seen.
    pub const fn forecast(&self) -> Option<f64> {
        self.current
    }

    /// The forecast made `horizon` steps ago for the point about to be observed.
    pub fn expected(&self) -> Option<f64> {
        self.combine_pending(self.t)
    }

    /// Learns the next point and returns the new forecast, `horizon` steps ahead.
    /// A non-finite `y` is treated as missing.
    pub fn observe(&mut self, y: f64) -> Option<f64> {
        if !y.is_finite() {
            return self.skip();
        }
        let t = self.t;
        let n = self.experts.len();
        let row = self.row(t);
        for i in 0..n {
            let f = self.pending[row + i];
            if f.is_finite() {
                let e = (y - f).abs();
                let prev = self.errors[i];
                self.errors[i] = if prev.is_nan() {
                    e
                } else {
                    ERROR_DECAY * prev + (1.0 - ERROR_DECAY) * e
                };
            }
        }
        let now = self.now;
        let daily = self.daily_init.as_mut().and_then(|s| s.push(t, y));
        let weekly = self.weekly_init.as_mut().and_then(|s| s.push(t, y));
        if daily.is_some() {
            self.daily_init = None;
        }
        if weekly.is_some() {
            self.weekly_init = None;
        }
        for expert in &mut self.experts {
            match expert {
                Expert::Naive => {}
                Expert::PendingHw {
                    weekly: w,
                    alpha,
                    gamma,
                } => {
                    let ready = if *w { &weekly } else { &daily };
                    if let Some((level, season)) = ready {
                        *expert = Expert::Hw(HoltWinters {
                            weekly: *w,
                            alpha: *alpha,
                            gamma: *gamma,
                            level: *level,
                            season: season.clone(),
                        });
                    }
                }
                Expert::Hw(hw) => hw.update(now, y),
                Expert::Ec(ec) => ec.update(now, y),
                Expert::Robust(r) => r.update(y),
            }
        }
        self.last = Some(y);
        self.advance()
    }

    /// Advances time by one point without learning it (a gap, or an anomaly that must
    /// not be learned); its forecasts are not scored.
    pub fn skip(&mut self) -> Option<f64> {
        self.advance()
    }

    fn row(&self, t: u64) -> usize {
        slot(t, self.cfg.horizon + 1) * self.experts.len()
    }

    /// Makes every expert's forecast for `t + h`, combines them, and moves to `t + 1`.
    /// `at` moved on by `n` steps.
    fn later(&self, at: Slots, n: usize) -> Slots {
        let day = self.cfg.steps_per_day;
        let week = 7 * day;
        let mut s = Slots {
            day: at.day + n,
            week: at.week + n,
        };
        if s.day >= day {
            s.day %= day;
        }
        if s.week >= week {
            s.week %= week;
        }
        s
    }

    fn advance(&mut self) -> Option<f64> {
        let t = self.t;
        let h = self.cfg.horizon;
        let ahead = self.later(self.now, h);
        let row = self.row(t + h as u64);
        for (i, expert) in self.experts.iter().enumerate() {
            let f = match expert {
                Expert::Naive => self.last,
                Expert::PendingHw { .. } => None,
                Expert::Hw(hw) => Some(hw.forecast(ahead)),
                Expert::Ec(ec) => ec.forecast(ahead),
                Expert::Robust(r) => r.level,
            };
            self.pending[row + i] = f.filter(|v| v.is_finite()).unwrap_or(f64::NAN);
        }
        self.t += 1;
        self.now = self.later(self.now, 1);
        self.current = self.combine_pending(t + h as u64);
        self.current
    }

    /// The weighted mean of the best experts' forecasts for time `at`: the `TOP_K` with
    /// the lowest error, kept in a small sorted array (no allocation).
    fn combine_pending(&self, at: u64) -> Option<f64> {
        let row = self.row(at);
        let n = self.experts.len();
        let forecasts = &self.pending[row..row + n];
        let mut best = [(f64::INFINITY, 0.0_f64); TOP_K];
        let mut found = 0;
        for (f, e) in forecasts.iter().zip(&self.errors) {
            if !(f.is_finite() && e.is_finite()) || *e >= best[TOP_K - 1].0 {
                continue;
            }
            let mut i = TOP_K - 1;
            while i > 0 && best[i - 1].0 > *e {
                best[i] = best[i - 1];
                i -= 1;
            }
            best[i] = (*e, *f);
            found += 1;
        }
        if found == 0 {
            // Nothing scored yet: the last value, as naive.
            return forecasts.first().copied().filter(|f| f.is_finite());
        }
        let (mut num, mut den) = (0.0, 0.0);
        for (e, f) in best.iter().take(found.min(TOP_K)) {
            let w = 1.0 / (e + 1e-12);
            num += w * f;
            den += w;
        }
        Some(num / den)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ForecastConfig {
        ForecastConfig {
            steps_per_day: 24,
            horizon: 2,
        }
    }

    /// A daily sine around 100 with a weekday bump.
    fn seasonal(t: u64) -> f64 {
        let day = (t % 24) as f64 / 24.0 * std::f64::consts::TAU;
        let weekday = (t / 24) % 7;
        100.0 + 30.0 * day.sin() + if weekday < 5 { 10.0 } else { -10.0 }
    }

    #[test]
    fn learns_daily_and_weekly_seasons() {
        let mut f = Forecaster::new(cfg());
        let mut errors = Vec::new();
        for t in 0..24 * 7 * 6 {
            let y = seasonal(t);
            if let (Some(expected), true) = (f.expected(), t > 24 * 7 * 4) {
                errors.push((expected - y).abs());
            }
            f.observe(y);
        }
        let mae = errors.iter().sum::<f64>() / errors.len() as f64;
        assert!(mae < 1.0, "MAE {mae} on a noiseless seasonal series");
    }

    #[test]
    fn a_level_shift_is_absorbed() {
        let mut f = Forecaster::new(cfg());
        for t in 0..24 * 10 {
            f.observe(seasonal(t));
        }
        let mut last_errors = Vec::new();
        for t in 24 * 10..24 * 14 {
            let y = seasonal(t) + 200.0;
            if t >= 24 * 13 {
                last_errors.push((f.expected().unwrap() - y).abs());
            }
            f.observe(y);
        }
        let mae = last_errors.iter().sum::<f64>() / last_errors.len() as f64;
        assert!(mae < 20.0, "still {mae} off three days after a +200 shift");
    }

    #[test]
    fn gaps_and_anomalies_are_not_learned() {
        let mut a = Forecaster::new(cfg());
        let mut b = Forecaster::new(cfg());
        for t in 0..24 * 9 {
            let y = seasonal(t);
            a.observe(y);
            if t == 24 * 8 {
                b.observe(1e9);
            } else {
                b.observe(y);
            }
        }
        let (fa, fb) = (a.forecast().unwrap(), b.forecast().unwrap());
        assert!(
            (fa - fb).abs() > 1.0,
            "a spike learned shows up ({fa} vs {fb})"
        );
        let mut c = Forecaster::new(cfg());
        for t in 0..24 * 9 {
            if t == 24 * 8 {
                c.skip();
            } else {
                c.observe(seasonal(t));
            }
        }
        let fc = c.forecast().unwrap();
        assert!(
            (fa - fc).abs() < 2.0,
            "a skipped point barely matters ({fa} vs {fc})"
        );
        assert_eq!(c.seen(), 24 * 9);
        let mut d = Forecaster::new(cfg());
        d.observe(f64::NAN);
        assert_eq!(d.seen(), 1);
    }

    #[test]
    fn warm_up_is_two_days_and_the_start_is_naive() {
        let mut f = Forecaster::new(cfg());
        assert_eq!(f.forecast(), None);
        assert_eq!(f.observe(5.0), Some(5.0));
        assert!(!f.is_warm());
        for _ in 1..48 {
            f.observe(5.0);
        }
        assert!(f.is_warm());
        assert!((f.forecast().unwrap() - 5.0).abs() < 1e-9);
    }

    #[test]
    fn it_is_deterministic() {
        let mut a = Forecaster::new(cfg());
        let mut b = Forecaster::new(cfg());
        for t in 0..24 * 9 {
            assert_eq!(a.observe(seasonal(t)), b.observe(seasonal(t)));
        }
    }
}
