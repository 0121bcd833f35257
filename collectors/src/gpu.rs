//! GPU telemetry. [`GpuDevice`] is what the collector needs of one GPU; [`read`] maps
//! it to the report's [`GpuMetrics`] (tested with a fake device, no GPU needed); the
//! NVML backend (feature `nvml`) implements it over `nvml-wrapper`, which loads
//! `libnvidia-ml` at run time, so one binary runs with and without a driver.

use chrono::{DateTime, Utc};

use crate::{CollectError, Collector, GpuMetrics, NodeReport};

/// One GPU, as the collector reads it. Each reading may fail on its own (a device or
/// driver that does not support it); the error text is for debugging only.
pub trait GpuDevice {
    /// NVML index.
    fn index(&self) -> Result<u32, String>;
    /// UUID.
    fn uuid(&self) -> Result<String, String>;
    /// Product name.
    fn name(&self) -> Result<String, String>;
    /// (GPU, memory) utilization, percent.
    fn utilization(&self) -> Result<(u32, u32), String>;
    /// (used, total) memory, bytes.
    fn memory(&self) -> Result<(u64, u64), String>;
    /// Die temperature, °C.
    fn temperature(&self) -> Result<u32, String>;
    /// Power draw, milliwatts.
    fn power_milliwatts(&self) -> Result<u32, String>;
    /// Enforced power limit, milliwatts.
    fn power_limit_milliwatts(&self) -> Result<u32, String>;
    /// (SM, memory) clocks, MHz.
    fn clocks(&self) -> Result<(u32, u32), String>;
    /// Names of the throttle reasons in force.
    fn throttle_reasons(&self) -> Result<Vec<String>, String>;
    /// (corrected, uncorrected) volatile ECC error counts.
    fn ecc(&self) -> Result<(u64, u64), String>;
}

/// The report's readings of `d`, with the critical XIDs seen on it since the last one.
pub fn read(d: &impl GpuDevice, fallback_index: u32, xid_errors: Vec<u64>) -> GpuMetrics {
    let (util, mem_util) = d.utilization().ok().unzip();
    let (used, total) = d.memory().ok().unzip();
    let (sm, mem_clock) = d.clocks().ok().unzip();
    let (ecc_c, ecc_u) = d.ecc().ok().unzip();
    let watts = |mw: u32| f64::from(mw) / 1000.0;
    GpuMetrics {
        index: d.index().unwrap_or(fallback_index),
        uuid: d.uuid().unwrap_or_default(),
        name: d.name().unwrap_or_default(),
        utilization_percent: util.map(f64::from),
        memory_utilization_percent: mem_util.map(f64::from),
        memory_used_bytes: used,
        memory_total_bytes: total,
        temperature_celsius: d.temperature().ok().map(f64::from),
        power_watts: d.power_milliwatts().ok().map(watts),
        power_limit_watts: d.power_limit_milliwatts().ok().map(watts),
        sm_clock_mhz: sm,
        memory_clock_mhz: mem_clock,
        throttle_reasons: d.throttle_reasons().unwrap_or_default(),
        ecc_corrected: ecc_c,
        ecc_uncorrected: ecc_u,
        xid_errors,
    }
}

/// Where GPU readings come from.
pub trait GpuBackend: Send {
    /// Every GPU's readings now.
    fn read_all(&mut self) -> Result<Vec<GpuMetrics>, CollectError>;
}

/// The GPU collector: fills `NodeReport::gpus` from its backend.
pub struct GpuCollector {
    backend: Box<dyn GpuBackend>,
}

impl std::fmt::Debug for GpuCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuCollector").finish_non_exhaustive()
    }
}

impl GpuCollector {
    /// A collector over `backend`.
    pub fn with_backend(backend: Box<dyn GpuBackend>) -> Self {
        Self { backend }
    }

    /// The NVML collector, or why there is none on this node (no driver, no GPU, or a
    /// build without the `nvml` feature). The agent logs the reason once and carries on.
    pub fn nvml() -> Result<Self, CollectError> {
        #[cfg(feature = "nvml")]
        {
            Ok(Self::with_backend(Box::new(
                crate::nvml::NvmlBackend::open()?,
            )))
        }
        #[cfg(not(feature = "nvml"))]
        {
            Err(CollectError::Unavailable {
                collector: "gpu",
                reason: "this build of capstan has no NVML support (feature `nvml`)".into(),
            })
        }
    }
}

