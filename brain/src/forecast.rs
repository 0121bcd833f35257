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

/// Holt-Winters experts.
const HW_N: usize = HW_ALPHAS.len() * HW_GAMMAS.len();
/// Error-correction experts: every α × γ, without and with a weekly season.
const EC_N: usize = EC_ALPHAS.len() * EC_GAMMAS.len() * 2;
/// Expert layout, which also breaks ties in the ranking: naive, daily Holt-Winters,
/// weekly Holt-Winters, error correction, robust level.
const HW_DAILY: usize = 1;
const HW_WEEKLY: usize = HW_DAILY + HW_N;
const EC: usize = HW_WEEKLY + HW_N;
const ROBUST: usize = EC + EC_N;
const EXPERTS: usize = ROBUST + SES_ALPHAS.len();

/// The Holt-Winters experts of one season length (every α × γ of the grid, α major),
/// side by side: their seasons are interleaved by slot, so a point touches one row of
/// `HW_N` values rather than `HW_N` tables.
#[derive(Debug, Clone)]
struct HwBank {
    alphas: [f64; HW_N],
    gammas: [f64; HW_N],
    levels: [f64; HW_N],
    /// `period × HW_N`: slot-major.
    season: Vec<f64>,
}

impl HwBank {
    /// Starts every expert from the same initial level and season.
    fn new(level: f64, season: &[f64]) -> Self {
        let mut alphas = [0.0; HW_N];
        let mut gammas = [0.0; HW_N];
        for (j, (a, g)) in alphas.iter_mut().zip(&mut gammas).enumerate() {
            *a = HW_ALPHAS[j / HW_GAMMAS.len()];
            *g = HW_GAMMAS[j % HW_GAMMAS.len()];
        }
        Self {
            alphas,
            gammas,
            levels: [level; HW_N],
            season: season.iter().flat_map(|&s| [s; HW_N]).collect(),
        }
    }

    fn row(&mut self, slot: usize) -> &mut [f64] {
        &mut self.season[slot * HW_N..(slot + 1) * HW_N]
    }

    fn update(&mut self, slot: usize, y: f64) {
        let (alphas, gammas) = (self.alphas, self.gammas);
        let mut levels = self.levels;
        let row = self.row(slot);
        for j in 0..HW_N {
            let (s, l) = (row[j], levels[j]);
            levels[j] = alphas[j] * (y - s) + (1.0 - alphas[j]) * l;
            row[j] = gammas[j] * (y - l) + (1.0 - gammas[j]) * s;
        }
        self.levels = levels;
    }

    fn forecast(&self, slot: usize, out: &mut [f64]) {
        let row = &self.season[slot * HW_N..(slot + 1) * HW_N];
        for ((o, l), s) in out.iter_mut().zip(&self.levels).zip(row) {
            *o = l + s;
        }
    }
}

/// The error-correction experts, side by side (α, then γ, then without/with a weekly
/// season). Their slot visit counts are the same for all of them, so they are kept
/// once.
#[derive(Debug, Clone)]
struct EcBank {
    alphas: [f64; EC_N],
    gammas: [f64; EC_N],
    /// Set from the first point learned.
    levels: Option<[f64; EC_N]>,
    /// `steps_per_day × EC_N`: slot-major.
    daily: Vec<f64>,
    daily_visits: Vec<u32>,
    /// `7 × steps_per_day × EC_N / 2`, for the experts with a weekly season (odd `j`).
    weekly: Vec<f64>,
    weekly_visits: Vec<u32>,
}

impl EcBank {
    fn new(steps_per_day: usize) -> Self {
        let mut alphas = [0.0; EC_N];
        let mut gammas = [0.0; EC_N];
        for (j, (a, g)) in alphas.iter_mut().zip(&mut gammas).enumerate() {
            *a = EC_ALPHAS[j / (2 * EC_GAMMAS.len())];
            *g = EC_GAMMAS[(j / 2) % EC_GAMMAS.len()];
        }
        let week = 7 * steps_per_day;
        Self {
            alphas,
            gammas,
            levels: None,
            daily: vec![0.0; steps_per_day * EC_N],
            daily_visits: vec![0; steps_per_day],
            weekly: vec![0.0; week * EC_N / 2],
            weekly_visits: vec![0; week],
        }
    }

