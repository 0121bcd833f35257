//! Default values, one function each so serde and docs share them.

use std::path::PathBuf;

/// `scrape.timeout`.
pub fn scrape_timeout() -> String {
    "2s".to_owned()
}

/// `agent.listen`.
pub fn listen() -> String {
    "0.0.0.0:9464".to_owned()
}
/// `agent.interval`.
pub fn interval() -> String {
    "10s".to_owned()
}
/// `agent.state_dir`.
pub fn state_dir() -> PathBuf {
    PathBuf::from("/var/lib/capstan")
}
/// `agent.max_connections`.
pub fn max_connections() -> u32 {
    4096
}
/// `agent.request_timeout`.
pub fn request_timeout() -> String {
    "10s".to_owned()
}
/// `cluster.max_nodes`.
pub fn max_nodes() -> u32 {
    20_000
}
/// `cluster.node_expiry`.
pub fn node_expiry() -> String {
    "5m".to_owned()
}
/// `cluster.etcd.prefix`.
pub fn etcd_prefix() -> String {
    "/capstan".to_owned()
}
/// `cluster.etcd.lease_ttl` and `cluster.kubernetes.lease_duration`.
pub fn lease_ttl() -> String {
    "10s".to_owned()
}
/// `cluster.kubernetes.lease_name`.
pub fn lease_name() -> String {
    "capstan-leader".to_owned()
}
/// `journal.retention_days`.
pub const fn retention_days() -> u32 {
    90
}
/// `pool.tolerance`, as HPA's.
pub const fn tolerance() -> f64 {
    0.1
}
/// `pool.spot.on_demand_percent_above_base`: all on-demand unless told otherwise.
pub const fn on_demand_percent() -> u32 {
    100
}
/// `pool.spot.fallback_after`.
pub fn spot_fallback_after() -> String {
    "5m".to_owned()
}
/// `pool.spot.retry_after`.
pub fn spot_retry_after() -> String {
    "15m".to_owned()
}
/// `pool.predictive.horizon`.
pub fn horizon() -> String {
    "30m".to_owned()
}
/// `pool.predictive.history`.
pub fn history() -> String {
    "14d".to_owned()
}
/// `pool.predictive.lead_time`.
pub fn lead_time() -> String {
    "5m".to_owned()
}
/// `pool.predictive.anomaly_threshold`.
pub const fn anomaly_threshold() -> f64 {
    2.5
}
/// `pool.schedule.timezone`.
pub fn timezone() -> String {
    "UTC".to_owned()
}
/// `pool.emergency.threshold`.
pub const fn emergency_threshold() -> f64 {
    1.5
}
/// `pool.emergency.intervals`.
pub const fn emergency_intervals() -> u32 {
    3
}
/// `pool.flap.max_reversals`.
pub const fn flap_max_reversals() -> u32 {
    3
}
/// `pool.flap.window`.
pub fn flap_window() -> String {
    "30m".to_owned()
}
/// `pool.flap.cool_off`.
pub fn flap_cool_off() -> String {
    "30m".to_owned()
}
/// `agent.interruptions.poll`.
pub fn interruptions_poll() -> String {
    "2s".to_owned()
}
/// `pool.circuit.failures`.
pub const fn circuit_failures() -> u32 {
    5
}
/// `pool.circuit.max_backoff`.
pub fn circuit_max_backoff() -> String {
    "5m".to_owned()
}
/// `pool.scale_in.drain_timeout`.
pub fn drain_timeout() -> String {
    "10m".to_owned()
}
/// `pool.scale_in.max_draining`.
pub fn max_draining() -> super::Share {
    super::Share::Percent("10%".to_owned())
}
/// `pool.scale_in.halt_when_unready`.
pub fn halt_when_unready() -> String {
    "45%".to_owned()
}
