//! Table tests of the fleet pass (schedules, emergencies, flap freezes, spot fallback,
//! the budget, in order) and property tests of its invariants over random fleets.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use capstan_config::{BudgetEnforcement, ValidatedConfig};

use super::budget::{BudgetPolicy, Prices};
use super::fleet::*;
use super::planner::{History, MetricSample, Policy, Recommendation};
use super::predictive::Outlook;
use super::reason::Reason;

fn config(text: &str) -> ValidatedConfig {
    capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty())
        .unwrap_or_else(|e| panic!("{}\n{text}", e.lines().join("\n")))
}

fn budget(cfg: &ValidatedConfig) -> BudgetPolicy {
    BudgetPolicy::from(&cfg.budget)
}

fn sample(avg: f64, nodes: u32) -> Option<MetricSample> {
    (nodes > 0).then_some(MetricSample {
        sum: avg * f64::from(nodes),
        ready: nodes,
        missing: 0,
        unready: 0,
        reporting: nodes,
    })
}

/// A fleet driven pass after pass as the engine drives it, with every change applied.
struct Sim {
    cfg: ValidatedConfig,
    policies: Vec<Policy>,
    states: Vec<PoolState>,
    histories: Vec<History>,
    current: Vec<u32>,
}

impl Sim {
    fn new(cfg: ValidatedConfig, current: &[u32]) -> Self {
        let n = cfg.pools.len();
        Self {
            policies: cfg.pools.iter().map(Policy::from).collect(),
            states: vec![PoolState::default(); n],
            histories: vec![History::default(); n],
            current: current.to_vec(),
            cfg,
        }
    }

    /// One pass with each pool's target metric at `load[i]` per node.
    fn pass(&mut self, load: &[f64], now: DateTime<Utc>) -> FleetPlan {
        let samples: Vec<Vec<Option<MetricSample>>> = self
            .current
            .iter()
            .zip(load)
            .map(|(&n, &l)| vec![sample(l, n)])
            .collect();
        let policy = budget(&self.cfg);
        let plan = {
            let mut inputs: Vec<PoolInput<'_>> = self
                .cfg
                .pools
                .iter()
                .zip(&self.policies)
                .zip(self.states.iter_mut())
                .zip(&self.histories)
                .zip(&samples)
                .zip(&self.current)
                .map(
                    |(((((config, policy), state), history), metrics), &current)| PoolInput {
                        config,
                        policy,
                        prices: prices(config.price.as_ref(), [], None),
                        state,
                        view: Some(seen(current, metrics, history)),
                        last_known: current,
                    },
                )
                .collect();
            plan_fleet(&mut inputs, &policy, now)
        };
        for (i, p) in plan.pools.iter().enumerate() {
            if let Some(nodes) = p.recommendation {
                self.histories[i]
                    .recommendations
                    .push(Recommendation { at: now, nodes });
            }
            self.histories[i].record_scale(self.current[i], p.desired, now);
            self.histories[i].prune(&self.policies[i].behavior, now);
            self.current[i] = p.desired;
        }
        plan
    }
}

/// What a pool of `current` nodes shows a pass: `metrics` and `history`, nothing else.
fn seen<'a>(current: u32, metrics: &'a [Option<MetricSample>], history: &'a History) -> View<'a> {
    View {
        current,
        metrics,
        history,
        running_spot: 0,
        asked_spot: None,
        outlook: None,
        surge: None,
        interrupted: 0,
        faulty_gpus: 0,
    }
}

/// The first pool of `cfg` planned alone, from a fresh state, in one pass at noon.
fn plan_one(
    cfg: &ValidatedConfig,
    policy: &Policy,
    prices: Option<Prices>,
    view: View<'_>,
) -> PoolPlan {
    plan_one_from(&mut PoolState::default(), cfg, policy, prices, view)
}

/// [`plan_one`] from `state`, which the pass updates.
fn plan_one_from(
    state: &mut PoolState,
    cfg: &ValidatedConfig,
    policy: &Policy,
    prices: Option<Prices>,
    view: View<'_>,
) -> PoolPlan {
    let mut inputs = [PoolInput {
        config: &cfg.pools[0],
        policy,
        prices,
        state,
        view: Some(view),
        last_known: view.current,
    }];
    plan_fleet(&mut inputs, &budget(cfg), t(12, 0))
        .pools
        .remove(0)
}

