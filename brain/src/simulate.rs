//! `capstan simulate`: replays a demand trace through the same brain the daemon runs
//! (schedules, emergencies, the HPA planner, predictive scaling, flap protection, the
//! budget) against a simulated pool whose new nodes take a provisioning delay to
//! arrive.
//!
//! Time runs minute by minute; the trace is interpolated onto minutes. The pool's first
//! target is the one the trace drives: `demand_per_node` is the demand one node serves
//! at the target, so a pool of `n` ready nodes under demand `d` reads
//! `target × d / (demand_per_node × n)` per node. A minute is under-provisioned when
//! the ready nodes run above the target by more than the pool's tolerance (the band in
//! which the planner, like HPA, deliberately does nothing), i.e. when
//! `d > n × demand_per_node × (1 + tolerance)`; the shortfall beyond that is the
//! under-provisioned demand. New nodes are billed from the minute they are asked for
//! and serve from the minute they arrive; removed nodes drain for `drain_minutes`
//! (billed, serving no new demand; 0: they go at once), and a scale-up takes back nodes
//! still draining before it asks for new ones, as the leader returns them to service.
//! Forecast-and-scale
//! sizes capacity one provisioning delay ahead, as the leader does once it has timed a
//! scale-up (`lead_time` is only its default).

use chrono::{DateTime, Utc};
use serde::Serialize;

use capstan_config::{Pool, PredictiveMode, TargetSource};

use crate::budget::BudgetPolicy;
use crate::fleet::{self, PoolInput, PoolState, View};
use crate::planner::{History, MetricSample, Policy};
use crate::predictive::Predictor;
use crate::reason::Reason;

/// What one run measured. Field names are an interface (`simulate --json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    /// Nodes × hours billed.
    pub node_hours: f64,
    /// Money, from the pool's prices and spot split.
    pub cost: f64,
    /// Minutes in which the ready nodes ran above target beyond the tolerance.
    pub underprovisioned_minutes: u64,
    /// Demand beyond that, summed over minutes (demand × minutes).
    pub underprovisioned_demand: f64,
    /// Capacity changes asked of the provider.
    pub actions: u64,
    /// The forecast's MASE over the run (against no-change at the same horizon);
    /// `null` when the pool does not forecast.
    pub mase: Option<f64>,
}

/// A run's per-minute series, for the plot.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Minutes since the start.
    pub minutes: Vec<u32>,
    /// Demand.
    pub demand: Vec<f64>,
    /// Ready capacity, in demand units.
    pub capacity: Vec<f64>,
    /// Demand forecast for this minute (made a horizon earlier), when there is one.
    pub forecast: Vec<Option<f64>>,
    /// The minute was under-provisioned (the ready nodes above the saturation line).
    pub saturated: Vec<bool>,
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Demand one node serves at the pool's first target.
    pub demand_per_node: f64,
    /// Minutes a new node takes to arrive.
    pub delay_minutes: u32,
    /// Minutes a removed node drains before it goes (targeted scale-in's drain):
    /// billed, serving nothing new.
    pub drain_minutes: u32,
    /// Keep the per-minute series (for `--svg`).
    pub keep_series: bool,
    /// Demand per ready node above which a minute counts as under-provisioned; by
    /// default `demand_per_node × (1 + tolerance)`. `capstan tune` holds it at the
    /// current policy's so every candidate is judged by the same line.
    pub hot_per_node: Option<f64>,
    /// Minutes replayed before the metrics count (the policy learns and scales, nothing
    /// is billed or scored): the forecaster's warm-up, which the daemon does once per
    /// pool from its stored demand history, not in every week it runs.
    pub warm_up_minutes: usize,
}

/// The simulated pool's nodes: those that serve, those on their way (the minute they
/// arrive, how many), and those draining (the minute they go, how many).
struct Nodes {
    ready: u32,
    pending: std::collections::VecDeque<(i64, u32)>,
    draining: std::collections::VecDeque<(i64, u32)>,
}

impl Nodes {
    /// Nodes due by minute `m` start serving.
    fn arrive(&mut self, m: i64) {
        while self.pending.front().is_some_and(|(at, _)| *at <= m) {
            if let Some((_, n)) = self.pending.pop_front() {
                self.ready += n;
            }
        }
    }

