//! The Wing–Gong–Lowe search over one key's history.
//!
//! Call and return events sit in a doubly linked list sorted by time (calls
//! before returns at equal times, so touching intervals stay concurrent). The
//! operations whose calls come before the first return event in the list are
//! the candidates to linearize next; the first return event is the deadline:
//! that operation must be linearized before anything called after it. The
//! search linearizes a candidate (lifting its events out of the list), and
//! backtracks when no candidate fits. A memo of (linearized set, state)
//! pairs already explored keeps it from redoing work.
//!
//! Refinements over the textbook algorithm, each a dominance argument (if
//! any linearization exists, one of the shape the search tries exists):
//! - Unknown-outcome writes have no return event, so they never impose a
//!   deadline; the search succeeds as soon as every definite operation is
//!   linearized (the remaining unknown ones "never took effect").
//! - A candidate GET whose value matches the current state is linearized
//!   greedily with no alternative tried at that point: moving a matching
//!   read to the front of any linearization of the rest keeps it valid (a
//!   read changes no state, and being a candidate nothing must precede it).
//! - A write is not tried while it would overwrite a value that some pending
//!   GET still has to see and that no pending write can bring back.
//! - A write is "blind" when no pending GET returns its value: in any
//!   linearization another write or the end follows it. A blind unknown
//!   write is never needed; a blind definite write is linearized only in a
//!   bundle just before another write, or alone when it is the deadline.
//! - Unknown writes of equal values are interchangeable once called, so they
//!   are used in call order, and used ones whose value no pending GET needs
//!   any more are left out of the memo key.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::history::{KeyOp, Kind, ABSENT};

const NIL: u32 = u32::MAX;

pub(crate) struct Outcome {
    pub result: SearchResult,
    pub steps: u64,
}

pub(crate) enum SearchResult {
    Linearizable,
    Violation(Frontier),
    OutOfBudget,
}

/// Where the search got furthest before failing.
#[derive(Clone, Debug)]
pub(crate) struct Frontier {
    /// Indices into the searched ops: the longest linearizable order found.
    pub prefix: Vec<usize>,
    /// Model state after `prefix`.
    pub state: u32,
    /// Candidates at that point (called before `deadline` returned) that
    /// could not go next.
    pub pending: Vec<usize>,
    /// The earliest-returning operation not in `prefix`: something from
    /// `pending` (or itself) had to be linearized before its return.
    pub deadline: usize,
    /// The latest deadline any branch of the search died at: ops called
    /// after it were never reached.
    pub horizon_ns: u64,
}

/// Searches for a linearization of `ops` (one key), spending at most
/// `max_steps` steps (a candidate tried or a frame undone).
pub(crate) fn search(ops: &[KeyOp], max_steps: u64) -> Outcome {
    let mut search = Search::new(ops);
    let result = search.run(max_steps);
    Outcome {
        result,
        steps: search.steps,
    }
}

struct Frame {
    entry: u32,
    op: u32,
    prev_state: u32,
    prev_writer: u32,
    /// A greedy read: when undone, no sibling is tried (see module docs).
    forced: bool,
    /// Blind writes linearized just before `op` are `bundled[bundle_start..]`
    /// (up to the next frame's start).
    bundle_start: u32,
}