fn said(p: &PoolPlan) -> Vec<String> {
    p.reasons.iter().map(ToString::to_string).collect()
}

fn t(h: u32, m: u32) -> DateTime<Utc> {
    // A Friday.
    Utc.with_ymd_and_hms(2026, 11, 27, h, m, 0).unwrap()
}

#[test]
fn a_schedule_raises_min_while_active_and_says_so() {
    let cfg = config(
        r#"
        [[pool]]
        name = "web"
        provider = { type = "dry-run", initial = 2 }
        min = 2
        max = 20
        targets = [{ metric = "cpu.utilization", value = 50 }]
        schedule = [{ name = "business-hours", cron = "0 8 * * MON-FRI", timezone = "Europe/Stockholm", duration = "10h", min = 10 }]
        "#,
    );
    let mut sim = Sim::new(cfg, &[2]);
    let before = sim.pass(&[50.0], t(6, 59));
    assert_eq!(before.pools[0].desired, 2, "07:59 in Stockholm");
    let during = sim.pass(&[50.0], t(7, 0));
    assert_eq!(during.pools[0].desired, 10);
    assert_eq!(during.pools[0].bounds.min, 10);
    assert_eq!(
        said(&during.pools[0])[0],
        "schedule business-hours raised min to 10 (from 2) until 2026-11-27 17:00 UTC"
    );
}

#[test]
fn an_emergency_lifts_max_then_drains_at_the_scale_down_rate() {
    let cfg = config(
        r#"
        [[pool]]
        name = "gpu"
        provider = { type = "dry-run", initial = 10 }
        min = 1
        max = 10
        emergency_max = 40
        behavior = { preset = "aggressive", scale_down = { stabilization_window = "0s", policies = [{ type = "nodes", value = 5, period = "1m" }] } }
        targets = [{ metric = "gpu.utilization", value = 50 }]
        emergency = { threshold = 1.5, intervals = 2 }
        "#,
    );
    let mut sim = Sim::new(cfg, &[10]);
    let p = sim.pass(&[100.0], t(12, 0));
    assert_eq!((p.pools[0].desired, p.pools[0].emergency), (10, false));
    let p = sim.pass(&[100.0], t(12, 1));
    assert!(p.pools[0].emergency);
    assert!(p.pools[0].above_max);
    assert_eq!(p.pools[0].desired, 20);
    assert!(said(&p.pools[0])[0].starts_with("emergency: saturation 2.00 ≥ 1.5 for 2 intervals"));
    // The surge passes: two calm passes end it, then the pool drains 5 nodes a minute.
    let mut sizes = vec![];
    for m in 2..9 {
        let p = sim.pass(&[10.0], t(12, m));
        sizes.push(p.pools[0].desired);
    }
    assert_eq!(sizes, [15, 10, 5, 1, 1, 1, 1], "{sizes:?}");
    let mut sim2 = sim;
    sim2.current = vec![30];
    let p = sim2.pass(&[40.0], t(13, 0));
    assert!(!p.pools[0].emergency);
    assert_eq!(
        p.pools[0].desired, 25,
        "above max without an emergency: 5 a minute"
    );
}

#[test]
fn a_frozen_pool_keeps_its_size() {
    let cfg = config(
        r#"
        [[pool]]
        name = "web"
        provider = { type = "dry-run", initial = 4 }
        min = 1
        max = 20
        behavior = "aggressive"
        targets = [{ metric = "cpu.utilization", value = 50 }]
        "#,
    );
    let mut sim = Sim::new(cfg, &[4]);
    sim.states[0].flap.frozen_until = Some(t(12, 30));
    let p = sim.pass(&[100.0], t(12, 0));
    assert_eq!(p.pools[0].desired, 4);
    assert_eq!(p.pools[0].frozen_until, Some(t(12, 30)));
    assert!(
        said(&p.pools[0])
            .last()
            .unwrap()
            .starts_with("frozen after flapping until")
    );
    let p = sim.pass(&[100.0], t(12, 30));
    assert_eq!(p.pools[0].desired, 8, "the freeze is over");
}

