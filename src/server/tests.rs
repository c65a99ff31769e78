//! Tests of the server's helpers: the shard plan, the wall clock, routing prefixes.

use super::*;

#[test]
fn cpu_steering_needs_one_usable_cpu_per_shard() {
    let lo: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
    let lo6: SocketAddr = "[::1]:8080".parse().expect("addr");
    let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
    for (wanted, listen) in [
        (Steering::Cpu, any),
        (Steering::Auto, lo),
        (Steering::Auto, lo6),
    ] {
        let plan = plan_shards(2, wanted, listen, &[4, 6]);
        assert_eq!(plan.steering, Steering::Cpu, "{wanted:?} {listen}");
        assert_eq!(plan.cpus, vec![4, 6]);
        assert_eq!(plan.cpu_list(), "4,6");
        assert_eq!(plan.fallback, None);
    }
    // Auto off loopback: hash, and that is no fallback.
    let plan = plan_shards(2, Steering::Auto, any, &[4, 6]);
    assert_eq!(
        (plan.steering, plan.cpu_list(), plan.fallback),
        (Steering::Hash, "-".to_owned(), None)
    );
    // More or fewer shards than CPUs, or the CPUs unknown: hash, nothing pinned, and why.
    for (shards, cpus) in [(3, &[0, 1][..]), (1, &[0, 1][..]), (2, &[][..])] {
        let plan = plan_shards(shards, Steering::Cpu, lo, cpus);
        assert_eq!(plan.steering, Steering::Hash, "{shards} {cpus:?}");
        assert!(plan.cpus.is_empty());
        assert_eq!(plan.cpu_list(), "-");
        assert_eq!(plan.shards, shards);
        assert_eq!(
            plan.fallback,
            Some(format!(
                "{shards} public threads for {} usable CPUs",
                cpus.len()
            ))
        );
    }
    // The other steerings never pin; zero shards is one.
    for s in [Steering::Hash, Steering::Shared] {
        let plan = plan_shards(0, s, lo, &[0]);
        assert_eq!((plan.shards, plan.steering), (1, s));
        assert!(plan.cpus.is_empty());
        assert_eq!(plan.fallback, None);
    }
}

/// Cpu steering asks the kernel, per socket, for the connections arriving on the shard's
/// CPU.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn cpu_steering_sets_each_sockets_incoming_cpu() {
    let plan = ShardPlan {
        shards: 2,
        steering: Steering::Cpu,
        cpus: vec![1, 0],
        fallback: None,
    };
    let listeners = bind_shards("127.0.0.1:0".parse().expect("addr"), &plan).expect("bind");
    let got: Vec<Option<usize>> = listeners
        .iter()
        .map(|l| socket2::SockRef::from(l).cpu_affinity().ok())
        .collect();
    assert_eq!(got, vec![Some(1), Some(0)]);
}

/// Shared steering binds one socket, registered by every shard; the others bind one
/// socket each on the same port.
#[tokio::test]
async fn bind_shards_shares_one_socket_only_when_asked() {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    for steering in [Steering::Hash, Steering::Shared] {
        let plan = plan_shards(3, steering, addr, &[]);
        let listeners = bind_shards(addr, &plan).expect("bind");
        assert_eq!(listeners.len(), 3);
        let port = listeners[0].local_addr().expect("addr").port();
        assert!(
            listeners
                .iter()
                .all(|l| l.local_addr().map(|a| a.port()).ok() == Some(port))
        );
        // A connection is accepted by exactly one listener; with one shared socket every
        // listener can take it, with SO_REUSEPORT only the one the kernel picked.
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut took = 0;
        for l in &listeners {
            l.set_nonblocking(true).expect("nonblocking");
            if l.accept().is_ok() {
                took += 1;
            }
        }
        assert_eq!(took, 1, "{steering:?}");
        #[cfg(target_os = "linux")]
        for l in &listeners {
            // No incoming-CPU preference without cpu steering (the kernel's -1).
            assert_eq!(
                socket2::SockRef::from(l).cpu_affinity().ok(),
                Some(usize::MAX)
            );
        }
        if steering == Steering::Shared {
            let _again = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            std::thread::sleep(std::time::Duration::from_millis(50));
            // The last listener of a shared socket sees the same queue as the first.
            assert!(listeners[2].accept().is_ok(), "one queue");
        }
    }
}

#[test]
fn wall_clock_follows_the_system_clock() {
    let slack = chrono::Duration::milliseconds(5);
    // The first reading sets the base, the next ones are derived from it (0.4 s later)
    // or renew it (0.8 s and more later).
    for _ in 0..4 {
        let before = Utc::now();
        let w = wall_clock(Instant::now());
        let after = Utc::now();
        assert!(
            w >= before - slack && w <= after + slack,
            "{before} {w} {after}"
        );
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
}

#[test]
fn prefixes() {
    assert!(under_prefix("/v1/authz", "/v1/authz"));
    assert!(under_prefix("/v1/authz/audio/x", "/v1/authz"));
    assert!(!under_prefix("/v1/authzx", "/v1/authz"));
    assert!(!under_prefix("/v1/auth", "/v1/authz"));
}
