//! The money checks the load generator runs while it drives the server.
//!
//! Each envelope the generator created has a [`Ledger`] of what OPEN answered.
//! A violation is anything that cannot happen if the server keeps the money
//! rules: a user paid two different amounts (or twice) for one envelope, more
//! paid out than put in, a share outside [1, cap], a finished envelope whose
//! shares do not add up to its total, or a QUERY that disagrees with the
//! acknowledged opens.

use std::collections::HashMap;

use hongbao_client::EnvelopeReport;

/// What the generator knows of one envelope's payouts.
#[derive(Clone, Debug)]
pub struct Ledger {
    /// Envelope id.
    pub envelope: u64,
    /// Cents put in.
    pub total_cents: u64,
    /// Shares.
    pub count: u32,
    /// User to the amount an OPEN acknowledged.
    paid: Paid,
    paid_cents: u64,
}

/// Acknowledged payouts: a short list for the usual few shares (a scan of a
/// few cache lines beats hashing), a map for large envelopes.
#[derive(Clone, Debug)]
enum Paid {
    Few(Vec<(u64, u64)>),
    Many(HashMap<u64, u64>),
}

/// Largest share count kept as a list.
const FEW_MAX: u32 = 64;

impl Paid {
    fn for_count(count: u32) -> Paid {
        if count <= FEW_MAX {
            Paid::Few(Vec::with_capacity(count as usize))
        } else {
            Paid::Many(HashMap::new())
        }
    }