#[test]
fn a_spot_fallback_plans_the_missing_spot_nodes_as_on_demand() {
    let cfg = config(
        r#"
        [[pool]]
        name = "batch"
        provider = { type = "dry-run", initial = 10 }
        min = 1
        max = 20
        price = { on_demand = 1.0, spot = 0.3 }
        spot = { on_demand_base = 2, on_demand_percent_above_base = 0, fallback_after = "5m", retry_after = "15m" }
        targets = [{ metric = "cpu.utilization", value = 50 }]
        "#,
    );
    let mut sim = Sim::new(cfg, &[10]);
    let p = sim.pass(&[50.0], t(12, 0));
    assert_eq!((p.pools[0].on_demand, p.pools[0].spot), (2, 8));
    assert!((p.pools[0].hourly_cost - 4.4).abs() < 1e-9);
    sim.states[0].spot.refused(
        sim.cfg.pools[0].spot.as_ref(),
        5,
        3,
        "no spot in us-east-1a",
        t(12, 0),
    );
    let p = sim.pass(&[50.0], t(12, 1));
    assert_eq!((p.pools[0].on_demand, p.pools[0].spot), (7, 3));
    assert!((p.pools[0].hourly_cost - 7.9).abs() < 1e-9);
    let p = sim.pass(&[50.0], t(12, 15));
    assert_eq!(
        said(&p.pools[0]).last().unwrap(),
        "spot fallback over; trying spot again"
    );
    assert_eq!(p.pools[0].on_demand, 2);
}

#[test]
fn three_tiers_under_a_binding_budget_in_one_pass() {
    let cfg = config(
        r#"
        [budget]
        max_hourly_cost = 24.0

        [[pool]]
        name = "checkout"
        tier = "enterprise"
        provider = { type = "dry-run", initial = 4 }
        min = 2
        max = 40
        behavior = "aggressive"
        price = { on_demand = 2.0 }
        targets = [{ metric = "cpu.utilization", value = 50 }]

        [[pool]]
        name = "api"
        tier = "premium"
        provider = { type = "dry-run", initial = 4 }
        min = 2
        max = 40
        behavior = "aggressive"
        price = { on_demand = 1.0 }
        targets = [{ metric = "cpu.utilization", value = 50 }]

        [[pool]]
        name = "batch"
        tier = "basic"
        provider = { type = "dry-run", initial = 4 }
        min = 2
        max = 40
        behavior = "aggressive"
        price = { on_demand = 0.5 }
        targets = [{ metric = "cpu.utilization", value = 50 }]
        "#,
    );
    let mut sim = Sim::new(cfg, &[4, 4, 4]);
    // 14/h now; everyone wants to double. Checkout's +4 nodes take 8/h of the 10/h
    // left, api gets 2 of the 4 it asked for, batch nothing.
    let p = sim.pass(&[100.0, 100.0, 100.0], t(12, 0));
    let sizes: Vec<u32> = p.pools.iter().map(|x| x.desired).collect();
    assert_eq!(sizes, [8, 6, 4]);
    assert!((p.fleet_hourly_cost - 24.0).abs() < 1e-9);
    assert_eq!(p.budget_ceiling, Some(24.0));
    assert_eq!(
        said(&p.pools[2]).last().unwrap(),
        "capped by budget: 8 → 4 (basic tier, ceiling 24.00/h)"
    );
}

// --- properties --------------------------------------------------------------------

#[derive(Debug, Clone)]
struct PoolSpec {
    tier: &'static str,
    min: u32,
    span: u32,
    em_span: u32,
    emergency: bool,
    price: f64,
    spot: Option<(u32, u32)>,
    schedule: Option<(u32, u32)>,
    behavior: &'static str,
    current: u32,
}

fn arb_pool() -> impl Strategy<Value = PoolSpec> {
    (
        prop_oneof![Just("enterprise"), Just("premium"), Just("basic")],
        0u32..5,
        1u32..30,
        0u32..60,
        any::<bool>(),
        0.05f64..4.0,
        prop::option::of((0u32..4, 0u32..=100)),
        prop::option::of((0u32..6, 0u32..30)),
        prop_oneof![Just("aggressive"), Just("balanced"), Just("conservative")],
        0u32..100,
    )
        .prop_map(
            |(tier, min, span, em_span, emergency, price, spot, schedule, behavior, current)| {
                PoolSpec {
                    tier,
                    min,
                    span,
                    em_span,
                    emergency,
                    price,
                    spot,
                    schedule,
                    behavior,
                    current,
                }
            },
        )
}

