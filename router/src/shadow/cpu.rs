//! How busy the proxy's request threads are: the CPU time of Pingora's
//! worker threads, read from `/proc/self/task` (Linux). Shadow shedding
//! acts only when they are busy — the copies' own thread is not counted,
//! so shedding them cannot make the proxy look idle.

use std::time::Instant;

/// The name Pingora gives the proxy service, which names its worker
/// threads (the kernel keeps the first 15 bytes).
pub const SERVICE_NAME: &str = "strangler-router";

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on
/// every Linux architecture Rust targets in practice).
const TICKS_PER_SECOND: f64 = 100.0;

/// Cores used by the worker threads between two reads.
pub struct WorkerCpu {
    last: Option<(u64, Instant)>,
}

impl WorkerCpu {
    pub fn new() -> WorkerCpu {
        WorkerCpu { last: None }
    }

    /// Cores the workers used since the last call; `None` on the first
    /// call or where `/proc` cannot be read.
    pub fn cores(&mut self) -> Option<f64> {
        let ticks = worker_ticks()?;
        let now = Instant::now();
        let used = self.last.map(|(t, at)| {
            ticks.saturating_sub(t) as f64
                / TICKS_PER_SECOND
                / now.duration_since(at).as_secs_f64().max(1e-3)
        });
        self.last = Some((ticks, now));
        used
    }
}

impl Default for WorkerCpu {
    fn default() -> Self {
        WorkerCpu::new()
    }
}

/// User + system ticks of every thread named after the service.
fn worker_ticks() -> Option<u64> {
    let prefix = &SERVICE_NAME.as_bytes()[..15];
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = task.path();
        let Ok(comm) = std::fs::read(path.join("comm")) else {
            continue;
        };
        if !comm.starts_with(prefix) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        total += stat_ticks(&stat).unwrap_or(0);
    }
    Some(total)
}

/// utime + stime of a `/proc/*/stat` line (fields 14 and 15; the name in
/// parentheses may hold spaces, so fields count from its closing one).
fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_read_after_the_name() {
        let line =
            "4242 (strangler-route) S 1 4242 4242 0 -1 4194368 1021 0 0 0 466 37 0 0 20 0 3 0";
        assert_eq!(stat_ticks(line), Some(503));
        let odd = "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0";
        assert_eq!(stat_ticks(odd), Some(11));
    }

    #[test]
    fn a_busy_worker_thread_is_seen() {
        let mut cpu = WorkerCpu::new();
        assert_eq!(cpu.cores(), None, "nothing to compare the first read with");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let spinner = std::thread::Builder::new()
            .name(SERVICE_NAME.into())
            .spawn(move || {
                let mut x = 0u64;
                while rx.try_recv().is_err() {
                    x = x.wrapping_mul(31).wrapping_add(7);
                }
                std::hint::black_box(x);
            })
            .expect("thread");
        cpu.cores();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let used = cpu.cores().expect("cores");
        tx.send(()).expect("stop");
        spinner.join().expect("join");
        // One spinning thread: most of a core (the machine is shared).
        assert!(used > 0.3, "{used}");
    }
}
