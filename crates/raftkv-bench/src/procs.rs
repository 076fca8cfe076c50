//! The cluster's processes, found through /proc: which process listens on a
//! port, how much CPU time it used, how much memory it holds.

use std::collections::HashSet;

/// Ports of `host:port` endpoints.
pub fn ports_of(endpoints: &[String]) -> Vec<u16> {
    endpoints
        .iter()
        .filter_map(|e| e.trim_start_matches("http://").rsplit_once(':'))
        .filter_map(|(_, p)| p.trim_end_matches('/').parse().ok())
        .collect()
}

/// Socket inodes of TCP sockets listening on one of `ports` (from
/// /proc/net/tcp and tcp6; state 0A is LISTEN).
fn listening_inodes(ports: &[u16]) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let port = f[1]
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if port.is_some_and(|p| ports.contains(&p)) {
                if let Ok(inode) = f[9].parse() {
                    inodes.insert(inode);
                }
            }
        }
    }
    inodes
}

/// Processes that hold a listening socket on one of the endpoints' ports.
pub fn pids_listening_on(endpoints: &[String]) -> Vec<u32> {
    let inodes = listening_inodes(&ports_of(endpoints));
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut pids = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let owns = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| {
                    l.to_str()
                        .and_then(|s| s.strip_prefix("socket:["))
                        .and_then(|s| s.strip_suffix(']'))
                        .and_then(|s| s.parse::<u64>().ok())
                })
                .is_some_and(|i| inodes.contains(&i))
        });
        if owns {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User + system CPU seconds of one process, from /proc/PID/stat.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); rest starts at field 3.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_s())
}

/// Total CPU seconds of `pids`; None when there are none or one is gone.
pub fn cpu_seconds(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| process_cpu_seconds(p)).sum()
}

/// Resident memory of one process in bytes (VmRSS of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_our_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let pids = pids_listening_on(&[format!("127.0.0.1:{port}")]);
        assert_eq!(pids, vec![std::process::id()]);
        drop(l);
        assert!(pids_listening_on(&[format!("127.0.0.1:{port}")]).is_empty());
    }

    #[test]
    fn reads_own_cpu_and_memory() {
        let me = std::process::id();
        assert!(process_cpu_seconds(me).is_some_and(|s| s >= 0.0));
        assert!(rss_bytes(me).is_some_and(|b| b > 0));
        assert_eq!(cpu_seconds(&[]), None);
    }
}
