//! Who may use the server: the token HELLO must carry, compared in constant
//! time, and protected mode (no token: loopback only, as Redis does).

use std::path::Path;

use hongbao_protocol::limits::MAX_TOKEN_LEN;

/// The configured credential, if any.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    token: Option<Vec<u8>>,
}

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unreadable.
    #[error("--auth-token-file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// Empty or too long once the trailing newline is removed.
    #[error("--auth-token-file {path}: the token must be 1 to {max} bytes, not {len}")]
    Length { path: String, len: usize, max: u32 },
}

impl Auth {
    /// No token: every connection is trusted (protected mode keeps the server
    /// on loopback).
    pub fn none() -> Auth {
        Auth { token: None }
    }

    /// Reads the token from `path` (one line; the trailing newline is not part
    /// of it).
    pub fn from_file(path: &Path) -> Result<Auth, AuthError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| AuthError::Read { path: shown.clone(), source })?;
        let token = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let token = token.strip_suffix(b"\r").unwrap_or(token);
        if token.is_empty() || token.len() > MAX_TOKEN_LEN as usize {
            return Err(AuthError::Length { path: shown, len: token.len(), max: MAX_TOKEN_LEN });
        }
        Ok(Auth { token: Some(token.to_vec()) })
    }

    /// `token` as the credential, if it is 1 to [`MAX_TOKEN_LEN`] bytes.
    pub fn with_token(token: &[u8]) -> Option<Auth> {
        (!token.is_empty() && token.len() <= MAX_TOKEN_LEN as usize)
            .then(|| Auth { token: Some(token.to_vec()) })
    }

    /// Whether connections must authenticate.
    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `presented` is the token. Takes the same time whatever the
    /// presented bytes, so the token cannot be guessed byte by byte from
    /// response times; with no token configured, anything is accepted.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        match &self.token {
            Some(token) => constant_time_eq(token, presented),
            None => true,
        }
    }
}

/// Compares two byte strings of at most [`MAX_TOKEN_LEN`] bytes in time that
/// depends on neither their contents nor where they differ: every byte of
/// the longest possible token is visited, and the lengths are folded into the
/// same accumulator. Never inlined: it stays one unit whose instructions
/// the test of its timing counts (`server/tests/auth.rs`), in any profile.
#[inline(never)]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..MAX_TOKEN_LEN as usize {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    // Past the limit nothing can match (HELLO's decoder refuses such tokens).
    diff |= u64::from(a.len() > MAX_TOKEN_LEN as usize || b.len() > MAX_TOKEN_LEN as usize);
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_equal() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret\0"), "a trailing zero is not padding");
        assert!(!constant_time_eq(b"secret", b""));
        assert!(!constant_time_eq(b"Secret", b"secret"));
        let long = vec![7u8; 600];
        assert!(!constant_time_eq(&long, &long), "longer than any token");
    }

    #[test]
    fn token_files_are_read_without_their_newline() {
        let dir = std::env::temp_dir().join(format!("hongbao-auth-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let auth = Auth::from_file(&path).unwrap();
        assert!(auth.required() && auth.accepts(b"s3cret") && !auth.accepts(b"s3cret\n"));
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(Auth::from_file(&path), Err(AuthError::Length { .. })));
        assert!(matches!(Auth::from_file(&dir.join("missing")), Err(AuthError::Read { .. })));
        assert!(Auth::none().accepts(b"anything"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
