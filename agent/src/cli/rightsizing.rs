//! `capstan rightsizing`: what each pool used, from its usage history, against what it
//! was given.

use super::*;

/// `capstan rightsizing`.
pub(super) async fn rightsizing(
    cfg: &ValidatedConfig,
    days: u32,
    json: bool,
) -> anyhow::Result<()> {
    use crate::tools::rightsizing as rs;
    let retention = u32::try_from(pass::USAGE_RETENTION_DAYS).unwrap_or(35);
    anyhow::ensure!(
        (1..=retention).contains(&days),
        "--days {days}: allowed 1 to {retention} (the usage history is kept {retention} days)"
    );
    let since = SystemClock.now().timestamp().div_euclid(60) - i64::from(days) * 1440;
    let dir = cfg.agent.state_dir.join("usage");
    let mut reports = Vec::with_capacity(cfg.pools.len());
    for pool in &cfg.pools {
        let points: Vec<crate::state::demand::Minute> =
            crate::state::demand::read_only(&dir, &pool.name)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .into_iter()
                .filter(|(m, _)| *m >= since)
                .collect();
        reports.push(rs::report(cfg, pool, days, &points).await);
    }
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &reports)?;
        writeln!(out)?;
        return Ok(());
    }
    let pct = |s: Option<rs::Stats>| {
        s.map_or_else(
            || "-".to_owned(),
            |s| {
                format!(
                    "p50 {:5.1} %  p95 {:5.1} %  max {:5.1} %",
                    s.p50, s.p95, s.max
                )
            },
        )
    };
    for r in &reports {
        writeln!(
            out,
            "pool {} ({}): {} minute(s) of usage in {} day(s){}",
            r.pool,
            r.instance_type.as_deref().unwrap_or("type unknown"),
            r.minutes,
            r.days,
            r.nodes
                .map(|n| format!(", {:.1} nodes on average, {} at most", n.mean, n.max))
                .unwrap_or_default()
        )?;
        for (label, s) in [
            ("cpu", r.cpu),
            ("memory", r.memory),
            ("gpu", r.gpu),
            ("gpu memory", r.gpu_memory),
        ] {
            writeln!(out, "  {label:<11} {}", pct(s))?;
        }
        if let Some(rec) = &r.recommendation {
            match (rec.change, rec.monthly_saving) {
                ("none", _) => writeln!(out, "  keep {}", rec.current_type)?,
                (change, saving) => writeln!(
                    out,
                    "  recommend {} × {} ({change} than {}): {} a month less",
                    rec.instance_type,
                    rec.nodes,
                    rec.current_type,
                    saving.map_or_else(|| "?".to_owned(), |s| format!("{s:.2}"))
                )?,
            }
        }
        for e in &r.evidence {
            writeln!(out, "  - {e}")?;
        }
    }
    Ok(())
}
