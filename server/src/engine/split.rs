//! How money is split into shares, in integer cents only.
//!
//! Random envelopes use the "double average" rule that WeChat describes: with
//! `m` cents and `n` shares left, the last share takes everything; otherwise the
//! share is uniform in `[lo, hi]` where
//!
//! * `hi = min(cap, floor(2m/n), m - (n-1))`: at most twice the average, and
//!   enough left for every later share to get a cent;
//! * `lo = max(1, m - (n-1) * cap)`: enough taken that every later share fits
//!   under the cap.
//!
//! Given `n <= m <= n * cap` (checked at CREATE), `1 <= lo <= hi`, and the same
//! holds again for `m - share` and `n - 1`, so the split can never get stuck.

use super::rng::Rng;

/// The inclusive bounds of the next random share, with `m` cents and `n` shares
/// left, none above `cap`.
#[inline(always)]
pub fn random_bounds(m: u64, n: u64, cap: u64) -> (u64, u64) {
    assert!(n >= 1 && m >= n && m <= n.saturating_mul(cap), "split precondition: m={m} n={n} cap={cap}");
    if n == 1 {
        return (m, m);
    }
    let lo = m.saturating_sub((n - 1).saturating_mul(cap)).max(1);
    let hi = cap.min(2 * m / n).min(m - (n - 1));
    assert!(1 <= lo && lo <= hi && hi <= cap, "split bounds: m={m} n={n} cap={cap} lo={lo} hi={hi}");
    (lo, hi)
}

/// The next random share.
#[inline(always)]
pub fn random_share(m: u64, n: u64, cap: u64, rng: &mut Rng) -> u64 {
    let (lo, hi) = random_bounds(m, n, cap);
    let share = lo + rng.below(hi - lo + 1);
    debug_assert!((lo..=hi).contains(&share));
    share
}

/// Each share of a fixed envelope; `total` divides evenly by `count`.
pub fn fixed_share(total: u64, count: u64) -> u64 {
    assert!(count >= 1 && total.is_multiple_of(count) && total >= count, "fixed split: {total}/{count}");
    total / count
}
