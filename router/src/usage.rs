//! CPU and memory use of the function's processes, read from `/proc`.
//!
//! In a pod the sidecar shares the PID namespace with the function container
//! (`shareProcessNamespace`), so every process it sees except itself belongs to the function (the
//! pause process uses next to nothing). When the sidecar starts the function itself (local runs,
//! tests, benchmarks) it measures that process and its descendants instead.
//!
//! Assumes the usual Linux `USER_HZ` of 100 and 4 KiB pages (reading them needs `sysconf`, i.e.
//! unsafe code or another dependency, for a value that is the same on every mainstream kernel).

use std::collections::HashMap;
use std::time::Instant;

const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_SIZE: u64 = 4096;

/// Which processes count as the function.
#[derive(Debug, Clone, Copy)]
pub enum Selector {
    /// All processes visible except the sidecar itself (pod mode).
    AllButSelf,
    /// This process and its descendants (the sidecar started the function).
    Tree(u32),
}

/// One process as read from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub rss_pages: u64,
    /// Field 3: `Z` is a zombie (exited, not yet reaped), which no longer runs anything.
    pub state: u8,
    /// Field 22, clock ticks after boot: with the pid it names one process, even once the pid
    /// is reused.
    pub start_time: u64,
}

/// Parse `/proc/PID/stat`. The command name (field 2) may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (head, tail) = text.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    // tail starts at field 3 (state); utime is field 14, stime 15, rss 24.
    let f: Vec<&str> = tail.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|s| s.parse::<u64>().ok());
    Some(ProcStat {
        pid,
        ppid: u32::try_from(field(4)?).ok()?,
        cpu_ticks: field(14)? + field(15)?,
        rss_pages: field(24)?,
        state: f.first()?.bytes().next()?,
        start_time: field(22)?,
    })
}

/// One process, told apart from a later one that reuses its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcId {
    pub pid: u32,
    pub start_time: u64,
}

/// The live (not zombie) processes that make up the function, to tell later whether its runtime is
/// still there. In a pod this leaves out PID 1 as well: the pause process (or whatever init the pod
/// has) outlives every restart of the function container.
pub fn function_processes(procs: &[ProcStat], selector: Selector, self_pid: u32) -> Vec<ProcId> {
    chosen(procs, selector, self_pid)
        .into_iter()
        .filter(|p| p.state != b'Z')
        .filter(|p| !matches!(selector, Selector::AllButSelf) || p.pid != 1)
        .map(|p| ProcId {
            pid: p.pid,
            start_time: p.start_time,
        })
        .collect()
}

/// Whether every process of an earlier `snapshot` has exited (a pid now held by a newer process
/// or by a zombie counts as exited). An empty snapshot proves nothing, so it is never "gone".
pub fn all_exited(snapshot: &[ProcId], now: &[ProcStat]) -> bool {
    !snapshot.is_empty()
        && snapshot.iter().all(|old| {
            !now.iter()
                .any(|p| p.pid == old.pid && p.start_time == old.start_time && p.state != b'Z')
        })
}

/// Sum CPU ticks and resident memory over the selected processes. Pure over the parsed table.
pub fn total(procs: &[ProcStat], selector: Selector, self_pid: u32) -> (u64, u64) {
    chosen(procs, selector, self_pid)
        .iter()
        .fold((0, 0), |(t, r), p| {
            (t + p.cpu_ticks, r + p.rss_pages * PAGE_SIZE)
        })
}

fn chosen(procs: &[ProcStat], selector: Selector, self_pid: u32) -> Vec<&ProcStat> {
    match selector {
        Selector::AllButSelf => procs.iter().filter(|p| p.pid != self_pid).collect(),
        Selector::Tree(root) => {
            let parent: HashMap<u32, u32> = procs.iter().map(|p| (p.pid, p.ppid)).collect();
            procs
                .iter()
                .filter(|p| {
                    // Walk up the parent chain (bounded, in case of a stale cycle).
                    let mut cur = p.pid;
                    for _ in 0..64 {
                        if cur == root {
                            return true;
                        }
                        match parent.get(&cur) {
                            Some(&pp) if pp != 0 && pp != cur => cur = pp,
                            _ => return false,
                        }
                    }
                    false
                })
                .collect()
        }
    }
}

/// Read every `/proc/PID/stat`; processes that vanish meanwhile are skipped.
pub fn read_proc() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let name = e.file_name();
        let name = name.to_str()?;
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parse_stat(&std::fs::read_to_string(e.path().join("stat")).ok()?)
    })
    .collect()
}

/// The limits utilization is measured against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub cpu_cores: f64,
    pub memory_bytes: u64,
}

/// One reading, after smoothing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub cpu_cores: f64,
    pub cpu_utilization: f64,
    pub memory_bytes: u64,
    pub memory_utilization: f64,
}

/// Turns successive cumulative samples into smoothed utilization. CPU is an exponentially weighted
/// moving average (so one busy second does not flip admission), memory is a level and is taken as is.
#[derive(Debug)]
pub struct Meter {
    limits: Limits,
    alpha: f64,
    last: Option<(Instant, u64)>,
    cpu_cores: Option<f64>,
}