    fn on_the_way(&self) -> u32 {
        self.pending.iter().map(|(_, n)| n).sum()
    }

    /// Drained nodes due to go by minute `m` go.
    fn depart(&mut self, m: i64) {
        while self.draining.front().is_some_and(|(at, _)| *at <= m) {
            self.draining.pop_front();
        }
    }

    fn leaving(&self) -> u32 {
        self.draining.iter().map(|(_, n)| n).sum()
    }

    /// From `current` to `desired` nodes: a scale-up takes back the latest draining
    /// nodes first (they serve again at once), and new ones arrive at minute `arrive`;
    /// a scale-down cancels the latest arrivals first, then drains serving nodes until
    /// minute `leave`.
    fn resize(&mut self, current: u32, desired: u32, arrive: i64, leave: i64) {
        if desired > current {
            let mut add = desired - current;
            while add > 0 {
                match self.draining.back_mut() {
                    Some((_, n)) if *n > add => {
                        *n -= add;
                        self.ready += add;
                        add = 0;
                    }
                    Some((_, n)) => {
                        add -= *n;
                        self.ready += *n;
                        self.draining.pop_back();
                    }
                    None => {
                        self.pending.push_back((arrive, add));
                        add = 0;
                    }
                }
            }
            return;
        }
        let mut remove = current - desired;
        while remove > 0 {
            match self.pending.back_mut() {
                Some((_, n)) if *n > remove => {
                    *n -= remove;
                    remove = 0;
                }
                Some((_, n)) => {
                    remove -= *n;
                    self.pending.pop_back();
                }
                None => {
                    let gone = remove.min(self.ready);
                    self.ready -= gone;
                    if gone > 0 {
                        self.draining.push_back((leave, gone));
                    }
                    remove = 0;
                }
            }
        }
    }
}