    fn update(&mut self, at: Slots, y: f64) {
        let mut levels = self.levels.unwrap_or([y; EC_N]);
        let visits = &mut self.daily_visits[at.day];
        *visits = visits.saturating_add(1);
        let daily_floor = 1.0 / f64::from(*visits);
        let visits = &mut self.weekly_visits[at.week];
        *visits = visits.saturating_add(1);
        let weekly_floor = 1.0 / f64::from(*visits);
        let daily = &mut self.daily[at.day * EC_N..(at.day + 1) * EC_N];
        let weekly = &mut self.weekly[at.week * EC_N / 2..(at.week + 1) * EC_N / 2];
        for j in 0..EC_N {
            let (alpha, gamma) = (self.alphas[j], self.gammas[j]);
            let level = levels[j];
            let seasonal = if j % 2 == 0 {
                daily[j]
            } else {
                daily[j] + weekly[j / 2]
            };
            let e = y - (level + seasonal);
            levels[j] = level + alpha * e;
            let mut rest = (1.0 - alpha) * e;
            let rate = gamma.max(daily_floor);
            daily[j] += rate * rest;
            rest -= rate * rest;
            if j % 2 == 1 {
                let rate = gamma.max(weekly_floor);
                weekly[j / 2] += rate * rest;
            }
        }
        self.levels = Some(levels);
    }

