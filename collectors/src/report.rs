//! The report an agent sends about its node.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the [`NodeReport`] encoding. A reader rejects other versions.
pub const REPORT_VERSION: u32 = 1;

/// One node's telemetry at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Encoding version, [`REPORT_VERSION`].
    pub version: u32,
    /// The reporting node's name.
    pub node_id: String,
    /// The pool the node belongs to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// When the readings were taken.
    pub at: DateTime<Utc>,
    /// Host readings, when the host collector ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostMetrics>,
    /// Workload series by name (`workload.<name>` in targets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workload: BTreeMap<String, f64>,
    /// The cloud's notice that this node is going away, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruption: Option<Interruption>,
    /// The node's NVIDIA GPUs, when the GPU collector runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuMetrics>,
    /// When the node booted (the host's clock), for `scale_in.select = "newest"` or
    /// `"oldest"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booted_at: Option<DateTime<Utc>>,
    /// The node asks not to be chosen for scale-in (`[agent.drain] protect_file`
    /// exists).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// Where this node's drain stands, once the leader asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainStatus>,
}

/// Where a node's drain stands, in its reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStatus {
    /// `draining`, `drained` or `failed`.
    pub state: DrainState,
    /// What happened, in a line (the command's exit status and last error line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A drain's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainState {
    /// Under way.
    Draining,
    /// Done: the node may be removed.
    Drained,
    /// It could not be drained.
    Failed,
}

/// The leader's answer to a node's report (the body of `202 Accepted`; empty, or
/// `{}`, when it asks nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAnswer {
    /// Drain now: the node was chosen to leave its pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainOrder>,
    /// Return to service: the drain ran out of time and the pool keeps the node
    /// (`scale_in.on_timeout = "keep"`), or the pool no longer shrinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undrain: Option<UndrainOrder>,
}

impl ReportAnswer {
    /// Whether it asks anything.
    pub const fn is_empty(&self) -> bool {
        self.drain.is_none() && self.undrain.is_none()
    }
}

/// The leader's request that a node drain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainOrder {
    /// The pool it leaves.
    pub pool: String,
    /// When the leader acts without it: removes it anyway, or keeps it
    /// (`scale_in.on_timeout`).
    pub deadline: DateTime<Utc>,
}

/// The leader's request that a node return to service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndrainOrder {
    /// The pool it stays in.
    pub pool: String,
}

/// One GPU's readings. A field the device or driver does not support is `None`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GpuMetrics {
    /// NVML index on this node.
    pub index: u32,
    /// Stable identity (`GPU-…`).
    pub uuid: String,
    /// Product name.
    pub name: String,
    /// Percent of time a kernel ran, over the driver's sample period.
    pub utilization_percent: Option<f64>,
    /// Percent of time device memory was read or written.
    pub memory_utilization_percent: Option<f64>,
    /// Memory in use, bytes.
    pub memory_used_bytes: Option<u64>,
    /// Memory installed, bytes.
    pub memory_total_bytes: Option<u64>,
    /// Die temperature, °C.
    pub temperature_celsius: Option<f64>,
    /// Power draw, watts.
    pub power_watts: Option<f64>,
    /// Enforced power limit, watts.
    pub power_limit_watts: Option<f64>,
    /// SM clock, MHz.
    pub sm_clock_mhz: Option<u32>,
    /// Memory clock, MHz.
    pub memory_clock_mhz: Option<u32>,
    /// Why the clocks are held down now (e.g. `SW_POWER_CAP`, `HW_SLOWDOWN`).
    #[serde(default)]
    pub throttle_reasons: Vec<String>,
    /// Corrected ECC errors since the driver loaded.
    pub ecc_corrected: Option<u64>,
    /// Uncorrected ECC errors since the driver loaded.
    pub ecc_uncorrected: Option<u64>,
    /// Critical XID errors seen since the last report.
    #[serde(default)]
    pub xid_errors: Vec<u64>,
}

/// XID errors that mean the GPU needs a reset or replacement: double-bit ECC (48),
/// row-remapping failures (63, 64), NVLink errors (74), fallen off the bus (79),
/// uncontained ECC (94, 95), and others NVIDIA documents as requiring a reset.
pub const FATAL_XIDS: [u64; 9] = [48, 62, 63, 64, 74, 79, 92, 94, 95];

