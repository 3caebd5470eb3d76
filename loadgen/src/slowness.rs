//! Slowness: stretches in which a core keeps running, but slower.
//!
//! Gaps (see `stalls`) catch the time a core is taken away. They miss a core
//! that goes on running at half speed for tens of milliseconds: a busy
//! neighbour on the host sharing its caches or memory bandwidth, or a
//! hypervisor that time-slices it finely. To a server that is the same as
//! losing half of its capacity for that long, and an open loop at half of
//! the peak then falls behind by as much. `--scenario hiccup` therefore also
//! times one fixed chunk of work over and over (a dependent chain of
//! multiplies and loads over a table the size of a core's cache) and reports
//! the share of 1 ms windows in which the chunk took at least twice its fast
//! time, and the longest run of such windows.

use hdrhistogram::Histogram;

/// Windows are this long, nanoseconds.
pub const WINDOW_NS: u64 = 1_000_000;
/// A window is slow when its chunks took this many times the fast time.
pub const SLOW_FACTOR: f64 = 2.0;
/// The fast time is this quantile of all chunk times: the speed the core
/// reaches when nothing gets in its way.
pub const FAST_QUANTILE: f64 = 0.10;
/// Windows kept at most (ten minutes, 8 bytes each): past that, chunks only
/// go to the histogram, so a long run cannot grow without bound.
pub const WINDOWS_MAX: usize = 600_000;
/// Steps of the fixed chunk: about 15 µs on the machine this was written on,
/// short next to a window, long next to reading the clock.
pub const CHUNK_STEPS: u32 = 2_000;
/// Entries of the probe's table (1 MiB of `u32`).
const TABLE_LEN: usize = 1 << 18;
/// Longest chunk time recorded, nanoseconds (longer ones are clamped).
const CHUNK_NS_MAX: u64 = 60_000_000_000;

/// The fixed chunk of work and the state it carries from one chunk to the next.
#[derive(Debug)]
pub struct Probe {
    table: Vec<u32>,
    x: u64,
    at: u32,
}

impl Default for Probe {
    fn default() -> Probe {
        // A permutation-like walk: each entry names the next one to read.
        let mask = TABLE_LEN as u32 - 1;
        let table = (0..TABLE_LEN as u32).map(|i| i.wrapping_mul(2_654_435_761) & mask).collect();
        Probe { table, x: 1, at: 0 }
    }
}

impl Probe {
    /// Runs one chunk: [`CHUNK_STEPS`] dependent steps.
    pub fn run(&mut self) {
        let mask = TABLE_LEN as u64 - 1;
        for _ in 0..CHUNK_STEPS {
            self.x = self.x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            self.at = self.table[((u64::from(self.at) + (self.x >> 33)) & mask) as usize];
        }
        std::hint::black_box((self.x, self.at));
    }
}

/// Chunk times of one core, and per window their sum (nanoseconds, at most
/// `u32::MAX`: 4 s is slow enough) and count.
#[derive(Clone, Debug)]
pub struct Slowness {
    chunks: Histogram<u64>,
    windows: Vec<(u32, u32)>,
}

impl Default for Slowness {
    fn default() -> Slowness {
        Slowness {
            chunks: Histogram::new_with_bounds(1, CHUNK_NS_MAX, 2).expect("valid histogram bounds"),
            windows: Vec::new(),
        }
    }
}

impl Slowness {
    /// A chunk that started `at_ns` into the measured period took `took_ns`.
    pub fn record(&mut self, at_ns: u64, took_ns: u64) {
        self.chunks.saturating_record(took_ns.clamp(1, CHUNK_NS_MAX));
        let window = (at_ns / WINDOW_NS) as usize;
        if window >= WINDOWS_MAX {
            return;
        }
        if self.windows.len() <= window {
            self.windows.resize(window + 1, (0, 0));
        }
        let w = &mut self.windows[window];
        w.0 = w.0.saturating_add(took_ns.min(u64::from(u32::MAX)) as u32);
        w.1 = w.1.saturating_add(1);
    }