struct Search<'a> {
    ops: &'a [KeyOp],
    list: EventList,
    /// The memo key: linearized ops, except unknown writes that can no
    /// longer matter (no GET of their value is left).
    key_bits: Vec<u64>,
    /// Zobrist hash of `key_bits`.
    key_hash: u64,
    visited: VisitedSet,
    stack: Vec<Frame>,
    bundled: Vec<u32>,
    state: u32,
    /// The write that set `state`, or `NIL` for the initial absent state.
    writer: u32,
    definite_left: usize,
    /// Per value id: GETs of it not yet linearized.
    reads_left: Vec<u32>,
    /// Per value id: writes of it not yet linearized.
    writers_left: Vec<u32>,
    /// Per op: for a GET, the writes it could have read from (see `readfrom`).
    possible_writers: Vec<Vec<u32>>,
    /// Per op: for a write, how many pending GETs could read from it. Zero
    /// makes the write blind.
    possible_readers_left: Vec<u32>,
    /// Per op: for a write, the GETs that could read from it; at index
    /// `ops.len()`, those the initial absent state could serve.
    possible_readers: Vec<Vec<u32>>,
    /// Per op: for a GET, how many writes it could read from are pending.
    possible_writers_left: Vec<u32>,
    linearized: Vec<bool>,
    /// Per value id: its unknown-outcome writes, in call order.
    unknown_writers: Vec<Vec<u32>>,
    /// Per value id: how many of `unknown_writers` are linearized (always
    /// the first ones: equal unknown writes are interchangeable).
    unknown_used: Vec<u32>,
    steps: u64,
    deepest: Option<Frontier>,
    horizon_ns: u64,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [KeyOp]) -> Self {
        assert!(
            ops.len() < NIL as usize / 2,
            "too many operations on one key"
        );
        assert!(
            ops.windows(2).all(|w| w[0].call_ns <= w[1].call_ns),
            "ops sorted by call"
        );
        let words = ops.len().div_ceil(64).max(1);
        let values = ops
            .iter()
            .map(|op| value_of(op.kind))
            .max()
            .unwrap_or(ABSENT) as usize
            + 1;
        let mut search = Search {
            ops,
            list: EventList::new(ops),
            key_bits: vec![0; words],
            key_hash: 0,
            visited: VisitedSet::new(words),
            stack: Vec::new(),
            bundled: Vec::new(),
            state: ABSENT,
            writer: NIL,
            definite_left: ops.iter().filter(|op| op.definite).count(),
            reads_left: vec![0; values],
            writers_left: vec![0; values],
            possible_writers: Vec::new(),
            possible_readers_left: vec![0; ops.len()],
            possible_readers: vec![Vec::new(); ops.len() + 1],
            possible_writers_left: vec![0; ops.len()],
            linearized: vec![false; ops.len()],
            unknown_writers: vec![Vec::new(); values],
            unknown_used: vec![0; values],
            steps: 0,
            deepest: None,
            horizon_ns: 0,
        };
        let analysis = crate::readfrom::analyse(ops);
        for (read, writers) in analysis.writers.iter().enumerate() {
            search.possible_writers_left[read] = writers.len() as u32;
            for &writer in writers {
                search.possible_readers_left[writer as usize] += 1;
                search.possible_readers[writer as usize].push(read as u32);
            }
            if ops[read].kind == Kind::Read(ABSENT) && analysis.fences[read].is_none() {
                search.possible_readers[ops.len()].push(read as u32);
            }
        }
        search.possible_writers = analysis.writers;
        for (index, op) in ops.iter().enumerate() {
            match op.kind {
                Kind::Read(value) => search.reads_left[value as usize] += 1,
                Kind::Write(value) => {
                    search.writers_left[value as usize] += 1;
                    if !op.definite {
                        search.unknown_writers[value as usize].push(index as u32);
                    }
                }
            }
        }
        search
    }

    fn run(&mut self, max_steps: u64) -> SearchResult {
        let mut entry = self.list.first();
        loop {
            if self.definite_left == 0 {
                return SearchResult::Linearizable;
            }
            if self.steps >= max_steps {
                return SearchResult::OutOfBudget;
            }
            self.steps += 1;
            assert_ne!(entry, NIL, "a definite op is left, so a return event is");
            let next = if self.list.is_return[entry as usize] {
                self.record_dead_end(entry);
                None
            } else {
                self.try_linearize(entry)
            };
            entry = match next.or_else(|| self.backtrack()) {
                Some(entry) => entry,
                None => {
                    let mut frontier = self.deepest.take().expect("a dead end was recorded");
                    frontier.horizon_ns = self.horizon_ns;
                    return SearchResult::Violation(frontier);
                }
            };
        }
    }

    /// Tries the candidate at `entry`; returns the entry to look at next, or
    /// `None` when this search node is exhausted.
    fn try_linearize(&mut self, entry: u32) -> Option<u32> {
        let op = self.list.op[entry as usize];
        let sibling = self.list.next[entry as usize];
        let (new_state, is_read) = match self.ops[op as usize].kind {
            Kind::Read(value) if value == self.state => (self.state, true),
            Kind::Read(_) => return Some(sibling),
            Kind::Write(value) if !self.worth_writing(op, value) => return Some(sibling),
            Kind::Write(value) => (value, false),
        };
        let frame = Frame {
            entry,
            op,
            prev_state: self.state,
            prev_writer: self.writer,
            forced: is_read,
            bundle_start: self.bundled.len() as u32,
        };
        if !is_read {
            self.collect_bundle(op);
        }
        self.apply(&frame, new_state);
        if self.visited.insert(
            self.key_hash ^ zobrist_state(self.state),
            &self.key_bits,
            self.state,
        ) {
            self.stack.push(frame);
            return Some(self.list.first());
        }
        self.undo(&frame);
        // A matching read leading to an explored (failed) configuration
        // proves this node fails too (see module docs).
        (!is_read).then_some(sibling)
    }

    /// Whether linearizing the write `op` of `value` next can be needed.
    fn worth_writing(&self, op: u32, value: u32) -> bool {
        let current = self.state as usize;
        // It would overwrite a value a pending GET needs and nothing restores.
        if value != self.state && self.reads_left[current] > 0 && self.writers_left[current] == 0 {
            return false;
        }
        if self.overwrite_orphans_reads() {
            return false;
        }
        let blind = self.possible_readers_left[op as usize] == 0;
        if !self.ops[op as usize].definite {
            // A blind unknown write can be dropped; equal ones go in call order.
            let next_unused = self.unknown_writers[value as usize]
                .get(self.unknown_used[value as usize] as usize);
            return !blind && next_unused == Some(&op);
        }
        // A blind definite write goes in a bundle before another write, or
        // alone when it is the deadline (see `collect_bundle`).
        !blind || op == self.deadline_op()
    }

    /// True when a pending GET can only still be served by the current
    /// writer: it must come before any other write. A GET must follow one
    /// of its possible writers directly (no write between), so once this
    /// one is overwritten, none is left for it.
    fn overwrite_orphans_reads(&self) -> bool {
        let readers = if self.writer == NIL {
            &self.possible_readers[self.ops.len()]
        } else {
            &self.possible_readers[self.writer as usize]
        };
        readers.iter().any(|&read| {
            !self.linearized[read as usize] && self.possible_writers_left[read as usize] == 0
        })
    }

    /// Queues the candidate blind definite writes other than `op` to be
    /// linearized just before it. This is always safe: a blind write is
    /// followed by a write in any linearization (no pending GET could see
    /// its value), so moving it to just before this write changes no GET's
    /// result. Bundling them spares the search their orders and subsets.
    fn collect_bundle(&mut self, op: u32) {
        let mut entry = self.list.first();
        while entry != NIL && !self.list.is_return[entry as usize] {
            let other = self.list.op[entry as usize];
            let candidate = &self.ops[other as usize];
            if let Kind::Write(_) = candidate.kind {
                if other != op
                    && candidate.definite
                    && self.possible_readers_left[other as usize] == 0
                {
                    self.bundled.push(other);
                }
            }
            entry = self.list.next[entry as usize];
        }
    }

    /// The op of the first return event: it must be linearized before
    /// anything called after it returned.
    fn deadline_op(&self) -> u32 {
        let mut entry = self.list.first();
        while !self.list.is_return[entry as usize] {
            entry = self.list.next[entry as usize];
        }
        self.list.op[entry as usize]
    }

    fn apply(&mut self, frame: &Frame, new_state: u32) {
        for index in frame.bundle_start as usize..self.bundled.len() {
            let bundled = self.bundled[index];
            self.list.lift(bundled);
            self.mark(bundled, true);
        }
        self.list.lift(frame.op);
        self.mark(frame.op, true);
        self.state = new_state;
        if matches!(self.ops[frame.op as usize].kind, Kind::Write(_)) {
            self.writer = frame.op;
        }
    }

    fn undo(&mut self, frame: &Frame) {
        self.mark(frame.op, false);
        self.list.unlift(frame.op);
        while self.bundled.len() > frame.bundle_start as usize {
            let bundled = self.bundled.pop().expect("non-empty");
            self.mark(bundled, false);
            self.list.unlift(bundled);
        }
        self.state = frame.prev_state;
        self.writer = frame.prev_writer;
    }

    /// Keeps the counters and the memo key in step with what is linearized.
    fn mark(&mut self, op: u32, linearized: bool) {
        let key_op = self.ops[op as usize];
        let delta: i32 = if linearized { -1 } else { 1 };
        self.definite_left =
            (self.definite_left as isize + delta as isize * isize::from(key_op.definite)) as usize;
        self.flip_key(op);
        self.linearized[op as usize] = linearized;
        match key_op.kind {
            Kind::Read(value) => {
                let left = &mut self.reads_left[value as usize];
                *left = left.wrapping_add_signed(delta);
                for index in 0..self.possible_writers[op as usize].len() {
                    let writer = self.possible_writers[op as usize][index];
                    let left = &mut self.possible_readers_left[writer as usize];
                    *left = left.wrapping_add_signed(delta);
                    // A used unknown write that no pending GET can read from
                    // any more is as good as unused: keep it out of the key.
                    let turned = if linearized { *left == 0 } else { *left == 1 };
                    if turned
                        && self.linearized[writer as usize]
                        && !self.ops[writer as usize].definite
                    {
                        self.flip_key(writer);
                    }
                }
            }
            Kind::Write(value) => {
                let left = &mut self.writers_left[value as usize];
                *left = left.wrapping_add_signed(delta);
                for &read in &self.possible_readers[op as usize] {
                    let left = &mut self.possible_writers_left[read as usize];
                    *left = left.wrapping_add_signed(delta);
                }
                if !key_op.definite {
                    let used = &mut self.unknown_used[value as usize];
                    *used = used.wrapping_add_signed(-delta);
                }
            }
        }
    }

    fn flip_key(&mut self, op: u32) {
        self.key_bits[op as usize / 64] ^= 1 << (op % 64);
        self.key_hash ^= zobrist_op(op);
    }

    /// Undoes frames until one has a sibling left to try; returns it.
    fn backtrack(&mut self) -> Option<u32> {
        while let Some(frame) = self.stack.pop() {
            self.steps += 1;
            self.undo(&frame);
            if !frame.forced {
                return Some(self.list.next[frame.entry as usize]);
            }
        }
        None
    }

    /// The linearized ops in order, bundles included.
    fn linearized_order(&self) -> Vec<usize> {
        let mut order = Vec::new();
        for (depth, frame) in self.stack.iter().enumerate() {
            let bundle_end = self
                .stack
                .get(depth + 1)
                .map_or(self.bundled.len(), |next| next.bundle_start as usize);
            let bundle = &self.bundled[frame.bundle_start as usize..bundle_end];
            order.extend(bundle.iter().map(|&op| op as usize));
            order.push(frame.op as usize);
        }
        order
    }

    /// Remembers the deepest point reached, for the explanation.
    fn record_dead_end(&mut self, deadline_entry: u32) {
        let deadline = self.list.op[deadline_entry as usize] as usize;
        self.horizon_ns = self.horizon_ns.max(self.ops[deadline].return_ns);
        let depth = self.stack.len() + self.bundled.len();
        if self
            .deepest
            .as_ref()
            .is_some_and(|d| d.prefix.len() >= depth)
        {
            return;
        }
        let mut pending = Vec::new();
        let mut entry = self.list.first();
        while entry != deadline_entry {
            pending.push(self.list.op[entry as usize] as usize);
            entry = self.list.next[entry as usize];
        }
        self.deepest = Some(Frontier {
            prefix: self.linearized_order(),
            state: self.state,
            pending,
            deadline,
            horizon_ns: 0, // set when the search ends
        });
    }
}

