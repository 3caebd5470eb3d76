//! The double-average split, tested as properties and as statistics.
//!
//! The properties pay out whole envelopes, through `split` directly and through
//! the engine, for arbitrary counts, caps, totals and seeds: the shares add up
//! to the total to the cent, each lies in `[1, cap]`, the bounds of every step
//! are the ones the spec gives (recomputed here in wide signed arithmetic, so a
//! saturating or wrapping mistake in `split` cannot hide), and fixed shares are
//! all equal.
//!
//! The statistics check that no position in the opening order is favoured: over
//! 20,000 seeded envelopes of 10,000 cents in 10 shares, every position's mean is
//! within 3% of the fair 1,000 cents. The test asserts that 3% is at least four
//! standard errors of every position (so it is not tuned to its seed), and runs
//! the same check on two deliberately biased splits to show that it fails them.

use hongbao_protocol::body::{CreateRequest, EnvelopeKind, EnvelopeState};
use hongbao_protocol::Status;
use hongbao_server::engine::{split, Engine, EngineConfig, Rng};
use proptest::prelude::*;
use zerocopy::little_endian::{U32, U64};

/// A fixed "now"; nothing here lets time pass.
const T0: u64 = 1_700_000_000_000;

/// The bounds of the next random share as the spec states them, computed
/// independently of `split::random_bounds`.
fn spec_bounds(m: u64, n: u64, cap: u64) -> (u64, u64) {
    if n == 1 {
        return (m, m);
    }
    let (m, n, cap) = (i128::from(m), i128::from(n), i128::from(cap));
    let lo = (m - (n - 1) * cap).max(1);
    let hi = cap.min(2 * m / n).min(m - (n - 1));
    (lo as u64, hi as u64)
}

/// Pays out a whole random envelope with `split`, checking every step, and
/// returns the shares in opening order.
fn pay_out_random(total: u64, count: u64, cap: u64, rng: &mut Rng) -> Vec<u64> {
    let mut m = total;
    let mut shares = Vec::with_capacity(count as usize);
    for n in (1..=count).rev() {
        let (lo, hi) = split::random_bounds(m, n, cap);
        assert_eq!((lo, hi), spec_bounds(m, n, cap), "bounds of m={m} n={n} cap={cap}");
        assert!(1 <= lo && lo <= hi && hi <= cap, "m={m} n={n} cap={cap}: [{lo}, {hi}]");
        // Whatever is drawn, every later share still gets a cent and fits under the cap.
        assert!(m - hi >= n - 1 && m - lo <= (n - 1) * cap, "m={m} n={n} cap={cap}: [{lo}, {hi}]");
        let share = split::random_share(m, n, cap, rng);
        assert!((lo..=hi).contains(&share), "share {share} outside [{lo}, {hi}]");
        m -= share;
        shares.push(share);
    }
    assert_eq!(m, 0, "money left after the last share");
    shares
}

/// Arbitrary (count, cap, total, seed) with `count <= total <= count * cap`,
/// leaning on the edges: caps of a few cents, totals of one cent a share or of
/// the cap a share.
fn envelope_params() -> impl Strategy<Value = (u64, u64, u64, u64)> {
    let cap = prop_oneof![1u64..=3, 1u64..=20_000, Just(20_000u64), 1u64..=10_000_000];
    (1u64..=2000, cap).prop_flat_map(|(count, cap)| {
        let max = count * cap;
        let total = prop_oneof![Just(count), Just(max), count..=max, count..=max.min(2 * count)];
        (Just(count), Just(cap), total, any::<u64>())
    })
}

fn create_request(total: u64, count: u64, kind: EnvelopeKind) -> CreateRequest {
    CreateRequest {
        sender: U64::new(1),
        total_cents: U64::new(total),
        count: U32::new(count as u32),
        kind: kind as u8,
        reserved0: [0; 3],
        expires_in_secs: U32::new(0),
        reserved1: U32::new(0),
    }
}

