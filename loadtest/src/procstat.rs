//! CPU time and memory of child processes, read from `/proc`.

use std::time::Duration;

/// Clock ticks per second for `/proc/PID/stat` times. Linux has used 100 on every mainstream
/// architecture for decades; `getconf CLK_TCK` confirms it without `unsafe` libc calls.
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU time of one process, in clock ticks.
#[derive(Clone, Copy, Default)]
pub struct Ticks {
    /// utime + stime.
    pub all: u64,
    /// stime: in the kernel on the process's behalf (system calls, the loopback TCP stack).
    pub sys: u64,
}

/// utime + stime of one process, in clock ticks; `None` once the process is gone.
pub fn cpu_ticks(pid: u32) -> Option<Ticks> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Ticks {
        all: utime + stime,
        sys: stime,
    })
}

/// A `VmXXX:` line of `/proc/PID/status`, in bytes.
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// Current resident set size in bytes.
pub fn rss(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:").unwrap_or(0)
}

/// Peak resident set size (VmHWM) in bytes since start or the last [`reset_peak`].
pub fn peak_rss(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:").unwrap_or(0)
}

/// Resets VmHWM to the current RSS (writing 5 to `clear_refs`, Linux ≥ 4.0), so each scenario
/// reports its own peak. Failure only makes the peak cover more than one scenario.
pub fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// CPU used by a set of processes between two points in time.
pub struct CpuMeter {
    pids: Vec<u32>,
    start: Vec<Ticks>,
    tck: u64,
}

/// What one process used: all its CPU time, and the part spent in the kernel.
#[derive(Clone, Copy, Default)]
pub struct Used {
    pub cpu: Duration,
    pub sys: Duration,
}

impl CpuMeter {
    pub fn start(pids: &[u32], tck: u64) -> CpuMeter {
        for &p in pids {
            reset_peak(p);
        }
        CpuMeter {
            pids: pids.to_vec(),
            start: pids
                .iter()
                .map(|&p| cpu_ticks(p).unwrap_or_default())
                .collect(),
            tck,
        }
    }

    /// CPU time used by each process since [`CpuMeter::start`].
    pub fn used(&self) -> Vec<Used> {
        let ms = |ticks: u64| Duration::from_millis(ticks * 1000 / self.tck.max(1));
        self.pids
            .iter()
            .zip(&self.start)
            .map(|(&p, &s)| {
                let now = cpu_ticks(p).unwrap_or(s);
                Used {
                    cpu: ms(now.all.saturating_sub(s.all)),
                    sys: ms(now.sys.saturating_sub(s.sys)),
                }
            })
            .collect()
    }
}

/// Busy CPU time of the whole machine (all cores) from `/proc/stat`, in clock ticks.
pub fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0;
    };
    // cpu user nice system idle iowait irq softirq steal ...
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    get(0) + get(1) + get(2) + get(5) + get(6) + get(7)
}
