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

/// CPU time process `pid` has used so far (user + system), from `/proc/<pid>/stat`, assuming
/// the kernel's usual 100 clock ticks per second (`getconf CLK_TCK`).
pub fn cpu_time(pid: u32) -> anyhow::Result<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("malformed /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("short /proc/{pid}/stat"))?
            .parse()?)
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(std::time::Duration::from_millis(total * 10))
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
