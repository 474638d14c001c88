//! Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP, HMAC-SHA-1), the
//! second factor of the demo's login, and the base32 form authenticator apps use.

use hmac::{Hmac, Mac as _};

/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Steps accepted on either side of the current one (clock drift).
pub const WINDOW: u64 = 1;

/// The HOTP value (RFC 4226 §5.3) of `secret` at `counter`, with `digits` digits.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    // HMAC accepts keys of any length, so this never fails.
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret) else {
        return 0;
    };
    mac.update(&counter.to_be_bytes());
    let hash: [u8; 20] = mac.finalize().into_bytes().into();
    let offset = usize::from(hash[19] & 0x0f);
    let word = hash
        .get(offset..offset + 4)
        .and_then(|w| <[u8; 4]>::try_from(w).ok())
        .map_or(0, u32::from_be_bytes);
    (word & 0x7fff_ffff) % 10u32.pow(digits)
}

/// The code at Unix time `now`, zero-padded to [`DIGITS`].
pub fn code_at(secret: &[u8], now: u64) -> String {
    format!(
        "{:0width$}",
        hotp(secret, now / STEP_SECS, DIGITS),
        width = DIGITS as usize
    )
}

/// Checks `code` at `now` within ±[`WINDOW`] steps. Steps at or before `last_used`
/// are refused, so a code works once. Returns the matched step, to be stored as the
/// new `last_used`.
pub fn verify(secret: &[u8], code: &str, now: u64, last_used: Option<u64>) -> Option<u64> {
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let given: u32 = code.parse().ok()?;
    let current = now / STEP_SECS;
    (current.saturating_sub(WINDOW)..=current + WINDOW)
        .filter(|&step| last_used.is_none_or(|used| step > used))
        .find(|&step| hotp(secret, step, DIGITS) == given)
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Decodes RFC 4648 base32 (uppercase or lowercase, `=` padding and spaces ignored).
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=' && c != b' ') {
        let value = BASE32.iter().position(|&a| a == c.to_ascii_uppercase())?;
        buffer = (buffer << 5) | u32::try_from(value).ok()?;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// Encodes RFC 4648 base32 without padding.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    let mut push = |index: u32| {
        if let Some(&c) = BASE32.get(index as usize) {
            out.push(char::from(c));
        }
    };
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            push((buffer >> bits) & 0x1f);
        }
    }
    if bits > 0 {
        push((buffer << (5 - bits)) & 0x1f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows (8 digits, key "12345678901234567890").
    #[test]
    fn rfc6238_sha1_vectors() {
        let key = b"12345678901234567890";
        for (time, expected) in [
            (59u64, 94_287_082u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ] {
            assert_eq!(hotp(key, time / 30, 8), expected, "T = {time}");
        }
    }

    /// RFC 4226 Appendix D, counters 0 to 9 (6 digits).
    #[test]
    fn rfc4226_vectors() {
        let expected = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, want) in expected.iter().enumerate() {
            assert_eq!(hotp(b"12345678901234567890", counter as u64, 6), *want);
        }
    }

    #[test]
    fn verify_window_and_replay() {
        let key = b"12345678901234567890";
        let now = 1_800_000_015;
        let code = code_at(key, now);
        let step = verify(key, &code, now, None).unwrap();
        assert_eq!(step, now / 30);
        // The same code again is a replay.
        assert_eq!(verify(key, &code, now, Some(step)), None);
        // The previous step's code is within the window, but older than the used step.
        assert_eq!(verify(key, &code_at(key, now - 30), now, Some(step)), None);
        // The previous step's code works if nothing newer was used.
        assert_eq!(
            verify(key, &code_at(key, now - 30), now, None),
            Some(step - 1)
        );
        // Two steps back is outside the window.
        assert_eq!(verify(key, &code_at(key, now - 60), now, None), None);
        assert_eq!(verify(key, "12345", now, None), None);
        assert_eq!(verify(key, "12a456", now, None), None);
    }

    #[test]
    fn base32_round_trip() {
        // RFC 4648 §10.
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI======").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw6ytboi").unwrap(), b"foobar");
        assert_eq!(base32_decode("MZ1"), None);
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(base32_decode(&base32_encode(&bytes)).unwrap(), bytes);
    }
}
