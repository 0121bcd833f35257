//! `capstan collect`: this node's telemetry, as it would report it; and `Local`, the
//! node's collectors that `plan` also reads.

use super::*;

/// This node's collectors, for `plan` and `collect`; what is off is said on stderr.
pub(super) struct Local {
    collectors: Vec<Box<dyn Collector>>,
    client: reqwest::Client,
}

impl Local {
    pub(super) async fn open() -> anyhow::Result<Self> {
        let collectors = daemon::node_collectors(|telemetry, why| {
            let kind = match telemetry {
                daemon::Telemetry::Host => "host",
                daemon::Telemetry::Gpu => "GPU",
            };
            eprintln!("capstan: {kind} telemetry is off: {why}");
        });
        // CPU use is a delta: one measurable period first.
        tokio::time::sleep(HostCollector::WARM_UP).await;
        Ok(Self {
            collectors,
            client: crate::net::client_builder().build()?,
        })
    }

    /// One report of this node, as the agent would send it.
    pub(super) async fn report(&mut self, cfg: &ValidatedConfig) -> NodeReport {
        let now = SystemClock.now();
        let mut report = NodeReport::new(daemon::node_id(cfg), daemon::node_pool(cfg), now);
        for c in &mut self.collectors {
            if let Err(e) = c.collect(now, &mut report) {
                eprintln!("capstan: {} collection failed: {e}", c.name());
            }
        }
        for (name, why) in
            crate::daemon::workload::collect(&self.client, &cfg.scrapes, &mut report).await
        {
            eprintln!("capstan: workload.{name} left out: {why}");
        }
        report
    }
}

pub(super) async fn collect(cfg: ValidatedConfig, once: bool, json: bool) -> anyhow::Result<()> {
    let mut local = Local::open().await?;
    loop {
        let report = local.report(&cfg).await;
        let mut out = std::io::stdout().lock();
        if json {
            out.write_all(&report.encode())?;
            writeln!(out)?;
        } else {
            print_report(&mut out, &report)?;
        }
        out.flush()?;
        drop(out);
        if once {
            return Ok(());
        }
        tokio::time::sleep(cfg.agent.interval).await;
    }
}

pub(super) fn print_report(
    out: &mut impl Write,
    r: &capstan_collectors::NodeReport,
) -> std::io::Result<()> {
    writeln!(
        out,
        "node {}  pool {}  at {}",
        r.node_id,
        r.pool.as_deref().unwrap_or("-"),
        r.at.format("%Y-%m-%dT%H:%M:%SZ")
    )?;
    if let Some(h) = &r.host {
        writeln!(
            out,
            "host  cpu {:.1} % of {} cores  memory {:.1} %  load1/core {:.2}  disk {:.1} %  rx {:.0} B/s  tx {:.0} B/s",
            h.cpu_percent,
            h.cores,
            h.memory_percent().unwrap_or(0.0),
            h.load_per_core().one,
            h.disk_percent().unwrap_or(0.0),
            h.rx_bytes_per_second(),
            h.tx_bytes_per_second()
        )?;
    }
    for g in &r.gpus {
        let opt = |v: Option<f64>, unit: &str| {
            v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}{unit}"))
        };
        writeln!(
            out,
            "gpu {} {} ({})  util {}  mem {}  {}  power {} of {}  sm {} MHz  ecc {}/{}{}{}",
            g.index,
            g.name,
            g.uuid,
            opt(g.utilization_percent, " %"),
            opt(g.memory_percent(), " %"),
            opt(g.temperature_celsius, " °C"),
            opt(g.power_watts, " W"),
            opt(g.power_limit_watts, " W"),
            g.sm_clock_mhz
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            g.ecc_corrected
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            g.ecc_uncorrected
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            if g.throttle_reasons.is_empty() {
                String::new()
            } else {
                format!("  throttled: {}", g.throttle_reasons.join(","))
            },
            if g.xid_errors.is_empty() {
                String::new()
            } else {
                format!("  XID {:?}", g.xid_errors)
            },
        )?;
    }
    for (name, v) in &r.workload {
        writeln!(out, "workload.{name} {v}")?;
    }
    if let Some(i) = &r.interruption {
        writeln!(out, "interruption notice: {}", i.kind)?;
    }
    Ok(())
}
