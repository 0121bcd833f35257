//! This node's GPUs as metrics.

use super::*;

impl Metrics {
    /// Exports this node's GPUs (`capstan_gpu_*{gpu,uuid}`).
    pub fn export_gpus(&self, gpus: &[capstan_collectors::GpuMetrics]) {
        for g in gpus {
            let l = GpuLabels {
                gpu: g.index.to_string(),
                uuid: g.uuid.clone(),
            };
            #[allow(clippy::cast_precision_loss)] // byte counts far below 2^53
            let gauges = [
                (&self.gpu_utilization, g.utilization_percent),
                (&self.gpu_memory_utilization, g.memory_utilization_percent),
                (&self.gpu_memory_used, g.memory_used_bytes.map(|b| b as f64)),
                (
                    &self.gpu_memory_total,
                    g.memory_total_bytes.map(|b| b as f64),
                ),
                (&self.gpu_temperature, g.temperature_celsius),
                (&self.gpu_power, g.power_watts),
                (&self.gpu_power_limit, g.power_limit_watts),
                (&self.gpu_sm_clock, g.sm_clock_mhz.map(f64::from)),
                (&self.gpu_memory_clock, g.memory_clock_mhz.map(f64::from)),
            ];
            for (family, value) in gauges {
                match value {
                    Some(v) => {
                        family.get_or_create(&l).set(v);
                    }
                    None => {
                        family.remove(&l);
                    }
                }
            }
            self.gpu_throttled
                .get_or_create(&l)
                .set(i64::from(!g.throttle_reasons.is_empty()));
            for (kind, n) in [
                ("corrected", g.ecc_corrected),
                ("uncorrected", g.ecc_uncorrected),
            ] {
                if let Some(n) = n {
                    let labels = GpuEccLabels {
                        gpu: l.gpu.clone(),
                        uuid: l.uuid.clone(),
                        r#type: kind.to_owned(),
                    };
                    // NVML's count is itself a counter: the series follows it. A count
                    // below the series' (the driver reloaded) starts the series anew,
                    // which Prometheus reads as a counter reset.
                    let seen = self.gpu_ecc_errors.get_or_create(&labels).get();
                    if n < seen {
                        self.gpu_ecc_errors.remove(&labels);
                    }
                    let counter = self.gpu_ecc_errors.get_or_create(&labels);
                    counter.inc_by(n - counter.get());
                }
            }
            for xid in &g.xid_errors {
                self.gpu_xid_errors
                    .get_or_create(&GpuXidLabels {
                        gpu: l.gpu.clone(),
                        uuid: l.uuid.clone(),
                        xid: xid.to_string(),
                    })
                    .inc();
            }
        }
    }
}