    /// Forecasts for `at` into `out` (NaN for an expert that has not seen its slots).
    fn forecast(&self, at: Slots, out: &mut [f64]) {
        let Some(levels) = &self.levels else {
            out.fill(f64::NAN);
            return;
        };
        let day_seen = self.daily_visits[at.day] > 0;
        let week_seen = self.weekly_visits[at.week] > 0;
        let daily = &self.daily[at.day * EC_N..(at.day + 1) * EC_N];
        let weekly = &self.weekly[at.week * EC_N / 2..(at.week + 1) * EC_N / 2];
        for (j, o) in out.iter_mut().enumerate() {
            *o = match (j % 2 == 0, day_seen, week_seen) {
                (true, true, _) => levels[j] + daily[j],
                (false, true, true) => levels[j] + (daily[j] + weekly[j / 2]),
                _ => f64::NAN,
            };
        }
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

fn slot(t: u64, period: usize) -> usize {
    usize::try_from(t % period.max(1) as u64).unwrap_or(0)
}

/// The online forecaster (see the module documentation).
#[derive(Debug, Clone)]
pub struct Forecaster {
    cfg: ForecastConfig,
    t: u64,
    last: Option<f64>,
    /// Holt-Winters, once their season's first two cycles are in.
    hw_daily: Option<HwBank>,
    hw_weekly: Option<HwBank>,
    ec: EcBank,
    robust: [RobustLevel; SES_ALPHAS.len()],
    /// Exponentially weighted mean absolute h-step error per expert; NaN before the
    /// first score.
    errors: Vec<f64>,
    /// The `TOP_K` experts with the lowest error (ties to the first), best first, as
    /// `(error, expert)`: errors only change when a point is learned, so the ranking is
    /// made then, once, for every combination until the next point.
    ranked: [(f64, usize); TOP_K],
    /// Entries of `ranked` in use (fewer than `TOP_K` while few experts are scored).
    ranked_len: usize,
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
        let n = EXPERTS;
        Self {
            cfg,
            t: 0,
            last: None,
            hw_daily: None,
            hw_weekly: None,
            ec: EcBank::new(cfg.steps_per_day),
            robust: SES_ALPHAS.map(|alpha| RobustLevel {
                alpha,
                level: None,
                mad: None,
            }),
            errors: vec![f64::NAN; n],
            ranked: [(f64::INFINITY, 0); TOP_K],
            ranked_len: 0,
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
        let n = EXPERTS;
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
        self.rank();
        let now = self.now;
        let daily = self.daily_init.as_mut().and_then(|s| s.push(t, y));
        let weekly = self.weekly_init.as_mut().and_then(|s| s.push(t, y));
        if daily.is_some() {
            self.daily_init = None;
        }
        if weekly.is_some() {
            self.weekly_init = None;
        }
        // A Holt-Winters bank starts from its season's first two cycles; it learns
        // from the next point on.
        if let Some((level, season)) = daily {
            self.hw_daily = Some(HwBank::new(level, &season));
        } else if let Some(hw) = &mut self.hw_daily {
            hw.update(now.day, y);
        }
        if let Some((level, season)) = weekly {
            self.hw_weekly = Some(HwBank::new(level, &season));
        } else if let Some(hw) = &mut self.hw_weekly {
            hw.update(now.week, y);
        }
        self.ec.update(now, y);
        for r in &mut self.robust {
            r.update(y);
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
        slot(t, self.cfg.horizon + 1) * EXPERTS
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
        let out = &mut self.pending[row..row + EXPERTS];
        out[0] = self.last.unwrap_or(f64::NAN);
        for (bank, at, range) in [
            (&self.hw_daily, ahead.day, HW_DAILY..HW_WEEKLY),
            (&self.hw_weekly, ahead.week, HW_WEEKLY..EC),
        ] {
            match bank {
                Some(hw) => hw.forecast(at, &mut out[range]),
                None => out[range].fill(f64::NAN),
            }
        }
        self.ec.forecast(ahead, &mut out[EC..ROBUST]);
        for (o, r) in out[ROBUST..].iter_mut().zip(&self.robust) {
            *o = r.level.unwrap_or(f64::NAN);
        }
        for f in out.iter_mut() {
            if !f.is_finite() {
                *f = f64::NAN;
            }
        }
        self.t += 1;
        self.now = self.later(self.now, 1);
        self.current = self.combine_pending(t + h as u64);
        self.current
    }

    /// Ranks the experts by error into `ranked`.
    fn rank(&mut self) {
        let (best, found) = top_k(self.errors.iter().copied().enumerate());
        self.ranked = best;
        self.ranked_len = found;
    }

    /// The weighted mean of the best experts' forecasts for time `at`: the `TOP_K` with
    /// the lowest error among those with a forecast for `at`.
    fn combine_pending(&self, at: u64) -> Option<f64> {
        let row = self.row(at);
        let n = EXPERTS;
        let forecasts = &self.pending[row..row + n];
        let ranked = &self.ranked[..self.ranked_len];
        // Usually the best-ranked experts all forecast `at`; otherwise rank those that do.
        let (best, found) = if ranked.iter().all(|&(_, i)| forecasts[i].is_finite()) {
            (self.ranked, self.ranked_len)
        } else {
            top_k(
                self.errors
                    .iter()
                    .zip(forecasts)
                    .map(|(&e, f)| if f.is_finite() { e } else { f64::NAN })
                    .enumerate(),
            )
        };
        if found == 0 {
            // Nothing scored yet: the last value, as naive.
            return forecasts.first().copied().filter(|f| f.is_finite());
        }
        let (mut num, mut den) = (0.0, 0.0);
        for &(e, i) in &best[..found] {
            let w = 1.0 / (e + 1e-12);
            num += w * forecasts[i];
            den += w;
        }
        Some(num / den)
    }
}

/// The `TOP_K` lowest finite errors of `(expert, error)`, lowest first (ties to the
/// earlier expert), kept in a small sorted array; and how many there are.
fn top_k(errors: impl Iterator<Item = (usize, f64)>) -> ([(f64, usize); TOP_K], usize) {
    let mut best = [(f64::INFINITY, 0); TOP_K];
    let mut found = 0;
    for (k, e) in errors {
        if !e.is_finite() || e >= best[TOP_K - 1].0 {
            continue;
        }
        let mut i = TOP_K - 1;
        while i > 0 && best[i - 1].0 > e {
            best[i] = best[i - 1];
            i -= 1;
        }
        best[i] = (e, k);
        found += 1;
    }
    (best, found.min(TOP_K))
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
