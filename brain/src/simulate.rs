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
//! and serve from the minute they arrive; removed nodes go at once.

use chrono::{DateTime, Utc};
use serde::Serialize;

use capstan_config::{Pool, PredictiveMode};

use crate::budget::BudgetPolicy;
use crate::fleet::{self, PoolInput, PoolState, View};
use crate::planner::{History, MetricSample, Policy};
use crate::predictive::Predictor;

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

/// The simulated pool's nodes: those that serve, and those on their way (the minute
/// they arrive, how many).
struct Nodes {
    ready: u32,
    pending: std::collections::VecDeque<(i64, u32)>,
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

    /// From `current` to `desired` nodes: new ones arrive at minute `arrive`; a
    /// scale-down cancels the latest arrivals first, then removes serving nodes.
    fn resize(&mut self, current: u32, desired: u32, arrive: i64) {
        if desired > current {
            self.pending.push_back((arrive, desired - current));
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
                    self.ready -= remove.min(self.ready);
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
    let mut state = PoolState::default();
    let mut history = History::default();
    let prices = fleet::prices(config.price.as_ref(), [], None);
    let delay = i64::from(settings.delay_minutes);
    let warm_up = i64::try_from(settings.warm_up_minutes).unwrap_or(i64::MAX);

    let mut nodes = Nodes {
        ready: config.min,
        pending: Default::default(),
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
    let mut outlook: Option<(i64, crate::predictive::Outlook)> = None;

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
        // The outlook only changes when a 5-minute bucket closes.
        let bucket = minute.div_euclid(crate::predictive::STEP_MINUTES);
        if outlook.as_ref().is_none_or(|(b, _)| *b != bucket) {
            outlook = Some((
                bucket,
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
        let p = &plan.pools[0];
        if let Some(nodes) = p.recommendation {
            history.record_recommendation(nodes, now);
        }
        if p.desired != current {
            metrics.actions += u64::from(m >= warm_up);
            history.record_scale(current, p.desired, now);
            nodes.resize(current, p.desired, m + delay);
        }

        let ready = nodes.ready;
        let billed: u32 = ready + nodes.on_the_way();
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
    if c.predictive.mode == PredictiveMode::ForecastAndScale {
        c.predictive.mode = PredictiveMode::ForecastOnly;
    }
    c
}