impl GpuMetrics {
    /// Whether this GPU reports a fault that warrants replacing its node: uncorrected
    /// ECC errors or a fatal XID.
    pub fn is_faulty(&self) -> bool {
        self.ecc_uncorrected.is_some_and(|n| n > 0)
            || self.xid_errors.iter().any(|x| FATAL_XIDS.contains(x))
    }

    /// Memory in use, percent, when both figures are known.
    pub fn memory_percent(&self) -> Option<f64> {
        match (self.memory_used_bytes, self.memory_total_bytes) {
            #[allow(clippy::cast_precision_loss)] // byte counts far below 2^53
            (Some(u), Some(t)) if t > 0 => Some(u as f64 * 100.0 / t as f64),
            _ => None,
        }
    }
}

/// A notice that the cloud will take the node away: a spot interruption or rebalance
/// recommendation (AWS), a scheduled event (Azure), a preemption (GCE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interruption {
    /// What kind of notice, as the cloud names it (e.g. `spot-interruption`,
    /// `rebalance-recommendation`, `Preempt`, `preempted`).
    pub kind: String,
    /// When the node is expected to go, if the notice says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

/// Why an encoded report was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Not JSON of the report's shape; names the failing field where serde can.
    #[error("malformed report: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A version this agent does not read.
    #[error("unsupported report version {found}; this agent reads version {REPORT_VERSION}")]
    UnsupportedVersion {
        /// The version in the report.
        found: u32,
    },
}

impl NodeReport {
    /// An empty report for `node_id` at `at`.
    pub fn new(node_id: impl Into<String>, pool: Option<String>, at: DateTime<Utc>) -> Self {
        Self {
            version: REPORT_VERSION,
            node_id: node_id.into(),
            pool,
            at,
            host: None,
            workload: BTreeMap::new(),
            interruption: None,
            gpus: Vec::new(),
            booted_at: None,
            protected: false,
            drain: None,
        }
    }

    /// Compact JSON.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses compact JSON, refusing other versions.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReportError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let Version { version } = serde_json::from_slice(bytes)?;
        if version != REPORT_VERSION {
            return Err(ReportError::UnsupportedVersion { found: version });
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// CPU, load, memory, swap, disks and network of the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostMetrics {
    /// Busy CPU over all cores, percent (0–100).
    pub cpu_percent: f64,
    /// Busy CPU per core, percent.
    pub cpu_per_core_percent: Vec<f64>,
    /// Logical cores.
    pub cores: u32,
    /// Load averages.
    pub load: LoadAverage,
    /// Memory.
    pub memory: MemoryStats,
    /// Swap.
    pub swap: SwapStats,
    /// Mounted disks.
    pub disks: Vec<DiskStats>,
    /// Network interfaces, loopback excluded.
    pub network: Vec<NetworkStats>,
}

/// Load averages over 1, 5 and 15 minutes (whole machine, not per core).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadAverage {
    /// One minute.
    pub one: f64,
    /// Five minutes.
    pub five: f64,
    /// Fifteen minutes.
    pub fifteen: f64,
}

/// Memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Total.
    pub total_bytes: u64,
    /// Used.
    pub used_bytes: u64,
    /// Available for new allocations without swapping.
    pub available_bytes: u64,
}

/// Swap in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SwapStats {
    /// Total.
    pub total_bytes: u64,
    /// Used.
    pub used_bytes: u64,
}

/// One mounted disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskStats {
    /// Mount point.
    pub mount_point: String,
    /// Size.
    pub total_bytes: u64,
    /// Free for unprivileged users.
    pub available_bytes: u64,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkStats {
    /// Interface name.
    pub interface: String,
    /// Received bytes per second since the previous collection.
    pub rx_bytes_per_second: f64,
    /// Sent bytes per second since the previous collection.
    pub tx_bytes_per_second: f64,
}

fn percent(part: u64, total: u64) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)] // byte counts far below 2^53 in practice
    (total > 0).then(|| part as f64 * 100.0 / total as f64)
}

impl HostMetrics {
    /// Used memory, percent; `available` counts as free, as the kernel means it.
    pub fn memory_percent(&self) -> Option<f64> {
        percent(
            self.memory
                .total_bytes
                .saturating_sub(self.memory.available_bytes),
            self.memory.total_bytes,
        )
    }

    /// Used swap, percent; 0 on a host without swap.
    pub fn swap_percent(&self) -> f64 {
        percent(self.swap.used_bytes, self.swap.total_bytes).unwrap_or(0.0)
    }

