//! The shares of one envelope: the claims paid, the reservations held, and how
//! a user's is found.
//!
//! A small envelope (most of a storm: about eight shares) gets, at CREATE, room
//! for one entry per share in wire layout and a little hash table of one-byte
//! entry indexes, so a GRAB or OPEN allocates nothing and finds its user in one or
//! two probes whatever the envelope's size. The paid claims come first, in
//! opening order (QUERY copies a page of them as it lies), and the
//! reservations right after, each with its deadline where its amount will go:
//!
//! ```text
//! entries: [ claim 1 | claim 2 | ... | claim paid | resv | resv ] ( capacity: count )
//!            <------------- paid ------------->     <-reserved->
//! table:   [ 255 | 3 | 255 | 0 | 5 | 255 | 1 | ... ]   (entry index by user hash)
//! ```
//!
//! Paying a reservation writes the claim at index `paid`, swapping the
//! reservation there with the payer's if they differ (OPENs mostly come in
//! GRAB order, so they rarely do). A lapse or an expiry, both rare, compacts
//! the reservations and rebuilds the table. The envelope keeps the earliest
//! deadline, so looking for lapses is one comparison until one is due (see
//! [`Shares::release_lapsed`]).
//!
//! An envelope of more than [`INLINE_SHARES_MAX`] shares would need large
//! arrays at CREATE: its claims grow as they are paid, a hash map finds its
//! holders, and its reservations wait in a queue in deadline order (lapsed
//! ones at the front).
//!
//! The envelope owns the counts of paid shares and reservations and asserts
//! them; the shares keep no second copy and are told what they need.

use std::collections::VecDeque;

use ahash::AHashMap;
use hongbao_protocol::body::ClaimEntry;
use zerocopy::little_endian::{U32, U64};

/// Largest share count whose holders are found in a small table.
pub const INLINE_SHARES_MAX: u32 = 64;

/// What a user holds of one envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holding {
    /// A reservation until this time (Unix ms).
    Reserved { until_ms: u64 },
    /// A paid share: index into the envelope's claims.
    Paid { index: u32 },
}

/// The shares of one envelope.
#[derive(Debug)]
pub enum Shares {
    /// Up to [`INLINE_SHARES_MAX`] shares: fixed arrays made at CREATE.
    Inline(Inline),
    /// More shares: growing claims, a hash map and a deadline queue.
    Indexed(Box<Indexed>),
}

/// The shares of a small envelope.
#[derive(Debug)]
pub struct Inline {
    /// `[..paid]` claims, `[paid..paid + reserved]` reservations (user, and
    /// the deadline in `amount_cents`); room for every share from CREATE, so
    /// it never grows.
    entries: Vec<ClaimEntry>,
    /// Linear probing over entry indexes ([`EMPTY`] for none): a power of two
    /// at least twice the share count, so never more than half full and every
    /// probe sequence ends at an empty slot.
    table: Box<[u8]>,
}

/// The shares of a large envelope.
#[derive(Debug, Default)]
pub struct Indexed {
    /// Paid shares in opening order.
    claims: Vec<ClaimEntry>,
    /// User to holding.
    index: AHashMap<u64, Holding>,
    /// Reservations in grab order with their deadlines. The reservation time is
    /// the same for all, so deadlines are in order and lapsed ones sit at the
    /// front. An entry whose user has since been paid is stale and skipped.
    queue: VecDeque<(u64, u64)>,
}

/// A table slot that points at no entry.
pub(super) const EMPTY: u8 = u8::MAX;
/// Slots of the largest table.
const TABLE_SLOTS_MAX: usize = 2 * INLINE_SHARES_MAX as usize;
/// Fibonacci hashing's multiplier (2^64 / golden ratio): spreads sequential
/// and patterned user ids over the table.
const HASH_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

const _: () = assert!(TABLE_SLOTS_MAX.is_power_of_two());
const _: () = assert!((INLINE_SHARES_MAX as usize) < EMPTY as usize, "entry indexes fit a byte");

