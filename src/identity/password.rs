//! Password hashing with argon2id in PHC string form
//! (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), so a stored hash carries
//! its own parameters and old hashes keep verifying after the parameters
//! change (and get rehashed on the next successful login).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Memory cost in KiB (OWASP's argon2id recommendation, argon2's default).
const M_COST: u32 = 19_456;
/// Iterations.
const T_COST: u32 = 2;
/// Lanes.
const P_COST: u32 = 1;
/// Bytes of output.
const OUTPUT_LEN: usize = 32;

/// Beyond this a stored PHC would make verification allocate more than
/// 1 GiB (or abort on allocation failure): refuse instead of trying.
const MAX_VERIFY_M_COST: u32 = 1 << 20;
/// Beyond this one verification would hold a core for many seconds.
const MAX_VERIFY_T_COST: u32 = 64;

/// What [`hash_password`] returns if hashing itself failed (no OS
/// randomness): not a PHC string, so nothing verifies against it and
/// [`needs_rehash`] says true — fails closed instead of panicking.
pub const LOCKED: &str = "!";

/// "gatehouse-dummy" hashed with the fixed salt "gatehouse-dummy!" and the
/// current parameters, for [`dummy_verify`] (a test keeps it current).
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$Z2F0ZWhvdXNlLWR1bW15IQ$y3kfxodQgIWibOjHqyeLb2jCoc919qU22W+02u+6bwQ";

/// Why hashing failed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
    #[error("invalid argon2 parameters: {0}")]
    Params(argon2::Error),
}

fn current_params(output_len: Option<usize>) -> Result<Params, argon2::Error> {
    Params::new(M_COST, T_COST, P_COST, output_len)
}

fn hasher() -> Result<Argon2<'static>, PasswordError> {
    let params = current_params(None).map_err(PasswordError::Params)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes with argon2id (m=19456 KiB, t=2, p=1) and a random 16-byte salt.
pub fn try_hash_password(password: &str) -> Result<String, PasswordError> {
    let hash = hasher()?
        .hash_password(password.as_bytes())
        .map_err(PasswordError::Hash)?;
    Ok(hash.to_string())
}

/// [`try_hash_password`], returning [`LOCKED`] in the (OS randomness
/// failed) case where no hash can be made.
pub fn hash_password(password: &str) -> String {
    try_hash_password(password).unwrap_or_else(|_| LOCKED.to_string())
}

/// Whether `password` matches `phc`. False for malformed PHC strings, other
/// algorithms than argon2, and parameters too expensive to try. The output
/// comparison inside argon2 is constant-time. Hashes imported from
/// mosquitto (`$6$`, `$7$`) verify too, until [`needs_rehash`] replaces them.
pub fn verify_password(password: &[u8], phc: &str) -> bool {
    if super::mosquitto_hash::is_mosquitto(phc) {
        return super::mosquitto_hash::verify(password, phc);
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_VERIFY_M_COST || params.t_cost() > MAX_VERIFY_T_COST {
        return false;
    }
    // The PHC's own algorithm, version and parameters are used; the
    // instance only provides the (absent) secret.
    Argon2::default().verify_password(password, &hash).is_ok()
}

/// Whether a stored hash should be replaced with one made by
/// [`hash_password`] (call after a successful verification): other
/// algorithm, version, parameters or output length, or not a PHC at all.
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return true;
    };
    if hash.algorithm.as_str() != "argon2id" || hash.version != Some(Version::V0x13.into()) {
        return true;
    }
    match (Params::try_from(&hash), current_params(Some(OUTPUT_LEN))) {
        (Ok(stored), Ok(current)) => stored != current,
        _ => true,
    }
}

/// Spends the time of one verification, so that an unknown username cannot
/// be told apart from a wrong password by the response time.
pub fn dummy_verify(password: &[u8]) {
    std::hint::black_box(verify_password(password, DUMMY_PHC));
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::CustomizedPasswordHasher;

    #[test]
    fn roundtrip() {
        let phc = hash_password("correct horse");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password(b"correct horse", &phc));
        assert!(!needs_rehash(&phc));
    }

    #[test]
    fn wrong_password() {
        let phc = hash_password("correct horse");
        assert!(!verify_password(b"correct horsE", &phc));
        assert!(!verify_password(b"", &phc));
    }

    #[test]
    fn salts_differ() {
        assert_ne!(hash_password("same"), hash_password("same"));
    }

    #[test]
    fn non_ascii_and_empty() {
        let phc = hash_password("pässwörd€");
        assert!(verify_password("pässwörd€".as_bytes(), &phc));
        let empty = hash_password("");
        assert!(verify_password(b"", &empty));
    }

    #[test]
    fn malformed_phc() {
        for bad in [
            "",
            LOCKED,
            "plaintext",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$",
            "$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHRzYWx0$H9Yc8K3EwYC3ysQkJU7P0VeV6rpC5NEXmNnrYJWWtn0",
            "$bcrypt$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$H9Yc8K3EwYC3ysQkJU7P0VeV6rpC5NEXmNnrYJWWtn0",
            "$argon2id$v=19$m=4294967295,t=2,p=1$c2FsdHNhbHRzYWx0$H9Yc8K3EwYC3ysQkJU7P0VeV6rpC5NEXmNnrYJWWtn0",
        ] {
            assert!(!verify_password(b"x", bad), "{bad}");
            assert!(needs_rehash(bad), "{bad}");
        }
    }

    fn hash_with(algorithm: &str, m: u32, t: u32, p: u32, len: Option<usize>) -> String {
        let params = Params::new(m, t, p, len).unwrap();
        Argon2::default()
            .hash_password_customized(b"pw", b"saltsaltsaltsalt", Some(algorithm), None, params)
            .unwrap()
            .to_string()
    }

    #[test]
    fn other_params_need_rehash_but_verify() {
        for phc in [
            hash_with("argon2id", 4096, 3, 1, None),
            hash_with("argon2id", 19_456, 1, 1, None),
            hash_with("argon2id", 19_456, 2, 2, None),
            hash_with("argon2id", 19_456, 2, 1, Some(16)),
            hash_with("argon2i", 19_456, 2, 1, None),
        ] {
            assert!(needs_rehash(&phc), "{phc}");
            assert!(verify_password(b"pw", &phc), "{phc}");
            assert!(!verify_password(b"pW", &phc), "{phc}");
        }
        assert!(!needs_rehash(&hash_with("argon2id", 19_456, 2, 1, None)));
    }

    #[test]
    fn mosquitto_hashes_verify_and_need_rehash() {
        let pbkdf2 = "$7$101$jIvCXNq5rCoealmr$sTgxCJ8+t373X7MqLey4m2pEXIA1WsVZ515KNgzQjBwN3ZfhA3K2q3+GphHggv8wPI7PiXhyu6xxuSpIxF2qiA==";
        assert!(verify_password(b"pa55-Word", pbkdf2));
        assert!(!verify_password(b"pa55-Wort", pbkdf2));
        assert!(needs_rehash(pbkdf2));
    }

    #[test]
    fn dummy_hash_is_current() {
        assert!(!needs_rehash(DUMMY_PHC));
        assert!(verify_password(b"gatehouse-dummy", DUMMY_PHC));
        dummy_verify(b"anything");
    }
}