fn fleet_toml(pools: &[PoolSpec], ceiling: Option<f64>, allowance: f64, trim: bool) -> String {
    let mut s = String::from("[budget]\n");
    if let Some(c) = ceiling {
        s += &format!("max_hourly_cost = {c:?}\n");
    }
    s += &format!(
        "emergency_allowance = {allowance:?}\nenforce = \"{}\"\n",
        if trim { "trim" } else { "report" }
    );
    for (i, p) in pools.iter().enumerate() {
        let max = p.min + p.span;
        let emergency_max = max + p.em_span;
        s += &format!(
            "[[pool]]\nname = \"p{i}\"\ntier = \"{}\"\nprovider = {{ type = \"dry-run\", initial = 1 }}\nmin = {}\nmax = {max}\nemergency_max = {emergency_max}\nbehavior = \"{}\"\nprice = {{ on_demand = {:?}, spot = {:?} }}\ntargets = [{{ metric = \"cpu.utilization\", value = 50 }}]\n",
            p.tier,
            p.min,
            p.behavior,
            p.price,
            p.price / 3.0
        );
        if p.emergency {
            s += "emergency = { threshold = 1.5, intervals = 2 }\n";
        }
        if let Some((base, pct)) = p.spot {
            s += &format!(
                "spot = {{ on_demand_base = {base}, on_demand_percent_above_base = {pct} }}\n"
            );
        }
        if let Some((smin, extra)) = p.schedule {
            // Always active: fires every hour for two hours.
            let smin = smin.min(emergency_max);
            let smax = (smin + extra).min(emergency_max);
            s += &format!(
                "schedule = [{{ cron = \"0 * * * *\", duration = \"2h\", min = {smin}, max = {smax} }}]\n"
            );
        }
    }
    s
}

