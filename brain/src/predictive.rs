//! Predictive scaling: per pool and target, the demand series (one point a minute,
//! averaged into 5-minute buckets) runs through the anomaly detector and its forecaster.
//!
//! Demand is what capacity must cover: a target's readings summed over the pool
//! (utilization × nodes for utilization targets, the summed metric for workload ones).
//!
//! - `forecast-only` (the default): forecasts, anomalies and the trailing-day MASE are
//!   computed, journaled and exported, never acted on.
//! - `forecast-and-scale`: the pool also asks, ahead of time, for the nodes the reactive
//!   planner would ask for at the demand forecast for `lead_time` from now (the
//!   provisioning time), so capacity is ready when the demand arrives: enough that the
//!   forecast demand stays within the target's tolerance band, `ceil(demand / (target ×
//!   (1 + tolerance)))`. (Sized at the target itself, without the band, it bought about
//!   4 % more node-hours than reactive-only at the same target on nyc_taxi whatever the
//!   provisioning delay: capacity the reactive planner would never have asked for.) The
//!   planner takes `max(reactive, predictive)`, so predictive never scales in by itself.
//! - `auto`: forecasts as forecast-only, and scales as forecast-and-scale while the
//!   last backtest of the pool's recent demand (the simulator's `auto_backtest`,
//!   which the leader runs every few hours off the pass) found that forecast-and-scale
//!   needs fewer node-hours than the cheapest reactive-only policy with no more
//!   saturated minutes.
//! - When the forecast's trailing-day MASE (its mean absolute error over the last day
//!   against the naive "no change" forecast at the same horizon) is above 1, the pool
//!   falls back to reactive-only and says so, until the forecast is better again.
//!
//! Pure: time comes in as an argument.

use std::collections::VecDeque;

use capstan_config::{Predictive, PredictiveMode};

use super::anomaly::{Detector, Verdict};
use super::forecast::ForecastConfig;
use super::planner::TargetSpec;
use super::reason::Reason;

/// Minutes per forecast point.
pub const STEP_MINUTES: i64 = 5;
/// Forecast points per day.
const STEPS_PER_DAY: usize = (24 * 60 / STEP_MINUTES) as usize;
/// Most buckets replayed across a gap before the rest is skipped in one go.
const MAX_GAP_STEPS: i64 = 14 * STEPS_PER_DAY as i64;

/// An anomaly found when a 5-minute bucket closed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalyEvent {
    /// Index of the target.
    pub target: usize,
    /// The bucket's start, in minutes since the epoch.
    pub minute: i64,
    /// The bucket's demand.
    pub value: f64,
    /// The detector's verdict.
    pub verdict: Verdict,
}

#[derive(Debug, Clone)]
struct Track {
    detector: Detector,
    /// The open bucket: index, sum, count.
    open: Option<(i64, f64, u32)>,
    /// Forecasts by the bucket they are for, oldest first.
    forecasts: VecDeque<(i64, f64)>,
    /// The last `horizon` closed values, for the naive error.
    values: VecDeque<(i64, f64)>,
    /// Over the last day: (forecast error, naive error).
    errors: VecDeque<(f64, f64)>,
    /// Sums of `errors`.
    error_sum: f64,
    naive_sum: f64,
    /// Since the start: forecast and naive error sums.
    total_error: f64,
    total_naive: f64,
}

/// Predictive state of one pool (see the module documentation).
#[derive(Debug, Clone)]
pub struct Predictor {
    mode: PredictiveMode,
    horizon: usize,
    /// How far ahead capacity is sized, in whole minutes (at most the horizon).
    lead_minutes: i64,
    /// With `auto`: the last backtest's verdict (`None` before the first).
    auto_scales: Option<bool>,
    tracks: Vec<Track>,
}

/// `d` in minutes, rounded up.
fn whole_minutes(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs().div_ceil(60)).unwrap_or(i64::MAX)
}

fn steps(d: std::time::Duration) -> usize {
    usize::try_from(d.as_secs().div_ceil(60 * STEP_MINUTES as u64)).unwrap_or(usize::MAX)
}

/// The most a forecast's trailing-day MASE may be for it to hold a scale-down in place
/// of the stabilization window ([`Outlook::hold`]): its errors at most half of "no
/// change"'s. Without this bound (any trusted forecast, MASE up to 1), noisy series lost
/// the window's protection: saturated minutes the window had prevented, and half as many
/// scaling actions again (docs/performance.md, "What made the forecast pay").
pub const HOLD_MASE: f64 = 0.5;

