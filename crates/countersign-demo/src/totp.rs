//! Time-based one-time passwords, the second factor of the demo's login: RFC 6238 with
//! HMAC-SHA-1, 6 digits, 30-second steps (what authenticator apps use), computed by the
//! `totp-rs` crate. This module only fixes the parameters and adds what the crate
//! leaves to its caller: a code is accepted once (RFC 6238 §5.2).

use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Digits of a code.
pub const DIGITS: u8 = 6;
/// Steps accepted on either side of the current one (clock drift).
pub const WINDOW: u16 = 1;
/// The shortest secret accepted: 128 bits (RFC 4226 §4 requires them; 160 are
/// recommended, and `new-totp-secret` makes 160).
pub const MIN_SECRET_BYTES: usize = 16;

/// The demo's TOTP for `secret`, or `None` if the secret is shorter than
/// [`MIN_SECRET_BYTES`].
fn totp(secret: &[u8]) -> Option<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(WINDOW)
        .with_step_duration(STEP_SECS)
        .with_secret(secret.to_vec())
        .build()
        .ok()
}

/// Whether `secret` can be used (long enough).
pub fn usable(secret: &[u8]) -> bool {
    totp(secret).is_some()
}

/// The code at Unix time `now` (empty for an unusable secret).
pub fn code_at(secret: &[u8], now: u64) -> String {
    totp(secret).map_or_else(String::new, |t| t.generate(now).to_string())
}

/// Checks `code` at `now` within ±[`WINDOW`] steps. A step at or before `last_used` is
/// refused, so a code works once. Returns the matched step, to be stored as the new
/// `last_used`.
pub fn verify(secret: &[u8], code: &str, now: u64, last_used: Option<u64>) -> Option<u64> {
    totp(secret)?
        .check(code, now)
        .filter(|&step| last_used.is_none_or(|used| step > used))
}

/// Decodes RFC 4648 base32 (the form authenticator apps take; either case, spaces
/// and `=` padding ignored).
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let cleaned: String = s
        .chars()
        .filter(|&c| c != ' ' && c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    Secret::try_from_base32(cleaned)
        .ok()
        .map(|secret| secret.as_bytes().to_vec())
}

/// Encodes RFC 4648 base32 without padding.
pub fn base32_encode(bytes: &[u8]) -> String {
    Secret::from(bytes.to_vec()).to_base32()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"12345678901234567890";

    /// RFC 6238 Appendix B, SHA-1 rows, last 6 of the 8 digits.
    #[test]
    fn rfc6238_sha1_vectors() {
        for (time, expected) in [
            (59u64, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(code_at(KEY, time), expected, "T = {time}");
        }
    }

    #[test]
    fn verify_window_and_replay() {
        let now = 1_800_000_015;
        let code = code_at(KEY, now);
        let step = verify(KEY, &code, now, None).unwrap();
        assert_eq!(step, now / 30);
        // The same code again is a replay.
        assert_eq!(verify(KEY, &code, now, Some(step)), None);
        // The previous step's code is within the window, but older than the used step.
        assert_eq!(verify(KEY, &code_at(KEY, now - 30), now, Some(step)), None);
        // The previous step's code works if nothing newer was used.
        assert_eq!(
            verify(KEY, &code_at(KEY, now - 30), now, None),
            Some(step - 1)
        );
        // Two steps back is outside the window.
        assert_eq!(verify(KEY, &code_at(KEY, now - 60), now, None), None);
        assert_eq!(verify(KEY, "12345", now, None), None);
        assert_eq!(verify(KEY, "12a456", now, None), None);
    }

    #[test]
    fn short_secrets_are_unusable() {
        assert!(usable(&[7; MIN_SECRET_BYTES]));
        assert!(!usable(&[7; MIN_SECRET_BYTES - 1]));
        assert_eq!(verify(&[7; 10], &code_at(&[7; 10], 100), 100, None), None);
    }

    #[test]
    fn base32_round_trip() {
        // RFC 4648 §10.
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI======").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw 6ytb oi").unwrap(), b"foobar");
        assert_eq!(base32_decode("MZ1"), None);
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(base32_decode(&base32_encode(&bytes)).unwrap(), bytes);
    }
}
