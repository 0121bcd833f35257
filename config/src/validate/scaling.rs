//! How a pool scales: HPA rules and behaviors, targets, predictive scaling, schedules.

use super::*;

pub(super) fn check_rules(
    c: &mut Checker<'_>,
    at: &[Seg],
    pool: Option<&str>,
    base: ScalingRules,
    raw: &raw::RulesConfig,
) -> Option<ScalingRules> {
    let mut rules = base;
    let mut ok = true;
    if let Some(w) = &raw.stabilization_window {
        match c.duration(
            &[at, &[k("stabilization_window")]].concat(),
            pool,
            w,
            Duration::ZERO,
            MAX_WINDOW,
        ) {
            Some(d) => rules.stabilization_window = d,
            None => ok = false,
        }
    }
    if let Some(sel) = raw.select_policy {
        rules.select_policy = sel;
    }
    if let Some(policies) = &raw.policies {
        rules.policies.clear();
        for (j, p) in policies.iter().enumerate() {
            let pat = [at, &[k("policies"), Seg::Index(j)]].concat();
            if p.value == 0 {
                c.report(&[&pat[..], &[k("value")]].concat(), pool, "must be above 0; use select_policy = \"disabled\" to forbid scaling in this direction");
                ok = false;
            }
            match c.duration(
                &[&pat[..], &[k("period")]].concat(),
                pool,
                &p.period,
                Duration::from_secs(1),
                MAX_PERIOD,
            ) {
                Some(period) => rules.policies.push(ScalingPolicy {
                    kind: p.kind,
                    value: p.value,
                    period,
                }),
                None => ok = false,
            }
        }
    }
    if rules.policies.is_empty() && rules.select_policy != SelectPolicy::Disabled {
        c.report(
            &[at, &[k("policies")]].concat(),
            pool,
            "needs at least one policy unless select_policy = \"disabled\"",
        );
        ok = false;
    }
    ok.then_some(rules)
}

pub(super) fn check_behavior(
    c: &mut Checker<'_>,
    at: &[Seg],
    pool: Option<&str>,
    raw: &raw::BehaviorConfig,
) -> (String, Option<ScalingBehavior>) {
    let preset = |c: &mut Checker<'_>, path: &[Seg], name: &str| {
        let found = presets::by_name(name);
        if found.is_none() {
            c.report(path, pool, format!("unknown behavior preset \"{name}\"; allowed: {}, or a table with scale_up/scale_down", presets::NAMES.join(", ")));
        }
        found
    };
    match raw {
        raw::BehaviorConfig::Preset(name) => (name.clone(), preset(c, at, name)),
        raw::BehaviorConfig::Explicit(e) => {
            let base_name = e.preset.as_deref().unwrap_or("balanced");
            let Some(base) = preset(c, &[at, &[k("preset")]].concat(), base_name) else {
                return ("custom".to_owned(), None);
            };
            let up = match &e.scale_up {
                Some(r) => check_rules(c, &[at, &[k("scale_up")]].concat(), pool, base.scale_up, r),
                None => Some(base.scale_up),
            };
            let down = match &e.scale_down {
                Some(r) => check_rules(
                    c,
                    &[at, &[k("scale_down")]].concat(),
                    pool,
                    base.scale_down,
                    r,
                ),
                None => Some(base.scale_down),
            };
            let behavior = match (up, down) {
                (Some(scale_up), Some(scale_down)) => Some(ScalingBehavior {
                    scale_up,
                    scale_down,
                }),
                _ => None,
            };
            ("custom".to_owned(), behavior)
        }
    }
}

pub(super) fn check_target(
    c: &mut Checker<'_>,
    at: &[Seg],
    pool: Option<&str>,
    t: &raw::TargetConfig,
) -> Option<Target> {
    let f = |key: &str| -> Vec<Seg> { [at, &[k(key)]].concat() };
    let mut ok = true;
    if !t.value.is_finite() || t.value <= 0.0 {
        c.report(
            &f("value"),
            pool,
            format!(
                "{} is not allowed; a target value must be a finite number above 0",
                t.value
            ),
        );
        ok = false;
    }
    let source = match (&t.metric, &t.promql) {
        (Some(_), Some(_)) => {
            c.report(at, pool, "give either metric or promql, not both");
            None
        }
        (None, None) => {
            c.report(
                at,
                pool,
                "a target needs metric = \"...\" (e.g. \"cpu.utilization\") or promql = \"...\"",
            );
            None
        }
        (Some(m), None) => {
            for key in ["prometheus_url", "timeout"] {
                let set = if key == "timeout" {
                    t.timeout.is_some()
                } else {
                    t.prometheus_url.is_some()
                };
                if set {
                    c.report(
                        &f(key),
                        pool,
                        format!("{key} applies only to promql targets"),
                    );
                    ok = false;
                }
            }
            match Metric::parse(m) {
                Some(metric) => {
                    if metric.is_percent() && t.value > 100.0 {
                        c.report(
                            &f("value"),
                            pool,
                            format!(
                                "{} is above 100; {m} is a percentage, allowed: above 0 up to 100",
                                t.value
                            ),
                        );
                        ok = false;
                    }
                    Some(TargetSource::Metric(metric))
                }
                None => {
                    let names: Vec<&str> = Metric::FIXED.iter().map(|(n, _)| *n).collect();
                    c.report(
                        &f("metric"),
                        pool,
                        format!(
                            "unknown metric \"{m}\"; allowed: {}, or workload.<series>",
                            names.join(", ")
                        ),
                    );
                    None
                }
            }
        }
        (None, Some(q)) => {
            c.non_empty(&f("promql"), pool, q);
            let url = match &t.prometheus_url {
                Some(u) => {
                    c.url(&f("prometheus_url"), pool, u);
                    Some(u.clone())
                }
                None => {
                    c.report(
                        &f("prometheus_url"),
                        pool,
                        "a promql target needs prometheus_url, e.g. \"http://127.0.0.1:9090\"",
                    );
                    None
                }
            };
            let timeout = match &t.timeout {
                Some(s) => c.duration(
                    &f("timeout"),
                    pool,
                    s,
                    Duration::from_millis(100),
                    Duration::from_secs(60),
                ),
                None => Some(Duration::from_secs(5)),
            };
            match (url, timeout) {
                (Some(url), Some(timeout)) => Some(TargetSource::PromQl {
                    query: q.clone(),
                    url,
                    timeout,
                }),
                _ => None,
            }
        }
    };
    let source = source?;
    ok.then_some(Target {
        source,
        value: t.value,
    })
}

