//! Resident memory of a process, from `/proc/<pid>/status` (Linux).

/// Current resident set size (`VmRSS`) and peak resident set size (`VmHWM`) in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rss {
    /// Resident now.
    pub current_kib: u64,
    /// Highest resident since the process started (or since [`reset_peak`]).
    pub peak_kib: u64,
}

/// Reads the memory figures of process `pid`.
pub fn rss(pid: u32) -> anyhow::Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse(&status).ok_or_else(|| anyhow::anyhow!("no VmRSS/VmHWM in /proc/{pid}/status"))
}

/// Resets the peak (`VmHWM`) of process `pid` to its current RSS (Linux 4.0+), so a later
/// [`rss`] reports the peak of what happened in between.
pub fn reset_peak(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
    Ok(())
}

fn parse(status: &str) -> Option<Rss> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Rss {
        current_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::{Rss, parse, rss};

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(
            parse(status),
            Some(Rss {
                current_kib: 1024,
                peak_kib: 2048
            })
        );
    }

    #[test]
    fn this_process_has_a_resident_set() {
        let own = rss(std::process::id()).unwrap();
        assert!(own.current_kib > 0 && own.peak_kib >= own.current_kib);
    }
}
