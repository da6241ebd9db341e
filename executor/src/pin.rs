//! Pinned programs: the SHA-256 of a program file, as `sha256sum` prints it.
//!
//! A `[[program]]` rule may carry `sha256`. airlockd checks the digest when
//! it loads (or reloads) the policy, so a wrong pin is a load error; the
//! launcher then hashes the very file descriptor it will execute
//! ([`crate::launch::exec::Program::open`]), so a binary replaced after the
//! policy was loaded is refused and never runs. Only the program file is
//! pinned: the ELF loader, shared libraries and, for a script, its
//! interpreter are not.

use std::io::Read;

use sha2::{Digest, Sha256};

/// The SHA-256 of everything `reader` yields, as 64 lower-case hex digits.
pub fn sha256_hex(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The message of a digest mismatch, the same from airlockd and launcher.
pub fn mismatch(program: &std::path::Path, pinned: &str, actual: &str) -> String {
    format!(
        "program {} does not match its pinned digest: the policy pins sha256 {pinned}, the file \
         has sha256 {actual}",
        program.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_sha256sum() -> std::io::Result<()> {
        assert_eq!(
            sha256_hex(&b""[..])?,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(&b"test"[..])?,
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        Ok(())
    }
}