/// Call and return events in time order, as a doubly linked list with a
/// sentinel head at index 0 (dancing links: lift and unlift in LIFO order).
struct EventList {
    next: Vec<u32>,
    prev: Vec<u32>,
    op: Vec<u32>,
    is_return: Vec<bool>,
    call_entry: Vec<u32>,
    /// `NIL` for unknown-outcome ops, which never return.
    return_entry: Vec<u32>,
}

impl EventList {
    fn new(ops: &[KeyOp]) -> Self {
        // (time, is_return, op): calls sort before returns at equal times.
        let mut events: Vec<(u64, bool, u32)> = Vec::with_capacity(2 * ops.len());
        for (index, op) in ops.iter().enumerate() {
            let index = index as u32;
            events.push((op.call_ns, false, index));
            if op.definite {
                events.push((op.return_ns, true, index));
            }
        }
        events.sort_unstable();
        let len = events.len() + 1;
        let mut list = EventList {
            next: (1..=len as u32).collect(),
            prev: (0..len as u32).map(|i| i.wrapping_sub(1)).collect(),
            op: vec![NIL; len],
            is_return: vec![false; len],
            call_entry: vec![NIL; ops.len()],
            return_entry: vec![NIL; ops.len()],
        };
        list.next[len - 1] = NIL;
        for (position, &(_, is_return, op)) in events.iter().enumerate() {
            let entry = position as u32 + 1;
            list.op[entry as usize] = op;
            list.is_return[entry as usize] = is_return;
            if is_return {
                list.return_entry[op as usize] = entry;
            } else {
                list.call_entry[op as usize] = entry;
            }
        }
        list
    }

