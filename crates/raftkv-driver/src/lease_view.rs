//! The lease-read view: what the driver publishes so that lease reads can
//! be answered off the core's thread (the server's gRPC handlers, the
//! simulator's clients), with no hop to the core.
//!
//! The driver publishes a [`LeaseReadView`] and the applied key-value map
//! (an O(1) clone of the persistent map) after every turn, and before
//! anything the core's state shows leaves the node: a Ready's messages and
//! client answers (published when the Ready is taken), and a lease read or
//! a stale read the core answers itself (published just before the answer).
//! A reader loads the publication, reads its clock, and serves the key if
//! the clock is still before the view's `until`; otherwise it asks the core.
//!
//! Why that is linearizable: the core serves a lease read at any time
//! before `until` as long as nothing is stepped (see
//! `RaftNode::lease_read_view`); whatever is stepped later reaches other
//! nodes or clients only after the publication that reflects it. So a read
//! from the loaded publication is the read the core would have served at
//! the moment of the load: every write acknowledged before it is in the
//! map, and no other leader can have served or acknowledged anything since
//! the lease began.
//!
//! The map is published only while reads come: a published map is shared
//! with the core's, so the next writes copy the B-tree paths they touch.
//! Under a load of writes alone the driver publishes nothing and pays
//! nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use raftkv_core::{KvData, LeaseReadView, MonoTime, RaftNode};

struct Published {
    view: LeaseReadView,
    kv: KvData,
}

/// Shared by the driver (which publishes) and the readers.
pub struct LeaseReads {
    current: ArcSwapOption<Published>,
    /// A reader wanted to read since the last publication of the map.
    wanted: AtomicBool,
    /// Negative control (simulator only): serve a view past its end, and
    /// keep the last view out when the lease is lost.
    unsafe_stale_view: bool,
}

impl Default for LeaseReads {
    fn default() -> Self {
        LeaseReads::new()
    }
}

impl LeaseReads {
    pub fn new() -> LeaseReads {
        LeaseReads {
            current: ArcSwapOption::empty(),
            wanted: AtomicBool::new(false),
            unsafe_stale_view: false,
        }
    }

    /// A view that breaks lease rule 1 on purpose (the simulator's
    /// `--unsafe-stale-view` control): never for a real node.
    pub fn new_unsafe_stale() -> LeaseReads {
        LeaseReads {
            unsafe_stale_view: true,
            ..LeaseReads::new()
        }
    }

    /// `Some(value)` when served here under the lease at local time `now`
    /// (read the clock after calling nothing else); `None` when the read
    /// must go to the core.
    pub fn try_read(&self, now: MonoTime, key: &str) -> Option<Option<String>> {
        if !self.wanted.load(Ordering::Relaxed) {
            self.wanted.store(true, Ordering::Relaxed);
        }
        let guard = self.current.load();
        let published = guard.as_ref()?;
        if now >= published.view.until && !self.unsafe_stale_view {
            return None;
        }
        Some(published.kv.get(key).cloned())
    }

    /// Whether a view is out (for tests and status).
    pub fn is_published(&self) -> bool {
        self.current.load().is_some()
    }
}

/// The driver's side: publishes after each step, skipping what did not
/// change.
pub struct Publisher {
    shared: Arc<LeaseReads>,
    last: Option<LeaseReadView>,
}

impl Publisher {
    pub fn new(shared: Arc<LeaseReads>) -> Publisher {
        Publisher { shared, last: None }
    }

    pub fn shared(&self) -> &Arc<LeaseReads> {
        &self.shared
    }

