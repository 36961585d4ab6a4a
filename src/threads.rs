//! How many threads compute: `--threads`, the environment, or one per
//! physical core.
//!
//! Decoding reads every weight once per token, so it is bound by memory
//! bandwidth, and prefill by the vector units: a second hardware thread on
//! the same core adds neither, and only makes the threads that share a core
//! wait for each other at every matrix. The default is therefore one thread
//! per physical core the process may run on, as llama.cpp does.

use std::collections::BTreeSet;
use std::path::Path;

/// Threads a CPU may be given at most: beyond that, threads only wait for
/// each other (`--threads 1000` on two CPUs never finished a 0.3 s job).
const THREADS_PER_CPU: usize = 4;

/// The threads for model computation: `--threads`, else
/// `CANDLE_NUM_THREADS`, else `RAYON_NUM_THREADS`, else one per physical
/// core; `None` when none of those is known. candle sizes its thread pool
/// from the first of the two variables and counts threads from the second,
/// so the caller sets both to the answer. A count beyond
/// [`THREADS_PER_CPU`] per CPU the process may use is refused.
pub fn threads(flag: Option<usize>) -> Result<Option<usize>, String> {
    let from_env = |name: &str| {
        let value = std::env::var(name).ok()?;
        Some(match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok((n, format!("{name}={n}"))),
            _ => Err(format!(
                "{name}={value:?} is not a thread count (a number from 1)"
            )),
        })
    };
    let chosen = match flag {
        Some(n) => Some((n, format!("--threads {n}"))),
        None => from_env("CANDLE_NUM_THREADS")
            .or_else(|| from_env("RAYON_NUM_THREADS"))
            .transpose()?,
    };
    let Some((n, source)) = chosen else {
        return Ok(default_threads());
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let most = THREADS_PER_CPU * cpus;
    if n > most {
        return Err(format!(
            "{source}: this process may use {cpus} CPU(s); more than {most} threads only wait for each other"
        ));
    }
    Ok(Some(n))
}

/// Physical cores among the CPUs this process may use, bounded by what the
/// system grants it (cgroup quotas); `None` where the topology is unknown.
pub fn default_threads() -> Option<usize> {
    let granted = std::thread::available_parallelism().ok()?.get();
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|list| parse_cpu_list(list.trim()))?;
    let cores = physical_cores(Path::new("/sys/devices/system/cpu"), &allowed)?;
    Some(cores.min(granted).max(1))
}

/// Distinct cores among `cpus`: CPUs that list the same hardware-thread
/// siblings share one core.
fn physical_cores(sysfs: &Path, cpus: &[usize]) -> Option<usize> {
    let mut cores = BTreeSet::new();
    for cpu in cpus {
        let path = sysfs.join(format!("cpu{cpu}/topology/thread_siblings_list"));
        let siblings = std::fs::read_to_string(path).ok()?;
        cores.insert(parse_cpu_list(siblings.trim())?);
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// A kernel CPU list such as `0-3,8,10-11`.
fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 1 << 16 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    (!cpus.is_empty()).then_some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_like_the_kernel_writes_them() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    /// Four CPUs, two per core (0 and 2 share one, 1 and 3 the other).
    fn sysfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (cpu, siblings) in [(0, "0,2"), (1, "1,3"), (2, "0,2"), (3, "1,3")] {
            let topo = dir.path().join(format!("cpu{cpu}/topology"));
            std::fs::create_dir_all(&topo).unwrap();
            std::fs::write(topo.join("thread_siblings_list"), format!("{siblings}\n")).unwrap();
        }
        dir
    }

    #[test]
    fn hardware_threads_of_one_core_count_once() {
        let dir = sysfs();
        assert_eq!(physical_cores(dir.path(), &[0, 1, 2, 3]), Some(2));
        assert_eq!(physical_cores(dir.path(), &[0, 2]), Some(1));
        assert_eq!(physical_cores(dir.path(), &[1, 2]), Some(2));
        // A CPU whose topology cannot be read makes the count unknown.
        assert_eq!(physical_cores(dir.path(), &[0, 4]), None);
    }

    #[test]
    fn this_machine_has_a_default() {
        if Path::new("/sys/devices/system/cpu/cpu0/topology").is_dir() {
            let n = default_threads().unwrap();
            let granted = std::thread::available_parallelism().unwrap().get();
            assert!((1..=granted).contains(&n));
        }
    }
}
