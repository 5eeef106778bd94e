//! openraft's timing and snapshot settings for Shoal, chosen so that a dead leader is replaced
//! within 3 s while a loaded two-core member does not start needless elections.
//!
//! How openraft 0.9 decides to elect: a follower checks on every tick
//! (`heartbeat_interval * 3/2`) whether it has heard from the leader within
//! `leader_lease + election_timeout`, where `leader_lease = election_timeout_max` and
//! `election_timeout` is drawn once per node from `election_timeout_min..election_timeout_max`.
//! A follower also refuses to vote while its own lease (`election_timeout_max` since the last
//! heartbeat) runs. So with heartbeats every 150 ms and an election timeout of 400..700 ms:
//!
//! ```text
//! leader dies ──► followers notice after 700 + 400..700 ms (+ up to 225 ms until the next tick)
//!             ──► first candidate wins at 1.1 .. 1.63 s
//!             ──► rare split vote (both fire within one round trip): one more
//!                 400..700 ms (+ tick) ──► at most about 2.55 s
//! ```
//!
//! A follower tolerates 1.1 to 1.4 s without a heartbeat, seven to nine missed heartbeats, before
//! it stands for election; that is the "election timeout of 1 to 2 s" a loaded machine needs,
//! reached through openraft's lease rather than through `election_timeout_*` alone (setting those
//! to 1000..2000 ms would make fail-over take 3 to 4.3 s). AppendEntries uses the heartbeat
//! interval as its RPC timeout, so 150 ms also leaves room for a follower's fsync.
//!
//! Snapshots: one after every 5000 applied entries, 1000 entries kept behind it for followers
//! that lag a little, and 1 MiB chunks (data travels as raw bytes, well under the gRPC message
//! limit) with 10 s per chunk, which covers installing a large snapshot on the last one.

use openraft::{Config, SnapshotPolicy};

/// Leader heartbeat period, ms.
pub const HEARTBEAT_INTERVAL_MS: u64 = 150;
/// Lower bound of the randomised election timeout, ms.
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 400;
/// Upper bound of the randomised election timeout (and the leader lease), ms.
pub const ELECTION_TIMEOUT_MAX_MS: u64 = 700;
/// Bytes of snapshot data per InstallSnapshot call.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;

/// The Raft configuration of every member of cluster `cluster`.
pub fn raft_config(cluster: &str) -> Config {
    Config {
        cluster_name: cluster.to_string(),
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        install_snapshot_timeout: 10_000,
        max_payload_entries: 300,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(5000),
        max_in_snapshot_log_to_keep: 1000,
        replication_lag_threshold: 10_000,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        purge_batch_size: 64,
        ..Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_config_is_valid_and_fails_over_within_three_seconds() {
        let c = raft_config("test").validate().expect("valid config");
        assert_eq!(c.cluster_name, "test");
        let tick = c.heartbeat_interval * 3 / 2;
        // Leader lease plus the largest election timeout, plus one tick of lateness.
        let first_round = c.election_timeout_max * 2 + tick;
        // A split vote costs one more election timeout and tick.
        let second_round = first_round + c.election_timeout_max + tick;
        assert!(second_round < 3000, "worst fail-over {second_round} ms");
        // A follower waits for at least seven heartbeat periods before standing.
        assert!(c.election_timeout_max + c.election_timeout_min >= 7 * c.heartbeat_interval);
    }
}
