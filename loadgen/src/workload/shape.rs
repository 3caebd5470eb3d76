//! The shape of the storm: how big chat groups are and how many shares a sender
//! splits an envelope into.
//!
//! Published figures give one envelope sent per eight opened (6M sent, 48M
//! opened a minute), so shares average about eight. Groups run from 2 to 500
//! members and most are small (families and friends); more members race for an
//! envelope than it has shares, which is what makes "too late" answers common.

/// Members of a chat group: 2..=500, most small.
pub fn group_size(rng: &mut fastrand::Rng) -> u32 {
    match rng.u32(0..100) {
        0..=59 => rng.u32(2..=10),
        60..=84 => rng.u32(11..=50),
        85..=96 => rng.u32(51..=200),
        _ => rng.u32(201..=500),
    }
}

/// Shares of an envelope sent into a group of `members`: averages about 8
/// once capped by the group's size (measured by the test below).
pub fn share_count(rng: &mut fastrand::Rng, members: u32) -> u32 {
    let wanted = match rng.u32(0..100) {
        0..=59 => rng.u32(2..=10),
        60..=94 => rng.u32(11..=30),
        _ => rng.u32(31..=100),
    };
    wanted.min(members).max(1)
}

/// Members who race for an envelope of `count` shares in a group of `members`:
/// everyone in a small group, a crowd a little larger than the shares in a
/// large one.
pub fn racers(members: u32, count: u32) -> u32 {
    members.min(count + (count / 2).max(2))
}

/// Cents in an envelope of `count` shares: 1 to 200 yuan a share on average,
/// always at least a cent a share and at most `cap` a share.
pub fn total_cents(rng: &mut fastrand::Rng, count: u32, cap_cents: u64) -> u64 {
    let per_share = rng.u64(1..=cap_cents.min(20_000));
    (per_share * u64::from(count)).max(u64::from(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_stay_in_their_ranges() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..100_000 {
            let members = group_size(&mut rng);
            assert!((2..=500).contains(&members));
            let count = share_count(&mut rng, members);
            assert!(count >= 1 && count <= members);
            let racing = racers(members, count);
            assert!(racing >= count.min(members) && racing <= members);
            let total = total_cents(&mut rng, count, 20_000);
            assert!(total >= u64::from(count) && total <= u64::from(count) * 20_000);
        }
    }

    #[test]
    fn most_groups_are_small_and_shares_average_near_eight() {
        let mut rng = fastrand::Rng::with_seed(4);
        let n = 200_000;
        let (mut small, mut shares) = (0, 0u64);
        for _ in 0..n {
            let members = group_size(&mut rng);
            if members <= 10 {
                small += 1;
            }
            shares += u64::from(share_count(&mut rng, members));
        }
        assert!(small * 2 > n, "most groups have at most 10 members");
        let mean = shares as f64 / n as f64;
        assert!((7.5..=8.5).contains(&mean), "mean shares {mean}");
    }
}