/// What predictive scaling asks of the planner this pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Outlook {
    /// Nodes predictive scaling asks for (forecast-and-scale, warm, trusted).
    pub nodes: Option<u32>,
    /// The most nodes the forecast needs in any bucket after the one being measured, up
    /// to the one capacity asked for now is ready in: a node released now and needed
    /// again by then could not come back in time. When set, a scale-down keeps these
    /// in place of waiting out the stabilization window (the forecast looks ahead
    /// where the window looks back). Only while every target's forecast is trusted to
    /// [`HOLD_MASE`]: a forecast that beats "no change" by less leaves the window.
    pub hold: Option<u32>,
    /// Per target: the demand forecast `horizon` ahead.
    pub forecasts: Vec<Option<f64>>,
    /// Per target: the trailing-day MASE.
    pub mase: Vec<Option<f64>>,
    /// Predictive scaling is in force (forecast-and-scale and trusted).
    pub active: bool,
    /// What it did, for the journal.
    pub reasons: Vec<Reason>,
}

impl Predictor {
    /// A predictor for `targets` targets with the pool's `predictive` settings.
    pub fn new(cfg: &Predictive, targets: usize) -> Self {
        let horizon = steps(cfg.horizon).max(1);
        let lead_minutes = whole_minutes(cfg.lead_time).min(horizon as i64 * STEP_MINUTES);
        let fc = ForecastConfig {
            steps_per_day: STEPS_PER_DAY,
            horizon,
        };
        Self {
            mode: cfg.mode,
            horizon,
            lead_minutes,
            auto_scales: None,
            tracks: (0..targets)
                .map(|_| Track {
                    detector: Detector::new(fc, cfg.anomaly_threshold),
                    open: None,
                    forecasts: VecDeque::new(),
                    values: VecDeque::new(),
                    errors: VecDeque::new(),
                    error_sum: 0.0,
                    naive_sum: 0.0,
                    total_error: 0.0,
                    total_naive: 0.0,
                })
                .collect(),
        }
    }

    /// Sizes capacity `lead` ahead from now on (the pool's provisioning delay, learned
    /// from the cloud), in whole minutes up to the horizon, instead of the configured
    /// `lead_time`: for the forecast bucket holding the minute it will be ready.
    pub fn set_lead(&mut self, lead: std::time::Duration) {
        self.lead_minutes = whole_minutes(lead).min(self.horizon as i64 * STEP_MINUTES);
    }

    /// The forecast bucket holding the minute that capacity asked for at `minute` is
    /// ready: what [`Self::outlook`] sizes for. The outlook changes only when this or
    /// the bucket of `minute` does.
    pub fn ready_bucket(&self, minute: i64) -> i64 {
        minute
            .saturating_add(self.lead_minutes)
            .div_euclid(STEP_MINUTES)
    }

    /// With `mode = "auto"`: whether to scale on the forecast until the next backtest.
    pub fn set_auto(&mut self, scales: bool) {
        self.auto_scales = Some(scales);
    }

    /// Whether the forecast scales the pool now: forecast-and-scale, or `auto` whose
    /// last backtest chose it.
    pub fn scales(&self) -> bool {
        match self.mode {
            PredictiveMode::ForecastAndScale => true,
            PredictiveMode::Auto => self.auto_scales == Some(true),
            PredictiveMode::Off | PredictiveMode::ForecastOnly => false,
        }
    }

    /// Whether the pool forecasts at all.
    pub fn enabled(&self) -> bool {
        self.mode != PredictiveMode::Off
    }

    /// Records the demand of each target for `minute` (minutes since the epoch); minutes
    /// must come in order. Returns the anomalies of the buckets this closed.
    pub fn record(&mut self, minute: i64, demands: &[Option<f64>]) -> Vec<AnomalyEvent> {
        let mut events = Vec::new();
        if !self.enabled() {
            return events;
        }
        let bucket = minute.div_euclid(STEP_MINUTES);
        let horizon = self.horizon as i64;
        for (k, track) in self.tracks.iter_mut().enumerate() {
            let demand = demands.get(k).copied().flatten().filter(|d| d.is_finite());
            match track.open {
                Some((b, _, _)) if b == bucket => {}
                Some((b, sum, count)) if bucket > b => {
                    let value = if count > 0 {
                        sum / f64::from(count)
                    } else {
                        f64::NAN
                    };
                    events.extend(track.close(b, value, horizon).map(|verdict| AnomalyEvent {
                        target: k,
                        minute: b * STEP_MINUTES,
                        value,
                        verdict,
                    }));
                    // Buckets with no data at all are gaps.
                    let gap = (bucket - b - 1).min(MAX_GAP_STEPS);
                    for g in 0..gap {
                        track.close(b + 1 + g, f64::NAN, horizon);
                    }
                    track.open = Some((bucket, 0.0, 0));
                }
                // A minute from the past (a clock step back): ignored.
                Some(_) => continue,
                None => track.open = Some((bucket, 0.0, 0)),
            }
            if let (Some(d), Some((_, sum, count))) = (demand, track.open.as_mut()) {
                *sum += d;
                *count += 1;
            }
        }
        events
    }

