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

use super::OpenConnection;
use std::net::SocketAddr;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// A connection accepted by one shard for another: counted in the other's gauge already.
pub(super) struct Handoff {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub open: OpenConnection,
}

/// The shards' open-connection gauges and mailboxes.
pub(super) struct Balance {
    open: Vec<prometheus::IntGauge>,
    mailboxes: Vec<UnboundedSender<Handoff>>,
}

impl Balance {
    /// For shards whose open connections are counted in `open` (one gauge each): the
    /// balance, and each shard's mailbox.
    pub fn new(open: Vec<prometheus::IntGauge>) -> (Balance, Vec<UnboundedReceiver<Handoff>>) {
        let (mailboxes, inboxes) = open.iter().map(|_| unbounded_channel()).unzip();
        (Balance { open, mailboxes }, inboxes)
    }

    /// Which shard should serve a connection that `shard` accepted.
    pub fn choose(&self, shard: usize) -> usize {
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
    if mine > least + 8 + least / 2 {
        least_at
    } else {
        shard
    }
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
