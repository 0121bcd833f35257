//! The NVML backend of the GPU collector, over `nvml-wrapper` (which loads
//! `libnvidia-ml.so` when [`NvmlBackend::open`] runs, not at link time).

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, EventSet, Nvml};

use crate::gpu::{GpuBackend, GpuDevice, read};
use crate::{CollectError, GpuMetrics};

fn text(e: NvmlError) -> String {
    e.to_string()
}

impl GpuDevice for Device<'_> {
    fn index(&self) -> Result<u32, String> {
        Device::index(self).map_err(text)
    }
    fn uuid(&self) -> Result<String, String> {
        Device::uuid(self).map_err(text)
    }
    fn name(&self) -> Result<String, String> {
        Device::name(self).map_err(text)
    }
    fn utilization(&self) -> Result<(u32, u32), String> {
        self.utilization_rates()
            .map(|u| (u.gpu, u.memory))
            .map_err(text)
    }
    fn memory(&self) -> Result<(u64, u64), String> {
        self.memory_info().map(|m| (m.used, m.total)).map_err(text)
    }
    fn temperature(&self) -> Result<u32, String> {
        Device::temperature(self, TemperatureSensor::Gpu).map_err(text)
    }
    fn power_milliwatts(&self) -> Result<u32, String> {
        self.power_usage().map_err(text)
    }
    fn power_limit_milliwatts(&self) -> Result<u32, String> {
        self.enforced_power_limit().map_err(text)
    }
    fn clocks(&self) -> Result<(u32, u32), String> {
        let sm = self.clock_info(Clock::SM).map_err(text)?;
        let mem = self.clock_info(Clock::Memory).map_err(text)?;
        Ok((sm, mem))
    }
    fn throttle_reasons(&self) -> Result<Vec<String>, String> {
        let reasons = self.current_throttle_reasons().map_err(text)?;
        Ok(reasons
            .iter_names()
            .map(|(name, _)| name.to_owned())
            .collect())
    }
    fn ecc(&self) -> Result<(u64, u64), String> {
        let c = self
            .total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)
            .map_err(text)?;
        let u = self
            .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
            .map_err(text)?;
        Ok((c, u))
    }
}

/// NVML, initialized once for the process (the library stays loaded while the agent
/// runs), with an event set for critical XID errors where the driver supports it.
pub struct NvmlBackend {
    nvml: &'static Nvml,
    count: u32,
    xids: Option<EventSet<'static>>,
}

impl NvmlBackend {
    /// Loads NVML and counts the GPUs; `Unavailable` with the reason when there is no
    /// driver or no GPU.
    pub fn open() -> Result<Self, CollectError> {
        let off = |reason: String| CollectError::Unavailable {
            collector: "gpu",
            reason,
        };
        let nvml = Nvml::init().map_err(|e| {
            off(format!(
                "NVML not loaded ({e}); no NVIDIA driver on this node?"
            ))
        })?;
        let count = nvml
            .device_count()
            .map_err(|e| off(format!("NVML cannot count GPUs: {e}")))?;
        if count == 0 {
            return Err(off("NVML found no GPU on this node".to_owned()));
        }
        // Lives for the process: the event set borrows it.
        let nvml: &'static Nvml = Box::leak(Box::new(nvml));
        let mut xids = nvml.create_event_set().ok();
        for i in 0..count {
            let (Ok(device), Some(set)) = (nvml.device_by_index(i), xids.take()) else {
                continue;
            };
            xids = match device.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
                Ok(set) => Some(set),
                // Not supported on this device or driver: no XID events, the rest works.
                Err(_) => nvml.create_event_set().ok(),
            };
        }
        Ok(Self { nvml, count, xids })
    }

    /// Critical XIDs waiting in the event set, by device UUID.
    fn drain_xids(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let Some(set) = &self.xids else { return out };
        while let Ok(event) = set.wait(0) {
            if let (Ok(uuid), Some(XidError::Value(xid))) = (event.device.uuid(), event.event_data)
            {
                out.push((uuid, xid));
            }
        }
        out
    }
}

impl GpuBackend for NvmlBackend {
    fn read_all(&mut self) -> Result<Vec<GpuMetrics>, CollectError> {
        let xids = self.drain_xids();
        let mut gpus = Vec::with_capacity(self.count as usize);
        for i in 0..self.count {
            let device = self
                .nvml
                .device_by_index(i)
                .map_err(|e| CollectError::Failed {
                    collector: "gpu",
                    reason: format!("GPU {i}: {e}"),
                })?;
            let uuid = Device::uuid(&device).unwrap_or_default();
            let mine = xids
                .iter()
                .filter(|(u, _)| *u == uuid)
                .map(|(_, x)| *x)
                .collect();
            gpus.push(read(&device, i, mine));
        }
        Ok(gpus)
    }
}