    /// A target's forecast error since the start, relative to the naive forecast at the
    /// same horizon over the same points (MASE; `None` before any point was scored).
    pub fn overall_mase(&self, target: usize) -> Option<f64> {
        let t = self.tracks.get(target)?;
        (t.total_naive > 0.0).then(|| t.total_error / t.total_naive)
    }

    /// The forecast of a target's demand for the bucket holding `minute`, once one was
    /// made and until that bucket closes.
    pub fn forecast_for(&self, target: usize, minute: i64) -> Option<f64> {
        let bucket = minute.div_euclid(STEP_MINUTES);
        self.tracks
            .get(target)?
            .forecasts
            .iter()
            .find(|(b, _)| *b == bucket)
            .map(|(_, f)| f.max(0.0))
    }

    /// A target's latest forecast: (first minute of the bucket it is for, demand).
    pub fn latest_forecast(&self, target: usize) -> Option<(i64, f64)> {
        self.tracks
            .get(target)?
            .forecasts
            .back()
            .copied()
            .map(|(b, f)| (b * STEP_MINUTES, f))
    }

    /// The outlook at `minute` for a pool with these targets and the planner's
    /// `tolerance`.
    pub fn outlook(&self, minute: i64, targets: &[TargetSpec], tolerance: f64) -> Outlook {
        let forecasts: Vec<Option<f64>> = self
            .tracks
            .iter()
            .map(|t| t.forecasts.back().map(|(_, f)| f.max(0.0)))
            .collect();
        let mase: Vec<Option<f64>> = self.tracks.iter().map(Track::mase).collect();
        let mut out = Outlook {
            nodes: None,
            hold: None,
            forecasts,
            mase,
            active: false,
            reasons: Vec::new(),
        };
        if !self.scales() {
            return out;
        }
        // The demand expected when capacity asked for now is ready. Ready within the
        // bucket being measured, it is the reactive planner's to size (from readings,
        // not a forecast made `horizon` ago).
        let ready_at = self.ready_bucket(minute);
        let measured = minute.div_euclid(STEP_MINUTES);
        let ahead = ready_at > measured;
        let mut nodes: Option<u32> = None;
        let mut hold: Option<u32> = None;
        // The hold stands in for the window only where every target's forecast vouches.
        let mut vouched = true;
        for (k, (track, spec)) in self.tracks.iter().zip(targets).enumerate() {
            if !track.detector.forecaster().is_warm() {
                out.reasons.push(Reason::PredictiveWarmingUp {
                    metric: spec.metric.clone(),
                });
                vouched = false;
                continue;
            }
            match out.mase[k] {
                Some(m) if m > 1.0 => {
                    out.reasons.push(Reason::PredictiveFallback {
                        metric: spec.metric.clone(),
                        mase: m,
                    });
                    vouched = false;
                    continue;
                }
                None => {
                    out.reasons.push(Reason::PredictiveWarmingUp {
                        metric: spec.metric.clone(),
                    });
                    vouched = false;
                    continue;
                }
                Some(m) => vouched &= m <= HOLD_MASE,
            }
            let demand = track.demand_at(ready_at).filter(|_| ahead);
            let Some(demand) = demand.filter(|_| spec.value > 0.0) else {
                vouched = false;
                continue;
            };
            // The most the target's band holds: what the reactive planner would not
            // scale up from.
            let band = spec.value * (1.0 + tolerance.max(0.0));
            let need = nodes_for(demand, band);
            let held = (measured + 1..ready_at)
                .filter_map(|b| track.demand_at(b))
                .map(|d| nodes_for(d, band))
                .fold(need, u32::max);
            hold = Some(hold.map_or(held, |h| h.max(held)));
            out.reasons.push(Reason::Predicted {
                metric: spec.metric.clone(),
                demand,
                lead_minutes: self.lead_minutes.unsigned_abs(),
                nodes: need,
            });
            nodes = Some(nodes.map_or(need, |n| n.max(need)));
        }
        out.active = nodes.is_some();
        out.nodes = nodes;
        out.hold = hold.filter(|_| vouched);
        out
    }
}