    fn first(&self) -> u32 {
        self.next[0]
    }

    fn lift(&mut self, op: u32) {
        self.remove(self.call_entry[op as usize]);
        let ret = self.return_entry[op as usize];
        if ret != NIL {
            self.remove(ret);
        }
    }

    fn unlift(&mut self, op: u32) {
        let ret = self.return_entry[op as usize];
        if ret != NIL {
            self.reinsert(ret);
        }
        self.reinsert(self.call_entry[op as usize]);
    }

    fn remove(&mut self, entry: u32) {
        let (prev, next) = (self.prev[entry as usize], self.next[entry as usize]);
        self.next[prev as usize] = next;
        if next != NIL {
            self.prev[next as usize] = prev;
        }
    }

    fn reinsert(&mut self, entry: u32) {
        let (prev, next) = (self.prev[entry as usize], self.next[entry as usize]);
        self.next[prev as usize] = entry;
        if next != NIL {
            self.prev[next as usize] = entry;
        }
    }
}

fn value_of(kind: Kind) -> u32 {
    match kind {
        Kind::Read(value) | Kind::Write(value) => value,
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn zobrist_op(op: u32) -> u64 {
    splitmix64(u64::from(op))
}

fn zobrist_state(state: u32) -> u64 {
    splitmix64(u64::from(state) | 1 << 40)
}

/// The set of explored (linearized set, state) configurations. Keyed by a
/// 64-bit Zobrist hash, with the full bitset kept to rule out collisions;
/// bitsets live in one arena so a lookup allocates nothing.
struct VisitedSet {
    words: usize,
    bits: Vec<u64>,
    states: Vec<u32>,
    /// Next configuration with the same hash, or `NIL`.
    chain: Vec<u32>,
    heads: HashMap<u64, u32, BuildHasherDefault<PassThroughHasher>>,
}

impl VisitedSet {
    fn new(words: usize) -> Self {
        VisitedSet {
            words,
            bits: Vec::new(),
            states: Vec::new(),
            chain: Vec::new(),
            heads: HashMap::default(),
        }
    }

    /// Adds the configuration; false if it was already there.
    fn insert(&mut self, hash: u64, linearized: &[u64], state: u32) -> bool {
        debug_assert_eq!(linearized.len(), self.words);
        let head = self.heads.get(&hash).copied().unwrap_or(NIL);
        let mut index = head;
        while index != NIL {
            let start = index as usize * self.words;
            if self.states[index as usize] == state
                && self.bits[start..start + self.words] == *linearized
            {
                return false;
            }
            index = self.chain[index as usize];
        }
        let index = u32::try_from(self.states.len()).expect("visited set below 2^32 entries");
        self.bits.extend_from_slice(linearized);
        self.states.push(state);
        self.chain.push(head);
        self.heads.insert(hash, index);
        true
    }
}

/// The keys are already well-mixed Zobrist hashes.
#[derive(Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: Kind, call_ns: u64, return_ns: Option<u64>) -> KeyOp {
        KeyOp {
            kind,
            definite: return_ns.is_some(),
            call_ns,
            return_ns: return_ns.unwrap_or(u64::MAX),
            source: 0,
            id: 0,
        }
    }

    fn walk(list: &EventList) -> Vec<(u32, bool)> {
        let mut events = Vec::new();
        let mut entry = list.first();
        while entry != NIL {
            events.push((list.op[entry as usize], list.is_return[entry as usize]));
            entry = list.next[entry as usize];
        }
        events
    }

    #[test]
    fn events_put_calls_before_returns_at_equal_times_and_lift_undoes() {
        let ops = [
            op(Kind::Write(1), 0, Some(10)),
            op(Kind::Read(1), 10, Some(20)),
            op(Kind::Write(2), 5, None),
        ];
        let mut list = EventList::new(&ops);
        let before = walk(&list);
        assert_eq!(
            before,
            [(0, false), (2, false), (1, false), (0, true), (1, true)]
        );
        list.lift(0);
        list.lift(2);
        assert_eq!(walk(&list), [(1, false), (1, true)]);
        list.unlift(2);
        list.unlift(0);
        assert_eq!(walk(&list), before);
    }

    #[test]
    fn blind_writes_are_bundled_not_lost() {
        // Two blind writes overlap a read-from write; the read must see "3".
        let ops = [
            op(Kind::Write(1), 0, Some(100)),
            op(Kind::Write(2), 0, Some(100)),
            op(Kind::Write(3), 0, Some(100)),
            op(Kind::Read(3), 150, Some(160)),
        ];
        assert!(matches!(
            search(&ops, 1_000).result,
            SearchResult::Linearizable
        ));
        // And if a blind write surely comes after the read-from write, the
        // read cannot see "3".
        let ops = [
            op(Kind::Write(3), 0, Some(10)),
            op(Kind::Write(1), 20, Some(30)),
            op(Kind::Read(3), 40, Some(50)),
        ];
        let SearchResult::Violation(frontier) = search(&ops, 1_000).result else {
            panic!("stale read not found");
        };
        assert_eq!(frontier.prefix, [0]);
        assert_eq!(frontier.deadline, 1);
    }

    #[test]
    fn budget_counts_steps() {
        let ops: Vec<KeyOp> = (0..20)
            .map(|i| op(Kind::Write(i + 1), 0, Some(100)))
            .chain((0..20).map(|i| op(Kind::Read(i + 1), 0, Some(100))))
            .collect();
        let outcome = search(&ops, 5);
        assert!(matches!(outcome.result, SearchResult::OutOfBudget));
        assert_eq!(outcome.steps, 5);
    }
}
