//! Reading the authentication token a server was configured with: one line in
//! a file, whose trailing newline is not part of the token.

use std::path::Path;

/// The token in `path`, without its trailing newline (`\n` or `\r\n`).
pub fn read_token_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let bytes = std::fs::read(path)?;
    let token = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    Ok(token.strip_suffix(b"\r").unwrap_or(token).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newline_is_not_part_of_the_token() {
        let path = std::env::temp_dir().join(format!("hongbao-client-token-{}", std::process::id()));
        for (text, token) in [("abc\n", "abc"), ("abc\r\n", "abc"), ("abc", "abc"), ("a b\n\n", "a b\n")] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(read_token_file(&path).unwrap(), token.as_bytes());
        }
        std::fs::remove_file(&path).unwrap();
    }
}