    /// The figures. A window in which no chunk started (the core was away
    /// all of it) is slow too; the last window, cut by the end of the run,
    /// is left out.
    pub fn summary(&self) -> SlownessSummary {
        let fast_ns = if self.chunks.is_empty() { 0 } else { self.chunks.value_at_quantile(FAST_QUANTILE) };
        let limit = fast_ns as f64 * SLOW_FACTOR;
        let whole = self.windows.len().saturating_sub(1);
        let (mut slow, mut run, mut longest) = (0u64, 0u64, 0u64);
        for &(sum, count) in &self.windows[..whole] {
            if count == 0 || f64::from(sum) / f64::from(count) >= limit {
                slow += 1;
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
        SlownessSummary {
            chunk_fast_ns: fast_ns,
            chunk_median_ns: if self.chunks.is_empty() { 0 } else { self.chunks.value_at_quantile(0.5) },
            windows: whole as u64,
            slow_windows: slow,
            slow_fraction: if whole > 0 { slow as f64 / whole as f64 } else { 0.0 },
            longest_slow_ms: longest * WINDOW_NS / 1_000_000,
        }
    }
}

/// Slowness figures as reported (text and JSON).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct SlownessSummary {
    /// The chunk's fast time ([`FAST_QUANTILE`] of all), nanoseconds.
    pub chunk_fast_ns: u64,
    /// Its median time, nanoseconds.
    pub chunk_median_ns: u64,
    /// Whole windows watched.
    pub windows: u64,
    /// Windows whose chunks took [`SLOW_FACTOR`] times the fast time or more.
    pub slow_windows: u64,
    /// `slow_windows / windows`.
    pub slow_fraction: f64,
    /// The longest run of slow windows, milliseconds.
    pub longest_slow_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = WINDOW_NS;

    /// Ten chunks a window of `took` ns each, for `windows` windows from `from`.
    fn fill(s: &mut Slowness, from: u64, windows: u64, took: u64) {
        for w in from..from + windows {
            for i in 0..10 {
                s.record(w * MS + i * 1_000, took);
            }
        }
    }

    #[test]
    fn windows_at_twice_the_fast_time_are_slow_and_runs_are_measured() {
        let mut s = Slowness::default();
        fill(&mut s, 0, 50, 10_000);
        fill(&mut s, 50, 7, 25_000); // 2.5x: slow
        fill(&mut s, 57, 20, 10_000);
        fill(&mut s, 77, 3, 19_000); // 1.9x: not slow
        fill(&mut s, 80, 2, 40_000);
        fill(&mut s, 82, 1, 10_000); // the last window, cut by the end: left out
        let r = s.summary();
        assert!((9_900..=10_100).contains(&r.chunk_fast_ns), "{r:?}");
        assert_eq!(r.windows, 82);
        assert_eq!(r.slow_windows, 9);
        assert_eq!(r.longest_slow_ms, 7);
        assert!((r.slow_fraction - 9.0 / 82.0).abs() < 1e-12);
    }

    #[test]
    fn a_window_without_a_chunk_is_slow() {
        let mut s = Slowness::default();
        fill(&mut s, 0, 10, 10_000);
        // A chunk that started in window 10 and ran past windows 11 to 14.
        s.record(10 * MS, 5 * MS);
        fill(&mut s, 15, 10, 10_000);
        let r = s.summary();
        assert_eq!((r.slow_windows, r.longest_slow_ms), (5, 5), "{r:?}");
    }

    #[test]
    fn nothing_recorded_is_all_zero() {
        assert_eq!(Slowness::default().summary(), SlownessSummary::default());
    }

    #[test]
    fn windows_stop_at_their_limit_but_chunks_still_count() {
        let mut s = Slowness::default();
        s.record(WINDOWS_MAX as u64 * MS + 5, 1_000);
        assert_eq!(s.windows.len(), 0);
        assert_eq!(s.chunks.len(), 1);
    }

    #[test]
    fn the_probe_changes_its_state() {
        let mut p = Probe::default();
        let before = (p.x, p.at);
        p.run();
        assert_ne!((p.x, p.at), before);
    }
}
