//! Failed money checks: every one counted, the first
//! [`VIOLATION_MESSAGES_KEPT`] kept as text.
//!
//! A server that breaks a rule on every answer would otherwise grow one
//! string per answer, millions a second, until the generator itself ran out
//! of memory; the count stays exact and the messages kept are the first ones,
//! which are the ones that explain the rest. One violation is one answer
//! (or one QUERY) that broke a rule; where it broke several at once, its
//! message names each.

/// Most violation messages kept per worker (and in a run's report).
pub const VIOLATION_MESSAGES_KEPT: usize = 1_000;

/// The money checks that failed: how many, and what the first ones saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Violations {
    count: u64,
    messages: Vec<String>,
}

impl Violations {
    /// Counts one failed check; keeps its message while there is room.
    pub fn push(&mut self, message: String) {
        self.count += 1;
        if self.messages.len() < VIOLATION_MESSAGES_KEPT {
            self.messages.push(message);
        }
    }

    /// Counts each failed check of `messages`.
    pub fn extend(&mut self, messages: impl IntoIterator<Item = String>) {
        for message in messages {
            self.push(message);
        }
    }

    /// Adds `other`'s count and as many of its messages as there is room for.
    pub fn merge(&mut self, other: &Violations) {
        self.count += other.count;
        let room = VIOLATION_MESSAGES_KEPT - self.messages.len();
        self.messages.extend(other.messages.iter().take(room).cloned());
    }

    /// Failed checks, every one.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether no check failed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The messages kept: the first [`VIOLATION_MESSAGES_KEPT`].
    pub fn messages(&self) -> &[String] {
        &self.messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_violation_counts_and_the_first_are_kept() {
        let mut a = Violations::default();
        assert!(a.is_empty());
        a.extend((0..VIOLATION_MESSAGES_KEPT + 5).map(|i| format!("v{i}")));
        assert_eq!(a.count(), VIOLATION_MESSAGES_KEPT as u64 + 5);
        assert_eq!(a.messages().len(), VIOLATION_MESSAGES_KEPT);
        assert_eq!(a.messages()[0], "v0");

        let mut b = Violations::default();
        b.push("b0".into());
        b.merge(&a);
        assert_eq!(b.count(), VIOLATION_MESSAGES_KEPT as u64 + 6);
        assert_eq!(b.messages().len(), VIOLATION_MESSAGES_KEPT);
        assert_eq!((b.messages()[0].as_str(), b.messages()[1].as_str()), ("b0", "v0"));
        a.merge(&b);
        assert_eq!(a.count(), 2 * VIOLATION_MESSAGES_KEPT as u64 + 11, "merging a full one still counts");
        assert!(!a.is_empty());
    }
}
