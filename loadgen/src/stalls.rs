//! Stalls: the gaps in a loop that never waits, as jHiccup measures them.
//!
//! The load generator's loop polls without parking, so the time between two
//! of its turns is one turn's work (tens of microseconds) unless something
//! took the core away: the hypervisor running another guest, an interrupt
//! storm, the kernel reclaiming memory. A gap of a millisecond is a stall, and
//! every request due during it is late by as much, whoever serves it. The
//! figures go with every run so that an open-loop tail can be told apart from
//! the generator's (or the machine's) own stalls; `--scenario hiccup` does
//! nothing but this (around a fixed chunk of work, see `slowness`) on every
//! core it is given, to measure the machine itself before a benchmark.
//!
//! The same watch splits the loop's time into busy (turns that found
//! answers to read or requests to send) and idle (turns that found neither):
//! a generator that is never idle in a closed loop is the side that limits
//! the run, whatever the server could do.

/// Gaps at least this long are counted, in three bands (microseconds).
pub const BANDS_US: [u64; 3] = [100, 1_000, 10_000];

/// Gaps of at least one length: how many, and their time in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Band {
    /// Gaps at least as long as the band's threshold.
    pub count: u64,
    /// Their lengths added up, in microseconds.
    pub total_us: u64,
}

/// The gaps seen by one loop (or several, merged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stalls {
    bands: [Band; BANDS_US.len()],
    max_us: u64,
    observed_ns: u64,
    busy_ns: u64,
    last_ns: Option<u64>,
}

impl Stalls {
    /// The loop is running at `now_ns` (any monotonic nanosecond count).
    /// The gap since the last observation is counted if it is long enough,
    /// and as busy time if the turn it held `worked`.
    pub fn observe(&mut self, now_ns: u64, worked: bool) {
        if let Some(last) = self.last_ns {
            let gap_ns = now_ns.saturating_sub(last);
            self.observed_ns += gap_ns;
            if worked {
                self.busy_ns += gap_ns;
            }
            let gap_us = gap_ns / 1_000;
            if gap_us >= BANDS_US[0] {
                for (band, threshold) in self.bands.iter_mut().zip(BANDS_US) {
                    if gap_us >= threshold {
                        band.count += 1;
                        band.total_us += gap_us;
                    }
                }
                self.max_us = self.max_us.max(gap_us);
            }
        }
        self.last_ns = Some(now_ns);
    }

    /// The watch ends at `end_ns`: the gap from the last observation to it
    /// counts (a stall that runs past the end happened inside the period,
    /// up to the end), and nothing after. Later calls do nothing.
    pub fn close(&mut self, end_ns: u64, worked: bool) {
        if self.last_ns.is_some_and(|last| end_ns > last) {
            self.observe(end_ns, worked);
        }
        self.last_ns = None;
    }

    /// Adds another loop's figures (another worker's, say).
    pub fn merge(&mut self, other: &Stalls) {
        for (band, theirs) in self.bands.iter_mut().zip(other.bands) {
            band.count += theirs.count;
            band.total_us += theirs.total_us;
        }
        self.max_us = self.max_us.max(other.max_us);
        self.observed_ns += other.observed_ns;
        self.busy_ns += other.busy_ns;
    }

    /// The figures, for reports.
    pub fn summary(&self) -> StallSummary {
        StallSummary {
            observed_secs: self.observed_ns as f64 / 1e9,
            over_100us: self.bands[0],
            over_1ms: self.bands[1],
            over_10ms: self.bands[2],
            max_us: self.max_us,
            busy_fraction: if self.observed_ns > 0 {
                self.busy_ns as f64 / self.observed_ns as f64
            } else {
                0.0
            },
        }
    }
}

/// Stall figures as reported (text and JSON).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct StallSummary {
    /// Loop time watched, in seconds (summed over loops when merged).
    pub observed_secs: f64,
    /// Gaps of 100 µs or more.
    pub over_100us: Band,
    /// Gaps of 1 ms or more.
    pub over_1ms: Band,
    /// Gaps of 10 ms or more.
    pub over_10ms: Band,
    /// The longest gap, in microseconds (0 if none reached 100 µs).
    pub max_us: u64,
    /// Share of the watched time in turns that found work (0 to 1).
    pub busy_fraction: f64,
}