impl Shares {
    /// No share taken yet, of `count`; a small envelope's storage comes
    /// from `pool` when it has some of that size.
    pub fn new(count: u32, pool: &mut super::pool::SharePool) -> Shares {
        if count <= INLINE_SHARES_MAX {
            Shares::Inline(pool.inline(count))
        } else {
            Shares::Indexed(Box::default())
        }
    }

    /// The paid claims, in opening order; there are `paid`.
    #[inline(always)]
    pub fn claims(&self, paid: u32) -> &[ClaimEntry] {
        match self {
            Shares::Inline(inline) => &inline.entries[..paid as usize],
            Shares::Indexed(indexed) => &indexed.claims,
        }
    }

    /// What `user` holds, with `paid` shares paid.
    #[inline(always)]
    pub fn holding(&self, user: u64, paid: u32) -> Option<Holding> {
        match self {
            Shares::Inline(inline) => {
                let (_, at) = inline.find(user)?;
                Some(if at < paid as usize {
                    Holding::Paid { index: at as u32 }
                } else {
                    Holding::Reserved { until_ms: inline.entries[at].amount_cents.get() }
                })
            }
            Shares::Indexed(indexed) => indexed.index.get(&user).copied(),
        }
    }

    /// Adds a reservation for `user`, who holds nothing, until `until_ms`,
    /// after `paid` claims and `reserved` reservations: a share is free for
    /// it. Deadlines come in order (one reservation time for all), which the
    /// indexed queue relies on.
    #[inline(always)]
    pub fn reserve(&mut self, user: u64, until_ms: u64, paid: u32, reserved: u32) {
        match self {
            Shares::Inline(inline) => {
                let at = inline.entries.len();
                assert_eq!(at, (paid + reserved) as usize, "entries and counts disagree");
                debug_assert!(at < inline.entries.capacity(), "a reservation past the count");
                inline.entries.push(entry(user, until_ms, 0));
                inline.insert(user, at);
            }
            Shares::Indexed(indexed) => {
                indexed.queue.push_back((user, until_ms));
                indexed.index.insert(user, Holding::Reserved { until_ms });
            }
        }
    }

    /// Turns `user`'s reservation into claim `paid` (0-based) of
    /// `amount_cents`, given `reserved` reservations.
    #[inline(always)]
    pub fn pay(&mut self, user: u64, amount_cents: u64, paid: u32, reserved: u32) {
        let (first, end) = (paid as usize, (paid + reserved) as usize);
        let claim = entry(user, amount_cents, paid + 1);
        match self {
            Shares::Inline(inline) => {
                let found = inline.find(user).filter(|(_, at)| (first..end).contains(at));
                let Some((slot, at)) = found else {
                    panic!("paying user {user}, who holds no reservation");
                };
                if at != first {
                    // The reservation at `first` moves to the payer's entry.
                    let other = inline.entries[first].user.get();
                    let (other_slot, _) = inline.find(other).expect("a reservation is in the table");
                    inline.entries[at] = inline.entries[first];
                    inline.table[other_slot] = at as u8;
                    inline.table[slot] = first as u8;
                }
                inline.entries[first] = claim;
            }
            Shares::Indexed(indexed) => {
                let was = indexed.index.insert(user, Holding::Paid { index: paid });
                assert!(
                    matches!(was, Some(Holding::Reserved { .. })),
                    "paying user {user} without a reservation"
                );
                indexed.claims.push(claim);
            }
        }
    }

    /// Every share is paid: no reservation is left to lapse.
    pub fn finish(&mut self) {
        if let Shares::Indexed(indexed) = self {
            indexed.queue.clear();
        }
    }

