//! The status table: one code for each outcome a client must tell apart.

use core::fmt;

/// Outcome of a request, carried in the response header. Requests send 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum Status {
    /// The request did what it asked.
    Ok = 0,
    /// GRAB: every share is reserved or paid.
    SoldOut = 1,
    /// GRAB: this user already holds a reservation or share of the envelope.
    AlreadyGrabbed = 2,
    /// OPEN: the user holds no reservation (never grabbed, or it lapsed).
    NoReservation = 3,
    /// GRAB/OPEN: the envelope has expired; its remainder went back to the sender.
    Expired = 4,
    /// No envelope with that id (never created, evicted, or another shard's id
    /// the server does not have).
    NotFound = 5,
    /// A field is out of its domain (zero user or sender, unknown kind, ...).
    InvalidArgument = 6,
    /// CREATE: count is 0 or above the server's maximum.
    CountOutOfRange = 7,
    /// CREATE: total is below one cent per share.
    TotalTooSmall = 8,
    /// CREATE: some share would have to exceed the per-share cap.
    ShareAboveCap = 9,
    /// CREATE: a fixed envelope whose total does not divide evenly by its count.
    NotDivisible = 10,
    /// CREATE: expiry is above the server's maximum.
    ExpiryOutOfRange = 11,
    /// CREATE: the shard holds as many envelopes or claims as it may.
    ServerFull = 12,
    /// The frame could not be decoded; the server closes the connection.
    MalformedFrame = 13,
    /// The frame or HELLO names a protocol version the server does not speak.
    UnsupportedVersion = 14,
    /// The opcode is not in the table; the frame is skipped, the connection stays.
    UnknownOpcode = 15,
    /// The body length is above the limit; the server closes the connection.
    FrameTooLarge = 16,
    /// The server cannot accept changes right now (e.g. its log cannot write).
    Unavailable = 17,
    /// The connection has not authenticated and the request needs it.
    NotAuthenticated = 18,
    /// A per-connection or per-server limit was reached; try again later.
    Busy = 19,
    /// The connection did not authenticate, or did not finish a frame, in the
    /// time the server allows; sent unasked (opcode 0, request id 0) before
    /// the server closes the connection.
    Timeout = 20,
}

impl Status {
    /// Every status, in table order.
    pub const ALL: [Status; 21] = [
        Status::Ok,
        Status::SoldOut,
        Status::AlreadyGrabbed,
        Status::NoReservation,
        Status::Expired,
        Status::NotFound,
        Status::InvalidArgument,
        Status::CountOutOfRange,
        Status::TotalTooSmall,
        Status::ShareAboveCap,
        Status::NotDivisible,
        Status::ExpiryOutOfRange,
        Status::ServerFull,
        Status::MalformedFrame,
        Status::UnsupportedVersion,
        Status::UnknownOpcode,
        Status::FrameTooLarge,
        Status::Unavailable,
        Status::NotAuthenticated,
        Status::Busy,
        Status::Timeout,
    ];

    /// Whether this status says the server could not read the request (or
    /// ended the connection, `Timeout`): such an answer carries no body,
    /// whatever its opcode. One list for every decoder, so that the fast
    /// paths and the general decoder judge an answer alike.
    pub const fn is_frame_level(self) -> bool {
        matches!(
            self,
            Status::MalformedFrame
                | Status::UnsupportedVersion
                | Status::UnknownOpcode
                | Status::FrameTooLarge
                | Status::Timeout
        )
    }

    /// The status for a wire code, or `None` for a code the table does not name.
    pub fn from_u16(value: u16) -> Option<Status> {
        Status::ALL.get(usize::from(value)).copied()
    }

    /// Stable snake_case name, used in JSON output and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::SoldOut => "sold_out",
            Status::AlreadyGrabbed => "already_grabbed",
            Status::NoReservation => "no_reservation",
            Status::Expired => "expired",
            Status::NotFound => "not_found",
            Status::InvalidArgument => "invalid_argument",
            Status::CountOutOfRange => "count_out_of_range",
            Status::TotalTooSmall => "total_too_small",
            Status::ShareAboveCap => "share_above_cap",
            Status::NotDivisible => "not_divisible",
            Status::ExpiryOutOfRange => "expiry_out_of_range",
            Status::ServerFull => "server_full",
            Status::MalformedFrame => "malformed_frame",
            Status::UnsupportedVersion => "unsupported_version",
            Status::UnknownOpcode => "unknown_opcode",
            Status::FrameTooLarge => "frame_too_large",
            Status::Unavailable => "unavailable",
            Status::NotAuthenticated => "not_authenticated",
            Status::Busy => "busy",
            Status::Timeout => "timeout",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dense_and_round_trip() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(*s as u16 as usize, i);
            assert_eq!(Status::from_u16(i as u16), Some(*s));
        }
        assert_eq!(Status::from_u16(Status::ALL.len() as u16), None);
        assert_eq!(Status::from_u16(u16::MAX), None);
    }

    #[test]
    fn frame_level_statuses_are_those_without_a_request() {
        let frame_level: Vec<Status> = Status::ALL.iter().copied().filter(|s| s.is_frame_level()).collect();
        assert_eq!(
            frame_level,
            [
                Status::MalformedFrame,
                Status::UnsupportedVersion,
                Status::UnknownOpcode,
                Status::FrameTooLarge,
                Status::Timeout
            ]
        );
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Status::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Status::ALL.len());
    }
}
