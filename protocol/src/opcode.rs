//! The opcode table: one byte per request kind, answered with the same opcode.

use core::fmt;

/// What a frame asks for. A response carries the opcode of its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Opcode {
    /// Version check; answers shard count and the shard-aware ports.
    Hello = 0x01,
    /// Liveness; empty bodies both ways.
    Ping = 0x02,
    /// Create an envelope; answers its id.
    Create = 0x10,
    /// Reserve one share of an envelope for a user.
    Grab = 0x11,
    /// Turn the user's reservation into a paid amount.
    Open = 0x12,
    /// Totals and a page of claims of one envelope.
    Query = 0x13,
    /// Counters of the shard that answers.
    Stats = 0x20,
}

impl Opcode {
    /// Every opcode, in table order.
    pub const ALL: [Opcode; 7] = [
        Opcode::Hello,
        Opcode::Ping,
        Opcode::Create,
        Opcode::Grab,
        Opcode::Open,
        Opcode::Query,
        Opcode::Stats,
    ];

    /// The opcode for a byte, or `None` for a byte the table does not name.
    pub const fn from_u8(value: u8) -> Option<Opcode> {
        match value {
            0x01 => Some(Opcode::Hello),
            0x02 => Some(Opcode::Ping),
            0x10 => Some(Opcode::Create),
            0x11 => Some(Opcode::Grab),
            0x12 => Some(Opcode::Open),
            0x13 => Some(Opcode::Query),
            0x20 => Some(Opcode::Stats),
            _ => None,
        }
    }

    /// Lower-case name, as used in logs, the CLI and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Opcode::Hello => "hello",
            Opcode::Ping => "ping",
            Opcode::Create => "create",
            Opcode::Grab => "grab",
            Opcode::Open => "open",
            Opcode::Query => "query",
            Opcode::Stats => "stats",
        }
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_opcode_round_trips_and_others_are_unknown() {
        for op in Opcode::ALL {
            assert_eq!(Opcode::from_u8(op as u8), Some(op));
        }
        let known = (0..=255u8).filter(|b| Opcode::from_u8(*b).is_some()).count();
        assert_eq!(known, Opcode::ALL.len());
    }
}