    /// Removes the reservations whose deadline is `now_ms` or earlier, of the
    /// `reserved` after `paid` claims. Returns how many it removed, and the
    /// earliest deadline of those left (`u64::MAX` when none is): until then,
    /// nothing can lapse and this need not be called.
    pub fn release_lapsed(&mut self, now_ms: u64, paid: u32, reserved: u32) -> (u32, u64) {
        match self {
            Shares::Inline(inline) => {
                let (first, end) = (paid as usize, (paid + reserved) as usize);
                assert_eq!(end, inline.entries.len(), "entries and counts disagree");
                let mut kept = first;
                let mut earliest_ms = u64::MAX;
                for at in first..end {
                    let until_ms = inline.entries[at].amount_cents.get();
                    if until_ms > now_ms {
                        inline.entries[kept] = inline.entries[at];
                        kept += 1;
                        earliest_ms = earliest_ms.min(until_ms);
                    }
                }
                inline.entries.truncate(kept);
                inline.rebuild();
                ((end - kept) as u32, earliest_ms)
            }
            Shares::Indexed(indexed) => {
                let mut released = 0;
                while let Some(&(user, until_ms)) = indexed.queue.front() {
                    if until_ms > now_ms {
                        break;
                    }
                    indexed.queue.pop_front();
                    if matches!(indexed.index.get(&user), Some(Holding::Reserved { .. })) {
                        indexed.index.remove(&user);
                        released += 1;
                    }
                }
                (released, indexed.queue.front().map_or(u64::MAX, |(_, until_ms)| *until_ms))
            }
        }
    }

    /// Removes every reservation, after `paid` claims (the envelope expired).
    pub fn release_all(&mut self, paid: u32) {
        match self {
            Shares::Inline(inline) => {
                inline.entries.truncate(paid as usize);
                inline.rebuild();
            }
            Shares::Indexed(indexed) => {
                for (user, _) in indexed.queue.drain(..) {
                    if matches!(indexed.index.get(&user), Some(Holding::Reserved { .. })) {
                        indexed.index.remove(&user);
                    }
                }
            }
        }
    }

    /// Checks every claim and reservation: `paid` claims numbered in order,
    /// `reserved` live reservations none of which lapses before `lapse_ms`,
    /// no user holding two things, and every holder found where it is.
    /// O(shares): for tests and checks, not per request.
    pub fn assert_holdings(&self, id: u64, paid: u32, reserved: u32, lapse_ms: u64) {
        let claims = self.claims(paid);
        assert_eq!(claims.len(), paid as usize, "envelope {id}: claims");
        for (i, claim) in claims.iter().enumerate() {
            assert_eq!(claim.order.get(), i as u32 + 1, "envelope {id}: claim order");
            let holding = self.holding(claim.user.get(), paid);
            assert_eq!(holding, Some(Holding::Paid { index: i as u32 }), "envelope {id}: claim {i}");
        }
        let live: Vec<(u64, u64)> = match self {
            Shares::Inline(inline) => {
                let end = (paid + reserved) as usize;
                assert_eq!(end, inline.entries.len(), "envelope {id}: entries");
                let held = inline.table.iter().filter(|slot| **slot != EMPTY).count();
                assert_eq!(held, end, "envelope {id}: table size");
                inline.entries[paid as usize..end]
                    .iter()
                    .map(|e| (e.user.get(), e.amount_cents.get()))
                    .collect()
            }
            Shares::Indexed(indexed) => {
                let live: Vec<(u64, u64)> = indexed
                    .queue
                    .iter()
                    .filter(|(user, _)| matches!(indexed.index.get(user), Some(Holding::Reserved { .. })))
                    .copied()
                    .collect();
                assert_eq!(indexed.index.len(), claims.len() + live.len(), "envelope {id}: index size");
                let front = indexed.queue.front().map_or(u64::MAX, |(_, until_ms)| *until_ms);
                assert!(lapse_ms <= front, "envelope {id}: the queue's front lapses before {lapse_ms}");
                live
            }
        };
        assert_eq!(live.len(), reserved as usize, "envelope {id}: reservation count");
        for &(user, until_ms) in &live {
            assert!(until_ms >= lapse_ms, "envelope {id}: a reservation lapses before {lapse_ms}");
            let holding = self.holding(user, paid);
            assert_eq!(holding, Some(Holding::Reserved { until_ms }), "envelope {id}: user {user}");
        }
        let mut users: Vec<u64> =
            claims.iter().map(|c| c.user.get()).chain(live.iter().map(|l| l.0)).collect();
        let holders = users.len();
        users.sort_unstable();
        users.dedup();
        assert_eq!(users.len(), holders, "envelope {id}: a user holds two things");
    }
}

