//! Time-based one-time passwords (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps) and
//! one-time recovery codes, the second factor for local accounts.
//!
//! A code is accepted for the current step and one step either side (clock drift), and
//! never twice: the last step used is remembered with the account, and only later steps
//! are accepted. Recovery codes are random, stored only as SHA-256 digests, and each works
//! once. Comparisons are constant-time.

use aws_lc_rs::{constant_time, digest, hmac, rand};
use serde::{Deserialize, Serialize};

/// Seconds per step.
pub const STEP_SECONDS: u64 = 30;

/// Recovery codes issued at enrolment.
pub const RECOVERY_CODES: usize = 10;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// An account's second factor, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondFactor {
    /// The shared secret, base32 (RFC 4648, no padding).
    pub secret: String,
    /// SHA-256 (hex) of each unused recovery code.
    pub recovery: Vec<String>,
    /// The last step a code was accepted for.
    pub last_step: u64,
}

/// What a submitted code turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    /// A valid code for this step; remember it.
    Totp(u64),
    /// A recovery code, now used up (its digest).
    Recovery(String),
    /// Neither.
    Wrong,
}

/// Encodes bytes as base32 without padding.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes base32 (case-insensitive, padding and spaces ignored).
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| *c != '=' && *c != ' ') {
        let c = c.to_ascii_uppercase();
        let value = BASE32.iter().position(|&b| char::from(b) == c)?;
        buffer = (buffer << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// The 6-digit code for `step`.
pub fn code_at(secret: &[u8], step: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = (u32::from(mac[offset] & 0x7f) << 24)
        | (u32::from(mac[offset + 1]) << 16)
        | (u32::from(mac[offset + 2]) << 8)
        | u32::from(mac[offset + 3]);
    binary % 1_000_000
}

/// Enrolment needs random secrets and the system gave none.
#[derive(Debug, thiserror::Error)]
#[error("no randomness available")]
pub struct NoRandomness;

fn digest_hex(text: &str) -> String {
    wharf_types::hex(digest::digest(&digest::SHA256, text.as_bytes()).as_ref())
}

impl SecondFactor {
    /// A new secret and recovery codes; returns the factor to store and the codes to show
    /// once.
    pub fn enrol() -> Result<(SecondFactor, Vec<String>), NoRandomness> {
        let mut secret = [0u8; 20];
        rand::fill(&mut secret).map_err(|_| NoRandomness)?;
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let mut raw = [0u8; 7];
            rand::fill(&mut raw).map_err(|_| NoRandomness)?;
            let text = base32(&raw).to_lowercase();
            codes.push(format!("{}-{}", &text[..5], &text[5..10]));
        }
        let factor = SecondFactor {
            secret: base32(&secret),
            recovery: codes.iter().map(|c| digest_hex(c)).collect(),
            last_step: 0,
        };
        Ok((factor, codes))
    }

    /// Checks `code` at `now` (seconds since the Unix epoch).
    pub fn check(&self, code: &str, now: u64) -> CodeCheck {
        let code = code.trim();
        if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            let Some(secret) = base32_decode(&self.secret) else {
                return CodeCheck::Wrong;
            };
            let current = now / STEP_SECONDS;
            for step in [current.saturating_sub(1), current, current + 1] {
                let expected = format!("{:06}", code_at(&secret, step));
                if step > self.last_step
                    && constant_time::verify_slices_are_equal(expected.as_bytes(), code.as_bytes())
                        .is_ok()
                {
                    return CodeCheck::Totp(step);
                }
            }
            return CodeCheck::Wrong;
        }
        let wanted = digest_hex(&code.to_lowercase());
        for stored in &self.recovery {
            if constant_time::verify_slices_are_equal(stored.as_bytes(), wanted.as_bytes()).is_ok()
            {
                return CodeCheck::Recovery(stored.clone());
            }
        }
        CodeCheck::Wrong
    }

    /// The factor after `used` was accepted.
    pub fn after(&self, used: &CodeCheck) -> SecondFactor {
        let mut next = self.clone();
        match used {
            CodeCheck::Totp(step) => next.last_step = *step,
            CodeCheck::Recovery(digest) => next.recovery.retain(|d| d != digest),
            CodeCheck::Wrong => {}
        }
        next
    }

    /// The `otpauth://` URI authenticator apps read (usually from a QR code).
    pub fn uri(&self, issuer: &str, account: &str) -> String {
        let enc = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        char::from(b).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period={STEP_SECONDS}",
            enc(issuer),
            enc(account),
            self.secret,
            enc(issuer)
        )
    }
}