pub(super) fn check_predictive(
    c: &mut Checker<'_>,
    at: &[Seg],
    pool: Option<&str>,
    p: &raw::PredictiveConfig,
) -> Option<Predictive> {
    let f = |key: &str| -> Vec<Seg> { [at, &[k(key)]].concat() };
    let horizon = c.duration(
        &f("horizon"),
        pool,
        &p.horizon,
        Duration::from_secs(60),
        Duration::from_secs(24 * 3600),
    );
    let history = c.duration(
        &f("history"),
        pool,
        &p.history,
        Duration::from_secs(3600),
        MAX_HISTORY,
    );
    let lead_time = c.duration(
        &f("lead_time"),
        pool,
        &p.lead_time,
        Duration::ZERO,
        Duration::from_secs(3600),
    );
    if !p.anomaly_threshold.is_finite() || p.anomaly_threshold <= 0.0 {
        c.report(
            &f("anomaly_threshold"),
            pool,
            format!(
                "{} is not allowed; must be a finite number above 0 (default 2.5)",
                p.anomaly_threshold
            ),
        );
    }
    if let (Some(h), Some(l)) = (horizon, lead_time)
        && l > h
    {
        c.report(
            &f("lead_time"),
            pool,
            "lead_time must be at most horizon: capacity is planned from the forecast, which reaches only horizon ahead",
        );
    }
    if let (Some(h), Some(hist)) = (horizon, history)
        && h * 2 > hist
    {
        c.report(
            &f("history"),
            pool,
            "history must be at least twice the horizon",
        );
    }
    Some(Predictive {
        mode: p.mode,
        horizon: horizon?,
        history: history?,
        lead_time: lead_time?,
        anomaly_threshold: p.anomaly_threshold,
        anomaly_triggers_emergency: p.anomaly_triggers_emergency,
    })
}

pub(super) fn check_schedule(
    c: &mut Checker<'_>,
    at: &[Seg],
    pool: Option<&str>,
    p: &raw::PoolConfig,
    s: &raw::ScheduleConfig,
) -> Option<Schedule> {
    let f = |key: &str| -> Vec<Seg> { [at, &[k(key)]].concat() };
    let cron = if s.cron.split_whitespace().count() != 5 {
        c.report(&f("cron"), pool, format!("\"{}\" is not a 5-field cron expression (minute hour day-of-month month day-of-week), e.g. \"0 8 * * MON-FRI\"", s.cron));
        None
    } else {
        match s.cron.parse::<croner::Cron>() {
            Ok(cron) => Some(cron),
            Err(e) => {
                c.report(
                    &f("cron"),
                    pool,
                    format!("\"{}\" is not a valid cron expression: {e}", s.cron),
                );
                None
            }
        }
    };
    let timezone = match s.timezone.parse::<chrono_tz::Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            c.report(&f("timezone"), pool, format!("\"{}\" is not an IANA time zone; write e.g. \"UTC\", \"Europe/Stockholm\", \"America/New_York\"", s.timezone));
            None
        }
    };
    let duration = c.duration(
        &f("duration"),
        pool,
        &s.duration,
        Duration::from_secs(60),
        Duration::from_secs(7 * 24 * 3600),
    );
    if s.min.is_none() && s.max.is_none() {
        c.report(at, pool, "a schedule must set min, max or both");
    }
    let eff_max = s.max.unwrap_or(p.max);
    let eff_min = s.min.unwrap_or(p.min);
    if eff_min > eff_max {
        c.report(
            &f(if s.min.is_some() { "min" } else { "max" }),
            pool,
            format!("while active this schedule gives min {eff_min} above max {eff_max}; raise max in the schedule too, or lower min"),
        );
    }
    if let (Some(m), Some(em)) = (s.max, p.emergency_max)
        && m > em
    {
        c.report(
            &f("max"),
            pool,
            format!("schedule max ({m}) is above the pool's emergency_max ({em})"),
        );
    }
    Some(Schedule {
        name: s.name.clone().unwrap_or_else(|| s.cron.clone()),
        cron: cron?,
        timezone: timezone?,
        duration: duration?,
        min: s.min,
        max: s.max,
    })
}
