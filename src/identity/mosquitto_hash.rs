//! Password hashes imported from mosquitto, verified as they are until the
//! user's next successful login replaces them with argon2id:
//!
//! - `$6$<salt>$<hash>`: SHA-512 over the password followed by the salt
//!   (mosquitto 1.x, and `mosquitto_passwd -H sha512`);
//! - `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512 (mosquitto 2.x's
//!   default, and the dynamic-security plugin's `password`/`salt`/`iterations`).
//!
//! Salt and hash are standard base64 with padding. Comparisons are
//! constant-time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha512};
use std::num::NonZeroU32;

/// More PBKDF2 iterations than this would let one login hold a core for
/// seconds: such a hash is refused (mosquitto's default is 101).
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// A parsed mosquitto hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MosquittoHash {
    Sha512 {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

/// Why a hash is not one we can verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashFormatError {
    #[error("not a mosquitto `$6$` or `$7$` hash")]
    Unknown,
    #[error("malformed `{0}` hash")]
    Malformed(&'static str),
    #[error("{0} PBKDF2 iterations is more than the {MAX_ITERATIONS} allowed")]
    TooCostly(u32),
}

impl MosquittoHash {
    pub fn parse(text: &str) -> Result<MosquittoHash, HashFormatError> {
        let parts: Vec<&str> = text.split('$').collect();
        let b64 = |s: &str, kind| {
            STANDARD
                .decode(s)
                .ok()
                .filter(|b| !b.is_empty())
                .ok_or(HashFormatError::Malformed(kind))
        };
        match parts.as_slice() {
            ["", "6", salt, hash] => Ok(MosquittoHash::Sha512 {
                salt: b64(salt, "$6$")?,
                hash: b64(hash, "$6$").and_then(|h| {
                    (h.len() == 64)
                        .then_some(h)
                        .ok_or(HashFormatError::Malformed("$6$"))
                })?,
            }),
            ["", "7", iterations, salt, hash] => {
                let iterations: u32 = iterations
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(HashFormatError::Malformed("$7$"))?;
                if iterations > MAX_ITERATIONS {
                    return Err(HashFormatError::TooCostly(iterations));
                }
                Ok(MosquittoHash::Pbkdf2 {
                    iterations,
                    salt: b64(salt, "$7$")?,
                    hash: b64(hash, "$7$").and_then(|h| {
                        (h.len() <= 64)
                            .then_some(h)
                            .ok_or(HashFormatError::Malformed("$7$"))
                    })?,
                })
            }
            _ => Err(HashFormatError::Unknown),
        }
    }

    /// Whether `password` matches.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            MosquittoHash::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                aws_lc_rs::constant_time::verify_slices_are_equal(&digest.finalize(), hash).is_ok()
            }
            MosquittoHash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => {
                let Some(iterations) = NonZeroU32::new(*iterations) else {
                    return false;
                };
                aws_lc_rs::pbkdf2::verify(
                    aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA512,
                    iterations,
                    salt,
                    password,
                    hash,
                )
                .is_ok()
            }
        }
    }

    /// The `$7$` text of a dynamic-security client's fields.
    pub fn pbkdf2_text(iterations: u32, salt_b64: &str, hash_b64: &str) -> String {
        format!("$7${iterations}${salt_b64}${hash_b64}")
    }
}

/// Whether `text` looks like a mosquitto hash (decides which verifier runs).
pub fn is_mosquitto(text: &str) -> bool {
    text.starts_with("$6$") || text.starts_with("$7$")
}

/// Verifies against a stored mosquitto hash; false when malformed.
pub fn verify(password: &[u8], text: &str) -> bool {
    MosquittoHash::parse(text).is_ok_and(|h| h.verify(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by Debian's mosquitto_passwd 2.0.11 (password `pa55-Word`).
    const PBKDF2: &str = "$7$101$jIvCXNq5rCoealmr$sTgxCJ8+t373X7MqLey4m2pEXIA1WsVZ515KNgzQjBwN3ZfhA3K2q3+GphHggv8wPI7PiXhyu6xxuSpIxF2qiA==";
    // `mosquitto_passwd -H sha512` (password `b0b-secret`).
    const SHA512: &str = "$6$YkAIJYUWQiI6w8Q2$WD1yyi/G+f0Oa9gcVQLqWsGC0qDjvf9vRqQabsqTzwy9ZPU5YixwF7IYw8QAPDlppHuedcCZnZ3skb+0+ZL8bQ==";

    #[test]
    fn mosquitto_passwd_hashes_verify() {
        assert!(verify(b"pa55-Word", PBKDF2));
        assert!(!verify(b"pa55-word", PBKDF2));
        assert!(verify(b"b0b-secret", SHA512));
        assert!(!verify(b"b0b-secreT", SHA512));
        assert!(!verify(b"", SHA512));
    }

    #[test]
    fn malformed_and_costly_hashes_are_refused() {
        for bad in [
            "$7$0$c2FsdA==$aGFzaA==",
            "$7$x$c2FsdA==$aGFzaA==",
            "$7$101$$aGFzaA==",
            "$7$101$c2FsdA==$",
            "$6$c2FsdA==$aGFzaA==",
            "$6$!!$aGFzaA==",
            "$5$abc$def",
            "",
        ] {
            assert!(MosquittoHash::parse(bad).is_err(), "{bad}");
            assert!(!verify(b"x", bad), "{bad}");
        }
        assert_eq!(
            MosquittoHash::parse("$7$2000000$c2FsdA==$aGFzaA=="),
            Err(HashFormatError::TooCostly(2_000_000))
        );
    }
}
