//! How many CPUs this process may really use: the smaller of its affinity mask and its cgroup
//! CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), never the host's core count.

use std::path::Path;

/// The CPU budget and where it came from, for the start-up log.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CpuBudget {
    /// CPUs in the affinity mask (`None` if it could not be read).
    pub(crate) affinity: Option<usize>,
    /// The cgroup quota in CPUs (`None` if unlimited or unknown).
    pub(crate) quota: Option<f64>,
    /// The threads to use: `min(affinity, ceil(quota))`, at least 1.
    pub(crate) threads: usize,
}

pub(crate) fn detect() -> CpuBudget {
    let affinity = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| affinity_from_status(&s));
    let quota = cgroup_quota(Path::new("/sys/fs/cgroup"));
    let fallback = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut threads = affinity.unwrap_or(fallback);
    if let Some(q) = quota {
        threads = threads.min(q.ceil().max(1.0) as usize);
    }
    CpuBudget {
        affinity,
        quota,
        threads: threads.max(1),
    }
}

/// Counts the CPUs in `Cpus_allowed_list: 0-3,8` of /proc/self/status.
fn affinity_from_status(status: &str) -> Option<usize> {
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    let mut count = 0;
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                count += b
                    .trim()
                    .parse::<usize>()
                    .ok()?
                    .checked_sub(a.trim().parse::<usize>().ok()?)?
                    + 1
            }
            None => count += 1,
        }
    }
    (count > 0).then_some(count)
}

/// The quota in CPUs from cgroup v2 (`cpu.max`: "max 100000" or "150000 100000") or v1.
fn cgroup_quota(root: &Path) -> Option<f64> {
    if let Ok(max) = std::fs::read_to_string(root.join("cpu.max")) {
        return quota_from_cpu_max(&max);
    }
    let quota: f64 = std::fs::read_to_string(root.join("cpu/cpu.cfs_quota_us"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let period: f64 = std::fs::read_to_string(root.join("cpu/cpu.cfs_period_us"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

fn quota_from_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?;
    let period: f64 = parts.next()?.parse().ok()?;
    if quota == "max" || period <= 0.0 {
        return None;
    }
    Some(quota.parse::<f64>().ok()? / period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_affinity_lists() {
        assert_eq!(affinity_from_status("Name:\tx\nCpus_allowed_list:\t0-3,8\n"), Some(5));
        assert_eq!(affinity_from_status("Cpus_allowed_list:\t2\n"), Some(1));
        assert_eq!(affinity_from_status("nothing"), None);
    }

    #[test]
    fn parses_cgroup_v2_quotas() {
        assert_eq!(quota_from_cpu_max("max 100000\n"), None);
        assert_eq!(quota_from_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(quota_from_cpu_max("garbage"), None);
    }

    #[test]
    fn reads_cgroup_v1_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cpu")).unwrap();
        std::fs::write(dir.path().join("cpu/cpu.cfs_quota_us"), "200000\n").unwrap();
        std::fs::write(dir.path().join("cpu/cpu.cfs_period_us"), "100000\n").unwrap();
        assert_eq!(cgroup_quota(dir.path()), Some(2.0));
        std::fs::write(dir.path().join("cpu/cpu.cfs_quota_us"), "-1\n").unwrap();
        assert_eq!(cgroup_quota(dir.path()), None);
    }
}