/// A claim (or, with `order` 0, a reservation and its deadline) in wire layout.
fn entry(user: u64, amount_cents: u64, order: u32) -> ClaimEntry {
    ClaimEntry {
        user: U64::new(user),
        amount_cents: U64::new(amount_cents),
        order: U32::new(order),
        reserved: U32::new(0),
    }
}

/// Slots of the holder table of an envelope of `count` inline shares: a
/// power of two at least twice the count.
pub(super) fn table_slots(count: u32) -> usize {
    let slots = (2 * count as usize).next_power_of_two();
    assert!(slots <= TABLE_SLOTS_MAX, "inline shares for a count of {count}");
    slots
}

impl Inline {
    /// Room for `count` shares in the storage given (new, or another
    /// envelope's from the pool): `entries` empty with room for `count`,
    /// `table` all empty.
    pub(super) fn from_storage(count: u32, entries: Vec<ClaimEntry>, table: Box<[u8]>) -> Inline {
        assert!(entries.is_empty() && entries.capacity() >= count as usize, "reused entries");
        assert_eq!(table.len(), table_slots(count), "reused table");
        debug_assert!(table.iter().all(|&slot| slot == EMPTY), "reused table holds no one");
        Inline { entries, table }
    }

    /// The storage, for reuse.
    pub(super) fn into_storage(self) -> (Vec<ClaimEntry>, Box<[u8]>) {
        (self.entries, self.table)
    }

    /// Where the storage lies (tests of its reuse).
    #[cfg(test)]
    pub(super) fn storage_addresses(&self) -> (usize, usize) {
        (self.entries.as_ptr() as usize, self.table.as_ptr() as usize)
    }

    /// Where `user`'s probe sequence starts.
    #[inline(always)]
    fn home(&self, user: u64) -> usize {
        (user.wrapping_mul(HASH_MULTIPLIER) >> 32) as usize & (self.table.len() - 1)
    }

