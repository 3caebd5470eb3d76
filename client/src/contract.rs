//! The money rules an answer's values must keep, checked as it is decoded.
//!
//! The codec checks that an answer is well formed: lengths, reserved bytes,
//! known statuses. It cannot tell that an OPEN `ok` paying 0 cents, or a
//! QUERY whose paid, refunded and remaining cents do not add up to the
//! total, is an answer no correct server gives. A client that took such an
//! answer at its word would report money that does not exist, so each one
//! here is refused as [`ClientError::ContractBroken`], naming the rule.
//!
//! Only what docs/PROTOCOL.md says MUST hold is checked: the cap and the
//! hold time are the server's configuration, unknown here, and a body that
//! the protocol sets to zero (a frame-level status, busy, not_found) is
//! judged as the zeros it must be, never as a missing share.

use hongbao_protocol::{Opcode, Status};

use crate::answer::{Answer, AnswerBody, Claim, EnvelopeSummary, Grabbed, Opened};
use crate::error::ClientError;

/// The rule `answer` breaks, if any. Opcodes with no money in them pass.
pub(crate) fn check(answer: &Answer<'_>) -> Result<(), ClientError> {
    match &answer.body {
        AnswerBody::Grab(g) => check_grab(answer.status, g),
        AnswerBody::Open(o) => check_open(answer.status, o),
        AnswerBody::Query(Some(query)) => check_query(&query.0, query.1.iter()),
        _ => Ok(()),
    }
}

/// The rule a GRAB answer breaks, if any (PROTOCOL.md 7.4, the table of
/// what the server answers in which order).
fn check_grab(status: Status, g: &Grabbed) -> Result<(), ClientError> {
    let broken = |rule| Err(ClientError::ContractBroken { opcode: Opcode::Grab, status, rule });
    match status {
        Status::Ok if g.hold_until_ms == 0 => broken("an ok GRAB reserves a share: hold_until_ms is set"),
        Status::Ok if g.amount_cents != 0 => broken("an ok GRAB pays nothing: amount_cents is 0"),
        // Either the reservation repeated (hold set, nothing paid) or the
        // amount once opened (no hold): exactly one of the two.
        Status::AlreadyGrabbed if (g.hold_until_ms == 0) == (g.amount_cents == 0) => {
            broken("already_grabbed repeats either the reservation or the amount paid, not both or neither")
        }
        Status::Ok | Status::AlreadyGrabbed => Ok(()),
        Status::SoldOut if g.shares_free != 0 => broken("sold_out means no share is free: shares_free is 0"),
        _ if g.hold_until_ms != 0 || g.amount_cents != 0 => {
            broken("a refused GRAB holds and pays nothing: hold_until_ms and amount_cents are 0")
        }
        _ => Ok(()),
    }
}

/// The rule an OPEN answer breaks, if any (PROTOCOL.md 7.5 and 6.1 rule 2).
fn check_open(status: Status, o: &Opened) -> Result<(), ClientError> {
    let broken = |rule| Err(ClientError::ContractBroken { opcode: Opcode::Open, status, rule });
    if status == Status::Ok {
        if o.amount_cents == 0 {
            return broken("an ok OPEN pays a share, and every share is at least 1 cent");
        }
        if o.order == 0 {
            return broken("an ok OPEN's order is 1-based: it is not 0");
        }
    } else if o.amount_cents != 0 || o.order != 0 {
        return broken("a refused OPEN pays nothing: amount_cents and order are 0");
    }
    Ok(())
}

/// The rule a QUERY answer's totals or claims break, if any (PROTOCOL.md
/// 7.6 and 6.1 rules 2 and 5).
fn check_query(s: &EnvelopeSummary, claims: impl Iterator<Item = Claim>) -> Result<(), ClientError> {
    let broken = |rule| Err(ClientError::ContractBroken { opcode: Opcode::Query, status: Status::Ok, rule });
    // Added without overflow: three u64s near the top would wrap to a
    // sum that looks right.
    let accounted = s.paid_cents.checked_add(s.refunded_cents).and_then(|c| c.checked_add(s.remaining_cents));
    if accounted != Some(s.total_cents) {
        return broken("paid_cents + refunded_cents + remaining_cents == total_cents");
    }
    if u64::from(s.paid_count) + u64::from(s.reserved_count) > u64::from(s.count) {
        return broken("paid_count + reserved_count <= count");
    }
    for claim in claims {
        if claim.amount_cents == 0 {
            return broken("every paid share is at least 1 cent");
        }
        if claim.order == 0 {
            return broken("a claim's order is 1-based: it is not 0");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grab(hold_until_ms: u64, amount_cents: u64, shares_free: u32) -> Grabbed {
        Grabbed { hold_until_ms, amount_cents, shares_free }
    }

    #[test]
    fn grab_answers_keep_their_table() {
        assert!(check_grab(Status::Ok, &grab(5000, 0, 2)).is_ok());
        assert!(check_grab(Status::Ok, &grab(0, 0, 2)).is_err());
        assert!(check_grab(Status::Ok, &grab(5000, 7, 2)).is_err());
        assert!(check_grab(Status::AlreadyGrabbed, &grab(5000, 0, 2)).is_ok());
        assert!(check_grab(Status::AlreadyGrabbed, &grab(0, 7, 2)).is_ok());
        assert!(check_grab(Status::AlreadyGrabbed, &grab(0, 0, 2)).is_err());
        assert!(check_grab(Status::AlreadyGrabbed, &grab(5000, 7, 2)).is_err());
        assert!(check_grab(Status::SoldOut, &grab(0, 0, 0)).is_ok());
        assert!(check_grab(Status::SoldOut, &grab(0, 0, 1)).is_err());
        assert!(check_grab(Status::NotFound, &grab(0, 7, 0)).is_err());
        // The zero body of a frame-level status and of busy is no violation.
        assert!(check_grab(Status::MalformedFrame, &Grabbed::default()).is_ok());
        assert!(check_grab(Status::Busy, &Grabbed::default()).is_ok());
    }

    #[test]
    fn open_answers_pay_only_when_ok() {
        assert!(check_open(Status::Ok, &Opened { amount_cents: 1, order: 1 }).is_ok());
        let err = check_open(Status::Ok, &Opened { amount_cents: 0, order: 1 }).unwrap_err();
        assert!(err.to_string().contains("at least 1 cent"), "{err}");
        assert!(check_open(Status::Ok, &Opened { amount_cents: 5, order: 0 }).is_err());
        assert!(check_open(Status::NoReservation, &Opened { amount_cents: 5, order: 0 }).is_err());
        assert!(check_open(Status::Expired, &Opened::default()).is_ok());
        assert!(check_open(Status::Timeout, &Opened::default()).is_ok());
    }
}