impl Meter {
    pub fn new(limits: Limits, alpha: f64) -> Self {
        Self {
            limits,
            alpha,
            last: None,
            cpu_cores: None,
        }
    }

    pub fn update(&mut self, now: Instant, cpu_ticks: u64, memory_bytes: u64) -> Usage {
        if let Some((t0, ticks0)) = self.last {
            let dt = now.duration_since(t0).as_secs_f64();
            if dt > 0.0 {
                // Ticks can go down when a process exits; count that interval as idle.
                let used = cpu_ticks.saturating_sub(ticks0) as f64 / TICKS_PER_SECOND / dt;
                self.cpu_cores = Some(match self.cpu_cores {
                    Some(prev) => prev + self.alpha * (used - prev),
                    None => used,
                });
            }
        }
        self.last = Some((now, cpu_ticks));
        let cpu_cores = self.cpu_cores.unwrap_or(0.0);
        Usage {
            cpu_cores,
            cpu_utilization: ratio(cpu_cores, self.limits.cpu_cores),
            memory_bytes,
            memory_utilization: ratio(memory_bytes as f64, self.limits.memory_bytes as f64),
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "1234 (my (odd) fn) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 \
                    100 123456789 777 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line).expect("parse");
        assert_eq!(
            s,
            ProcStat {
                pid: 1234,
                ppid: 1,
                cpu_ticks: 300,
                rss_pages: 777,
                state: b'S',
                start_time: 100,
            }
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn sums_a_process_tree_or_all_but_self() {
        let p = |pid, ppid, t, r| ProcStat {
            pid,
            ppid,
            cpu_ticks: t,
            rss_pages: r,
            state: b'S',
            start_time: 0,
        };
        let procs = [
            p(1, 0, 1, 1),
            p(10, 1, 10, 1),
            p(11, 10, 100, 2),
            p(12, 11, 1000, 3),
            p(20, 1, 5, 5),
        ];
        assert_eq!(total(&procs, Selector::Tree(10), 20), (1110, 6 * PAGE_SIZE));
        assert_eq!(
            total(&procs, Selector::AllButSelf, 20),
            (1111, 7 * PAGE_SIZE)
        );
    }

    #[test]
    fn the_runtime_is_gone_once_every_process_of_its_snapshot_exited() {
        let p = |pid, ppid, state, start_time| ProcStat {
            pid,
            ppid,
            cpu_ticks: 0,
            rss_pages: 0,
            state,
            start_time,
        };
        // A pod: pause (1), the runtime (7) with a worker (8), the sidecar (9).
        let before = [
            p(1, 0, b'S', 1),
            p(7, 1, b'S', 5),
            p(8, 7, b'S', 6),
            p(9, 1, b'S', 2),
        ];
        let snap = function_processes(&before, Selector::AllButSelf, 9);
        assert_eq!(snap.iter().map(|x| x.pid).collect::<Vec<_>>(), [7, 8]);
        assert!(!all_exited(&snap, &before));
        // The worker exits, the runtime lives on (a handler's child process, a curl call).
        assert!(!all_exited(&snap, &[p(1, 0, b'S', 1), p(7, 1, b'S', 5)]));
        // The runtime exited: gone, a zombie, or its pid reused by a restarted runtime.
        assert!(all_exited(&snap, &[p(1, 0, b'S', 1), p(9, 1, b'S', 2)]));
        assert!(all_exited(&snap, &[p(7, 1, b'Z', 5), p(8, 7, b'Z', 6)]));
        assert!(all_exited(&snap, &[p(7, 1, b'S', 50)]));
        // Nothing known, nothing concluded.
        assert!(!all_exited(&[], &[]));
        // Locally the tree under the started command, zombies left out.
        let tree = function_processes(&[p(7, 1, b'S', 5), p(8, 7, b'Z', 6)], Selector::Tree(7), 9);
        assert_eq!(
            tree,
            [ProcId {
                pid: 7,
                start_time: 5
            }]
        );
    }

    #[test]
    fn meter_smooths_cpu_and_reports_memory_level() {
        let limits = Limits {
            cpu_cores: 2.0,
            memory_bytes: 1000,
        };
        let mut m = Meter::new(limits, 0.5);
        let t0 = Instant::now();
        assert_eq!(m.update(t0, 0, 100).cpu_cores, 0.0);
        // 200 ticks in 1 s = 2 cores = 100% of the limit (first reading is taken as is).
        let u = m.update(t0 + Duration::from_secs(1), 200, 500);
        assert!((u.cpu_utilization - 1.0).abs() < 1e-9, "{u:?}");
        assert!((u.memory_utilization - 0.5).abs() < 1e-9);
        // An idle second halves it with alpha 0.5.
        let u = m.update(t0 + Duration::from_secs(2), 200, 500);
        assert!((u.cpu_utilization - 0.5).abs() < 1e-9, "{u:?}");
    }

    #[test]
    fn reads_this_process_from_proc() {
        let me = std::process::id();
        let procs = read_proc();
        let (_, rss) = total(&procs, Selector::Tree(me), 0);
        assert!(rss > 0);
    }
}