impl StallSummary {
    /// Share of the watched time spent in gaps of 1 ms or more.
    pub fn stalled_fraction(&self) -> f64 {
        if self.observed_secs > 0.0 {
            self.over_1ms.total_us as f64 / 1e6 / self.observed_secs
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;

    #[test]
    fn gaps_fall_into_every_band_they_reach() {
        let mut stalls = Stalls::default();
        // Turns 20 us apart, then gaps of 150 us, 2 ms and 12 ms.
        let mut now = 5_000 * US;
        stalls.observe(now, true);
        for gap in [20, 20, 150, 20, 2_000, 20, 12_000, 20] {
            now += gap * US;
            stalls.observe(now, true);
        }
        let s = stalls.summary();
        assert_eq!(s.over_100us, Band { count: 3, total_us: 14_150 });
        assert_eq!(s.over_1ms, Band { count: 2, total_us: 14_000 });
        assert_eq!(s.over_10ms, Band { count: 1, total_us: 12_000 });
        assert_eq!(s.max_us, 12_000);
        assert_eq!(s.observed_secs, 14_250.0 / 1e6, "every gap is watched time, the first point none");
        assert!((s.stalled_fraction() - 14_000.0 / 14_250.0).abs() < 1e-12);
    }

    #[test]
    fn short_gaps_count_as_time_only() {
        let mut stalls = Stalls::default();
        for i in 0..1_000 {
            stalls.observe(i * 99 * US, false);
        }
        let s = stalls.summary();
        assert_eq!((s.over_100us.count, s.max_us, s.stalled_fraction()), (0, 0, 0.0));
        assert_eq!(s.observed_secs, 999.0 * 99.0 / 1e6);
    }

    #[test]
    fn merged_loops_add_up_and_keep_the_longest() {
        let mut a = Stalls::default();
        a.observe(0, false);
        a.observe(3_000 * US, true);
        let mut b = Stalls::default();
        b.observe(1_000 * US, false);
        b.observe(1_200 * US, true);
        b.observe(21_200 * US, false);
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.over_100us, Band { count: 3, total_us: 23_200 });
        assert_eq!(s.over_1ms, Band { count: 2, total_us: 23_000 });
        assert_eq!(s.over_10ms, Band { count: 1, total_us: 20_000 });
        assert_eq!(s.max_us, 20_000);
        assert_eq!(s.observed_secs, 0.0232);
        assert!((s.busy_fraction - 3_200.0 / 23_200.0).abs() < 1e-12);
    }

    #[test]
    fn busy_time_is_the_time_of_turns_that_worked() {
        let mut stalls = Stalls::default();
        stalls.observe(0, true);
        stalls.observe(30 * US, true);
        stalls.observe(40 * US, false);
        stalls.observe(100 * US, true);
        let s = stalls.summary();
        assert!((s.busy_fraction - 0.9).abs() < 1e-12, "30 + 60 of 100 us");
        assert_eq!(Stalls::default().summary().busy_fraction, 0.0);
    }

    #[test]
    fn a_stall_that_runs_past_the_end_counts_up_to_the_end() {
        let mut stalls = Stalls::default();
        stalls.observe(0, false);
        stalls.observe(20 * US, false);
        // The core was taken away at 20 us and given back after the end (at
        // 60 ms): the loop's next look at the clock is past the end.
        stalls.close(50_000 * US, false);
        stalls.close(60_000 * US, false);
        stalls.observe(60_000 * US, false);
        let s = stalls.summary();
        assert_eq!(s.over_10ms, Band { count: 1, total_us: 49_980 });
        assert_eq!(s.observed_secs, 0.05, "watched up to the end, no further");
        // Nothing seen before the end: nothing to close.
        let mut never = Stalls::default();
        never.close(50_000 * US, false);
        assert_eq!(never.summary(), StallSummary::default());
    }

    #[test]
    fn a_clock_that_steps_back_is_no_stall() {
        let mut stalls = Stalls::default();
        stalls.observe(10_000 * US, false);
        stalls.observe(9_000 * US, false);
        stalls.observe(9_010 * US, false);
        assert_eq!(stalls.summary(), StallSummary { observed_secs: 10e-6, ..StallSummary::default() });
    }
}
