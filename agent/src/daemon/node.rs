//! This node: its name and pool as the leader knows them, and its collectors (the
//! daemon's, and what `capstan plan` and `collect` read).

use super::*;

/// The node id: `agent.node_name`, else the Kubernetes node it runs on
/// (`[agent.drain] kubernetes_node`, which the shipped DaemonSets set), else the host
/// name. (The daemon names a node by its cloud identity first when
/// `[agent.interruptions]` is set and `node_name` is not.)
pub fn node_id(cfg: &ValidatedConfig) -> String {
    cfg.agent
        .node_name
        .clone()
        .or_else(|| cfg.agent.drain.kubernetes_node.clone())
        .unwrap_or_else(|| {
            hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".to_owned())
        })
}

/// The pool this node reports for: `agent.pool`, or the only pool when there is one.
pub fn node_pool(cfg: &ValidatedConfig) -> Option<String> {
    cfg.agent
        .pool
        .clone()
        .or_else(|| match cfg.pools.as_slice() {
            [only] => Some(only.name.clone()),
            _ => None,
        })
}

/// A kind of this node's telemetry that can be off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Telemetry {
    /// CPU, memory, disks, network.
    Host,
    /// NVIDIA GPUs, through NVML.
    Gpu,
}

/// This node's collectors: the host's, and the GPUs' where NVML answers. Each kind
/// that is off is handed to `off` with why (the daemon logs it; the CLI prints it).
/// The daemon and `capstan plan`/`collect` collect the same way.
pub fn node_collectors(mut off: impl FnMut(Telemetry, String)) -> Vec<Box<dyn Collector>> {
    let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
    match HostCollector::new() {
        Ok(c) => collectors.push(Box::new(c)),
        Err(e) => off(Telemetry::Host, e.to_string()),
    }
    match capstan_collectors::gpu::GpuCollector::nvml() {
        Ok(c) => collectors.push(Box::new(c)),
        Err(e) => off(Telemetry::Gpu, e.to_string()),
    }
    collectors
}
