//! Membership changes, snapshots and leadership transfer on real `raftkv
//! server` processes over loopback. One test at a time (a shared lock): they
//! start up to five processes each on a small machine.

mod common;

use std::process::Output as ProcessOutput;
use std::time::{Duration, Instant};

use common::*;
use raftkv_checker::{check, Budget, Verdict};
use raftkv_client::{Client, ClientError, ClientOptions, Consistency};
use raftkv_workload::{append_final_reads, summarize, Workload, WorkloadOptions};

const LEADER_WAIT: Duration = Duration::from_secs(15);

/// An admin client: one attempt may last the whole deadline.
fn admin_client(endpoints: &[String]) -> Client {
    Client::new(
        endpoints,
        ClientOptions {
            deadline: Duration::from_secs(20),
            ..client_options()
        },
    )
    .expect("client")
}

fn cli(args: &[&str]) -> ProcessOutput {
    std::process::Command::new(BIN)
        .args(args)
        .output()
        .expect("run raftkv")
}

fn endpoints_arg(cluster: &Cluster) -> String {
    cluster.endpoints().join(",")
}

/// Waits until the leader reports learner `id` within a few entries of the
/// commit index (the documented procedure: add, wait, promote), then
/// promotes it, retrying while the leader says it is behind.
async fn promote_when_caught_up(admin: &Client, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = admin.member_list().await.expect("member list").value;
        let member = list.members.iter().find(|m| m.id == id).expect("a member");
        if member.match_index > 0 && member.match_index + 20 >= list.commit_index {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "learner {id} never caught up: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    loop {
        match admin.promote(id).await {
            Ok(a) => {
                let m = a.value.membership.expect("membership");
                assert!(m.voters.contains(&id), "{id} is a voter after promote");
                return;
            }
            Err(ClientError::Rejected(why)) if Instant::now() < deadline => {
                println!("promote {id}: {why}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("promote {id}: {e}"),
        }
    }
}

/// The leader among the reachable nodes of `ids`, agreed by all of them.
async fn leader_among(cluster: &Cluster, ids: &[u64]) -> u64 {
    let client = cluster.client();
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        let mut leaders = Vec::new();
        for &id in ids {
            if let Some(s) = status(&client, &cluster.addr(id)).await {
                if s.role == "leader" && s.lease.as_ref().is_some_and(|l| l.holds) {
                    leaders.push(id);
                }
            }
        }
        if leaders.len() == 1 {
            return leaders[0];
        }
        assert!(
            Instant::now() < deadline,
            "no single leader among {ids:?} (saw {leaders:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three nodes; two more join as learners and are promoted; two of the
/// originals, the leader among them, are removed. A recording workload runs
/// throughout; its history (with final reads of every key) must be
/// linearizable, and keys written before any change must all be there at
/// the end, on the new nodes too.
#[test]
fn replace_two_nodes_including_the_leader_under_load() {
    run_serial(async {
        let started = Instant::now();
        let mut cluster = Cluster::start(3);
        let n4 = cluster.reserve_joining_node();
        let n5 = cluster.reserve_joining_node();
        let first_leader = wait_for_leader(&cluster, LEADER_WAIT).await;
        let all = cluster.endpoints();

        let writer = client_for(&all);
        for i in 0..100 {
            writer
                .set(&format!("pre-{i}"), &format!("v{i}"))
                .await
                .expect("write before the changes");
        }

        let workload_opts = WorkloadOptions {
            clients: 4,
            keys: 8,
            think_time: Duration::from_millis(5),
            client: ClientOptions {
                deadline: Duration::from_secs(5),
                ..client_options()
            },
            ..WorkloadOptions::default()
        };
        let workload = Workload::start(&all, workload_opts.clone()).expect("workload");
        let history_started = workload.started;
        tokio::time::sleep(Duration::from_millis(300)).await;

        // Node 4 joins through the command line.
        cluster.spawn(n4);
        let out = cli(&[
            "member",
            "add",
            &n4.to_string(),
            &cluster.addr(n4),
            "--endpoints",
            &endpoints_arg(&cluster),
        ]);
        assert!(
            out.status.success(),
            "member add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Node 5 through the library.
        cluster.spawn(n5);
        let admin = admin_client(&all);
        let added = admin
            .add_learner(n5, &cluster.addr(n5))
            .await
            .expect("add learner 5");
        let m = added.value.membership.expect("membership");
        assert_eq!(m.learners, vec![n4, n5]);
        // A retried add is not an error.
        let again = admin
            .add_learner(n5, &cluster.addr(n5))
            .await
            .expect("add learner 5 again");
        assert_eq!(again.value.index, 0, "already in force");

        promote_when_caught_up(&admin, n4).await;
        promote_when_caught_up(&admin, n5).await;
        let list = admin.member_list().await.expect("member list").value;
        assert_eq!(list.voters, vec![1, 2, 3, n4, n5]);
        assert!(list.learners.is_empty());
        let out = cli(&["member", "list", "--endpoints", &endpoints_arg(&cluster)]);
        assert!(out.status.success());
        println!("{}", String::from_utf8_lossy(&out.stdout));
        let out = cli(&["status", "--endpoints", &endpoints_arg(&cluster)]);
        assert!(out.status.success());
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("{table}");
        assert!(
            table.contains(&format!(
                "node {n5}: voters [1, 2, 3, {n4}, {n5}] learners []"
            )),
            "status shows the configuration each node sees"
        );

        // Remove a follower of the originals, then the leader.
        let leader = leader_among(&cluster, &[1, 2, 3, n4, n5]).await;
        let follower = (1..=3)
            .find(|&n| n != leader)
            .expect("an original follower");
        let removal_start = Instant::now();
        let out = cli(&[
            "member",
            "remove",
            &follower.to_string(),
            "--endpoints",
            &endpoints_arg(&cluster),
        ]);
        assert!(
            out.status.success(),
            "member remove: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.stop(follower);
        let removed = admin.remove(leader).await.expect("remove the leader");
        let m = removed.value.membership.expect("membership");
        assert!(!m.voters.contains(&leader) && !m.voters.contains(&follower));
        let remaining: Vec<u64> = m.voters.clone();
        assert_eq!(remaining.len(), 3);
        let new_leader = leader_among(&cluster, &remaining).await;
        println!(
            "removed {follower} and leader {leader} in {:?}; node {new_leader} leads {remaining:?}",
            removal_start.elapsed()
        );
        cluster.stop(leader);

        tokio::time::sleep(Duration::from_millis(1000)).await;
        let mut history = workload.stop().await;
        let remaining_eps: Vec<String> = remaining.iter().map(|&n| cluster.addr(n)).collect();
        append_final_reads(
            &mut history,
            &remaining_eps,
            workload_opts.keys,
            history_started,
        )
        .await
        .expect("final reads");
        let summary = summarize(&history);
        println!(
            "history: {} operations, {} writes ok, {} reads ok, {} unknown, longest gap {:?}",
            summary.operations,
            summary.ok_writes,
            summary.ok_reads,
            summary.unknown,
            summary.longest_gap
        );
        assert!(summary.ok_writes > 50, "too few writes to mean anything");
        match check(&history, Budget::default()) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(v) => panic!("not linearizable: {}", v.explanation),
            Verdict::Unknown { key } => panic!("checker ran out of budget on key {key}"),
        }

        // Nothing acknowledged before the changes was lost, and the new
        // members hold it too.
        let reader = client_for(&remaining_eps);
        let commit = status(&reader, &cluster.addr(new_leader))
            .await
            .expect("leader status")
            .commit_index;
        for i in 0..100 {
            let got = reader.get(&format!("pre-{i}")).await.expect("get").value;
            assert_eq!(got, Some(format!("v{i}")), "pre-{i} at the leader");
        }
        for node in [n4, n5] {
            wait_applied(&cluster, node, commit, Duration::from_secs(10)).await;
            for i in 0..100 {
                let (got, _) = reader
                    .get_at(&cluster.addr(node), &format!("pre-{i}"), Consistency::Stale)
                    .await
                    .expect("stale get");
                assert_eq!(got, Some(format!("v{i}")), "pre-{i} at node {node}");
            }
        }
        // A node that joined restarts from its own files (its log holds the
        // configuration; --join no longer matters) and catches up.
        let joined = if new_leader == n4 { n5 } else { n4 };
        cluster.stop(joined);
        reader
            .set("after-restart", "yes")
            .await
            .expect("write while it is down");
        cluster.spawn(joined);
        let commit = status(&reader, &cluster.addr(new_leader))
            .await
            .expect("leader status")
            .commit_index;
        wait_applied(&cluster, joined, commit, Duration::from_secs(10)).await;
        let s = status(&reader, &cluster.addr(joined))
            .await
            .expect("restarted node");
        assert_eq!(
            s.voters, remaining,
            "node {joined} restarted with the configuration"
        );
        let _ = first_leader;
        println!("test took {:?}", started.elapsed());
    });
}

/// `raftkv transfer-leader --to X` moves leadership to X, and writes go on.
#[test]
fn transfer_leader_moves_leadership_to_the_chosen_node() {
    run_serial(async {
        let started = Instant::now();
        let cluster = Cluster::start(3);
        let leader = wait_for_leader(&cluster, LEADER_WAIT).await;
        let target = (1..=3).find(|&n| n != leader).expect("a follower");
        let client = cluster.client();
        client.set("before", "1").await.expect("write");
        let t0 = Instant::now();
        let out = cli(&[
            "transfer-leader",
            "--to",
            &target.to_string(),
            "--endpoints",
            &endpoints_arg(&cluster),
        ]);
        let took = t0.elapsed();
        assert!(
            out.status.success(),
            "transfer-leader: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("node {target}")),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let now_leader = wait_for_leader(&cluster, LEADER_WAIT).await;
        assert_eq!(now_leader, target, "leadership moved to node {target}");
        let answer = client.set("after", "2").await.expect("write after");
        assert_eq!(answer.served_by, target);
        assert_eq!(
            client.get("before").await.expect("get").value.as_deref(),
            Some("1")
        );
        // A transfer to a node that is not a voter is refused clearly.
        let out = cli(&[
            "transfer-leader",
            "--to",
            "9",
            "--endpoints",
            &endpoints_arg(&cluster),
        ]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not a voter"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "transfer {leader} -> {target}: command took {took:?}; test took {:?}",
            started.elapsed()
        );
    });
}

/// A follower stopped while the leader compacts its log past it catches up
/// from a snapshot (chunks of about 1 MiB) when it comes back.
#[test]
fn follower_behind_compaction_catches_up_by_snapshot() {
    run_serial(async {
        let started = Instant::now();
        let mut cluster = Cluster::start_with_args(
            3,
            FAST,
            &["--snapshot-threshold", "50", "--snapshot-keep-entries", "0"],
        );
        let leader = wait_for_leader(&cluster, LEADER_WAIT).await;
        let follower = (1..=3).find(|&n| n != leader).expect("a follower");
        let client = cluster.client();
        for i in 0..20 {
            client.set(&format!("early-{i}"), "x").await.expect("write");
        }
        cluster.stop(follower);
        let stopped_at = status(&client, &cluster.addr(leader))
            .await
            .expect("leader status")
            .commit_index;

        // Enough to compact well past the stopped follower, with a few
        // values big enough that snapshot chunks reach the 1 MiB chunk size.
        let big = "b".repeat(600 << 10);
        for i in 0..4 {
            client
                .set(&format!("big-{i}"), &big)
                .await
                .expect("big write");
        }
        for i in 0..300 {
            client
                .set(&format!("k-{i:04}"), &format!("v{i}"))
                .await
                .expect("write");
        }
        client.delete("early-0").await.expect("delete");
        let s = status(&client, &cluster.addr(leader))
            .await
            .expect("leader status");
        assert!(
            s.snapshot_index > stopped_at && s.first_log_index > stopped_at + 1,
            "the leader compacted past the follower (snapshot {}, log from {}, follower stopped at {stopped_at})",
            s.snapshot_index,
            s.first_log_index
        );
        let commit = s.commit_index;

        let term_before = s.term;
        let t0 = Instant::now();
        cluster.spawn(follower);
        wait_applied(&cluster, follower, commit, Duration::from_secs(30)).await;
        // Heartbeats went on while chunks were streaming: nobody timed out.
        let after = status(&client, &cluster.addr(leader))
            .await
            .expect("leader");
        assert_eq!(
            (after.role.as_str(), after.term),
            ("leader", term_before),
            "the leader kept its term during the snapshot transfer"
        );
        println!(
            "follower {follower} caught up {commit} entries' worth in {:?}",
            t0.elapsed()
        );

        let leader_status = status(&client, &cluster.addr(leader))
            .await
            .expect("leader");
        assert!(
            counter(&leader_status, "sent.InstallSnapshot") > 0,
            "the leader sent a snapshot"
        );
        let fs = status(&client, &cluster.addr(follower))
            .await
            .expect("follower status");
        assert!(
            fs.snapshot_index > stopped_at,
            "follower snapshot index {}",
            fs.snapshot_index
        );
        assert!(
            cluster.node_dir(follower).join("snapshot.txt").exists(),
            "snapshot.txt in the follower's folder"
        );
        // dump.txt is written in the background (flushed every 200 ms).
        let dump_path = cluster.node_dir(follower).join("dump.txt");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let dump = std::fs::read_to_string(&dump_path).unwrap_or_default();
            if dump.contains("snapshot installed") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dump.txt tells of the snapshot; it has:\n{}",
                dump.lines().rev().take(20).collect::<Vec<_>>().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let at = cluster.addr(follower);
        for i in 0..300 {
            let (got, _) = client
                .get_at(&at, &format!("k-{i:04}"), Consistency::Stale)
                .await
                .expect("stale get");
            assert_eq!(got, Some(format!("v{i}")), "k-{i:04} at the follower");
        }
        for i in 0..4 {
            let (got, _) = client
                .get_at(&at, &format!("big-{i}"), Consistency::Stale)
                .await
                .expect("stale get");
            assert_eq!(
                got.as_deref(),
                Some(big.as_str()),
                "big-{i} at the follower"
            );
        }
        let (gone, _) = client
            .get_at(&at, "early-0", Consistency::Stale)
            .await
            .expect("stale get");
        assert_eq!(gone, None, "the delete reached the follower");
        assert_eq!(fs.keys, leader_status.keys, "same number of keys");

        // It survives a restart from its own snapshot.
        cluster.stop(follower);
        cluster.spawn(follower);
        wait_applied(&cluster, follower, commit, Duration::from_secs(30)).await;
        let (got, _) = client
            .get_at(&at, "k-0299", Consistency::Stale)
            .await
            .expect("stale get after restart");
        assert_eq!(got.as_deref(), Some("v299"));
        println!("test took {:?}", started.elapsed());
    });
}
