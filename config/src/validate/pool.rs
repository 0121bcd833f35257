//! `[[pool]]`: bounds, tier, price, spot, the provider and its settings.

use super::*;

pub(super) fn check_pool(
    c: &mut Checker<'_>,
    i: usize,
    p: &raw::PoolConfig,
    group: Option<&str>,
) -> Option<Pool> {
    let name = Some(p.name.as_str());
    let at = |rest: &[Seg]| -> Vec<Seg> { [&[k("pool"), Seg::Index(i)][..], rest].concat() };
    let before = c.problems.len();

    check_bounds(c, &at, name, p);
    check_provider(c, &at(&[k("provider")]), name, &p.provider);
    let (behavior_name, behavior) = check_behavior(c, &at(&[k("behavior")]), name, &p.behavior);

    if let Some(price) = &p.price {
        check_price(c, &at, name, price);
    }

    let spot = p.spot.as_ref().and_then(|s| check_spot(c, &at, name, s));

    if let Some(group) = group {
        check_member(c, &at, name, p, group);
    } else if p.targets.is_empty() && p.schedule.is_empty() {
        c.report(
            &at(&[k("targets")]),
            name,
            "a pool needs at least one target (e.g. { metric = \"cpu.utilization\", value = 70 }) or a schedule",
        );
    }
    let targets: Vec<Target> = p
        .targets
        .iter()
        .enumerate()
        .filter_map(|(j, t)| check_target(c, &at(&[k("targets"), Seg::Index(j)]), name, t))
        .collect();

    let predictive = check_predictive(c, &at(&[k("predictive")]), name, &p.predictive);
    let schedules: Vec<Schedule> = p
        .schedule
        .iter()
        .enumerate()
        .filter_map(|(j, s)| check_schedule(c, &at(&[k("schedule"), Seg::Index(j)]), name, p, s))
        .collect();

    let emergency = check_emergency(c, &at, name, p);
    let (flap, circuit) = check_flap_and_circuit(c, &at, name, p);
    let scale_in = check_scale_in(c, &at, name, &p.scale_in);

    if c.problems.len() != before {
        return None;
    }
    Some(Pool {
        name: p.name.clone(),
        tier: p.tier,
        provider: p.provider.clone(),
        min: p.min,
        max: p.max,
        emergency_max: p.emergency_max.unwrap_or(p.max),
        max_hourly_cost: p.max_hourly_cost,
        replace_faulty_gpu_nodes: p.replace_faulty_gpu_nodes,
        behavior_name,
        behavior: behavior?,
        tolerance: p.tolerance,
        price: p.price.clone(),
        spot,
        targets,
        aggregate: p.aggregate,
        predictive: predictive?,
        schedules,
        emergency,
        flap: flap?,
        circuit: circuit?,
        scale_in: scale_in?,
        group: group.map(str::to_owned),
    })
}

/// The path of a key under this pool.
type At<'a> = dyn Fn(&[Seg]) -> Vec<Seg> + 'a;

/// Bounds and limits: the name, min and max, emergency_max, the pool's own ceiling,
/// the tolerance.
fn check_bounds(c: &mut Checker<'_>, at: &At<'_>, name: Option<&str>, p: &raw::PoolConfig) {
    if !valid_pool_name(&p.name) {
        c.report(
            &at(&[k("name")]),
            name,
            format!(
                "\"{}\" is not a valid pool name; use 1 to 63 letters, digits, '-', '_' or '.'",
                p.name
            ),
        );
    }
    if p.min > p.max {
        c.report(
            &at(&[k("min")]),
            name,
            format!(
                "min ({}) is above max ({}); min must be at most max",
                p.min, p.max
            ),
        );
    }
    if p.max == 0 {
        c.report(&at(&[k("max")]), name, "must be at least 1");
    }
    if let Some(em) = p.emergency_max
        && em < p.max
    {
        c.report(
            &at(&[k("emergency_max")]),
            name,
            format!(
                "emergency_max ({em}) is below max ({}); it must be at least max",
                p.max
            ),
        );
    }
    if let Some(cost) = p.max_hourly_cost
        && (!cost.is_finite() || cost <= 0.0)
    {
        c.report(
            &at(&[k("max_hourly_cost")]),
            name,
            format!("{cost} is not allowed; must be a finite number above 0"),
        );
    }
    if !(0.0..1.0).contains(&p.tolerance) {
        c.report(
            &at(&[k("tolerance")]),
            name,
            format!(
                "{} is out of range; allowed: 0 <= tolerance < 1 (HPA's default is 0.1)",
                p.tolerance
            ),
        );
    }
}

