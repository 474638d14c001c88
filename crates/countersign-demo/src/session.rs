//! Sessions: a random id in a cookie signed with HMAC-SHA-256, marked `HttpOnly` and
//! `SameSite=Strict`, mapped server-side to the user and an expiry.

use countersign_core::text::{b64, parse_b64};
use hmac::{Hmac, Mac as _};
use rand_core::{OsRng, RngCore as _};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;

/// The cookie's name.
pub const COOKIE_NAME: &str = "cs_session";

/// Sessions are labelled so a MAC cannot be reused for anything else.
const MAC_LABEL: &[u8] = b"countersign-demo/session-cookie/v1\n";

#[derive(Clone, Debug)]
struct Session {
    username: String,
    expires_at: u64,
}

/// Signs cookies and remembers sessions.
pub struct Sessions {
    secret: [u8; 32],
    ttl_secs: u64,
    secure: bool,
    live: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// A store with a fresh random cookie key (sessions end when the process does).
    pub fn new(ttl_secs: u64, secure: bool) -> Self {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        Self {
            secret,
            ttl_secs,
            secure,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self, id: &[u8; 32]) -> Hmac<Sha256> {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(m) => m,
            // HMAC takes keys of any length.
            Err(_) => unreachable_hmac(),
        };
        mac.update(MAC_LABEL);
        mac.update(id);
        mac
    }

    /// Starts a session for `username` at `now`; returns the `Set-Cookie` value.
    pub fn start(&self, username: &str, now: u64) -> String {
        let mut id = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        let tag = self.mac(&id).finalize().into_bytes();
        if let Ok(mut live) = self.live.lock() {
            live.retain(|_, s| s.expires_at > now);
            live.insert(
                id,
                Session {
                    username: username.to_owned(),
                    expires_at: now.saturating_add(self.ttl_secs),
                },
            );
        }
        self.cookie(&format!("{}.{}", b64(&id), b64(&tag)), self.ttl_secs)
    }

    fn cookie(&self, value: &str, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        )
    }

    /// The `Set-Cookie` value that deletes the cookie.
    pub fn clear_cookie(&self) -> String {
        self.cookie("", 0)
    }

    /// The session id of a cookie value whose MAC verifies (constant time).
    fn id_of(&self, value: &str) -> Option<[u8; 32]> {
        let (id, tag) = value.split_once('.')?;
        let id: [u8; 32] = parse_b64(id, "session id").ok()?.try_into().ok()?;
        let tag = parse_b64(tag, "session tag").ok()?;
        self.mac(&id).verify_slice(&tag).ok()?;
        Some(id)
    }

    /// The username of the session in a `Cookie` header, if it is signed and live.
    pub fn user(&self, cookie_header: &str, now: u64) -> Option<String> {
        let value = cookie_value(cookie_header)?;
        let id = self.id_of(value)?;
        let live = self.live.lock().ok()?;
        live.get(&id)
            .filter(|s| s.expires_at > now)
            .map(|s| s.username.clone())
    }

    /// Ends the session in a `Cookie` header, if any.
    pub fn end(&self, cookie_header: &str) {
        if let Some(id) = cookie_value(cookie_header).and_then(|v| self.id_of(v))
            && let Ok(mut live) = self.live.lock()
        {
            live.remove(&id);
        }
    }
}

#[allow(clippy::panic)] // Unreachable: `Hmac::new_from_slice` accepts every key length.
fn unreachable_hmac() -> ! {
    panic!("HMAC-SHA-256 rejected a 32-byte key")
}

/// The value of our cookie in a `Cookie` header.
fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trip_and_tampering() {
        let s = Sessions::new(60, true);
        let set = s.start("alice", 1000);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure")
        );
        let value = set.split(';').next().unwrap();
        assert_eq!(s.user(value, 1001).as_deref(), Some("alice"));
        assert_eq!(
            s.user(&format!("other=1; {value}"), 1001).as_deref(),
            Some("alice")
        );
        // Expired.
        assert_eq!(s.user(value, 1060), None);
        // A flipped character in the id or tag breaks the MAC.
        let (name, v) = value.split_once('=').unwrap();
        let mut bytes = v.as_bytes().to_vec();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{name}={}", String::from_utf8(bytes).unwrap());
        assert_eq!(s.user(&tampered, 1001), None);
        // Another server's key does not verify ours.
        assert_eq!(Sessions::new(60, true).user(value, 1001), None);
        s.end(value);
        assert_eq!(s.user(value, 1001), None);
    }
}