/// Nodes that hold `demand` with each at most at `band` (the top of the target's
/// tolerance band).
fn nodes_for(demand: f64, band: f64) -> u32 {
    let need = (demand.max(0.0) / band).ceil();
    // Node counts are far below u32::MAX.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let need = need.clamp(0.0, f64::from(u32::MAX)) as u32;
    need
}

impl Track {
    /// Closes bucket `b` with `value` (NaN: no data). Returns the detector's verdict
    /// when it found an anomaly onset.
    fn close(&mut self, b: i64, value: f64, horizon: i64) -> Option<Verdict> {
        // Score the forecast made for this bucket, and the naive one.
        while self.forecasts.front().is_some_and(|(at, _)| *at < b) {
            self.forecasts.pop_front();
        }
        let forecast = self
            .forecasts
            .front()
            .filter(|(at, _)| *at == b)
            .map(|(_, f)| *f);
        while self.values.front().is_some_and(|(at, _)| *at < b - horizon) {
            self.values.pop_front();
        }
        let naive = self
            .values
            .front()
            .filter(|(at, _)| *at == b - horizon)
            .map(|(_, v)| *v);
        if let (true, Some(f), Some(n)) = (value.is_finite(), forecast, naive) {
            let pair = ((value - f).abs(), (value - n).abs());
            self.error_sum += pair.0;
            self.naive_sum += pair.1;
            self.total_error += pair.0;
            self.total_naive += pair.1;
            self.errors.push_back(pair);
            if self.errors.len() > STEPS_PER_DAY
                && let Some((e, n)) = self.errors.pop_front()
            {
                self.error_sum -= e;
                self.naive_sum -= n;
            }
        }
        let verdict = self.detector.observe(value);
        if value.is_finite() {
            self.values.push_back((b, value));
        }
        if let Some(f) = self.detector.forecaster().forecast() {
            self.forecasts.push_back((b + horizon, f));
        }
        verdict.onset.then_some(verdict)
    }

    /// The forecast for bucket `at`, or the nearest later one made, or else the one
    /// that reaches furthest (with `lead_time` = `horizon`, `at` is one bucket past the
    /// latest forecast, made when the last bucket closed).
    fn demand_at(&self, at: i64) -> Option<f64> {
        self.forecasts
            .iter()
            .find(|(b, _)| *b >= at)
            .or(self.forecasts.back())
            .map(|(_, f)| f.max(0.0))
    }