/// Splits a password with a code appended (the FTP and HTTP convention) into password and
/// code: the last six digits, or the last eleven characters when they are a recovery code
/// (`xxxxx-xxxxx`). At most one reading applies: a recovery code's sixth character from
/// the end is its hyphen.
pub fn split_appended(password: &str) -> Option<(&str, &str)> {
    let n = password.len();
    if n > 6 && password.is_char_boundary(n - 6) {
        let (rest, tail) = password.split_at(n - 6);
        if tail.bytes().all(|b| b.is_ascii_digit()) {
            return Some((rest, tail));
        }
    }
    if n > 11 && password.is_char_boundary(n - 11) {
        let (rest, tail) = password.split_at(n - 11);
        let bytes = tail.as_bytes();
        let shaped = bytes.iter().enumerate().all(|(i, b)| {
            if i == 5 {
                *b == b'-'
            } else {
                b.is_ascii_alphanumeric()
            }
        });
        if shaped {
            return Some((rest, tail));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1, truncated to 6 digits.
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(code_at(secret, time / 30), code % 1_000_000, "t={time}");
        }
    }

    #[test]
    fn base32_round_trips() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("mzxw6ytboi").unwrap(), b"foobar");
        assert_eq!(base32_decode("MZXW6YTBOI======").unwrap(), b"foobar");
        assert!(base32_decode("M1").is_none());
    }

    #[test]
    fn codes_work_once_and_only_near_now() {
        let (factor, recovery) = SecondFactor::enrol().unwrap();
        assert_eq!(recovery.len(), RECOVERY_CODES);
        let secret = base32_decode(&factor.secret).unwrap();
        let now = 1_800_000_000u64;
        let code = format!("{:06}", code_at(&secret, now / 30));
        let used = factor.check(&code, now);
        assert_eq!(used, CodeCheck::Totp(now / 30));
        let after = factor.after(&used);
        assert_eq!(after.check(&code, now), CodeCheck::Wrong, "replayed");
        let next = format!("{:06}", code_at(&secret, now / 30 + 1));
        assert!(
            matches!(after.check(&next, now), CodeCheck::Totp(_)),
            "drift of one step"
        );
        let old = format!("{:06}", code_at(&secret, now / 30 - 3));
        assert_eq!(factor.check(&old, now), CodeCheck::Wrong, "too old");
        // Recovery codes: once each, case-insensitive.
        let r = factor.check(&recovery[3].to_uppercase(), now);
        assert!(matches!(r, CodeCheck::Recovery(_)));
        let spent = factor.after(&r);
        assert_eq!(spent.recovery.len(), RECOVERY_CODES - 1);
        assert_eq!(spent.check(&recovery[3], now), CodeCheck::Wrong);
        assert_eq!(factor.check("12345", now), CodeCheck::Wrong);
        assert!(
            factor
                .uri("Wharf", "a b")
                .starts_with("otpauth://totp/Wharf:a%20b?secret=")
        );
    }

    #[test]
    fn appended_codes_split_off() {
        assert_eq!(
            split_appended("hunter2-pass123456"),
            Some(("hunter2-pass", "123456"))
        );
        assert_eq!(split_appended("pwabcde-12345"), Some(("pw", "abcde-12345")));
        assert_eq!(
            split_appended("pass-abcde-123456"),
            Some(("pass-abcde-", "123456"))
        );
        assert_eq!(split_appended("123456"), None);
        assert_eq!(split_appended("no-code-here"), None);
    }
}