impl Collector for GpuCollector {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn collect(&mut self, _at: DateTime<Utc>, report: &mut NodeReport) -> Result<(), CollectError> {
        report.gpus = self.backend.read_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An H100 as NVML describes it, with ECC unsupported when `ecc` is false.
    struct Fake {
        ecc: bool,
    }

    impl GpuDevice for Fake {
        fn index(&self) -> Result<u32, String> {
            Ok(3)
        }
        fn uuid(&self) -> Result<String, String> {
            Ok("GPU-0b9c3c3e-1d2f-4a5b-8c7d-112233445566".into())
        }
        fn name(&self) -> Result<String, String> {
            Ok("NVIDIA H100 80GB HBM3".into())
        }
        fn utilization(&self) -> Result<(u32, u32), String> {
            Ok((87, 41))
        }
        fn memory(&self) -> Result<(u64, u64), String> {
            Ok((40 << 30, 80 << 30))
        }
        fn temperature(&self) -> Result<u32, String> {
            Ok(64)
        }
        fn power_milliwatts(&self) -> Result<u32, String> {
            Ok(512_345)
        }
        fn power_limit_milliwatts(&self) -> Result<u32, String> {
            Ok(700_000)
        }
        fn clocks(&self) -> Result<(u32, u32), String> {
            Ok((1980, 2619))
        }
        fn throttle_reasons(&self) -> Result<Vec<String>, String> {
            Ok(vec!["SW_POWER_CAP".into()])
        }
        fn ecc(&self) -> Result<(u64, u64), String> {
            if self.ecc {
                Ok((2, 1))
            } else {
                Err("Not supported".into())
            }
        }
    }

    #[test]
    fn every_field_maps_and_unsupported_ones_are_none() {
        let g = read(&Fake { ecc: true }, 0, vec![31]);
        assert_eq!(g.index, 3);
        assert_eq!(g.name, "NVIDIA H100 80GB HBM3");
        assert!(g.uuid.starts_with("GPU-"));
        assert_eq!(g.utilization_percent, Some(87.0));
        assert_eq!(g.memory_utilization_percent, Some(41.0));
        assert_eq!(g.memory_percent(), Some(50.0));
        assert_eq!(g.temperature_celsius, Some(64.0));
        assert_eq!(g.power_watts, Some(512.345));
        assert_eq!(g.power_limit_watts, Some(700.0));
        assert_eq!(
            (g.sm_clock_mhz, g.memory_clock_mhz),
            (Some(1980), Some(2619))
        );
        assert_eq!(g.throttle_reasons, vec!["SW_POWER_CAP"]);
        assert_eq!((g.ecc_corrected, g.ecc_uncorrected), (Some(2), Some(1)));
        assert!(g.is_faulty(), "an uncorrected ECC error is a fault");
        let g = read(&Fake { ecc: false }, 0, vec![31]);
        assert_eq!((g.ecc_corrected, g.ecc_uncorrected), (None, None));
        assert!(
            !g.is_faulty(),
            "XID 31 (a page fault in an app) is not fatal"
        );
        let g = read(&Fake { ecc: false }, 0, vec![79]);
        assert!(g.is_faulty(), "XID 79: fallen off the bus");
    }

    struct NoDriver;

    impl GpuBackend for NoDriver {
        fn read_all(&mut self) -> Result<Vec<GpuMetrics>, CollectError> {
            Err(CollectError::Unavailable {
                collector: "gpu",
                reason: "libnvidia-ml.so not found".into(),
            })
        }
    }

    #[test]
    fn without_a_driver_the_report_has_no_gpus_and_says_why() {
        let mut c = GpuCollector::with_backend(Box::new(NoDriver));
        let mut r = NodeReport::new("n", None, DateTime::UNIX_EPOCH);
        let e = c.collect(DateTime::UNIX_EPOCH, &mut r).unwrap_err();
        assert!(e.to_string().contains("libnvidia-ml"), "{e}");
        assert!(r.gpus.is_empty());
    }

    /// The real NVML path on this machine: with no NVIDIA driver installed, opening
    /// NVML fails with a reason instead of crashing the agent. (On a GPU node the
    /// device check, scripts/gpu-check.sh, covers the other branch.)
    #[test]
    fn nvml_says_why_it_is_off_where_there_is_no_driver() {
        let has_driver = std::path::Path::new("/proc/driver/nvidia/version").exists();
        match GpuCollector::nvml() {
            Ok(_) => assert!(has_driver, "NVML opened without a driver"),
            Err(e) => {
                assert!(!has_driver, "a driver is present, yet: {e}");
                assert!(matches!(e, CollectError::Unavailable { .. }), "{e}");
            }
        }
    }
}