/// `emergency`: a saturation ratio above 1 for at least one interval, with the
/// `emergency_max` it may reach.
fn check_emergency(
    c: &mut Checker<'_>,
    at: &At<'_>,
    name: Option<&str>,
    p: &raw::PoolConfig,
) -> Option<Emergency> {
    let emergency = p.emergency.as_ref().map(|e| {
        if !e.threshold.is_finite() || e.threshold <= 1.0 {
            c.report(
                &at(&[k("emergency"), k("threshold")]),
                name,
                format!("{} is not allowed; the saturation ratio must be above 1 (e.g. 1.5 = 150 % of target)", e.threshold),
            );
        }
        if e.intervals == 0 {
            c.report(&at(&[k("emergency"), k("intervals")]), name, "must be at least 1");
        }
        Emergency { threshold: e.threshold, intervals: e.intervals }
    });
    if emergency.is_some() && p.emergency_max.is_none() {
        c.report(
            &at(&[k("emergency")]),
            name,
            "an emergency table needs emergency_max, the most nodes an emergency may reach",
        );
    }
    emergency
}

/// A percentage written `"N%"` with `lo < N <= 100` (`lo` itself allowed when
/// `zero_ok`), as a fraction; or a problem and `None`.
fn percent(
    c: &mut Checker<'_>,
    path: &[Seg],
    name: Option<&str>,
    text: &str,
    zero_ok: bool,
) -> Option<f64> {
    let parsed = text
        .trim()
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<f64>().ok())
        .filter(|n| n.is_finite() && (if zero_ok { *n >= 0.0 } else { *n > 0.0 }) && *n <= 100.0);
    if parsed.is_none() {
        let range = if zero_ok {
            "0% to 100%"
        } else {
            "above 0% and at most 100%"
        };
        c.report(
            path,
            name,
            format!("\"{text}\" is not a percentage {range}; write e.g. \"10%\""),
        );
    }
    parsed.map(|n| n / 100.0)
}

/// `scale_in`: the drain timeout, the drain budget and the unready share that halts it.
fn check_scale_in(
    c: &mut Checker<'_>,
    at: &At<'_>,
    name: Option<&str>,
    s: &raw::ScaleInConfig,
) -> Option<ScaleIn> {
    let drain_timeout = c.duration(
        &at(&[k("scale_in"), k("drain_timeout")]),
        name,
        &s.drain_timeout,
        Duration::from_secs(10),
        Duration::from_secs(24 * 3600),
    );
    let max_path = at(&[k("scale_in"), k("max_draining")]);
    let max_draining = match &s.max_draining {
        raw::Share::Count(0) => {
            c.report(
                &max_path,
                name,
                "must be at least 1 (nodes draining at once), or a percentage such as \"10%\"",
            );
            None
        }
        raw::Share::Count(n) => Some(NodeShare::Count(*n)),
        raw::Share::Percent(text) => {
            percent(c, &max_path, name, text, false).map(NodeShare::Fraction)
        }
    };
    let halt = percent(
        c,
        &at(&[k("scale_in"), k("halt_when_unready")]),
        name,
        &s.halt_when_unready,
        true,
    );
    Some(ScaleIn {
        select: s.select,
        drain_timeout: drain_timeout?,
        on_timeout: s.on_timeout,
        max_draining: max_draining?,
        halt_when_unready: halt?,
    })
}