    /// The table slot and entry index of `user`, if it holds something.
    #[inline(always)]
    fn find(&self, user: u64) -> Option<(usize, usize)> {
        let mask = self.table.len() - 1;
        let mut slot = self.home(user);
        // Ends: the table is at most half full, so an empty slot comes.
        loop {
            let at = self.table[slot];
            if at == EMPTY {
                return None;
            }
            if self.entries[at as usize].user.get() == user {
                return Some((slot, at as usize));
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Points `user`'s first empty slot at entry `at`; `user` is not in the table.
    #[inline(always)]
    fn insert(&mut self, user: u64, at: usize) {
        let mask = self.table.len() - 1;
        let mut slot = self.home(user);
        while self.table[slot] != EMPTY {
            slot = (slot + 1) & mask;
        }
        self.table[slot] = at as u8;
    }

    /// Rebuilds the table over the entries (a probe sequence cannot have
    /// holes, so entries leave the table this way only).
    fn rebuild(&mut self) {
        self.table.fill(EMPTY);
        for at in 0..self.entries.len() {
            self.insert(self.entries[at].user.get(), at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::pool::SharePool;
    use crate::engine::Rng;

    /// What a user holds in the model.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Held {
        Reserved(u64),
        Paid(u32),
    }

    /// The envelope's side of the bookkeeping, as the engine keeps it.
    struct Side {
        shares: Shares,
        paid: u32,
        reserved: u32,
        lapse_ms: u64,
    }

    impl Side {
        fn new(shares: Shares) -> Side {
            Side { shares, paid: 0, reserved: 0, lapse_ms: u64::MAX }
        }

        /// Agrees with the model about every user id in `ids`.
        fn check(&self, model: &[(u64, Held, u64)], ids: impl Iterator<Item = u64>) {
            self.shares.assert_holdings(1, self.paid, self.reserved, self.lapse_ms);
            let reserved = model.iter().filter(|(_, held, _)| matches!(held, Held::Reserved(_))).count();
            assert_eq!(self.reserved as usize, reserved);
            for user in ids {
                let expected = model.iter().find(|(u, _, _)| *u == user).map(|(_, held, _)| match held {
                    Held::Reserved(until_ms) => Holding::Reserved { until_ms: *until_ms },
                    Held::Paid(index) => Holding::Paid { index: *index },
                });
                assert_eq!(self.shares.holding(user, self.paid), expected, "user {user}");
            }
            for (user, held, amount) in model {
                if let Held::Paid(index) = held {
                    let claim = &self.shares.claims(self.paid)[*index as usize];
                    assert_eq!((claim.user.get(), claim.amount_cents.get()), (*user, *amount));
                }
            }
        }
    }

    /// Both kinds, driven by the same random reservations, payments (in any
    /// order), lapses and expiries, agree with a plain list of holders.
    #[test]
    fn inline_and_indexed_shares_agree_with_a_list() {
        let mut rng = Rng::new(11);
        // Every round's inline storage goes back to the pool, so later rounds
        // run on reused storage too.
        let mut pool = SharePool::default();
        for round in 0..150 {
            let count = 1 + rng.below(u64::from(INLINE_SHARES_MAX)) as u32;
            let users = u64::from(count) * 2 + 3;
            // Spread the ids in some rounds, so that others collide in the table.
            let id = |u: u64| if round % 2 == 0 { u } else { u << 40 | u };
            let mut sides =
                [Side::new(Shares::new(count, &mut pool)), Side::new(Shares::Indexed(Box::default()))];
            assert!(matches!(sides[0].shares, Shares::Inline(_)));
            let mut model: Vec<(u64, Held, u64)> = Vec::new();
            let mut now_ms = 1_000;
            let mut expired = false;
            for _ in 0..200 {
                let (paid, reserved) = (sides[0].paid, sides[0].reserved);
                match rng.below(10) {
                    0..=4 if !expired && paid + reserved < count => {
                        let user = id(1 + rng.below(users));
                        if model.iter().all(|(u, _, _)| *u != user) {
                            // One reservation time for all, as the engine's.
                            let until_ms = now_ms + 50;
                            model.push((user, Held::Reserved(until_ms), 0));
                            for side in &mut sides {
                                side.shares.reserve(user, until_ms, side.paid, side.reserved);
                                side.reserved += 1;
                                side.lapse_ms = side.lapse_ms.min(until_ms);
                            }
                        }
                    }
                    5..=7 if reserved > 0 => {
                        let pick = rng.below(u64::from(reserved)) as usize;
                        let amount = 1 + rng.below(100);
                        let (user, held, paid_cents) = model
                            .iter_mut()
                            .filter(|(_, h, _)| matches!(h, Held::Reserved(_)))
                            .nth(pick)
                            .unwrap();
                        (*held, *paid_cents) = (Held::Paid(paid), amount);
                        let user = *user;
                        for side in &mut sides {
                            side.shares.pay(user, amount, side.paid, side.reserved);
                            side.reserved -= 1;
                            side.paid += 1;
                            if side.paid == count {
                                side.shares.finish();
                            }
                        }
                    }
                    8 => {
                        now_ms += rng.below(40);
                        model.retain(
                            |(_, h, _)| !matches!(h, Held::Reserved(until_ms) if *until_ms <= now_ms),
                        );
                        for side in &mut sides {
                            if now_ms >= side.lapse_ms {
                                let (released, lapse_ms) =
                                    side.shares.release_lapsed(now_ms, side.paid, side.reserved);
                                side.reserved -= released;
                                side.lapse_ms = lapse_ms;
                                assert!(lapse_ms > now_ms);
                            }
                        }
                    }
                    9 if rng.below(20) == 0 => {
                        expired = true;
                        model.retain(|(_, h, _)| matches!(h, Held::Paid(_)));
                        for side in &mut sides {
                            side.shares.release_all(side.paid);
                            side.reserved = 0;
                            side.lapse_ms = u64::MAX;
                        }
                    }
                    _ => {}
                }
                for side in &sides {
                    side.check(&model, (1..=users).map(id));
                }
            }
            let [inline, _] = sides;
            if let Shares::Inline(storage) = inline.shares {
                pool.recycle(storage);
            }
        }
    }
}
