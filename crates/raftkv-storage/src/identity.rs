//! `identity.txt`: which cluster and node a folder belongs to, and the
//! configuration the node was bootstrapped with. The stored configuration
//! is the authority: flags only bootstrap an empty folder
//! ([`start_voters`]).
//!
//! ```text
//! cluster_id=raftkv
//! node_id=1
//! voters=1,2,3
//! addr=2:127.0.0.1:7002
//! addr=3:127.0.0.1:7003
//! crc=5d4e0a11
//! ```
//!
//! `voters=none` for a node that joined a running cluster. The last line is
//! the CRC-32C of every byte before it. A file of the first format (only
//! `cluster_id` and `node_id`) is read as "bootstrap configuration not
//! recorded" and rewritten once with what the flags say.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::Path;

use raftkv_core::{Membership, NodeId};

use crate::error::StorageError;
use crate::escape::{escape_into, unescape};
use crate::metadata::sync_dir;

pub const IDENTITY_FILE: &str = "identity.txt";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: NodeId,
    /// The bootstrap voters (the configuration at index 0); empty for a
    /// node that joined; `None` in a file of the first format.
    pub voters: Option<BTreeSet<NodeId>>,
    /// Addresses of the bootstrap voters (other than this node).
    pub addrs: BTreeMap<NodeId, String>,
}

pub fn encode(id: &Identity) -> String {
    let mut out = format!("cluster_id={}\nnode_id={}\n", id.cluster_id, id.node_id);
    if let Some(v) = &id.voters {
        out.push_str("voters=");
        out.push_str(&ids_text(v));
        out.push('\n');
    }
    for (n, a) in &id.addrs {
        let mut e = Vec::new();
        escape_into(a, &mut e);
        out.push_str(&format!("addr={n}:{}\n", String::from_utf8_lossy(&e)));
    }
    let crc = crc32c::crc32c(out.as_bytes());
    out.push_str(&format!("crc={crc:08x}\n"));
    out
}

/// `1,2,3`, or `none`.
pub fn ids_text(ids: &BTreeSet<NodeId>) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn decode(text: &str, path: &Path) -> Result<Identity, StorageError> {
    let corrupt = |line: usize, reason: String| StorageError::Corrupt {
        file: path.to_owned(),
        line: line as u64,
        reason,
    };
    let body = match text.rfind("crc=") {
        Some(at) if at == 0 || text.as_bytes()[at - 1] == b'\n' => {
            let line_no = text[..at].lines().count() + 1;
            let stated = text[at + 4..]
                .strip_suffix('\n')
                .and_then(crate::line::parse_crc_hex)
                .ok_or_else(|| {
                    corrupt(
                        line_no,
                        "expected `crc=<8 hex digits>` as the last line".into(),
                    )
                })?;
            let actual = crc32c::crc32c(&text.as_bytes()[..at]);
            if stated != actual {
                return Err(corrupt(
                    line_no,
                    format!("checksum mismatch: the file says {stated:08x}, its content gives {actual:08x} (changed by hand or damaged on disk)"),
                ));
            }
            &text[..at]
        }
        _ => text,
    };
    let checked = body.len() != text.len();
    let (mut cluster, mut node, mut voters) = (None, None, None);
    let mut addrs = BTreeMap::new();
    for (i, line) in body.lines().enumerate() {
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| corrupt(i + 1, format!("expected name=value, found {line:?}")))?;
        match name {
            "cluster_id" => cluster = Some(value.to_owned()),
            "node_id" => {
                node = Some(NodeId(value.parse().map_err(|_| {
                    corrupt(i + 1, format!("node_id {value:?} is not a number"))
                })?))
            }
            "voters" => {
                let set = if value == "none" {
                    BTreeSet::new()
                } else {
                    value
                        .split(',')
                        .map(|v| v.parse().map(NodeId))
                        .collect::<Result<_, _>>()
                        .map_err(|_| {
                            corrupt(i + 1, format!("voters {value:?} is not a list of ids"))
                        })?
                };
                voters = Some(set);
            }
            "addr" => {
                let (n, a) = value.split_once(':').ok_or_else(|| {
                    corrupt(
                        i + 1,
                        format!("expected addr=<id>:<address>, found {line:?}"),
                    )
                })?;
                let n = NodeId(
                    n.parse()
                        .map_err(|_| corrupt(i + 1, format!("{n:?} is not a node id")))?,
                );
                let a =
                    unescape(a).map_err(|e| corrupt(i + 1, format!("address of node {n}: {e}")))?;
                addrs.insert(n, a);
            }
            _ => return Err(corrupt(i + 1, format!("unknown name {name:?}"))),
        }
    }
    if !checked && (voters.is_some() || !addrs.is_empty()) {
        return Err(corrupt(body.lines().count(), "no `crc=` line".into()));
    }
    let missing = |what: &str| corrupt(1, format!("no `{what}=` line"));
    Ok(Identity {
        cluster_id: cluster.ok_or_else(|| missing("cluster_id"))?,
        node_id: node.ok_or_else(|| missing("node_id"))?,
        voters,
        addrs,
    })
}

