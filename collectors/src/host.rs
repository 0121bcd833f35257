//! Host telemetry through `sysinfo`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System};

use crate::{
    CollectError, Collector, DiskStats, HostMetrics, LoadAverage, MemoryStats, NetworkStats,
    NodeReport, SwapStats,
};

/// Reads CPU (total and per core), load, memory, swap, disks and network rates.
///
/// CPU usage and network rates are deltas against the previous collection, so the
/// first collection should come at least [`HostCollector::WARM_UP`] after [`HostCollector::new`].
#[derive(Debug)]
pub struct HostCollector {
    system: System,
    disks: Disks,
    networks: Networks,
    /// Byte counters per interface at the previous collection.
    previous: HashMap<String, (u64, u64)>,
    previous_at: Option<DateTime<Utc>>,
}

impl HostCollector {
    /// Least time between two CPU readings for a meaningful usage figure.
    pub const WARM_UP: Duration = sysinfo::MINIMUM_CPU_UPDATE_INTERVAL;

    /// Opens the host's counters and takes the baseline readings.
    pub fn new() -> Result<Self, CollectError> {
        let unavailable = |e: sysinfo::Error| CollectError::Unavailable {
            collector: "host",
            reason: e.to_string(),
        };
        let refresh = RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing().with_usage())
            .with_memory(MemoryRefreshKind::everything());
        let system = System::new_with_specifics(refresh).map_err(unavailable)?;
        let disks = Disks::new_with_refreshed_list().map_err(unavailable)?;
        let networks = Networks::new_with_refreshed_list().map_err(unavailable)?;
        let mut collector = Self {
            system,
            disks,
            networks,
            previous: HashMap::new(),
            previous_at: None,
        };
        collector.remember_network_counters();
        Ok(collector)
    }

    fn remember_network_counters(&mut self) {
        self.previous = self
            .networks
            .iter()
            .map(|(name, data)| {
                (
                    name.to_string_lossy().into_owned(),
                    (data.total_received(), data.total_transmitted()),
                )
            })
            .collect();
    }
}

/// Bytes per second between two counter readings; a counter that went backwards
/// (interface reset) gives 0 rather than a huge figure.
fn rate(now: u64, before: u64, seconds: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // counters far below 2^53 bytes per interval
    if seconds > 0.0 {
        now.saturating_sub(before) as f64 / seconds
    } else {
        0.0
    }
}

impl Collector for HostCollector {
    fn name(&self) -> &'static str {
        "host"
    }

    fn collect(&mut self, at: DateTime<Utc>, report: &mut NodeReport) -> Result<(), CollectError> {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.disks.refresh(true);
        self.networks.refresh(true);
        // When the host booted: the kernel's own figure, for scale-in by age.
        report.booted_at = System::boot_time()
            .ok()
            .and_then(|s| i64::try_from(s).ok())
            .filter(|s| *s > 0)
            .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0));
        let load = System::load_average().map_err(|e| CollectError::Failed {
            collector: "host",
            reason: format!("load average: {e}"),
        })?;

        let seconds = self.previous_at.map_or(0.0, |prev| {
            (at - prev).num_milliseconds().max(0) as f64 / 1000.0
        });
        let mut network: Vec<NetworkStats> = self
            .networks
            .iter()
            .filter(|(name, _)| name.to_str() != Some("lo"))
            .map(|(name, data)| {
                let name = name.to_string_lossy().into_owned();
                let (rx0, tx0) = self
                    .previous
                    .get(&name)
                    .copied()
                    .unwrap_or((data.total_received(), data.total_transmitted()));
                NetworkStats {
                    rx_bytes_per_second: rate(data.total_received(), rx0, seconds),
                    tx_bytes_per_second: rate(data.total_transmitted(), tx0, seconds),
                    interface: name,
                }
            })
            .collect();
        network.sort_by(|a, b| a.interface.cmp(&b.interface));

        let mut disks: Vec<DiskStats> = self
            .disks
            .iter()
            .filter(|d| d.total_space() > 0)
            .map(|d| DiskStats {
                mount_point: d.mount_point().to_string_lossy().into_owned(),
                total_bytes: d.total_space(),
                available_bytes: d.available_space(),
            })
            .collect();
        disks.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        disks.dedup_by(|a, b| a.mount_point == b.mount_point);

        let cpus = self.system.cpus();
        report.host = Some(HostMetrics {
            cpu_percent: f64::from(self.system.global_cpu_usage()).clamp(0.0, 100.0),
            cpu_per_core_percent: cpus
                .iter()
                .map(|c| f64::from(c.usage()).clamp(0.0, 100.0))
                .collect(),
            cores: u32::try_from(cpus.len()).unwrap_or(u32::MAX),
            load: LoadAverage {
                one: load.one,
                five: load.five,
                fifteen: load.fifteen,
            },
            memory: MemoryStats {
                total_bytes: self.system.total_memory(),
                used_bytes: self.system.used_memory(),
                available_bytes: self.system.available_memory(),
            },
            swap: SwapStats {
                total_bytes: self.system.total_swap(),
                used_bytes: self.system.used_swap(),
            },
            disks,
            network,
        });
        self.remember_network_counters();
        self.previous_at = Some(at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_survive_counter_resets_and_zero_intervals() {
        assert_eq!(rate(2000, 1000, 2.0), 500.0);
        assert_eq!(rate(10, 1000, 2.0), 0.0);
        assert_eq!(rate(2000, 1000, 0.0), 0.0);
    }

    /// Reads this machine for real: every field is filled and plausible.
    #[test]
    fn reads_this_host() {
        let mut c = HostCollector::new().unwrap();
        std::thread::sleep(HostCollector::WARM_UP);
        let t0 = DateTime::UNIX_EPOCH;
        let mut r = NodeReport::new("me", None, t0);
        c.collect(t0, &mut r).unwrap();
        c.collect(t0 + chrono::Duration::seconds(1), &mut r)
            .unwrap();
        // Booted in the past, after 2000.
        let booted = r.booted_at.expect("the kernel's boot time");
        assert!(booted.timestamp() > 946_684_800, "{booted}");
        let h = r.host.unwrap();
        assert!(h.cores >= 1);
        assert_eq!(h.cpu_per_core_percent.len(), h.cores as usize);
        assert!((0.0..=100.0).contains(&h.cpu_percent));
        assert!(h.memory.total_bytes > 0);
        assert!(h.memory.available_bytes <= h.memory.total_bytes);
        let m = h.memory_percent().unwrap();
        assert!((0.0..=100.0).contains(&m), "{m}");
        assert!(h.load.one >= 0.0);
        assert!(
            h.network
                .iter()
                .all(|n| n.interface != "lo" && n.rx_bytes_per_second >= 0.0)
        );
    }
}
