//! Which writes each GET could possibly have read from, from timing alone.
//!
//! A GET `r` can return the value of write `w` (the two adjacent in a
//! linearization, with no write between) only if
//! - `w` does not start after `r` returned (`w.call_ns <= r.return_ns`), and
//! - no definite write `x` lies wholly between them in real time
//!   (`w.return_ns < x.call_ns` and `x.return_ns < r.call_ns`): `x` would
//!   have to be linearized between `w` and `r`.
//!
//! A write none of whose possible readers is pending is "blind": it cannot
//! be followed by a GET, so where it goes only matters relative to writes.

use crate::history::{KeyOp, Kind};

pub(crate) struct ReadFrom {
    /// Per op: for a GET, the writes it could have read from.
    pub writers: Vec<Vec<u32>>,
    /// Per op: for a GET, the definite write with the latest call among
    /// those that returned before the GET was called: every write that
    /// returned before that call is hidden from the GET by it.
    pub fences: Vec<Option<u32>>,
}

pub(crate) fn analyse(ops: &[KeyOp]) -> ReadFrom {
    let latest_call_before = LatestCallBefore::new(ops);
    let mut writers_by_value: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    for (index, op) in ops.iter().enumerate() {
        if let Kind::Write(value) = op.kind {
            writers_by_value
                .entry(value)
                .or_default()
                .push(index as u32);
        }
    }
    let mut analysis = ReadFrom {
        writers: vec![Vec::new(); ops.len()],
        fences: vec![None; ops.len()],
    };
    for (index, read) in ops.iter().enumerate() {
        let Kind::Read(value) = read.kind else {
            continue;
        };
        let fence = latest_call_before.at(read.call_ns);
        analysis.fences[index] = fence;
        let fence_call_ns = fence.map(|fence| ops[fence as usize].call_ns);
        if let Some(writers) = writers_by_value.get(&value) {
            analysis.writers[index] = writers
                .iter()
                .copied()
                .filter(|&w| {
                    let write = &ops[w as usize];
                    write.call_ns <= read.return_ns
                        && !matches!(fence_call_ns, Some(fence) if write.return_ns < fence)
                })
                .collect();
        }
    }
    analysis
}

/// Answers: among definite writes that returned before `t`, the one with
/// the latest call.
struct LatestCallBefore {
    /// Definite writes' return times, ascending.
    returns_ns: Vec<u64>,
    /// `latest[i]`: (call, op) with the latest call among the first `i + 1`.
    latest: Vec<(u64, u32)>,
}

impl LatestCallBefore {
    fn new(ops: &[KeyOp]) -> Self {
        let mut writes: Vec<(u64, u64, u32)> = ops
            .iter()
            .enumerate()
            .filter(|(_, op)| op.definite && matches!(op.kind, Kind::Write(_)))
            .map(|(index, op)| (op.return_ns, op.call_ns, index as u32))
            .collect();
        writes.sort_unstable();
        let mut latest_so_far = (0, u32::MAX);
        let latest = writes
            .iter()
            .map(|&(_, call_ns, op)| {
                if latest_so_far.1 == u32::MAX || call_ns > latest_so_far.0 {
                    latest_so_far = (call_ns, op);
                }
                latest_so_far
            })
            .collect();
        LatestCallBefore {
            returns_ns: writes.iter().map(|&(return_ns, _, _)| return_ns).collect(),
            latest,
        }
    }

    fn at(&self, t_ns: u64) -> Option<u32> {
        let count = self
            .returns_ns
            .partition_point(|&return_ns| return_ns < t_ns);
        count.checked_sub(1).map(|last| self.latest[last].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: Kind, call_ns: u64, return_ns: u64) -> KeyOp {
        KeyOp {
            kind,
            definite: true,
            call_ns,
            return_ns,
            source: 0,
            id: 0,
        }
    }

    #[test]
    fn a_completed_write_in_between_hides_older_writes() {
        let ops = [
            op(Kind::Write(1), 0, 10),  // w1
            op(Kind::Write(2), 20, 30), // overwrites w1 for sure
            op(Kind::Read(1), 40, 50),  // cannot read w1
            op(Kind::Read(1), 25, 50),  // concurrent with the overwrite: can
            op(Kind::Write(1), 45, 60), // a later write of the same value: can
            op(Kind::Read(1), 5, 8),    // concurrent with w1: can
        ];
        let possible = analyse(&ops).writers;
        assert_eq!(possible[2], vec![4]);
        assert_eq!(possible[3], vec![0, 4]);
        assert_eq!(possible[5], vec![0]);
        assert!(possible[0].is_empty());
        assert_eq!(analyse(&ops).fences[2], Some(1));
        assert_eq!(analyse(&ops).fences[5], None);
    }

    #[test]
    fn writes_starting_after_the_read_returned_are_excluded() {
        let ops = [
            op(Kind::Read(1), 0, 10),
            op(Kind::Write(1), 10, 20),
            op(Kind::Write(1), 11, 20),
        ];
        assert_eq!(analyse(&ops).writers[0], vec![1]);
    }
}
