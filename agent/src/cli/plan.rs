//! `capstan plan`: one pass over the fleet, planned but not acted on.

use super::*;

/// One pool in `capstan plan --json`. Field names are an interface.
#[derive(Debug, Serialize)]
struct PlannedPool {
    name: String,
    provider: String,
    tier: &'static str,
    current: Option<u32>,
    desired: Option<u32>,
    on_demand: Option<u32>,
    spot: Option<u32>,
    hourly_cost: Option<f64>,
    /// Bounds this pass, after schedules.
    min: Option<u32>,
    max: Option<u32>,
    emergency: bool,
    reasons: Vec<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub(super) async fn plan(cfg: ValidatedConfig, json: bool) -> anyhow::Result<()> {
    let clock = SystemClock;
    let node_id = daemon::node_id(&cfg);
    let report = Local::open().await?.report(&cfg).await;
    let mut pools = pass::build_pools(&cfg, &mut HashMap::new()).map_err(anyhow::Error::msg)?;
    let claim = Standalone::new(&node_id, None).claim();
    let now = clock.now();
    let max_age = crate::cluster::ingest::stale_after(cfg.agent.interval);
    let fresh: Vec<&NodeReport> = std::iter::once(&report)
        .filter(|r| now - r.at <= max_age)
        .collect();
    let mut groups = pass::build_groups(&cfg, &mut HashMap::new());
    let outcome = pass::fleet_pass(
        &mut pools,
        &mut groups,
        &fresh,
        &cfg.budget,
        pass::Turn::new(&claim, Mode::PlanOnly, now, cfg.agent.interval),
    )
    .await;
    let planned: Vec<PlannedPool> = pools
        .iter()
        .zip(outcome.pools)
        .map(|(pool, result)| PlannedPool::new(pool, result))
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "pools": planned,
                "groups": outcome.groups,
                "fleet_hourly_cost": outcome.fleet_hourly_cost,
                "budget_ceiling": outcome.budget_ceiling,
                "over_budget": outcome.over_budget,
                "reasons": outcome.reasons,
            }),
        )?;
        writeln!(out)?;
        return Ok(());
    }
    for p in &planned {
        write_pool(&mut out, p)?;
    }
    for g in &outcome.groups {
        write_group(&mut out, g)?;
    }
    for r in &outcome.reasons {
        writeln!(out, "! {r}")?;
    }
    match outcome.budget_ceiling {
        Some(c) => writeln!(
            out,
            "fleet: {:.2}/h against a ceiling of {c:.2}/h",
            outcome.fleet_hourly_cost
        )?,
        None if outcome.fleet_hourly_cost > 0.0 => writeln!(
            out,
            "fleet: {:.2}/h (no budget ceiling)",
            outcome.fleet_hourly_cost
        )?,
        None => {}
    }
    writeln!(out, "(plan only: nothing was changed)")?;
    Ok(())
}

impl PlannedPool {
    fn new(pool: &pass::PoolRuntime, result: Result<pass::PassOutcome, pass::PassError>) -> Self {
        let name = pool.config.name.clone();
        let provider = pool.config.provider.kind().to_owned();
        let tier = pool.config.tier.as_str();
        match result {
            Ok(o) => PlannedPool {
                name,
                provider,
                tier,
                current: Some(o.current),
                desired: Some(o.desired),
                on_demand: Some(o.on_demand),
                spot: Some(o.spot),
                hourly_cost: Some(o.hourly_cost),
                min: Some(o.bounds.min),
                max: Some(o.bounds.max),
                emergency: o.emergency,
                reasons: o.reasons,
                error: None,
            },
            Err(e) => PlannedPool {
                name,
                provider,
                tier,
                current: None,
                desired: None,
                on_demand: None,
                spot: None,
                hourly_cost: None,
                min: None,
                max: None,
                emergency: false,
                reasons: vec![],
                error: Some(e.to_string()),
            },
        }
    }
}

/// A pool's plan in words: the change, its tier, split and cost, then why.
fn write_pool(out: &mut impl Write, p: &PlannedPool) -> std::io::Result<()> {
    match (p.current, p.desired) {
        (Some(c), Some(d)) => {
            let verb = if d > c {
                "scale up"
            } else if d < c {
                "scale down"
            } else {
                "no change"
            };
            let mut notes = vec![format!("{} tier", p.tier)];
            if let (Some(od), Some(spot)) = (p.on_demand, p.spot)
                && spot > 0
            {
                notes.push(format!("{od} on-demand + {spot} spot"));
            }
            if let Some(cost) = p.hourly_cost.filter(|c| *c > 0.0) {
                notes.push(format!("{cost:.2}/h"));
            }
            writeln!(
                out,
                "pool {} ({}): {c} → {d} nodes ({verb}); {}",
                p.name,
                p.provider,
                notes.join("; ")
            )?;
        }
        _ => writeln!(out, "pool {} ({}): no decision", p.name, p.provider)?,
    }
    for r in &p.reasons {
        writeln!(out, "  - {r}")?;
    }
    if let Some(e) = &p.error {
        writeln!(out, "  ! {e}")?;
    }
    Ok(())
}

/// A group's size and its allocation in words, then why.
fn write_group(out: &mut impl Write, g: &pass::GroupOutcome) -> std::io::Result<()> {
    let members = g
        .members
        .iter()
        .map(|m| {
            let mut s = format!("{} {}", m.pool, m.granted);
            if m.granted != m.share {
                s.push_str(&format!(" (share {})", m.share));
            }
            if let Some(l) = m.limit {
                s.push_str(&format!(" [{}]", l.as_str()));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(
        out,
        "group {} ({}): {} → {} nodes: {members}",
        g.group, g.strategy, g.current, g.desired
    )?;
    for r in &g.reasons {
        writeln!(out, "  - {r}")?;
    }
    Ok(())
}