/// `flap` and `circuit`: their windows and counts.
fn check_flap_and_circuit(
    c: &mut Checker<'_>,
    at: &At<'_>,
    name: Option<&str>,
    p: &raw::PoolConfig,
) -> (Option<Flap>, Option<Circuit>) {
    let week = Duration::from_secs(7 * 24 * 3600);
    let flap_window = c.duration(
        &at(&[k("flap"), k("window")]),
        name,
        &p.flap.window,
        Duration::from_secs(10),
        week,
    );
    let flap_cool_off = c.duration(
        &at(&[k("flap"), k("cool_off")]),
        name,
        &p.flap.cool_off,
        Duration::from_secs(10),
        week,
    );
    let circuit_max_backoff = c.duration(
        &at(&[k("circuit"), k("max_backoff")]),
        name,
        &p.circuit.max_backoff,
        Duration::from_secs(1),
        Duration::from_secs(24 * 3600),
    );
    if p.circuit.failures == 0 {
        c.report(
            &at(&[k("circuit"), k("failures")]),
            name,
            "must be at least 1 (the failed calls in a row that open the circuit)",
        );
    }
    if p.flap.max_reversals == 1 {
        c.report(
            &at(&[k("flap"), k("max_reversals")]),
            name,
            "1 would freeze a pool for one ordinary up-and-down; allowed: 0 (off) or at least 2",
        );
    }
    let flap = match (flap_window, flap_cool_off) {
        (Some(window), Some(cool_off)) => Some(Flap {
            max_reversals: p.flap.max_reversals,
            window,
            cool_off,
        }),
        _ => None,
    };
    let circuit = circuit_max_backoff.map(|max_backoff| Circuit {
        failures: p.circuit.failures,
        max_backoff,
    });
    (flap, circuit)
}

/// `price`: every amount, and each instance type's shape.
fn check_price(c: &mut Checker<'_>, at: &At<'_>, name: Option<&str>, price: &raw::PriceConfig) {
    c.money(&at(&[k("price"), k("on_demand")]), name, price.on_demand);
    if let Some(s) = price.spot {
        c.money(&at(&[k("price"), k("spot")]), name, s);
    }
    for (ty, tp) in &price.by_type {
        c.money(
            &at(&[k("price"), k("by_type"), k(ty), k("on_demand")]),
            name,
            tp.on_demand,
        );
        if let Some(s) = tp.spot {
            c.money(&at(&[k("price"), k("by_type"), k(ty), k("spot")]), name, s);
        }
        if tp.vcpus == Some(0) {
            c.report(
                &at(&[k("price"), k("by_type"), k(ty), k("vcpus")]),
                name,
                "must be at least 1",
            );
        }
        for (key, v) in [
            ("memory_gib", tp.memory_gib),
            ("gpu_memory_gib", tp.gpu_memory_gib),
        ] {
            if let Some(v) = v
                && (!v.is_finite() || v < 0.0)
            {
                c.report(
                    &at(&[k("price"), k("by_type"), k(ty), k(key)]),
                    name,
                    format!("{v} is not allowed; must be a finite number >= 0"),
                );
            }
        }
    }
}

/// `spot`: the on-demand share, instance types and timings.
fn check_spot(
    c: &mut Checker<'_>,
    at: &At<'_>,
    name: Option<&str>,
    s: &raw::SpotConfig,
) -> Option<Spot> {
    if s.on_demand_percent_above_base > 100 {
        c.report(
            &at(&[k("spot"), k("on_demand_percent_above_base")]),
            name,
            format!(
                "{} is out of range; allowed: 0 to 100",
                s.on_demand_percent_above_base
            ),
        );
    }
    for (j, t) in s.instance_types.iter().enumerate() {
        c.non_empty(
            &at(&[k("spot"), k("instance_types"), Seg::Index(j)]),
            name,
            t,
        );
    }
    let day = Duration::from_secs(24 * 3600);
    let fallback = c.duration(
        &at(&[k("spot"), k("fallback_after")]),
        name,
        &s.fallback_after,
        Duration::from_secs(10),
        day,
    );
    let retry = c.duration(
        &at(&[k("spot"), k("retry_after")]),
        name,
        &s.retry_after,
        Duration::from_secs(10),
        day,
    );
    Some(Spot {
        on_demand_base: s.on_demand_base,
        on_demand_percent_above_base: s.on_demand_percent_above_base,
        instance_types: s.instance_types.clone(),
        fallback_after: fallback?,
        retry_after: retry?,
    })
}

