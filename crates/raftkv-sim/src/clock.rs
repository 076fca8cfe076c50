//! Per-node monotonic clocks: `local = offset + rate × (real − since)`,
//! where a rate change moves `since` to the change and `offset` to the
//! reading then, so the clock stays continuous and monotonic.

use raftkv_core::MonoTime;

/// One part per million, as a rate: 1 000 000 means the clock runs at real
/// speed.
pub const RATE_EXACT_PPM: u64 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// The local reading at real time zero.
    pub offset_ns: u64,
    /// Local nanoseconds per million real nanoseconds.
    pub rate_ppm: u64,
    /// Real time of the last rate change (0 for a clock that never changed).
    pub since_real_ns: u64,
}

impl Clock {
    pub fn new(offset_ns: u64, rate_ppm: u64) -> Clock {
        assert!(rate_ppm > 0, "a clock must move");
        Clock {
            offset_ns,
            rate_ppm,
            since_real_ns: 0,
        }
    }

    pub fn exact() -> Clock {
        Clock::new(0, RATE_EXACT_PPM)
    }

    pub fn local(&self, real_ns: u64) -> MonoTime {
        let elapsed = real_ns.saturating_sub(self.since_real_ns);
        let scaled = u128::from(elapsed) * u128::from(self.rate_ppm) / u128::from(RATE_EXACT_PPM);
        MonoTime(self.offset_ns + u64::try_from(scaled).expect("simulated time fits in u64"))
    }

    /// The real time at which this clock reads `local` (rounded up), for
    /// tests that translate a node's deadline to the simulator's clock.
    pub fn real_at(&self, local: MonoTime) -> u64 {
        let since = u128::from(local.0.saturating_sub(self.offset_ns));
        let rate = u128::from(self.rate_ppm);
        let elapsed = (since * u128::from(RATE_EXACT_PPM)).div_ceil(rate);
        u64::try_from(elapsed)
            .unwrap_or(u64::MAX)
            .saturating_add(self.since_real_ns)
    }

    /// The same clock running at `rate_ppm` from real time `now_ns` on.
    pub fn with_rate_from(&self, now_ns: u64, rate_ppm: u64) -> Clock {
        assert!(
            now_ns >= self.since_real_ns,
            "rate changes go forward in time"
        );
        Clock {
            offset_ns: self.local(now_ns).0,
            rate_ppm,
            since_real_ns: now_ns,
        }
    }

    /// Whether this clock's rate is within `±bound_ppm` of real time.
    pub fn within(&self, bound_ppm: u64) -> bool {
        self.rate_ppm.abs_diff(RATE_EXACT_PPM) <= bound_ppm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_back() {
        let c = Clock::new(1_000, 1_010_000);
        assert_eq!(c.local(1_000_000), MonoTime(1_000 + 1_010_000));
        assert_eq!(c.real_at(c.local(123_456_789)), 123_456_789);
        assert!(c.within(10_000) && !c.within(9_999));
    }

    #[test]
    fn rate_change_is_continuous() {
        let c = Clock::new(5, 1_000_000);
        let d = c.with_rate_from(1_000, 2_000_000);
        assert_eq!(d.local(1_000), c.local(1_000));
        assert_eq!(d.local(2_000), MonoTime(5 + 1_000 + 2_000));
        assert_eq!(d.real_at(d.local(7_000)), 7_000);
    }
}