    /// The fullest disk's used space, percent.
    pub fn disk_percent(&self) -> Option<f64> {
        self.disks
            .iter()
            .filter_map(|d| {
                percent(
                    d.total_bytes.saturating_sub(d.available_bytes),
                    d.total_bytes,
                )
            })
            .reduce(f64::max)
    }

    /// Load average per core.
    pub fn load_per_core(&self) -> LoadAverage {
        let cores = f64::from(self.cores.max(1));
        LoadAverage {
            one: self.load.one / cores,
            five: self.load.five / cores,
            fifteen: self.load.fifteen / cores,
        }
    }

    /// Received bytes per second over all interfaces.
    pub fn rx_bytes_per_second(&self) -> f64 {
        self.network.iter().map(|n| n.rx_bytes_per_second).sum()
    }

    /// Sent bytes per second over all interfaces.
    pub fn tx_bytes_per_second(&self) -> f64 {
        self.network.iter().map(|n| n.tx_bytes_per_second).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeReport {
        let mut r = NodeReport::new("node-a", Some("web".into()), DateTime::UNIX_EPOCH);
        r.host = Some(HostMetrics {
            cpu_percent: 42.5,
            cpu_per_core_percent: vec![40.0, 45.0],
            cores: 2,
            load: LoadAverage {
                one: 1.0,
                five: 0.5,
                fifteen: 0.25,
            },
            memory: MemoryStats {
                total_bytes: 1000,
                used_bytes: 600,
                available_bytes: 300,
            },
            swap: SwapStats {
                total_bytes: 0,
                used_bytes: 0,
            },
            disks: vec![
                DiskStats {
                    mount_point: "/".into(),
                    total_bytes: 100,
                    available_bytes: 10,
                },
                DiskStats {
                    mount_point: "/data".into(),
                    total_bytes: 100,
                    available_bytes: 50,
                },
            ],
            network: vec![NetworkStats {
                interface: "eth0".into(),
                rx_bytes_per_second: 10.0,
                tx_bytes_per_second: 5.0,
            }],
        });
        r.workload.insert("requests_per_second".into(), 5000.0);
        r
    }

    #[test]
    fn round_trips_through_its_encoding() {
        let r = sample();
        assert_eq!(NodeReport::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn drain_fields_and_the_answer_have_their_documented_shape() {
        let mut r = sample();
        // Left out while unset: a report without them reads as before.
        let plain: serde_json::Value = serde_json::from_slice(&r.encode()).unwrap();
        for key in ["protected", "drain", "booted_at"] {
            assert!(plain.get(key).is_none(), "{key} in {plain}");
        }
        r.protected = true;
        r.booted_at = Some(DateTime::UNIX_EPOCH);
        r.drain = Some(DrainStatus {
            state: DrainState::Failed,
            detail: Some("exit status 3".into()),
        });
        let v: serde_json::Value = serde_json::from_slice(&r.encode()).unwrap();
        assert_eq!(v["protected"], true);
        assert_eq!(
            v["drain"],
            serde_json::json!({"state": "failed", "detail": "exit status 3"})
        );
        assert_eq!(NodeReport::decode(&r.encode()).unwrap(), r);
        let answer: ReportAnswer = serde_json::from_str(
            r#"{"drain": {"pool": "web", "deadline": "2026-12-07T10:00:00Z"}}"#,
        )
        .unwrap();
        assert_eq!(answer.drain.unwrap().pool, "web");
        let empty: ReportAnswer = serde_json::from_str("{}").unwrap();
        assert!(empty.is_empty());
        assert_eq!(serde_json::to_string(&empty).unwrap(), "{}");
    }

    #[test]
    fn refuses_other_versions_and_names_bad_fields() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().encode()).unwrap();
        v["version"] = 2.into();
        let err = NodeReport::decode(v.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(err, ReportError::UnsupportedVersion { found: 2 }),
            "{err}"
        );
        v["version"] = 1.into();
        v["node_id"] = 7.into();
        let err = NodeReport::decode(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid type"), "{err}");
        assert!(NodeReport::decode(b"not json").is_err());
    }

    #[test]
    fn derived_host_figures() {
        let h = sample().host.unwrap();
        assert_eq!(h.memory_percent(), Some(70.0));
        assert_eq!(h.swap_percent(), 0.0);
        assert_eq!(h.disk_percent(), Some(90.0));
        assert_eq!(h.load_per_core().one, 0.5);
        assert_eq!(h.rx_bytes_per_second(), 10.0);
    }
}
