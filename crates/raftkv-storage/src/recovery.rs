//! Protocol-aware recovery of the log (Alagappan et al., FAST 2018): decide
//! from what the files prove whether a bad or missing part of the log can
//! have been synced, and so acknowledged. Shared by [`crate::FileStorage`]
//! (what it finds in `logs.txt`) and [`crate::MemStorage`] (the simulator's
//! storage faults), so the simulator checks the rule the server runs.
//!
//! - Bytes the file proves were never synced are cut: a final line without
//!   its newline, bytes after the start of the padding, a final line that is
//!   zeros from some byte on, a final line cut at a sector boundary (its
//!   newline is the padding's, at a multiple of 512 bytes, and it has no
//!   ` crc=` suffix).
//! - Anything else that is damaged may have been synced and acknowledged:
//!   the intact prefix is kept and the node gets a [`VoteFloor`] (see
//!   `raftkv-core`'s `node/repair.rs`): the last index the file held, with
//!   that line's term when it is intact, else the current term as an upper
//!   bound.
//! - A log shorter than what the node may have acknowledged (`logs.txt`
//!   missing or emptied while `metadata.txt` has a term, a vote or a commit
//!   index; a commit index past the log) gets a floor with an unknown index:
//!   the node does not vote until a leader repairs it.
//!
//! Nothing here writes: the caller plans first and acts only when nothing
//! is refused.

use raftkv_core::{HardState, LogIndex, Term, VoteFloor};

/// Sector size assumed for torn writes: a power loss keeps or loses whole
/// sectors.
pub const SECTOR_BYTES: u64 = 512;

/// What the log file shows, as far as recovery needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFindings {
    /// `logs.txt` exists.
    pub file_present: bool,
    /// `logs.txt` exists and has no byte at all (a fresh one has padding).
    pub file_empty: bool,
    /// The last index of the intact prefix kept (the snapshot's when none).
    pub intact_last: LogIndex,
    /// Lines that may have been synced but cannot be read.
    pub damage: Option<Damage>,
}

/// Lines that may have been synced and are damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// 1-based line number of the first damaged line.
    pub first_line: u64,
    /// Its index (by its position in the file).
    pub first_index: LogIndex,
    /// The index of the last whole line of the file (by position).
    pub last_index: LogIndex,
    /// That line's term, when the line is intact.
    pub last_term: Option<Term>,
    pub reason: String,
}

/// Negative controls for the simulator: each breaks one rule on purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryOptions {
    /// Cut damaged lines that may have been synced as if they were a torn
    /// tail, with no vote floor (what raftkv did before protocol-aware
    /// recovery).
    pub unsafe_cut_damaged_tail: bool,
}

/// The repair a recovery plans: the node votes with this floor until its
/// log is whole again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairPlan {
    pub floor: VoteFloor,
    pub reason: String,
}

impl std::fmt::Display for RepairPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recovery: {}; the log may have held {}: kept the intact entries; until a leader repairs the log this node does not campaign and votes only for a candidate at least that up to date",
            self.reason, self.floor
        )
    }
}

/// Plans the repair for what recovery found (`None`: the log is whole).
/// `hs` is the stored hard state with its term raised to the intact log's
/// last term (`recovered_hard_state`), the bound of a floor's term; a floor it already holds (a repair not
/// finished before the last stop) is kept, merged with any new one.
pub fn plan_repair(
    hs: &HardState,
    has_snapshot: bool,
    found: &LogFindings,
    opts: RecoveryOptions,
) -> Option<RepairPlan> {
    let unknown = |reason: String| RepairPlan {
        floor: VoteFloor {
            index: None,
            term: hs.term,
            exact: false,
        },
        reason,
    };
    let fresh_state = hs.term == Term(0) && hs.voted_for.is_none() && hs.commit == LogIndex(0);
    let new = if let Some(d) = found
        .damage
        .as_ref()
        .filter(|_| !opts.unsafe_cut_damaged_tail)
    {
        let reason = format!(
            "line {} of logs.txt (index {}) is damaged and may have been synced: {}",
            d.first_line, d.first_index, d.reason
        );
        if hs.commit > d.last_index {
            Some(unknown(reason))
        } else {
            Some(RepairPlan {
                floor: VoteFloor {
                    index: Some(d.last_index),
                    term: d.last_term.unwrap_or(hs.term),
                    exact: d.last_term.is_some(),
                },
                reason,
            })
        }
    } else if !found.file_present && (!fresh_state || has_snapshot) {
        Some(unknown(
            "logs.txt is missing, but metadata.txt or snapshot.txt shows this node took part"
                .into(),
        ))
    } else if found.file_empty && !has_snapshot && !fresh_state {
        Some(unknown(format!(
            "logs.txt is empty (not even padding), but metadata.txt says term {}",
            hs.term
        )))
    } else if hs.commit > found.intact_last {
        Some(unknown(format!(
            "metadata.txt says commit {} but the log ends at index {}: entries are missing",
            hs.commit, found.intact_last
        )))
    } else {
        None
    };
    match (hs.repair, new) {
        (None, new) => new,
        (Some(old), None) => Some(RepairPlan {
            floor: old,
            reason: "a repair begun before the last stop is not finished".into(),
        }),
        (Some(old), Some(mut new)) => {
            new.floor = merge(old, new.floor);
            Some(new)
        }
    }
}