/// Reads `node_dir/identity.txt`; `Ok(None)` when there is none.
pub fn read(node_dir: &Path) -> Result<Option<Identity>, StorageError> {
    let path = node_dir.join(IDENTITY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => decode(&text, &path).map(Some),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(path, "read", e)),
    }
}

/// Atomically replaces `node_dir/identity.txt`; durable when it returns.
pub fn write(node_dir: &Path, id: &Identity) -> Result<(), StorageError> {
    let tmp = node_dir.join(format!("{IDENTITY_FILE}.tmp"));
    let path = node_dir.join(IDENTITY_FILE);
    let mut f = crate::fd_retry::retry(&tmp, || fs::File::create(&tmp))
        .map_err(|e| StorageError::io(&tmp, "create", e))?;
    f.write_all(encode(id).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| StorageError::io(&tmp, "write", e))?;
    fs::rename(&tmp, &path)
        .map_err(|e| StorageError::io(&path, "rename identity.txt.tmp over", e))?;
    sync_dir(node_dir)
}

/// What the membership flags of a start say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipFlags {
    /// The ids `--peers` names, this node included; `None`: no `--peers`.
    pub peers: Option<BTreeSet<NodeId>>,
    /// `--join`: start empty and wait to be added.
    pub join: bool,
    /// `--single-node`: a one-node cluster, on purpose.
    pub single_node: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MembershipError {
    #[error("no --peers given for a new node: name the cluster's voters with --peers, join a running cluster with --join, or make a one-node cluster on purpose with --single-node")]
    NoPeers,
    #[error("--peers names node(s) {extra} that the stored configuration does not have (voters {voters}, learners {learners}) and that were not bootstrap voters; the stored configuration is the authority: drop them from --peers, or add them with `raftkv member add` first")]
    UnknownPeers {
        extra: String,
        voters: String,
        learners: String,
    },
    #[error("--single-node contradicts the stored configuration (voters {voters}): this node belongs to a larger cluster; drop --single-node")]
    SingleNode { voters: String },
    #[error("--single-node and --join cannot be given together")]
    SingleAndJoin,
}

