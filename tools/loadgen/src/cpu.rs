//! CPU time of a process (user + system, all threads, exited ones included), read from
//! `/proc/<pid>/stat`, so that a run can report what the generator — and, given its pid, the
//! server — spent per request. Linux only; the resolution is one clock tick (10 ms), which is
//! within 1% for runs of a few seconds.

use std::time::Duration;

/// Clock ticks per second in `/proc` (`USER_HZ`, fixed at 100 in the Linux user ABI).
const USER_HZ: u64 = 100;

/// CPU time consumed so far by process `pid` (`None`: this process), or `None` when it cannot
/// be read (not Linux, no such process).
pub fn process_cpu(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

/// `utime + stime` from the text of `/proc/<pid>/stat`.
fn parse_stat(stat: &str) -> Option<Duration> {
    // The command name (field 2) is in parentheses and may contain anything: skip past it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// CPU used by the generator (and optionally the server) over a run.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    server_pid: Option<u32>,
    generator: Option<Duration>,
    server: Option<Duration>,
}

/// What a [`CpuMeter`] measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuUse {
    /// CPU seconds of the generator during the run.
    pub generator_s: Option<f64>,
    /// CPU seconds of the server during the run.
    pub server_s: Option<f64>,
}

impl CpuMeter {
    /// Starts measuring now.
    pub fn start(server_pid: Option<u32>) -> Self {
        Self {
            server_pid,
            generator: process_cpu(None),
            server: server_pid.and_then(|pid| process_cpu(Some(pid))),
        }
    }

    /// The CPU time used since [`CpuMeter::start`].
    pub fn stop(&self) -> CpuUse {
        let since = |before: Option<Duration>, pid: Option<u32>| {
            Some(process_cpu(pid)?.saturating_sub(before?).as_secs_f64())
        };
        CpuUse {
            generator_s: since(self.generator, None),
            server_s: self
                .server_pid
                .and_then(|pid| since(self.server, Some(pid))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let stat = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 37 0 0 20 0 3 0 \
                    100 1000000 300 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(Duration::from_millis(2870)));
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn this_process_uses_cpu() {
        let meter = CpuMeter::start(Some(std::process::id()));
        let begin = std::time::Instant::now();
        let mut x = 0u64;
        while begin.elapsed() < Duration::from_millis(150) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let used = meter.stop();
        let generator = used.generator_s.unwrap();
        assert!((0.05..2.0).contains(&generator), "{generator}");
        assert!(used.server_s.is_some());
        assert_eq!(CpuMeter::start(None).stop().server_s, None);
    }
}