fn arb_case() -> impl Strategy<Value = (Vec<PoolSpec>, Option<f64>, f64, bool, Vec<Vec<f64>>)> {
    (
        prop::collection::vec(arb_pool(), 1..5),
        prop::option::of(5.0f64..200.0),
        0.0f64..40.0,
        any::<bool>(),
        prop::collection::vec(prop::collection::vec(0.0f64..300.0, 5), 1..8),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_fleets_keep_every_invariant_pass_after_pass(
        (specs, ceiling, allowance, trim, loads) in arb_case(),
    ) {
        let cfg = config(&fleet_toml(&specs, ceiling, allowance, trim));
        prop_assert_eq!(cfg.budget.enforce == BudgetEnforcement::Trim, trim);
        let current: Vec<u32> = specs.iter().zip(&cfg.pools)
            .map(|(s, p)| s.current.min(p.max).max(p.min)).collect();
        let mut sim = Sim::new(cfg, &current);
        for (k, load) in loads.iter().enumerate() {
            let now = t(12, 0) + chrono::Duration::seconds(15 * i64::try_from(k).unwrap());
            let before = sim.current.clone();
            let states = sim.states.clone();
            let histories = sim.histories.clone();
            let plan = sim.pass(load, now);

            // Deterministic: the same inputs and state give the same plan.
            let mut again = Sim::new(sim.cfg.clone(), &before);
            again.states = states;
            again.histories = histories;
            prop_assert_eq!(&again.pass(load, now), &plan);

            let mut grew = false;
            let mut emergency_grew = false;
            for ((p, cfg), &was) in plan.pools.iter().zip(&sim.cfg.pools).zip(&before) {
                prop_assert!(p.desired <= cfg.emergency_max, "{} above emergency_max {}", p.desired, cfg.emergency_max);
                prop_assert!(p.desired >= p.bounds.min, "{} below min {}", p.desired, p.bounds.min);
                if !p.emergency {
                    if was <= p.bounds.max {
                        prop_assert!(p.desired <= p.bounds.max, "{} above max {} without an emergency", p.desired, p.bounds.max);
                    } else {
                        prop_assert!(p.desired <= was, "above max it only shrinks");
                    }
                }
                if p.desired > was.max(p.bounds.min) {
                    grew = true;
                    emergency_grew |= p.emergency;
                }
            }
            if let (Some(c), true) = (ceiling, grew) {
                let limit = c + if emergency_grew { allowance } else { 0.0 };
                prop_assert!(plan.fleet_hourly_cost <= limit + 1e-6,
                    "a scale-up took the fleet to {} above {}", plan.fleet_hourly_cost, limit);
            }
        }
    }
}

#[test]
fn a_surge_anomaly_starts_an_emergency_when_configured() {
    let text = |flag: bool| {
        format!(
            r#"
            [[pool]]
            name = "gpu"
            provider = {{ type = "dry-run", initial = 10 }}
            min = 1
            max = 10
            emergency_max = 30
            behavior = "aggressive"
            targets = [{{ metric = "gpu.utilization", value = 50 }}]
            emergency = {{ threshold = 1.5, intervals = 5 }}
            predictive = {{ mode = "forecast-only", anomaly_triggers_emergency = {flag} }}
            "#
        )
    };
    for flag in [true, false] {
        let cfg = config(&text(flag));
        let policy = Policy::from(&cfg.pools[0]);
        let history = History::default();
        let metrics = [sample(90.0, 10)];
        let view = View {
            surge: Some("gpu.utilization"),
            ..seen(10, &metrics, &history)
        };
        let p = &plan_one(&cfg, &policy, None, view);
        assert_eq!(p.emergency, flag);
        if flag {
            assert!(p.desired > 10, "{p:?}");
            assert!(
                said(p)[0].starts_with("surge anomaly in gpu.utilization"),
                "{:?}",
                said(p)
            );
        } else {
            assert_eq!(p.desired, 10, "saturation alone needs 5 intervals");
        }
    }
}

#[test]
fn nodes_under_an_interruption_notice_are_replaced_early_within_max_and_budget() {
    let cfg = config(
        r#"
        [budget]
        max_hourly_cost = 7.0

        [[pool]]
        name = "spot"
        provider = { type = "dry-run" }
        min = 1
        max = 8
        price = { on_demand = 1.0 }
        targets = [{ metric = "cpu.utilization", value = 60 }]
        "#,
    );
    let policy = Policy::from(&cfg.pools[0]);
    let history = History::default();
    // On target: the planner alone keeps 5 nodes.
    let metrics = [sample(60.0, 5)];
    let plan_from = |current: u32, metrics: &[Option<MetricSample>], interrupted: u32| {
        let view = View {
            interrupted,
            ..seen(current, metrics, &history)
        };
        plan_one(
            &cfg,
            &policy,
            prices(cfg.pools[0].price.as_ref(), [], None),
            view,
        )
    };
    let plan_with = |interrupted: u32| plan_from(5, &metrics, interrupted);
    assert_eq!(plan_with(0).desired, 5);
    let p = plan_with(2);
    assert_eq!(p.desired, 7, "{:?}", said(&p));
    assert!(
        said(&p)
            .iter()
            .any(|r| r.contains("2 node(s) under an interruption notice")),
        "{:?}",
        said(&p)
    );
    // The next pass, with the replacement asked for and the notice still up (the 5
    // busy nodes' load now spread over 6): still 6, not 7. A notice that lasts
    // several passes asks for its replacement once.
    assert_eq!(plan_with(1).desired, 6);
    let spread = [sample(60.0 * 5.0 / 6.0, 6)];
    let p = plan_from(6, &spread, 1);
    assert_eq!(p.desired, 6, "{:?}", said(&p));
    // And once the node is gone, the planner's own figure.
    assert_eq!(plan_from(6, &spread, 0).desired, 5);
    // Never above max, and the budget still has the last word (7/h buys 7 nodes).
    let p = plan_with(6);
    assert_eq!(p.desired, 7, "{:?}", said(&p));
    assert!(
        said(&p).iter().any(|r| r.contains("budget")),
        "{:?}",
        said(&p)
    );
}

/// A notice that stands while its replacement boots asks for the replacement once,
/// whatever the readings say: with the nodes on target the planner holds the pool where
/// it is, and that size already holds the replacement. Before, each such pass added
/// one more node (a runaway up to max while the notice stood). A call that did not go
/// through is asked again; once the node is gone the planner's own figure remains.
#[test]
fn a_standing_notice_is_replaced_once_while_the_planner_holds_the_pool() {
    let cfg = config(
        r#"
        [[pool]]
        name = "spot"
        provider = { type = "dry-run" }
        min = 1
        max = 10
        targets = [{ metric = "cpu.utilization", value = 60 }]
        "#,
    );
    let policy = Policy::from(&cfg.pools[0]);
    let history = History::default();
    let mut state = PoolState::default();
    let mut pass = |current: u32, metrics: &[Option<MetricSample>], interrupted: u32| {
        let view = View {
            interrupted,
            ..seen(current, metrics, &history)
        };
        plan_one_from(&mut state, &cfg, &policy, None, view).desired
    };
    // Four nodes on target, one under notice: a fifth.
    assert_eq!(pass(4, &[sample(60.0, 4)], 1), 5);
    // The replacement boots (no report yet), the four on target or within tolerance.
    let booting = |avg: f64| {
        [Some(MetricSample {
            sum: avg * 4.0,
            ready: 4,
            missing: 1,
            unready: 0,
            reporting: 4,
        })]
    };
    for avg in [60.0, 60.0, 63.0, 57.0, 60.0] {
        assert_eq!(pass(5, &booting(avg), 1), 5, "at {avg}");
    }
    // Booted: five nodes share the load (48 each, below tolerance): the planner wants 4
    // for the load, and the node leaving is replaced on top of that.
    assert_eq!(pass(5, &[sample(48.0, 5)], 1), 5);
    // A call that did not go through (still 4): asked again.
    assert_eq!(pass(4, &[sample(60.0, 4)], 1), 5);
    // A second notice while the first is replaced: one more, once.
    assert_eq!(pass(5, &booting(60.0), 2), 6);
    assert_eq!(pass(6, &booting(60.0), 2), 6);
    // Both gone: the planner's own figure.
    assert_eq!(pass(4, &[sample(60.0, 4)], 0), 4);
    assert_eq!(state.replacing, None);
}

#[test]
fn nodes_with_faulty_gpus_are_replaced_only_when_the_pool_asks() {
    for replace in [false, true] {
        let cfg = config(&format!(
            r#"
            [[pool]]
            name = "gpu"
            provider = {{ type = "dry-run" }}
            min = 1
            max = 8
            replace_faulty_gpu_nodes = {replace}
            targets = [{{ metric = "gpu.utilization", value = 60 }}]
            "#
        ));
        let policy = Policy::from(&cfg.pools[0]);
        let history = History::default();
        let metrics = [sample(60.0, 4)];
        let view = View {
            faulty_gpus: 1,
            ..seen(4, &metrics, &history)
        };
        let p = plan_one(&cfg, &policy, None, view);
        if replace {
            assert_eq!(p.desired, 5, "{:?}", said(&p));
            assert!(
                said(&p).iter().any(|r| r.contains("faulty GPU")),
                "{:?}",
                said(&p)
            );
        } else {
            assert_eq!(p.desired, 4, "{:?}", said(&p));
        }
    }
}

/// The outlook's hold reaches the planner: a scale-down keeps what the forecast needs
/// before a replacement could be ready, not what the stabilization window recalls.
#[test]
fn the_forecast_holds_a_scale_down_through_the_fleet_pass() {
    let cfg = config(
        r#"
        [[pool]]
        name = "web"
        provider = { type = "dry-run", initial = 20 }
        min = 1
        max = 40
        behavior = "balanced"
        targets = [{ metric = "cpu.utilization", value = 50 }]
        predictive = { mode = "forecast-and-scale" }
        "#,
    );
    let policy = Policy::from(&cfg.pools[0]);
    let mut history = History::default();
    // A minute ago the pool was recommended its 20 nodes: balanced's 300 s window holds them.
    history.record_recommendation(20, t(12, 0) - chrono::Duration::seconds(60));
    // Half the target: the readings ask for 10.
    let metrics = [sample(25.0, 20)];
    let plan_with = |hold: Option<u32>| {
        let outlook = Outlook {
            nodes: hold.map(|_| 8),
            hold,
            forecasts: vec![Some(400.0)],
            mase: vec![Some(0.3)],
            active: hold.is_some(),
            reasons: Vec::new(),
        };
        let view = View {
            outlook: Some(&outlook),
            ..seen(20, &metrics, &history)
        };
        plan_one(&cfg, &policy, None, view)
    };
    let windowed = plan_with(None);
    assert_eq!(windowed.desired, 20, "{:?}", said(&windowed));
    let held = plan_with(Some(14));
    assert_eq!(held.desired, 14, "{:?}", said(&held));
    assert!(
        held.reasons
            .iter()
            .any(|r| matches!(r, Reason::PredictiveHeld { from: 10, to: 14 })),
        "{:?}",
        said(&held)
    );
}
