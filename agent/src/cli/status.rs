//! `capstan status`: a running leader's `/v1/status`, rendered.

use super::*;

pub(super) async fn status(
    url: &str,
    json: bool,
    token_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/');
    let endpoint = if base.ends_with("/v1/status") {
        base.to_owned()
    } else {
        format!("{base}/v1/status")
    };
    let mut request = crate::net::client_builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?
        .get(&endpoint);
    if let Some(path) = token_file {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --token-file {}", path.display()))?;
        request = request.bearer_auth(token.trim());
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {endpoint}"))?;
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        anyhow::bail!(
            "{endpoint} asks for its status token (cluster.status_token_file): pass it with --token-file"
        );
    }
    let response = response
        .error_for_status()
        .with_context(|| format!("{endpoint} answered with an error"))?;
    let body = response.text().await?;
    let status: Status = serde_json::from_str(&body)
        .with_context(|| format!("{endpoint} did not return a Capstan status"))?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{body}")?;
        return Ok(());
    }
    write_summary(&mut out, &status)?;
    writeln!(out)?;
    write_pools(&mut out, &status)?;
    Ok(())
}

/// The agent, its leader, the reports it took and the fleet's cost.
fn write_summary(out: &mut impl Write, status: &Status) -> std::io::Result<()> {
    writeln!(
        out,
        "node {}  role {}  leader {}  coordinator {}  version {}",
        status.node_id,
        status.role,
        status.leader_id.as_deref().unwrap_or("-"),
        if status.coordinator.is_empty() {
            "-"
        } else {
            &status.coordinator
        },
        if status.version.is_empty() {
            "-"
        } else {
            &status.version
        },
    )?;
    if let Some(url) = &status.leader_url {
        writeln!(out, "leader url {url}")?;
    }
    if let Some(note) = &status.coordinator_note {
        writeln!(out, "coordinator: {note}")?;
    }
    let rejected: u64 = status.reports_rejected.values().sum();
    if status.role == "leader" || status.reports_received > 0 || rejected > 0 {
        let by_reason: Vec<String> = status
            .reports_rejected
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        writeln!(
            out,
            "reports accepted {}  rejected {rejected}{}",
            status.reports_received,
            if by_reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", by_reason.join(", "))
            }
        )?;
    }
    match status.budget_ceiling {
        Some(c) => writeln!(
            out,
            "fleet {:.2}/h of a {c:.2}/h ceiling{}",
            status.fleet_hourly_cost,
            if status.over_budget {
                "  OVER BUDGET"
            } else {
                ""
            }
        )?,
        None if status.fleet_hourly_cost > 0.0 => {
            writeln!(out, "fleet {:.2}/h (no ceiling)", status.fleet_hourly_cost)?
        }
        None => {}
    }
    Ok(())
}

/// One line per pool, then its stale nodes and open circuits.
fn write_pools(out: &mut impl Write, status: &Status) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<9} {:>5} {:>5} {:>8} {:>8} {:>9} {:>6}  {:<8} {:<25} REASON",
        "POOL",
        "PROVIDER",
        "MIN",
        "MAX",
        "CURRENT",
        "DESIRED",
        "REPORTING",
        "STALE",
        "ACTION",
        "DECIDED AT"
    )?;
    let dash = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
    for p in &status.pools {
        let (action, at, reason) = match &p.last_decision {
            Some(d) => (
                d.action.clone(),
                d.at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                d.reasons
                    .last()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
            None => ("-".to_owned(), "-".to_owned(), String::new()),
        };
        writeln!(
            out,
            "{:<24} {:<9} {:>5} {:>5} {:>8} {:>8} {:>9} {:>6}  {:<8} {:<25} {}",
            p.name,
            p.provider,
            p.min,
            p.max,
            dash(p.current),
            dash(p.desired),
            p.nodes.reporting.len(),
            p.nodes.stale.len(),
            action,
            at,
            p.error.as_deref().map_or(reason, |e| format!("error: {e}"))
        )?;
    }
    for p in status.pools.iter().filter(|p| p.reports_unmatched) {
        writeln!(
            out,
            "warning: {}'s nodes report under ids that match none of its instances: the cloud chooses which leave, none is drained (name each agent by its instance id)",
            p.name
        )?;
    }
    for p in &status.pools {
        for d in &p.draining {
            let what = match d.phase.as_str() {
                "remove" => "drained, being removed".to_owned(),
                "keep" => "returned to service".to_owned(),
                _ => format!(
                    "draining since {} (deadline {})",
                    d.chosen_at.format("%H:%M:%SZ"),
                    d.deadline.format("%H:%M:%SZ")
                ),
            };
            writeln!(out, "leaving {}: {} {what}", p.name, d.node)?;
        }
    }
    for p in status.pools.iter().filter(|p| !p.nodes.stale.is_empty()) {
        writeln!(out, "stale in {}: {}", p.name, p.nodes.stale.join(", "))?;
    }
    for p in status
        .pools
        .iter()
        .filter(|p| !p.circuit.is_empty() && p.circuit != "closed")
    {
        writeln!(
            out,
            "circuit {} for {}: {} failed provider call(s) in a row",
            p.circuit.replace('_', "-"),
            p.name,
            p.consecutive_failures
        )?;
    }
    Ok(())
}