/// An engine whose limits admit any envelope the properties make.
fn engine_with(cap: u64, seed: u64) -> Engine {
    Engine::new(EngineConfig { share_cap_cents: cap, max_count: 2000, seed, ..EngineConfig::default() })
}

/// Creates an envelope, lets users `1..=count` grab a share each, then opens
/// them in an order shuffled by `order_seed`, checking each amount against the
/// spec's bounds for the money and unpaid shares left just before it. Returns
/// the amounts in opening order.
fn pay_out_engine(
    engine: &mut Engine,
    total: u64,
    count: u64,
    kind: EnvelopeKind,
    order_seed: u64,
) -> Vec<u64> {
    let cap = engine.config().share_cap_cents;
    let id = engine.create(T0, &create_request(total, count, kind)).expect("create").envelope.get();
    for user in 1..=count {
        assert_eq!(engine.grab(T0, id, user).0, Status::Ok);
    }
    let mut users: Vec<u64> = (1..=count).collect();
    let mut rng = Rng::new(order_seed);
    for i in (1..users.len()).rev() {
        users.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut amounts = Vec::with_capacity(count as usize);
    for (i, &user) in users.iter().enumerate() {
        let (before, _) = engine.query(T0, id, 0, 0).expect("query");
        let m = before.remaining_cents.get();
        // The unpaid shares, reserved ones included, are the split's `n`.
        let n = u64::from(before.count.get() - before.paid_count.get());
        assert_eq!(n, count - i as u64);
        let (status, answer) = engine.open(T0, id, user);
        assert_eq!(status, Status::Ok);
        let amount = answer.amount_cents.get();
        assert_eq!(answer.order.get(), i as u32 + 1);
        match kind {
            EnvelopeKind::Random => {
                let (lo, hi) = spec_bounds(m, n, cap);
                assert!((lo..=hi).contains(&amount), "share {amount} outside [{lo}, {hi}] (m={m} n={n})");
            }
            EnvelopeKind::Fixed => assert_eq!(amount, total / count),
        }
        amounts.push(amount);
    }
    let (after, _) = engine.query(T0, id, 0, 0).expect("query");
    assert_eq!(after.state, EnvelopeState::Finished as u8);
    assert_eq!(after.paid_cents.get(), total);
    assert_eq!(after.remaining_cents.get(), 0);
    assert_eq!(after.refunded_cents.get(), 0);
    let mut listed = Vec::with_capacity(amounts.len());
    while listed.len() < amounts.len() {
        let (_, page) = engine.query(T0, id, listed.len() as u32, u32::MAX).expect("query");
        assert!(!page.is_empty());
        listed.extend(page.iter().map(|c| c.amount_cents.get()));
    }
    assert_eq!(listed, amounts, "claims list the amounts paid, in order");
    engine.assert_all_invariants();
    amounts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_envelope_pays_exactly_its_total((count, cap, total, seed) in envelope_params()) {
        let shares = pay_out_random(total, count, cap, &mut Rng::new(seed));
        prop_assert_eq!(shares.len() as u64, count);
        prop_assert_eq!(shares.iter().sum::<u64>(), total);
        prop_assert!(shares.iter().all(|&s| (1..=cap).contains(&s)));
    }

    #[test]
    fn one_step_bounds_match_the_spec(
        (m, n, cap) in (1u64..=10_000, 1u64..=1_000_000_000)
            .prop_flat_map(|(n, cap)| (n..=n * cap, Just(n), Just(cap))),
        seed in any::<u64>(),
    ) {
        let (lo, hi) = split::random_bounds(m, n, cap);
        prop_assert_eq!((lo, hi), spec_bounds(m, n, cap));
        prop_assert!(1 <= lo && lo <= hi && hi <= cap);
        let share = split::random_share(m, n, cap, &mut Rng::new(seed));
        prop_assert!((lo..=hi).contains(&share));
        // What is left is again a valid envelope of n - 1 shares.
        if n > 1 {
            prop_assert!(m - share >= n - 1 && m - share <= (n - 1) * cap);
        }
    }

    #[test]
    fn fixed_shares_are_all_equal(count in 1u64..=2000, share in 1u64..=20_000) {
        let total = count * share;
        let shares: Vec<u64> = (0..count).map(|_| split::fixed_share(total, count)).collect();
        prop_assert!(shares.iter().all(|&s| s == share));
        prop_assert_eq!(shares.iter().sum::<u64>(), total);
    }
}

proptest! {
    // Whole envelopes through the engine cost a query per share: fewer cases.
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn engine_random_envelope_pays_exactly_its_total(
        (count, cap, total, seed) in envelope_params(),
        order_seed in any::<u64>(),
    ) {
        let mut engine = engine_with(cap, seed);
        let amounts = pay_out_engine(&mut engine, total, count, EnvelopeKind::Random, order_seed);
        prop_assert_eq!(amounts.len() as u64, count);
        prop_assert_eq!(amounts.iter().sum::<u64>(), total);
        prop_assert!(amounts.iter().all(|&a| (1..=cap).contains(&a)));
    }

    #[test]
    fn engine_fixed_envelope_pays_equal_shares(
        count in 1u64..=2000,
        share in 1u64..=20_000,
        order_seed in any::<u64>(),
    ) {
        let mut engine = engine_with(20_000, 1);
        let amounts = pay_out_engine(&mut engine, count * share, count, EnvelopeKind::Fixed, order_seed);
        prop_assert!(amounts.iter().all(|&a| a == share));
        prop_assert_eq!(amounts.iter().sum::<u64>(), count * share);
    }
}

#[test]
fn extreme_totals_force_every_share() {
    // One cent a share: every share is one cent. The cap a share: every share is the cap.
    for (count, cap) in [(1u64, 1u64), (7, 1), (10, 20_000), (2000, 3)] {
        let mut rng = Rng::new(count ^ cap);
        assert!(pay_out_random(count, count, cap, &mut rng).iter().all(|&s| s == 1));
        assert!(pay_out_random(count * cap, count, cap, &mut rng).iter().all(|&s| s == cap));
        let mut engine = engine_with(cap, 3);
        assert!(pay_out_engine(&mut engine, count, count, EnvelopeKind::Random, 5).iter().all(|&s| s == 1));
        let all_cap = pay_out_engine(&mut engine, count * cap, count, EnvelopeKind::Random, 6);
        assert!(all_cap.iter().all(|&s| s == cap));
    }
}

#[test]
fn last_share_takes_the_rest() {
    for (m, cap) in [(1u64, 1u64), (1, 20_000), (19_999, 20_000), (20_000, 20_000)] {
        assert_eq!(split::random_bounds(m, 1, cap), (m, m));
        assert_eq!(split::random_share(m, 1, cap, &mut Rng::new(m)), m);
    }
}

#[test]
fn random_share_reaches_both_bounds_and_everything_between() {
    // (m, n, cap) and the bounds the spec gives them.
    let cases = [
        (10u64, 2u64, 100u64, (1u64, 9u64)), // hi = m - (n-1)
        (100, 3, 40, (20, 40)),              // lo = m - (n-1)*cap, hi = cap
        (100, 4, 1000, (1, 50)),             // hi = 2m/n
        (5, 5, 7, (1, 1)),                   // one cent each
    ];
    let mut rng = Rng::new(0x0b0d);
    for (m, n, cap, bounds) in cases {
        assert_eq!(split::random_bounds(m, n, cap), bounds, "m={m} n={n} cap={cap}");
        let (lo, hi) = bounds;
        let mut seen = vec![false; (hi - lo + 1) as usize];
        for _ in 0..20_000 {
            let share = split::random_share(m, n, cap, &mut rng);
            assert!((lo..=hi).contains(&share));
            seen[(share - lo) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "m={m} n={n} cap={cap}: some share in [{lo}, {hi}] never drawn");
    }
}

#[test]
#[should_panic(expected = "split precondition")]
fn random_bounds_refuses_less_than_a_cent_a_share() {
    split::random_bounds(5, 6, 10);
}

#[test]
#[should_panic(expected = "split precondition")]
fn random_bounds_refuses_more_than_the_cap_a_share() {
    split::random_bounds(61, 6, 10);
}

#[test]
#[should_panic(expected = "split precondition")]
fn random_bounds_refuses_zero_shares() {
    split::random_bounds(0, 0, 10);
}

#[test]
#[should_panic(expected = "fixed split")]
fn fixed_share_refuses_an_uneven_total() {
    split::fixed_share(10, 3);
}

#[test]
fn engine_split_is_repeatable_from_its_seed() {
    let run = |seed: u64| {
        let mut engine = engine_with(20_000, seed);
        (0..20)
            .flat_map(|i| pay_out_engine(&mut engine, 10_000, 10, EnvelopeKind::Random, i))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(77), run(77));
    assert_ne!(run(77), run(78));
}

// ----- Statistics -------------------------------------------------------------

const TRIALS: usize = 20_000;
const TOTAL: u64 = 10_000;
const COUNT: usize = 10;
/// Largest allowed distance of a position's mean from the fair share, as a
/// fraction of it: 30 cents of 1,000.
const TOLERANCE: f64 = 0.03;
/// The tolerance must be at least this many standard errors of every position's
/// mean, so that an unbiased split passes whatever the seed (a 4-sigma miss on
/// one of 10 positions has a chance of about 6 in 10,000).
const SIGMAS_MIN: f64 = 4.0;

/// Mean and standard deviation of each position in opening order.
#[derive(Debug)]
struct PositionStats {
    mean: [f64; COUNT],
    sd: [f64; COUNT],
}

fn position_stats(mut envelope: impl FnMut() -> Vec<u64>) -> PositionStats {
    let mut sum = [0f64; COUNT];
    let mut sum_sq = [0f64; COUNT];
    for _ in 0..TRIALS {
        let shares = envelope();
        assert_eq!(shares.len(), COUNT);
        assert_eq!(shares.iter().sum::<u64>(), TOTAL);
        for (k, &s) in shares.iter().enumerate() {
            sum[k] += s as f64;
            sum_sq[k] += (s as f64) * (s as f64);
        }
    }
    let n = TRIALS as f64;
    let mean = sum.map(|s| s / n);
    let mut sd = [0f64; COUNT];
    for k in 0..COUNT {
        sd[k] = ((sum_sq[k] - n * mean[k] * mean[k]) / (n - 1.0)).sqrt();
    }
    PositionStats { mean, sd }
}

/// Whether every position's mean is within the tolerance of the fair share.
fn check_unbiased(stats: &PositionStats) -> Result<(), String> {
    let fair = TOTAL as f64 / COUNT as f64;
    for (k, mean) in stats.mean.iter().enumerate() {
        if (mean - fair).abs() > TOLERANCE * fair {
            return Err(format!("position {} has mean {mean:.1}, fair is {fair}", k + 1));
        }
    }
    Ok(())
}

/// Asserts the tolerance is wide enough for the split's own variance.
fn assert_tolerance_justified(stats: &PositionStats) {
    let fair = TOTAL as f64 / COUNT as f64;
    for (k, sd) in stats.sd.iter().enumerate() {
        let standard_error = sd / (TRIALS as f64).sqrt();
        assert!(
            TOLERANCE * fair >= SIGMAS_MIN * standard_error,
            "position {}: sd {sd:.0}, standard error {standard_error:.1} too wide for the tolerance",
            k + 1
        );
    }
}

/// Pays out one envelope of `TOTAL` in `COUNT` shares with `share(m, n, rng)`.
fn pay_out_with(rng: &mut Rng, share: impl Fn(u64, u64, &mut Rng) -> u64) -> Vec<u64> {
    let mut m = TOTAL;
    let mut shares = Vec::with_capacity(COUNT);
    for n in (1..=COUNT as u64).rev() {
        let s = share(m, n, rng);
        m -= s;
        shares.push(s);
    }
    shares
}

#[test]
fn no_position_is_favoured_by_split() {
    let cap = 20_000;
    let mut rng = Rng::new(0x6d65_616e);
    let stats = position_stats(|| pay_out_with(&mut rng, |m, n, rng| split::random_share(m, n, cap, rng)));
    println!("split: {stats:.1?}");
    assert_tolerance_justified(&stats);
    check_unbiased(&stats).unwrap();
}

#[test]
fn no_position_is_favoured_by_engine() {
    let mut engine = Engine::new(EngineConfig { seed: 0x656e_6769_6e65, ..EngineConfig::default() });
    let request = create_request(TOTAL, COUNT as u64, EnvelopeKind::Random);
    let stats = position_stats(|| {
        let id = engine.create(T0, &request).expect("create").envelope.get();
        let users = 1..=COUNT as u64;
        for user in users.clone() {
            assert_eq!(engine.grab(T0, id, user).0, Status::Ok);
        }
        users
            .map(|user| {
                let (status, answer) = engine.open(T0, id, user);
                assert_eq!(status, Status::Ok);
                answer.amount_cents.get()
            })
            .collect()
    });
    println!("engine: {stats:.1?}");
    assert_tolerance_justified(&stats);
    check_unbiased(&stats).unwrap();
}

#[test]
fn the_mean_check_catches_biased_splits() {
    let cap = 20_000;
    // The first share is doubled (within the bounds): its mean is about 1,500.
    let mut rng = Rng::new(1);
    let first_doubled = position_stats(|| {
        pay_out_with(&mut rng, |m, n, rng| {
            let share = split::random_share(m, n, cap, rng);
            if n == COUNT as u64 {
                (2 * share).min(split::random_bounds(m, n, cap).1)
            } else {
                share
            }
        })
    });
    assert!(check_unbiased(&first_doubled).is_err(), "{first_doubled:?}");
    // Upper bounds 10% above twice the average: early shares gain about 10%.
    let mut rng = Rng::new(2);
    let wide = position_stats(|| {
        pay_out_with(&mut rng, |m, n, rng| {
            let (lo, hi) = split::random_bounds(m, n, cap);
            let hi = if n > 1 { (hi + hi / 10).min(m - (n - 1)) } else { hi };
            lo + rng.below(hi - lo + 1)
        })
    });
    assert!(check_unbiased(&wide).is_err(), "{wide:?}");
}

/// Pearson's chi-square of the first share (uniform on [1, 2000] for 10,000
/// cents in 10 shares) over 20 bins of 100 cents.
fn first_share_chi_square(rng: &mut Rng, share: impl Fn(u64, u64, &mut Rng) -> u64) -> f64 {
    const BINS: usize = 20;
    let mut observed = [0u64; BINS];
    for _ in 0..TRIALS {
        let first = share(TOTAL, COUNT as u64, rng);
        assert!((1..=2000).contains(&first));
        observed[((first - 1) / 100) as usize] += 1;
    }
    let expected = TRIALS as f64 / BINS as f64;
    observed.iter().map(|&o| (o as f64 - expected).powi(2) / expected).sum()
}

#[test]
fn first_share_is_uniform_over_its_bounds() {
    // 43.82 is the 99.9th percentile of chi-square with 19 degrees of freedom.
    const CRITICAL: f64 = 43.82;
    let cap = 20_000;
    assert_eq!(split::random_bounds(TOTAL, COUNT as u64, cap), (1, 2000));
    let fair = first_share_chi_square(&mut Rng::new(0xc41), |m, n, rng| split::random_share(m, n, cap, rng));
    assert!(fair < CRITICAL, "chi-square {fair:.1}");
    // A split that favours the top of the range fails it.
    let skewed = first_share_chi_square(&mut Rng::new(0xc41), |m, n, rng| {
        let a = split::random_share(m, n, cap, rng);
        let b = split::random_share(m, n, cap, rng);
        a.max(b)
    });
    assert!(skewed > CRITICAL, "chi-square {skewed:.1}");
}
