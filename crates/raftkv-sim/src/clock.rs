//! Per-node monotonic clocks: `local = offset + rate × real`.

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
}

impl Clock {
    pub fn exact() -> Clock {
        Clock {
            offset_ns: 0,
            rate_ppm: RATE_EXACT_PPM,
        }
    }

    pub fn local(&self, real_ns: u64) -> MonoTime {
        let scaled = u128::from(real_ns) * u128::from(self.rate_ppm) / u128::from(RATE_EXACT_PPM);
        MonoTime(self.offset_ns + u64::try_from(scaled).expect("simulated time fits in u64"))
    }

    /// The real time at which this clock reads `local` (rounded up), for
    /// tests that translate a node's deadline to the simulator's clock.
    pub fn real_at(&self, local: MonoTime) -> u64 {
        let since = u128::from(local.0.saturating_sub(self.offset_ns));
        let rate = u128::from(self.rate_ppm);
        u64::try_from((since * u128::from(RATE_EXACT_PPM)).div_ceil(rate)).unwrap_or(u64::MAX)
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
        let c = Clock {
            offset_ns: 1_000,
            rate_ppm: 1_010_000,
        };
        assert_eq!(c.local(1_000_000), MonoTime(1_000 + 1_010_000));
        assert_eq!(c.real_at(c.local(123_456_789)), 123_456_789);
        assert!(c.within(10_000) && !c.within(9_999));
    }
}