    /// Records `amount` for `user`; returns the amount recorded before, if any.
    fn insert(&mut self, user: u64, amount: u64) -> Option<u64> {
        match self {
            Paid::Few(list) => match list.iter().find(|(u, _)| *u == user) {
                Some((_, before)) => Some(*before),
                None => {
                    list.push((user, amount));
                    None
                }
            },
            Paid::Many(map) => match map.get(&user) {
                Some(before) => Some(*before),
                None => {
                    map.insert(user, amount);
                    None
                }
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            Paid::Few(list) => list.len(),
            Paid::Many(map) => map.len(),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (u64, u64)> + '_> {
        match self {
            Paid::Few(list) => Box::new(list.iter().copied()),
            Paid::Many(map) => Box::new(map.iter().map(|(u, a)| (*u, *a))),
        }
    }
}

impl Ledger {
    /// A ledger for a new envelope.
    pub fn new(envelope: u64, total_cents: u64, count: u32) -> Ledger {
        Ledger { envelope, total_cents, count, paid: Paid::for_count(count), paid_cents: 0 }
    }

    /// Sum of acknowledged shares.
    pub fn paid_cents(&self) -> u64 {
        self.paid_cents
    }

    /// Acknowledged shares.
    pub fn paid_count(&self) -> usize {
        self.paid.len()
    }

    /// Records an OPEN that answered OK; returns a violation if it breaks a rule.
    pub fn record_open(&mut self, user: u64, amount_cents: u64, cap_cents: u64) -> Option<String> {
        if amount_cents == 0 || amount_cents > cap_cents {
            return Some(format!(
                "envelope {}: user {user} paid {amount_cents} cents, outside [1, {cap_cents}]",
                self.envelope
            ));
        }
        if let Some(before) = self.paid.insert(user, amount_cents) {
            if before != amount_cents {
                return Some(format!(
                    "envelope {}: user {user} paid twice ({before} then {amount_cents} cents)",
                    self.envelope
                ));
            }
            return None;
        }
        self.paid_cents += amount_cents;
        if self.paid_cents > self.total_cents {
            return Some(format!(
                "envelope {}: paid {} cents out of a total of {}",
                self.envelope, self.paid_cents, self.total_cents
            ));
        }
        if self.paid.len() > self.count as usize {
            return Some(format!(
                "envelope {}: {} shares paid of {}",
                self.envelope,
                self.paid.len(),
                self.count
            ));
        }
        None
    }

    /// Checks a fully paid envelope adds up exactly.
    pub fn check_complete(&self) -> Option<String> {
        if self.paid.len() == self.count as usize && self.paid_cents != self.total_cents {
            return Some(format!(
                "envelope {}: all {} shares paid but they sum to {} cents, not {}",
                self.envelope, self.count, self.paid_cents, self.total_cents
            ));
        }
        None
    }

    /// Compares the server's QUERY (every claim) with the acknowledged opens.
    pub fn check_report(&self, report: &EnvelopeReport) -> Vec<String> {
        let mut violations = Vec::new();
        let s = &report.summary;
        let id = self.envelope;
        if s.total_cents != self.total_cents || s.count != self.count {
            violations
                .push(format!("envelope {id}: QUERY says {} cents in {} shares", s.total_cents, s.count));
        }
        if s.paid_cents + s.refunded_cents + s.remaining_cents != s.total_cents {
            violations.push(format!("envelope {id}: QUERY paid + refunded + remaining != total"));
        }
        let listed: u64 = report.claims.iter().map(|c| c.amount_cents).sum();
        if listed != s.paid_cents || report.claims.len() as u32 != s.paid_count {
            violations.push(format!("envelope {id}: QUERY's claims do not add up to its paid figures"));
        }
        let mut seen = HashMap::with_capacity(report.claims.len());
        for claim in &report.claims {
            if seen.insert(claim.user, claim.amount_cents).is_some() {
                violations.push(format!("envelope {id}: QUERY lists user {} twice", claim.user));
            }
        }
        for (user, amount) in self.paid.iter() {
            match seen.get(&user) {
                Some(listed) if *listed == amount => {}
                Some(listed) => violations
                    .push(format!("envelope {id}: user {user} was told {amount} cents, QUERY says {listed}")),
                None => {
                    violations.push(format!("envelope {id}: acknowledged open of user {user} is missing"))
                }
            }
        }
        violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hongbao_client::{Claim, EnvelopeId, EnvelopeKind, EnvelopeState, EnvelopeSummary};

    fn report(claims: &[(u64, u64)], total: u64, count: u32) -> EnvelopeReport {
        let paid: u64 = claims.iter().map(|c| c.1).sum();
        EnvelopeReport {
            summary: EnvelopeSummary {
                envelope: EnvelopeId(1),
                sender: 1,
                total_cents: total,
                count,
                paid_count: claims.len() as u32,
                paid_cents: paid,
                remaining_cents: total - paid,
                refunded_cents: 0,
                reserved_count: 0,
                state: EnvelopeState::Active,
                kind: EnvelopeKind::Random,
                created_at_ms: 0,
                expires_at_ms: 0,
                best_user: 0,
                best_amount_cents: 0,
            },
            claims: claims
                .iter()
                .enumerate()
                .map(|(i, (user, amount))| Claim { user: *user, amount_cents: *amount, order: i as u32 + 1 })
                .collect(),
        }
    }

    #[test]
    fn a_clean_envelope_has_no_violation() {
        let mut ledger = Ledger::new(1, 100, 3);
        assert_eq!(ledger.record_open(7, 30, 100), None);
        assert_eq!(ledger.record_open(7, 30, 100), None, "the same answer again is idempotence");
        assert_eq!(ledger.record_open(8, 50, 100), None);
        assert_eq!(ledger.record_open(9, 20, 100), None);
        assert_eq!(ledger.check_complete(), None);
        assert!(ledger.check_report(&report(&[(7, 30), (8, 50), (9, 20)], 100, 3)).is_empty());
    }

    #[test]
    fn every_rule_break_is_caught() {
        let mut ledger = Ledger::new(1, 100, 3);
        assert!(ledger.record_open(7, 0, 100).is_some(), "zero share");
        assert!(ledger.record_open(7, 101, 100).is_some(), "above cap");
        assert_eq!(ledger.record_open(7, 60, 100), None);
        assert!(ledger.record_open(7, 61, 100).is_some(), "paid twice");
        assert!(ledger.record_open(8, 50, 100).is_some(), "more than the total");

        let mut short = Ledger::new(2, 100, 2);
        short.record_open(1, 10, 100);
        short.record_open(2, 10, 100);
        assert!(short.check_complete().is_some(), "complete but short");

        let mut told = Ledger::new(1, 100, 3);
        told.record_open(7, 30, 100);
        assert_eq!(told.check_report(&report(&[(7, 31)], 100, 3)).len(), 1, "amount changed");
        assert_eq!(told.check_report(&report(&[], 100, 3)).len(), 1, "acknowledged open lost");
        assert!(!told.check_report(&report(&[(7, 30), (7, 30)], 100, 3)).is_empty(), "user twice");
    }
}
