//! What the broker process costs while it serves a run: CPU time (utime + stime from
//! `/proc/PID/stat`) and memory (VmRSS and the kernel's peak VmHWM from `/proc/PID/status`).
//! Sampled once a second with `--broker-pid`, so CPU-seconds per GiB and peak RSS can be
//! compared between brokers that run on the same machine.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot parse {0}")]
    Parse(&'static str),
}

/// A process id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Pid(pub u32);

/// One reading of the broker's counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// User plus system CPU time since the process started, seconds.
    pub cpu_s: f64,
    pub rss_kib: u64,
    /// Peak resident set size since the process started (VmHWM), KiB.
    pub hwm_kib: u64,
}

/// CPU ticks (utime, stime) from the text of `/proc/PID/stat`. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted after the
/// last `)`.
pub fn parse_stat_ticks(stat: &str) -> Result<(u64, u64), ProcError> {
    let (_, rest) = stat.rsplit_once(')').ok_or(ProcError::Parse("stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let field = |n: usize| -> Result<u64, ProcError> {
        fields
            .get(n - 3)
            .and_then(|s| s.parse().ok())
            .ok_or(ProcError::Parse("stat"))
    };
    Ok((field(14)?, field(15)?))
}

/// A `kB` line of `/proc/PID/status`, in KiB.
pub fn parse_status_kib(status: &str, key: &str) -> Result<u64, ProcError> {
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .ok_or(ProcError::Parse("status"))
}

/// Reads a process's counters.
pub struct Sampler {
    dir: PathBuf,
    ticks_per_s: f64,
}

impl Sampler {
    pub fn new(pid: Pid) -> Sampler {
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Sampler {
            dir: PathBuf::from(format!("/proc/{}", pid.0)),
            ticks_per_s: if ticks > 0 { ticks as f64 } else { 100.0 },
        }
    }

    fn read(&self, name: &str) -> Result<String, ProcError> {
        let path = self.dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| ProcError::Read {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn sample(&self) -> Result<Sample, ProcError> {
        let (utime, stime) = parse_stat_ticks(&self.read("stat")?)?;
        let status = self.read("status")?;
        Ok(Sample {
            cpu_s: (utime + stime) as f64 / self.ticks_per_s,
            rss_kib: parse_status_kib(&status, "VmRSS")?,
            hwm_kib: parse_status_kib(&status, "VmHWM")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_awkward_command_name() {
        let stat = "4242 (shard (x) 1) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    350 125 0 0 20 0 3 0 100 123456 789 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat).unwrap(), (350, 125));
        assert!(parse_stat_ticks("4242 (x) S 1 2").is_err());
        assert!(parse_stat_ticks("no parens").is_err());
    }

    #[test]
    fn status_lines() {
        let status =
            "Name:\tshardlog\nVmPeak:\t  999 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS").unwrap(), 10240);
        assert_eq!(parse_status_kib(status, "VmHWM").unwrap(), 20480);
        assert!(parse_status_kib(status, "VmSwap").is_err());
    }

    #[test]
    fn samples_this_process() {
        let s = Sampler::new(Pid(std::process::id())).sample().unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
        assert!(s.cpu_s >= 0.0);
        assert!(Sampler::new(Pid(u32::MAX)).sample().is_err());
    }
}