/// Runs the pool `config` against `demand` (one value a minute from `start`).
pub fn run(
    config: &Pool,
    budget: &BudgetPolicy,
    demand: &[f64],
    start: DateTime<Utc>,
    settings: &Settings,
) -> (Metrics, Series) {
    let policy = Policy::from(config);
    let target = policy.targets.first().map_or(1.0, |t| t.value);
    let x = settings.demand_per_node.max(f64::MIN_POSITIVE);
    let hot = settings
        .hot_per_node
        .unwrap_or(x * (1.0 + config.tolerance));
    let mut predictor = Predictor::new(&config.predictive, policy.targets.len());
    // The leader learns the pool's provisioning delay from its first scale-up and sizes
    // that far ahead; the simulated pool's delay is known from the start.
    predictor.set_lead(std::time::Duration::from_secs(
        u64::from(settings.delay_minutes) * 60,
    ));
    let mut state = PoolState::default();
    let mut history = History::default();
    let prices = fleet::prices(config.price.as_ref(), [], None);
    let delay = i64::from(settings.delay_minutes);
    let warm_up = i64::try_from(settings.warm_up_minutes).unwrap_or(i64::MAX);

    let drain = i64::from(settings.drain_minutes);
    let mut nodes = Nodes {
        ready: config.min,
        pending: Default::default(),
        draining: Default::default(),
    };
    let mut metrics = Metrics {
        node_hours: 0.0,
        cost: 0.0,
        underprovisioned_minutes: 0,
        underprovisioned_demand: 0.0,
        actions: 0,
        mase: None,
    };
    let mut series = Series::default();
    let start_minute = start.timestamp().div_euclid(60);
    let mut samples = vec![None; policy.targets.len()];
    let mut demands = vec![None; policy.targets.len()];
    let mut outlook: Option<((i64, i64), crate::predictive::Outlook)> = None;

    for (m, &d) in demand.iter().enumerate() {
        let m = i64::try_from(m).unwrap_or(i64::MAX);
        let minute = start_minute + m;
        let now = start + chrono::Duration::minutes(m);
        nodes.arrive(m);
        let (ready, on_the_way) = (nodes.ready, nodes.on_the_way());
        let current = ready + on_the_way;

        // What the agents would report: the target's readings summed over ready nodes.
        let sum = target * d / x;
        let sample = (ready > 0).then_some(MetricSample {
            sum,
            ready,
            missing: 0,
            unready: on_the_way,
            reporting: ready,
        });
        samples[0] = sample;
        demands[0] = sample.map(|s| s.sum);
        predictor.record(minute, &demands);
        // The outlook only changes when a 5-minute bucket closes, or when capacity
        // asked for now would be ready in the next bucket.
        let key = (
            minute.div_euclid(crate::predictive::STEP_MINUTES),
            predictor.ready_bucket(minute),
        );
        if outlook.as_ref().is_none_or(|(k, _)| *k != key) {
            outlook = Some((
                key,
                predictor.outlook(minute, &policy.targets, policy.tolerance),
            ));
        }
        let outlook = outlook.as_ref().map(|(_, o)| o);

        // Windows and periods ignore what is older than they are; pruning only bounds
        // memory, so once an hour is plenty here.
        if m % 60 == 0 {
            history.prune(&policy.behavior, now);
        }
        if m == 0 {
            history.record_recommendation(current, now);
        }
        let plan = {
            let mut inputs = [PoolInput {
                config,
                policy: &policy,
                prices,
                state: &mut state,
                view: Some(View {
                    current,
                    metrics: &samples,
                    history: &history,
                    running_spot: 0,
                    asked_spot: None,
                    outlook,
                    surge: None,
                    interrupted: 0,
                    faulty_gpus: 0,
                }),
                last_known: current,
            }];
            fleet::plan_fleet(&mut inputs, budget, now)
        };
        // `auto`: the backtest the leader runs every few hours, over the demand seen.
        if config.predictive.mode == PredictiveMode::Auto && m > 0 && m % AUTO_EVERY_MINUTES == 0 {
            let window =
                usize::try_from(config.predictive.history.as_secs() / 60).unwrap_or(usize::MAX);
            let to = usize::try_from(m).unwrap_or(usize::MAX).min(demand.len());
            let from = to.saturating_sub(window);
            let at = start + chrono::Duration::minutes(i64::try_from(from).unwrap_or(0));
            if let Some(v) = auto_backtest(
                config,
                budget,
                &demand[from..to],
                at,
                x,
                settings.delay_minutes,
            ) {
                predictor.set_auto(v.scale);
            }
        }
        let p = &plan.pools[0];
        if let Some(nodes) = p.recommendation {
            history.record_recommendation(nodes, now);
        }
        if p.desired != current {
            metrics.actions += u64::from(m >= warm_up);
            history.record_scale(current, p.desired, now);
            nodes.resize(current, p.desired, m + delay, m + drain);
        }
        nodes.depart(m);

        let ready = nodes.ready;
        let billed: u32 = ready + nodes.on_the_way() + nodes.leaving();
        let served = f64::from(ready) * x;
        let limit = f64::from(ready) * hot;
        let saturated = limit + 1e-9 < d;
        if m >= warm_up {
            metrics.node_hours += f64::from(billed) / 60.0;
            metrics.cost += p.hourly_cost * f64::from(billed) / f64::from(p.desired.max(1)) / 60.0;
            if saturated {
                metrics.underprovisioned_minutes += 1;
                metrics.underprovisioned_demand += d - limit;
            }
        }
        if settings.keep_series {
            let f = predictor.forecast_for(0, minute).map(|f| f * x / target);
            series.minutes.push(u32::try_from(m).unwrap_or(u32::MAX));
            series.demand.push(d);
            series.capacity.push(served);
            series.forecast.push(f);
            series.saturated.push(saturated);
        }
    }
    metrics.mase = if predictor.enabled() {
        predictor.overall_mase(0)
    } else {
        None
    };
    (metrics, series)
}

/// The same pool with predictive scaling off: the reactive baseline of `--compare`.
pub fn reactive_only(config: &Pool) -> Pool {
    let mut c = config.clone();
    if matches!(
        c.predictive.mode,
        PredictiveMode::ForecastAndScale | PredictiveMode::Auto
    ) {
        c.predictive.mode = PredictiveMode::ForecastOnly;
    }
    c
}

/// Whether the pool's first target is a percentage (it saturates at 100).
pub fn is_percent(pool: &Pool) -> bool {
    matches!(pool.targets.first().map(|t| &t.source), Some(TargetSource::Metric(m)) if m.is_percent())
}

