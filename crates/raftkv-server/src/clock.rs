//! The node's monotonic clock: nanoseconds since the process started.

use std::time::Instant;

use raftkv_core::MonoTime;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }
    pub fn now(&self) -> MonoTime {
        MonoTime::from_nanos(u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}
