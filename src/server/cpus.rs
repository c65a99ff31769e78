//! CPU affinity of the public threads, for `connection_steering = "cpu"`: which CPUs the
//! process may use, pinning a thread to one, and giving a thread back the whole set (a
//! thread inherits the affinity of the thread that starts it, so helper threads started by
//! a pinned public thread would otherwise share its one CPU).
//!
//! Linux only (`sched_getaffinity`/`sched_setaffinity` through nix's safe wrappers); on other
//! systems the CPUs are unknown and nothing is pinned, so cpu steering falls back to hash.

/// The CPUs this process may run on (its affinity mask), in ascending order; empty when
/// unknown.
pub fn usable() -> Vec<usize> {
    imp::usable()
}

/// Restricts the calling thread to `cpus`. Whether the kernel allowed it (a seccomp filter
/// may refuse `sched_setaffinity`; a CPU outside the process's cgroup set is refused).
pub fn restrict_current_thread(cpus: &[usize]) -> bool {
    imp::restrict_current_thread(cpus)
}

/// The CPU that received `socket`'s last packet (`SO_INCOMING_CPU`), if the system says.
pub fn incoming_cpu(socket: &tokio::net::TcpStream) -> Option<usize> {
    imp::incoming_cpu(socket)
}

/// Whether threads may be pinned to `cpu` here: tried on a short-lived thread of its own, so
/// that no running thread changes.
pub fn can_pin(cpu: usize) -> bool {
    std::thread::Builder::new()
        .name("pin-probe".to_owned())
        .spawn(move || restrict_current_thread(&[cpu]))
        .ok()
        .and_then(|t| t.join().ok())
        .unwrap_or(false)
}

#[cfg(target_os = "linux")]
mod imp {
    use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
    use nix::unistd::Pid;

    pub fn usable() -> Vec<usize> {
        match sched_getaffinity(Pid::from_raw(0)) {
            Ok(set) => (0..CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn incoming_cpu(socket: &tokio::net::TcpStream) -> Option<usize> {
        socket2::SockRef::from(socket).cpu_affinity().ok()
    }

    pub fn restrict_current_thread(cpus: &[usize]) -> bool {
        let mut set = CpuSet::new();
        for &c in cpus {
            if set.set(c).is_err() {
                return false;
            }
        }
        !cpus.is_empty() && sched_setaffinity(Pid::from_raw(0), &set).is_ok()
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn usable() -> Vec<usize> {
        Vec::new()
    }

    pub fn restrict_current_thread(_cpus: &[usize]) -> bool {
        false
    }

    pub fn incoming_cpu(_socket: &tokio::net::TcpStream) -> Option<usize> {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_pinned_and_given_back_its_cpus() {
        let all = usable();
        assert!(!all.is_empty(), "the process runs somewhere");
        let last = *all.last().expect("one CPU at least");
        assert!(can_pin(last));
        let seen = std::thread::spawn(move || {
            assert!(restrict_current_thread(&[last]));
            let pinned = usable();
            assert!(restrict_current_thread(&all));
            (pinned, usable())
        })
        .join()
        .expect("thread");
        assert_eq!(seen.0, vec![last]);
        assert_eq!(seen.1, usable());
        // Nothing, or a CPU number beyond any set: refused, the thread unchanged.
        assert!(!restrict_current_thread(&[]));
        assert!(!restrict_current_thread(&[usize::MAX]));
        assert!(!can_pin(usize::MAX));
        assert_eq!(usable(), seen.1);
    }
}