/// The metric's value per node at which a node counts as saturated: 100 for a
/// percentage, else the pool's first target plus its tolerance.
pub fn saturation(pool: &Pool) -> f64 {
    let base = pool.targets.first().map_or(1.0, |t| t.value);
    if is_percent(pool) {
        100.0
    } else {
        base * (1.0 + pool.tolerance)
    }
}

/// How often `auto` backtests, in minutes.
pub const AUTO_EVERY_MINUTES: i64 = 6 * 60;
/// Of a backtest's window, the minutes replayed before scoring: the forecaster's
/// warm-up (two days) and a day for its trust (the trailing-day MASE).
pub const AUTO_WARM_UP_MINUTES: usize = 3 * 1440;
/// The least demand a backtest scores: a day after the warm-up.
pub const AUTO_MIN_MINUTES: usize = AUTO_WARM_UP_MINUTES + 1440;
/// The reactive-only side's target values, as factors of the pool's: from its own
/// down, the first that stays within the forecast's saturated minutes is the cheapest.
pub const AUTO_REACTIVE_FACTORS: [f64; 5] = [1.0, 0.9, 0.8, 0.7, 0.6];

/// What an `auto` backtest found.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoVerdict {
    /// Scale on the forecast: forecast-and-scale needs fewer node-hours than the
    /// cheapest reactive-only policy with no more saturated minutes, or none has so few.
    pub scale: bool,
    /// Days scored.
    pub days: f64,
    /// Forecast-and-scale at the pool's target.
    pub forecast: Metrics,
    /// The cheapest reactive-only policy within the forecast's saturated minutes: its
    /// target value and metrics.
    pub reactive: Option<(f64, Metrics)>,
}

impl AutoVerdict {
    /// For the journal.
    pub fn reason(&self) -> Reason {
        Reason::PredictiveAuto {
            scale: self.scale,
            days: self.days,
            saturated_minutes: self.forecast.underprovisioned_minutes,
            forecast_node_hours: self.forecast.node_hours,
            reactive: self.reactive.as_ref().map(|(v, m)| (*v, m.node_hours)),
        }
    }
}

/// `predictive.mode = "auto"`'s backtest of `demand` (one value a minute from
/// `start`, one node serving `demand_per_node` at the pool's first target; new nodes
/// take `delay_minutes`): forecast-and-scale at the pool's target against reactive-only
/// at the pool's target and below it ([`AUTO_REACTIVE_FACTORS`]), judged on the
/// saturation line ([`saturation`]) after [`AUTO_WARM_UP_MINUTES`]. `None` with less
/// than [`AUTO_MIN_MINUTES`] of demand.
pub fn auto_backtest(
    config: &Pool,
    budget: &BudgetPolicy,
    demand: &[f64],
    start: DateTime<Utc>,
    demand_per_node: f64,
    delay_minutes: u32,
) -> Option<AutoVerdict> {
    if demand.len() < AUTO_MIN_MINUTES {
        return None;
    }
    let base = config.targets.first().map_or(1.0, |t| t.value);
    let line = saturation(config);
    let settings = |value: f64| Settings {
        demand_per_node: demand_per_node * value / base,
        delay_minutes,
        drain_minutes: 0,
        keep_series: false,
        hot_per_node: Some(demand_per_node * line / base),
        warm_up_minutes: AUTO_WARM_UP_MINUTES,
    };
    // Sized one provisioning delay ahead: `run` sets the lead from `delay_minutes`.
    let mut forecasting = config.clone();
    forecasting.predictive.mode = PredictiveMode::ForecastAndScale;
    let (forecast, _) = run(&forecasting, budget, demand, start, &settings(base));
    let mut reactive = None;
    for factor in AUTO_REACTIVE_FACTORS {
        let value = (base * factor * 100.0).round() / 100.0;
        let mut c = config.clone();
        c.predictive.mode = PredictiveMode::Off;
        if let Some(t) = c.targets.first_mut() {
            t.value = value;
        }
        let (m, _) = run(&c, budget, demand, start, &settings(value));
        if m.underprovisioned_minutes <= forecast.underprovisioned_minutes {
            reactive = Some((value, m));
            break;
        }
    }
    Some(AutoVerdict {
        scale: reactive
            .as_ref()
            .is_none_or(|(_, r)| forecast.node_hours < r.node_hours),
        days: (demand.len() - AUTO_WARM_UP_MINUTES) as f64 / 1440.0,
        forecast,
        reactive,
    })
}
