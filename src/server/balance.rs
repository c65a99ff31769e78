//! Keeps the public shards' connection counts even when the kernel's steering does not.
//!
//! With cpu steering a connection goes to the shard on the CPU where its first packet
//! arrived. When a client opens its connections from fewer CPUs than there are shards (two
//! load-generator threads that happen to start on one CPU; a NIC with fewer receive queues
//! than CPUs), one shard gets them all and the others idle: measured on the 2-core machine,
//! 64 of 64 wrk connections on one shard in 2 of 8 runs, at 0.6x the rate of the even runs.
//! So a shard that holds clearly more than the least busy one hands each new connection to
//! it: the socket leaves this shard's runtime and is registered with the other's. A handed
//! connection's packets still arrive on the first CPU (its locality is lost, as with hash
//! steering), so the rule hands over only what evens the counts.
//!
//! Clients move too: the load generator's second thread moves to the other CPU a moment
//! after it opened its connections from the first. So a connection also follows its
//! packets: every 64 answers, between requests, the fast path reads the CPU its last packet
//! arrived on (`SO_INCOMING_CPU`), and after two such looks on the same other shard's CPU it
//! moves there (unless that would leave the other shard clearly busier). Measured: 8 of 8
//! wrk runs ended with 32 and 32 connections on their threads' CPUs, 126-153k req/s, p99
//! 0.63-2.3 ms, where steering alone gave 64 on one shard in 4 of 6 runs (84-89k req/s).

use super::listen::OpenConnection;
use std::net::SocketAddr;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// A connection accepted by one shard for another: counted in the other's gauge already.
pub(super) struct Handoff {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub open: OpenConnection,
}

/// The shards' open-connection gauges, CPUs and mailboxes.
pub(super) struct Balance {
    open: Vec<prometheus::IntGauge>,
    cpus: Vec<usize>,
    mailboxes: Vec<UnboundedSender<Handoff>>,
}

impl Balance {
    /// For shards pinned to `cpus` (one each) whose open connections are counted in `open`
    /// (one gauge each): the balance, and each shard's mailbox.
    pub fn new(
        open: Vec<prometheus::IntGauge>,
        cpus: Vec<usize>,
    ) -> (Balance, Vec<UnboundedReceiver<Handoff>>) {
        let (mailboxes, inboxes) = open.iter().map(|_| unbounded_channel()).unzip();
        (
            Balance {
                open,
                cpus,
                mailboxes,
            },
            inboxes,
        )
    }

    /// The open-connection gauge of shard `shard`.
    pub fn gauge(&self, shard: usize) -> Option<prometheus::IntGauge> {
        self.open.get(shard).cloned()
    }

    /// What shard `me` asks, between requests, for a connection whose packets arrive on
    /// `incoming_cpu`: the shard pinned to that CPU, unless it is `me` or moving there would
    /// leave it clearly busier than `me` (the rule of [`choose`]).
    fn follow(&self, me: usize, incoming_cpu: usize) -> Option<usize> {
        let to = self.cpus.iter().position(|&c| c == incoming_cpu)?;
        let mine = self.open.get(me)?.get() - 1;
        let theirs = self.open.get(to)?.get() + 1;
        (to != me && !clearly_more(theirs, mine)).then_some(to)
    }

    /// Which shard should serve a connection that `shard` accepted.
    pub fn choose(&self, shard: usize) -> usize {
        // Once per accepted connection, not per request.
        let counts: Vec<i64> = self.open.iter().map(prometheus::IntGauge::get).collect();
        choose(shard, &counts)
    }

    /// Sends a connection to shard `to`. Gives it back if that shard no longer takes any
    /// (it has stopped: shutdown).
    pub fn hand(&self, to: usize, handoff: Handoff) -> Result<(), Handoff> {
        match self.mailboxes.get(to) {
            Some(mailbox) => mailbox.send(handoff).map_err(|e| e.0),
            None => Err(handoff),
        }
    }
}

/// Shard `me`'s side of following connections to their CPU (fast.rs asks it).
pub(super) struct FollowFrom(pub std::sync::Arc<Balance>, pub usize);

impl super::fast::Follow for FollowFrom {
    fn shard_for(&self, incoming_cpu: usize) -> Option<usize> {
        self.0.follow(self.1, incoming_cpu)
    }
}