    /// MASE over the last day, once a full day has been scored.
    fn mase(&self) -> Option<f64> {
        (self.errors.len() >= STEPS_PER_DAY && self.naive_sum > 0.0)
            .then(|| self.error_sum / self.naive_sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(mode: PredictiveMode) -> Predictive {
        Predictive {
            mode,
            horizon: Duration::from_secs(1800),
            history: Duration::from_secs(14 * 86_400),
            lead_time: Duration::from_secs(600),
            anomaly_threshold: 2.5,
            anomaly_triggers_emergency: false,
        }
    }

    fn target() -> Vec<TargetSpec> {
        vec![TargetSpec {
            metric: "cpu.utilization".into(),
            value: 50.0,
            missing_fallback: 50.0,
        }]
    }

    /// Demand in CPU-percent-nodes: a daily wave between 200 and 1000.
    fn demand(minute: i64) -> f64 {
        let day = (minute % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
        600.0 + 400.0 * day.sin()
    }

    #[test]
    fn forecast_and_scale_asks_for_the_capacity_the_demand_will_need() {
        let mut p = Predictor::new(&cfg(PredictiveMode::ForecastAndScale), 1);
        let days = 4 * 1440;
        for m in 0..days {
            p.record(m, &[Some(demand(m))]);
        }
        let out = p.outlook(days, &target(), 0.1);
        assert!(out.active, "{:?}", out.reasons);
        assert!(out.mase[0].unwrap() < 1.0, "{:?}", out.mase);
        // Demand 10 minutes ahead, at 50 per node and its 10 % band: what the reactive
        // planner would not scale up from.
        let want = (demand(days + 10) / 55.0).ceil();
        let got = f64::from(out.nodes.unwrap());
        assert!(
            (got - want).abs() <= 2.0,
            "asked {got}, the demand needs {want}"
        );
        assert!(
            out.reasons
                .iter()
                .any(|r| matches!(r, Reason::Predicted { .. }))
        );
    }

    #[test]
    fn a_lead_time_as_long_as_the_horizon_uses_the_furthest_forecast() {
        // Before: the demand `horizon` ahead of the open bucket was never forecast (the
        // last closed one's forecast reaches a bucket short of it), so predictive
        // scaling silently asked for nothing.
        let cfg = Predictive {
            lead_time: Duration::from_secs(1800),
            ..cfg(PredictiveMode::ForecastAndScale)
        };
        let mut p = Predictor::new(&cfg, 1);
        let days = 4 * 1440;
        for m in 0..days {
            p.record(m, &[Some(demand(m))]);
        }
        let out = p.outlook(days, &target(), 0.0);
        let want = (demand(days + 25) / 50.0).ceil();
        let got = f64::from(out.nodes.expect("predictive asks"));
        assert!(
            (got - want).abs() <= 2.0,
            "asked {got}, the demand 25 minutes ahead needs {want}"
        );
    }

    #[test]
    fn a_learned_provisioning_delay_replaces_the_configured_lead() {
        let mut p = Predictor::new(&cfg(PredictiveMode::ForecastAndScale), 1);
        for m in 0..4 * 1440 {
            p.record(m, &[Some(demand(m))]);
        }
        let lead = |p: &Predictor| {
            p.outlook(4 * 1440, &target(), 0.0)
                .reasons
                .iter()
                .find_map(|r| match r {
                    Reason::Predicted { lead_minutes, .. } => Some(*lead_minutes),
                    _ => None,
                })
        };
        assert_eq!(lead(&p), Some(10), "the configured lead_time");
        // 12 minutes learned (11 min 10 s, rounded up); past the horizon: the horizon.
        p.set_lead(Duration::from_secs(11 * 60 + 10));
        assert_eq!(lead(&p), Some(12));
        p.set_lead(Duration::from_secs(3 * 3600));
        assert_eq!(lead(&p), Some(30));
    }

    /// Capacity that will be ready within the bucket being measured is the reactive
    /// planner's to size; from the minute it would be ready in the next bucket,
    /// predictive scaling sizes that bucket.
    #[test]
    fn a_lead_that_ends_in_the_measured_bucket_asks_nothing() {
        let cfg = Predictive {
            lead_time: Duration::from_secs(3 * 60),
            ..cfg(PredictiveMode::ForecastAndScale)
        };
        let mut p = Predictor::new(&cfg, 1);
        let days = 4 * 1440;
        for m in 0..days + 3 {
            p.record(m, &[Some(demand(m))]);
            let out = p.outlook(m, &target(), 0.0);
            if m >= days {
                // Minutes 0 and 1 of the bucket: ready at 3 and 4, in it; from 2: in the next.
                let offset = m - days;
                assert_eq!(out.nodes.is_some(), offset >= 2, "minute {offset}: {out:?}");
            }
        }
    }

    /// The hold is the most any forecast bucket from the next one to the one capacity
    /// asked for now is ready in needs: above the ask while demand falls, equal to it
    /// while demand rises, and none where capacity is ready within the bucket measured.
    #[test]
    fn the_hold_covers_every_bucket_until_capacity_would_be_ready() {
        let cfg = Predictive {
            lead_time: Duration::from_secs(30 * 60),
            ..cfg(PredictiveMode::ForecastAndScale)
        };
        // 5 per node: steep enough that five minutes of the wave move the node count.
        let targets = vec![TargetSpec {
            metric: "cpu.utilization".into(),
            value: 5.0,
            missing_fallback: 5.0,
        }];
        let mut p = Predictor::new(&cfg, 1);
        let days = 4 * 1440;
        let mut checked = (false, false);
        for m in 0..days + 1440 {
            p.record(m, &[Some(demand(m))]);
            if m < days || m % STEP_MINUTES != 0 {
                continue;
            }
            let out = p.outlook(m, &targets, 0.0);
            let (nodes, hold) = (out.nodes.unwrap(), out.hold.unwrap());
            let measured = m.div_euclid(STEP_MINUTES);
            let ready = p.ready_bucket(m);
            let expected = (measured + 1..=ready)
                .map(|b| nodes_for(p.tracks[0].demand_at(b).unwrap(), 5.0))
                .max()
                .unwrap();
            assert_eq!(hold, expected, "minute {m}");
            match m % 1440 {
                // The steepest fall: the next bucket needs more than the ready one.
                720 => {
                    assert!(hold > nodes + 3, "minute {m}: hold {hold}, ask {nodes}");
                    checked.0 = true;
                }
                // The steepest rise: the ready bucket needs the most.
                0 => {
                    assert_eq!(hold, nodes, "minute {m}");
                    checked.1 = true;
                }
                _ => {}
            }
        }
        assert_eq!(checked, (true, true));
        // The smooth wave is forecast well enough to hold.
        assert!(p.tracks[0].mase().unwrap() <= HOLD_MASE);
        // Ready within the bucket being measured: neither an ask nor a hold.
        let short = Predictive {
            lead_time: Duration::from_secs(3 * 60),
            ..cfg
        };
        let mut p = Predictor::new(&short, 1);
        for m in 0..days + 1 {
            p.record(m, &[Some(demand(m))]);
        }
        let out = p.outlook(days, &targets, 0.0);
        assert_eq!((out.nodes, out.hold), (None, None), "{out:?}");
    }

    /// Uniform noise, peak to peak, on the wave: enough that the forecast beats "no change"
    /// by less than half.
    const NOISE: f64 = 300.0;

    /// A forecast trusted to scale (MASE at most 1) but not to [`HOLD_MASE`] asks for
    /// capacity and holds nothing: the stabilization window keeps its place.
    #[test]
    fn a_forecast_not_trusted_to_hold_leaves_the_window() {
        let mut p = Predictor::new(&cfg(PredictiveMode::ForecastAndScale), 1);
        let mut x: u64 = 11;
        let days = 5 * 1440;
        for m in 0..days {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = ((x >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * NOISE;
            p.record(m, &[Some(demand(m) + noise)]);
        }
        let out = p.outlook(days, &target(), 0.1);
        let mase = out.mase[0].unwrap();
        assert!(mase > HOLD_MASE && mase <= 1.0, "MASE {mase}");
        assert!(out.nodes.is_some(), "{:?}", out.reasons);
        assert_eq!(out.hold, None);
    }

    #[test]
    fn forecast_only_never_asks_and_off_does_nothing() {
        let mut p = Predictor::new(&cfg(PredictiveMode::ForecastOnly), 1);
        for m in 0..3 * 1440 {
            p.record(m, &[Some(demand(m))]);
        }
        let out = p.outlook(3 * 1440, &target(), 0.1);
        assert_eq!((out.nodes, out.active), (None, false));
        assert!(out.forecasts[0].is_some());
        let mut off = Predictor::new(&cfg(PredictiveMode::Off), 1);
        assert!(off.record(0, &[Some(1.0)]).is_empty());
        assert_eq!(off.outlook(0, &target(), 0.1).forecasts, vec![None]);
    }

    #[test]
    fn a_forecast_worse_than_naive_falls_back_to_reactive() {
        let mut p = Predictor::new(&cfg(PredictiveMode::ForecastAndScale), 1);
        // A random walk: nothing beats "no change" on it for long.
        let mut x: u64 = 7;
        let mut level = 500.0;
        for m in 0..5 * 1440 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            level += ((x >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 40.0;
            p.record(m, &[Some(level)]);
        }
        let out = p.outlook(5 * 1440, &target(), 0.1);
        let mase = out.mase[0].unwrap();
        if mase > 1.0 {
            assert!(!out.active);
            assert!(
                out.reasons
                    .iter()
                    .any(|r| matches!(r, Reason::PredictiveFallback { .. }))
            );
        } else {
            assert!(out.active, "MASE {mase} ≤ 1 keeps predictive on");
        }
    }

    #[test]
    fn gaps_are_bounded_and_spikes_are_reported() {
        let mut p = Predictor::new(&cfg(PredictiveMode::ForecastOnly), 1);
        let mut events = Vec::new();
        for m in 0..3 * 1440 {
            let d = if (2 * 1440 + 600..2 * 1440 + 605).contains(&m) {
                50_000.0
            } else {
                demand(m)
            };
            events.extend(p.record(m, &[Some(d)]));
        }
        assert!(
            events
                .iter()
                .any(|e| e.minute == 2 * 1440 + 600 && e.verdict.z > 0.0),
            "{events:?}"
        );
        // A year of silence is replayed as at most 14 days of gaps.
        p.record(3 * 1440 + 525_600, &[Some(1.0)]);
        p.record(3 * 1440 + 525_610, &[Some(1.0)]);
    }
}