/// The more demanding of two floors.
pub fn merge(a: VoteFloor, b: VoteFloor) -> VoteFloor {
    match (a.index, b.index) {
        (Some(ai), Some(bi)) => {
            if (b.term, bi) > (a.term, ai) {
                b
            } else {
                a
            }
        }
        _ => VoteFloor {
            index: None,
            term: a.term.max(b.term),
            exact: false,
        },
    }
}

/// Why a bad final line (with its `\n`, at byte `offset`) provably never
/// reached the disk whole, if it did not.
pub fn provably_unsynced(text: &[u8], offset: u64) -> Option<&'static str> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    if let Some(z) = body.iter().position(|&b| b == 0) {
        if body[z..].iter().all(|&b| b == 0) {
            return Some("it ends in zero bytes (a page that never reached the disk)");
        }
    }
    let newline_at = offset + text.len() as u64 - 1;
    if newline_at.is_multiple_of(SECTOR_BYTES) && !crate::line::has_crc_suffix(body) {
        return Some("it stops at a sector boundary without its crc (a write cut short)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftkv_core::NodeId;

    fn hs(term: u64, commit: u64) -> HardState {
        HardState {
            term: Term(term),
            voted_for: Some(NodeId(1)),
            commit: LogIndex(commit),
            repair: None,
        }
    }

    fn whole(last: u64) -> LogFindings {
        LogFindings {
            file_present: true,
            file_empty: false,
            intact_last: LogIndex(last),
            damage: None,
        }
    }

    #[test]
    fn a_whole_log_needs_no_repair() {
        assert_eq!(
            plan_repair(&hs(3, 5), false, &whole(9), Default::default()),
            None
        );
        // A fresh node: no file yet, nothing stored.
        let fresh = LogFindings::default();
        assert_eq!(
            plan_repair(&HardState::default(), false, &fresh, Default::default()),
            None
        );
    }

    #[test]
    fn damage_gives_a_floor_at_the_last_line() {
        let mut f = whole(4);
        f.damage = Some(Damage {
            first_line: 5,
            first_index: LogIndex(5),
            last_index: LogIndex(7),
            last_term: Some(Term(2)),
            reason: "checksum mismatch".into(),
        });
        let p = plan_repair(&hs(3, 4), false, &f, Default::default()).unwrap();
        assert_eq!(
            p.floor,
            VoteFloor {
                index: Some(LogIndex(7)),
                term: Term(2),
                exact: true
            }
        );
        // The last line itself damaged: the current term bounds its term.
        f.damage.as_mut().unwrap().last_term = None;
        let p = plan_repair(&hs(3, 4), false, &f, Default::default()).unwrap();
        assert_eq!((p.floor.term, p.floor.exact), (Term(3), false));
        // The negative control plans nothing.
        let cut = RecoveryOptions {
            unsafe_cut_damaged_tail: true,
        };
        assert_eq!(plan_repair(&hs(3, 4), false, &f, cut), None);
    }

    #[test]
    fn a_missing_emptied_or_short_log_gives_an_unknown_floor() {
        let missing = LogFindings::default();
        assert_eq!(
            plan_repair(&hs(2, 0), false, &missing, Default::default())
                .unwrap()
                .floor
                .index,
            None
        );
        let empty = LogFindings {
            file_present: true,
            file_empty: true,
            ..Default::default()
        };
        assert_eq!(
            plan_repair(&hs(2, 0), false, &empty, Default::default())
                .unwrap()
                .floor
                .index,
            None
        );
        // Emptied after a compaction of everything is normal.
        assert_eq!(
            plan_repair(&hs(2, 0), true, &empty, Default::default()),
            None
        );
        let p = plan_repair(&hs(2, 9), false, &whole(4), Default::default()).unwrap();
        assert!(p.reason.contains("commit 9"), "{}", p.reason);
    }

    #[test]
    fn an_unfinished_repair_is_kept_and_merged() {
        let mut stored = hs(3, 0);
        stored.repair = Some(VoteFloor {
            index: Some(LogIndex(9)),
            term: Term(3),
            exact: false,
        });
        assert_eq!(
            plan_repair(&stored, false, &whole(4), Default::default())
                .unwrap()
                .floor,
            stored.repair.unwrap()
        );
        let merged = merge(
            stored.repair.unwrap(),
            VoteFloor {
                index: None,
                term: Term(2),
                exact: false,
            },
        );
        assert_eq!((merged.index, merged.term), (None, Term(3)));
    }

    #[test]
    fn what_provably_never_reached_the_disk() {
        assert!(provably_unsynced(b"12 1 SET\0\0\0\n", 100).is_some());
        // Cut at a sector boundary, no crc: torn.
        let text = b"12 1 SET session=0:0 k v\n";
        assert!(provably_unsynced(text, 512 - (text.len() as u64 - 1)).is_some());
        // The same line elsewhere: maybe synced.
        assert!(provably_unsynced(text, 3).is_none());
        // A whole line with a crc that does not match, even at a boundary.
        let good = b"12 1 NO-OP crc=1c424dce\n";
        assert!(provably_unsynced(good, 1024 - (good.len() as u64 - 1)).is_none());
    }
}