/// What a member of `group` may not set itself.
fn check_member(
    c: &mut Checker<'_>,
    at: &At<'_>,
    name: Option<&str>,
    p: &raw::PoolConfig,
    group: &str,
) {
    // A member is sized by its group: targets of its own would compete with it.
    if !p.targets.is_empty() {
        c.report(
            &at(&[k("targets")]),
            name,
            format!(
                "pool \"{}\" is a member of group \"{group}\", which is sized on its targets; move these targets to the group or take the pool out of it",
                p.name
            ),
        );
    }
    if p.emergency.is_some() {
        c.report(
            &at(&[k("emergency")]),
            name,
            format!(
                "pool \"{}\" is a member of group \"{group}\" and has no targets to saturate; emergencies apply to pools with their own targets",
                p.name
            ),
        );
    }
    if matches!(
        p.predictive.mode,
        raw::PredictiveMode::ForecastAndScale | raw::PredictiveMode::Auto
    ) {
        c.report(
            &at(&[k("predictive"), k("mode")]),
            name,
            format!(
                "pool \"{}\" is a member of group \"{group}\" and has no targets to forecast; predictive scaling applies to pools with their own targets",
                p.name
            ),
        );
    }
}

pub(super) fn check_provider(
    c: &mut Checker<'_>,
    at: &[Seg],
    pool: Option<&str>,
    p: &raw::ProviderConfig,
) {
    let f = |key: &str| -> Vec<Seg> { [at, &[k(key)]].concat() };
    match p {
        raw::ProviderConfig::Aws(a) => {
            c.non_empty(&f("region"), pool, &a.region);
            c.non_empty(&f("asg"), pool, &a.asg);
            if let Some(url) = &a.endpoint_url {
                c.url(&f("endpoint_url"), pool, url);
            }
            if let Some(arn) = &a.assume_role_arn
                && (!arn.starts_with("arn:") || !arn.contains(":role/"))
            {
                c.report(
                    &f("assume_role_arn"),
                    pool,
                    format!("\"{arn}\" is not a role ARN (arn:PARTITION:iam::ACCOUNT:role/NAME)"),
                );
            }
        }
        raw::ProviderConfig::Azure(a) => {
            c.non_empty(&f("subscription_id"), pool, &a.subscription_id);
            c.non_empty(&f("resource_group"), pool, &a.resource_group);
            c.non_empty(&f("scale_set"), pool, &a.scale_set);
            if let Some(url) = &a.endpoint {
                c.url(&f("endpoint"), pool, url);
            }
            if let Some(url) = &a.authority_host {
                c.url(&f("authority_host"), pool, url);
            }
            if let Some(id) = &a.managed_identity_client_id {
                c.non_empty(&f("managed_identity_client_id"), pool, id);
            }
            if let Some(file) = &a.ca_file
                && !file.is_file()
            {
                c.report(
                    &f("ca_file"),
                    pool,
                    format!("{} is not a readable file", file.display()),
                );
            }
        }
        raw::ProviderConfig::Gke(g) => {
            c.non_empty(&f("project"), pool, &g.project);
            c.non_empty(&f("location"), pool, &g.location);
            c.non_empty(&f("cluster"), pool, &g.cluster);
            c.non_empty(&f("node_pool"), pool, &g.node_pool);
            if g.spot_node_pool.as_deref() == Some(g.node_pool.as_str()) {
                c.report(&f("spot_node_pool"), pool, "must differ from node_pool");
            }
            if let Some(url) = &g.endpoint {
                c.url(&f("endpoint"), pool, url);
            }
        }
        raw::ProviderConfig::DryRun(_) => {}
    }
}
