//! Where a model runs: `--device cpu|cuda[:N]|auto`.
//!
//! candle answers `Device::new_cuda` with an error in a build without its
//! CUDA backend, so the choice is made the same way in every build; asking
//! for CUDA in such a build says that it has none.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::Error;

/// The device asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA GPU 0 when this build has CUDA and the machine a GPU, else the
    /// CPU.
    #[default]
    Auto,
    Cpu,
    /// The CUDA GPU of this ordinal.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("`{s}` is not a device: use cpu, cuda, cuda:N (N a GPU's number) or auto");
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceChoice::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceChoice {
    /// The device to load models on. Asking for CUDA in a build without it,
    /// or for a GPU the machine does not have, is an error; `auto` falls
    /// back to the CPU.
    pub fn open(self) -> anyhow::Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            // Without CUDA in the build, or without a GPU, candle says no.
            DeviceChoice::Auto => Ok(Device::new_cuda(0).unwrap_or(Device::Cpu)),
            DeviceChoice::Cuda(_) if !candle_core::utils::cuda_is_available() => {
                Err(Error::Usage(format!(
                    "--device {self}: this glot was built without CUDA; it runs on the CPU (--device cpu)"
                ))
                .into())
            }
            DeviceChoice::Cuda(n) => Device::new_cuda(n).map_err(|e| {
                Error::Usage(format!("--device {self}: no such CUDA GPU ({e})")).into()
            }),
        }
    }
}

/// How `--stats` and `--format json` name a device.
pub fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Bytes of memory the system can give without swapping (Linux's
/// `MemAvailable`); `None` where it does not say.
pub fn available_memory() -> Option<u64> {
    mem_available(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_memory_is_read_as_linux_writes_it() {
        let meminfo =
            "MemTotal:       24589164 kB\nMemFree:         1000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(mem_available(meminfo), Some(20_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots kB\n"), None);
    }

    #[test]
    fn choices_parse_and_print_back() {
        for (text, want) in [
            ("auto", DeviceChoice::Auto),
            ("CPU", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("cuda:3", DeviceChoice::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>(), Ok(want));
            assert_eq!(want.to_string().parse::<DeviceChoice>(), Ok(want));
        }
        for bad in ["", "cuda:", "cuda:-1", "tpu", "cuda:x"] {
            let e = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(e.contains("use cpu, cuda, cuda:N"), "{e}");
        }
    }

    #[test]
    fn the_cpu_is_always_there_and_auto_falls_back_to_it() {
        assert!(DeviceChoice::Cpu.open().unwrap().is_cpu());
        if !candle_core::utils::cuda_is_available() {
            assert!(DeviceChoice::Auto.open().unwrap().is_cpu());
            let e = DeviceChoice::Cuda(0).open().unwrap_err().to_string();
            assert!(e.contains("built without CUDA"), "{e}");
        }
        assert_eq!(name(&Device::Cpu), "cpu");
    }
}