    /// Call after stepping `node`, before sending what the step produced.
    pub fn publish(&mut self, node: &RaftNode) {
        let view = node.lease_read_view();
        if view == self.last {
            return;
        }
        if view.is_none() && self.shared.unsafe_stale_view {
            return;
        }
        let same_state = match (view, self.last) {
            (Some(v), Some(last)) => v.applied == last.applied && v.term == last.term,
            _ => false,
        };
        let next = match view {
            Some(view) if same_state => {
                // Only the lease end moved: keep the map already out.
                let kv = self
                    .shared
                    .current
                    .load()
                    .as_ref()
                    .expect("a view is out")
                    .kv
                    .clone();
                Some(Arc::new(Published { view, kv }))
            }
            Some(view) if self.shared.wanted.swap(false, Ordering::Relaxed) => {
                Some(Arc::new(Published {
                    view,
                    kv: node.kv_data(),
                }))
            }
            _ => None,
        };
        self.last = next.as_ref().map(|p| p.view);
        self.shared.current.store(next);
    }

    /// Withdraw the view (the node is stopping or crashed).
    pub fn withdraw(&mut self) {
        self.last = None;
        self.shared.current.store(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftkv_core::testkit::{set_cmd, InstantCluster};
    use raftkv_core::ClientCommand;
    use std::time::Duration;

    fn set(seq: u64, k: &str, v: &str) -> ClientCommand {
        set_cmd(1, seq, k, v)
    }

    fn cluster_with_leader() -> (InstantCluster, usize) {
        let mut c = InstantCluster::new(3);
        c.run(Duration::from_secs(3));
        let l = c.leader().expect("a leader");
        (c, l)
    }

    #[test]
    fn serves_only_a_published_map_while_the_lease_holds() {
        let (mut c, l) = cluster_with_leader();
        let shared = Arc::new(LeaseReads::new());
        let mut publisher = Publisher::new(shared.clone());
        publisher.publish(&c.nodes[l]);
        let now = c.now;
        assert_eq!(
            shared.try_read(now, "k"),
            None,
            "no map out before a read asked"
        );
        publisher.publish(&c.nodes[l]);
        assert_eq!(
            shared.try_read(now, "k"),
            Some(None),
            "the map is out once asked"
        );

        c.nodes[l].propose(now, set(1, "k", "v1")).unwrap();
        c.drain();
        // A write applied: a new map goes out, since reads came.
        publisher.publish(&c.nodes[l]);
        assert_eq!(shared.try_read(c.now, "k"), Some(Some("v1".into())));

        // With no read since, the next write withdraws the map rather than
        // share it.
        publisher.publish(&c.nodes[l]);
        shared.wanted.store(false, Ordering::Relaxed);
        let now = c.now;
        c.nodes[l].propose(now, set(2, "k", "v2")).unwrap();
        c.drain();
        publisher.publish(&c.nodes[l]);
        assert!(shared.current.load().is_none());

        publisher.withdraw();
        assert_eq!(shared.try_read(c.now, "k"), None);
    }

    #[test]
    fn a_view_past_its_lease_end_is_not_served() {
        let (c, l) = cluster_with_leader();
        let shared = Arc::new(LeaseReads::new());
        let mut publisher = Publisher::new(shared.clone());
        shared.try_read(c.now, "k");
        publisher.publish(&c.nodes[l]);
        assert!(shared.is_published());
        let later = c.now + Duration::from_secs(60);
        assert_eq!(shared.try_read(later, "k"), None);
        // The control serves it anyway.
        let unsafe_shared = Arc::new(LeaseReads::new_unsafe_stale());
        let mut publisher = Publisher::new(unsafe_shared.clone());
        unsafe_shared.try_read(c.now, "k");
        publisher.publish(&c.nodes[l]);
        assert_eq!(unsafe_shared.try_read(later, "k"), Some(None));
    }

    #[test]
    fn a_follower_publishes_nothing() {
        let (c, l) = cluster_with_leader();
        let f = (l + 1) % 3;
        let shared = Arc::new(LeaseReads::new());
        let mut publisher = Publisher::new(shared.clone());
        shared.try_read(c.now, "k");
        publisher.publish(&c.nodes[f]);
        assert_eq!(shared.try_read(c.now, "k"), None);
    }
}