/// The rule: `shard` keeps the connection unless it holds more than the least busy shard by
/// more than 8 connections plus half the least busy one's count; else the least busy shard
/// (the first of equals) takes it. A safety net against one shard holding everything, not a
/// fine balance: a client that opens its connections in a burst from several CPUs makes the
/// counts uneven for a moment (each shard accepts its share at its own pace), and handing
/// connections over then would only move them off their CPU (measured with a margin of one
/// plus an eighth: 4 of 64 wrk connections moved in every run, p99 6.5-7.5 ms against
/// 0.6-1.4 ms). With every connection arriving at one shard, 64 end up as 42 and 22.
fn choose(shard: usize, counts: &[i64]) -> usize {
    let Some(&mine) = counts.get(shard) else {
        return shard;
    };
    let Some((least_at, &least)) = counts.iter().enumerate().min_by_key(|&(_, c)| *c) else {
        return shard;
    };
    if clearly_more(mine, least) {
        least_at
    } else {
        shard
    }
}

/// Whether a shard with `a` connections holds clearly more than one with `b`: by more than
/// 8 plus half of `b`.
fn clearly_more(a: i64, b: i64) -> bool {
    a > b + 8 + b / 2
}

#[cfg(test)]
mod tests {
    use super::choose;

    #[test]
    fn a_shard_keeps_its_connections_unless_it_holds_clearly_more() {
        // Even, or within 8 plus half the least: kept.
        assert_eq!(choose(0, &[0, 0]), 0);
        assert_eq!(choose(0, &[8, 0]), 0);
        assert_eq!(choose(1, &[32, 33]), 1);
        assert_eq!(choose(0, &[56, 32]), 0);
        // Clearly more: the least busy takes it.
        assert_eq!(choose(0, &[9, 0]), 1);
        assert_eq!(choose(0, &[57, 32]), 1);
        assert_eq!(choose(2, &[5, 1, 10, 3]), 1);
        // An unknown shard keeps what it accepted.
        assert_eq!(choose(5, &[90, 0]), 5);
        assert_eq!(choose(0, &[]), 0);
    }

    /// A connection follows its packets' CPU to the shard pinned there, unless that shard
    /// would then hold clearly more than the one it leaves.
    #[test]
    fn connections_follow_their_cpu_within_the_margin() {
        let gauges: Vec<prometheus::IntGauge> = (0..3)
            .map(|i| prometheus::IntGauge::new(format!("g{i}"), "test").expect("gauge"))
            .collect();
        let (b, _inboxes) = super::Balance::new(gauges.clone(), vec![4, 6, 7]);
        let set = |counts: [i64; 3]| {
            for (g, c) in gauges.iter().zip(counts) {
                g.set(c);
            }
        };
        set([10, 10, 10]);
        assert_eq!(b.follow(0, 6), Some(1));
        assert_eq!(b.follow(0, 7), Some(2));
        assert_eq!(b.follow(0, 4), None, "already there");
        assert_eq!(b.follow(0, 5), None, "no shard on that CPU");
        // Shard 1 would hold 20 + 1 against 10 - 1 + 8 + 4 = 21: still fine; one more is not.
        set([10, 20, 0]);
        assert_eq!(b.follow(0, 6), Some(1));
        set([10, 21, 0]);
        assert_eq!(b.follow(0, 6), None);
    }

    /// Every connection arriving at one shard: the others get a share, within the margin.
    #[test]
    fn all_arrivals_on_one_shard_are_shared() {
        for shards in [2usize, 3, 4, 8] {
            let mut counts = vec![0i64; shards];
            for _ in 0..64 {
                let to = choose(0, &counts);
                counts[to] += 1;
            }
            let least = counts.iter().min().copied().unwrap_or(0);
            assert!(
                counts[0] <= least + 9 + least / 2,
                "{shards} shards: {counts:?}"
            );
            assert!(least > 0, "{shards} shards: {counts:?}");
            assert_eq!(counts.iter().sum::<i64>(), 64);
        }
        let mut two = [0i64; 2];
        for _ in 0..64 {
            two[choose(0, &two)] += 1;
        }
        assert_eq!(two, [42, 22]);
    }
}