/// The bootstrap voters to start with (the configuration at index 0, for a
/// node without a snapshot).
///
/// - A node with a recorded bootstrap configuration uses it, whatever the
///   flags say; `--peers` may name only members of the configuration in
///   force (`in_force`: the last one in the log or snapshot, else the
///   bootstrap one) or bootstrap voters (yesterday's flags, after a member
///   was removed, stay valid), where it updates their addresses (for a node that
///   joined, or with `--join`, `--peers` are only addresses, as when it
///   joined); `--join` is otherwise ignored; `--single-node` for a larger
///   cluster is refused.
/// - A node without one (a new folder, or one of the first identity format)
///   takes it from the flags: `--join` → none; `--peers` → those nodes and
///   this one; `--single-node` (or `--peers` naming only this node) → this
///   node alone; no flag at all → refused.
///
/// `unsafe_from_flags` is the simulator's negative control: flags win, as
/// before this rule.
pub fn start_voters(
    me: NodeId,
    stored: Option<&BTreeSet<NodeId>>,
    in_force: Option<&Membership>,
    flags: &MembershipFlags,
    unsafe_from_flags: bool,
) -> Result<BTreeSet<NodeId>, MembershipError> {
    if flags.single_node && flags.join {
        return Err(MembershipError::SingleAndJoin);
    }
    let from_flags = || -> Result<BTreeSet<NodeId>, MembershipError> {
        if flags.join {
            return Ok(BTreeSet::new());
        }
        match &flags.peers {
            Some(p) => Ok(p.iter().copied().chain([me]).collect()),
            None if flags.single_node || unsafe_from_flags => Ok(BTreeSet::from([me])),
            None => Err(MembershipError::NoPeers),
        }
    };
    if unsafe_from_flags {
        return from_flags();
    }
    let Some(stored) = stored else {
        return from_flags();
    };
    let (voters, learners) = match in_force {
        Some(m) => (m.voters.clone(), m.learners.clone()),
        None => (stored.clone(), BTreeSet::new()),
    };
    // For a node that joined (and with --join) --peers are only addresses
    // of other nodes, never a membership: nothing to contradict.
    let addresses_only = stored.is_empty() || flags.join;
    if let (Some(p), false) = (&flags.peers, addresses_only) {
        let extra: BTreeSet<NodeId> = p
            .iter()
            .copied()
            .filter(|n| {
                *n != me && !voters.contains(n) && !learners.contains(n) && !stored.contains(n)
            })
            .collect();
        if !extra.is_empty() {
            return Err(MembershipError::UnknownPeers {
                extra: ids_text(&extra),
                voters: ids_text(&voters),
                learners: ids_text(&learners),
            });
        }
    }
    if flags.single_node && voters.iter().any(|v| *v != me) {
        return Err(MembershipError::SingleNode {
            voters: ids_text(&voters),
        });
    }
    Ok(stored.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> BTreeSet<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn round_trip_and_checksum() {
        let id = Identity {
            cluster_id: "prod".into(),
            node_id: NodeId(2),
            voters: Some(ids(&[1, 2, 3])),
            addrs: BTreeMap::from([
                (NodeId(1), "a b:7001".to_owned()),
                (NodeId(3), "h:7003".into()),
            ]),
        };
        let text = encode(&id);
        let p = Path::new("identity.txt");
        assert_eq!(decode(&text, p).unwrap(), id);
        let edited = text.replace("voters=1,2,3", "voters=1,2");
        assert!(decode(&edited, p)
            .unwrap_err()
            .to_string()
            .contains("checksum mismatch"));
        // The first format still reads, without a bootstrap configuration.
        let old = decode("cluster_id=raftkv\nnode_id=1\n", p).unwrap();
        assert_eq!(old.voters, None);
    }

    #[test]
    fn stored_configuration_wins_over_flags() {
        let me = NodeId(1);
        let stored = ids(&[1, 2, 3]);
        let none = MembershipFlags::default();
        // Restarted without --peers: the stored voters, not a one-node cluster.
        assert_eq!(
            start_voters(me, Some(&stored), None, &none, false).unwrap(),
            stored
        );
        // --peers naming a subset only updates addresses.
        let sub = MembershipFlags {
            peers: Some(ids(&[2])),
            ..Default::default()
        };
        assert_eq!(
            start_voters(me, Some(&stored), None, &sub, false).unwrap(),
            stored
        );
        // A node the configuration does not have is refused, naming both.
        let extra = MembershipFlags {
            peers: Some(ids(&[2, 5])),
            ..Default::default()
        };
        let e = start_voters(me, Some(&stored), None, &extra, false).unwrap_err();
        assert_eq!(e.to_string().split(';').next().unwrap(), "--peers names node(s) 5 that the stored configuration does not have (voters 1,2,3, learners none) and that were not bootstrap voters");
        // A bootstrap voter since removed is still a known node.
        let removed = Membership::with_voters([NodeId(1), NodeId(2)]);
        let old_flags = MembershipFlags {
            peers: Some(ids(&[2, 3])),
            ..Default::default()
        };
        assert_eq!(
            start_voters(me, Some(&stored), Some(&removed), &old_flags, false).unwrap(),
            stored
        );
        let single = MembershipFlags {
            single_node: true,
            ..Default::default()
        };
        assert!(matches!(
            start_voters(me, Some(&stored), None, &single, false),
            Err(MembershipError::SingleNode { .. })
        ));
        // The negative control: flags win.
        assert_eq!(
            start_voters(me, Some(&stored), None, &none, true).unwrap(),
            ids(&[1])
        );
    }

    #[test]
    fn a_new_node_needs_flags_and_one_node_only_on_purpose() {
        let me = NodeId(1);
        assert_eq!(
            start_voters(me, None, None, &MembershipFlags::default(), false),
            Err(MembershipError::NoPeers)
        );
        let single = MembershipFlags {
            single_node: true,
            ..Default::default()
        };
        assert_eq!(
            start_voters(me, None, None, &single, false).unwrap(),
            ids(&[1])
        );
        let only_me = MembershipFlags {
            peers: Some(ids(&[1])),
            ..Default::default()
        };
        assert_eq!(
            start_voters(me, None, None, &only_me, false).unwrap(),
            ids(&[1])
        );
        let join = MembershipFlags {
            join: true,
            peers: Some(ids(&[2])),
            ..Default::default()
        };
        assert_eq!(
            start_voters(me, None, None, &join, false).unwrap(),
            ids(&[])
        );
    }
}
