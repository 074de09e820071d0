//! The hash chain's arithmetic: how a record line is sealed with its hash
//! (SHA-256, or HMAC-SHA256 when a key is given) and how the next record
//! points back at it.
//!
//! A line is `UNSIGNED` with its closing `}` replaced by
//! `,"hash":"<64 hex>"}`, where `UNSIGNED` is the record's compact JSON with
//! every field but `hash` (including `prev`), and the hash is taken over
//! `UNSIGNED`'s exact bytes. Verifying strips the suffix, puts the `}` back
//! and hashes again: no re-serialisation, so no canonical-JSON ambiguity.
//! `prev` is the SHA-256 of the previous line's exact bytes (without its
//! newline); the first record of the log has 64 zeros.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// `prev` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Length of the sealed suffix: `,"hash":"` + 64 hex + `"}`.
const SUFFIX_LEN: usize = 9 + 64 + 2;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The seal of an unsigned record: HMAC-SHA256 with `key`, or plain SHA-256.
pub fn seal(unsigned: &[u8], key: Option<&[u8]>) -> String {
    match key {
        Some(key) => match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(unsigned);
                hex(&mac.finalize().into_bytes())
            }
            // HMAC takes keys of any length; this arm is never reached.
            Err(_) => sha256_hex(unsigned),
        },
        None => sha256_hex(unsigned),
    }
}

/// Appends the hash field to an unsigned record (which must end with `}`).
pub fn sealed_line(unsigned: &str, key: Option<&[u8]>) -> String {
    let hash = seal(unsigned.as_bytes(), key);
    let body = unsigned.strip_suffix('}').unwrap_or(unsigned);
    format!("{body},\"hash\":\"{hash}\"}}")
}

/// Splits a line into its unsigned bytes and the hash it claims, or `None`
/// when it does not end with a hash field as Cubicle writes it.
pub fn split_sealed(line: &[u8]) -> Option<(Vec<u8>, &str)> {
    if line.len() < SUFFIX_LEN + 2 {
        return None;
    }
    let (body, suffix) = line.split_at(line.len() - SUFFIX_LEN);
    let hash = suffix.strip_prefix(b",\"hash\":\"")?.strip_suffix(b"\"}")?;
    let hash = std::str::from_utf8(hash).ok()?;
    if !hash
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut unsigned = body.to_vec();
    unsigned.push(b'}');
    Some((unsigned, hash))
}

/// Whether a line's hash matches its content under `key`.
pub fn check(line: &[u8], key: Option<&[u8]>) -> bool {
    match split_sealed(line) {
        Some((unsigned, hash)) => {
            constant_time_eq(seal(&unsigned, key).as_bytes(), hash.as_bytes())
        }
        None => false,
    }
}

/// Compares without an early exit, so a MAC check leaks no timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn hex_and_sha256() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(GENESIS.len(), 64);
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            seal(b"what do ya want for nothing?", Some(b"Jefe")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sealing_round_trips_and_detects_changes() {
        let line = sealed_line(r#"{"seq":1,"prev":"x"}"#, None);
        assert!(line.starts_with(r#"{"seq":1,"prev":"x","hash":""#));
        assert!(check(line.as_bytes(), None));
        assert!(!check(line.replace("1", "2").as_bytes(), None));
        assert!(!check(line.as_bytes(), Some(b"k")));
        let keyed = sealed_line(r#"{"seq":1}"#, Some(b"k"));
        assert!(check(keyed.as_bytes(), Some(b"k")));
        assert!(!check(keyed.as_bytes(), Some(b"other")));
        assert!(split_sealed(b"{}").is_none());
        assert!(split_sealed(line.replace("\"hash\"", "\"hush\"").as_bytes()).is_none());
    }
}
