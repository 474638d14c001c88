//! Sessions: a random id in a cookie signed with HMAC-SHA-256 (the `cookie` crate's
//! signed jar, which binds the MAC to the cookie's name and value), marked `HttpOnly`
//! and `SameSite=Strict`, mapped server-side to the user and an expiry.

use cookie::{Cookie, CookieJar, Key, SameSite};
use countersign_core::text::{b64, parse_b64};
use rand_core::{OsRng, RngCore as _};
use std::collections::HashMap;
use std::sync::Mutex;

/// The cookie's name.
pub const COOKIE_NAME: &str = "cs_session";

#[derive(Clone, Debug)]
struct Session {
    username: String,
    expires_at: u64,
}

/// Signs cookies and remembers sessions.
pub struct Sessions {
    key: Key,
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
        let mut secret = [0u8; 64];
        OsRng.fill_bytes(&mut secret);
        Self {
            key: Key::from(&secret),
            ttl_secs,
            secure,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session for `username` at `now`; returns the `Set-Cookie` value.
    pub fn start(&self, username: &str, now: u64) -> String {
        let mut id = [0u8; 32];
        OsRng.fill_bytes(&mut id);
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
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key)
            .add(self.cookie(b64(&id), self.ttl_secs));
        jar.get(COOKIE_NAME)
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    fn cookie(&self, value: String, max_age: u64) -> Cookie<'static> {
        Cookie::build((COOKIE_NAME, value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .max_age(cookie::time::Duration::seconds(
                i64::try_from(max_age).unwrap_or(i64::MAX),
            ))
            .build()
    }

    /// The `Set-Cookie` value that deletes the cookie.
    pub fn clear_cookie(&self) -> String {
        self.cookie(String::new(), 0).to_string()
    }

    /// The session id in a `Cookie` header whose signature verifies.
    fn id_of(&self, cookie_header: &str) -> Option<[u8; 32]> {
        let mut jar = CookieJar::new();
        for cookie in Cookie::split_parse(cookie_header).flatten() {
            if cookie.name() == COOKIE_NAME {
                jar.add_original(cookie.into_owned());
            }
        }
        let verified = jar.signed(&self.key).get(COOKIE_NAME)?;
        parse_b64(verified.value(), "session id")
            .ok()?
            .try_into()
            .ok()
    }

    /// The username of the session in a `Cookie` header, if it is signed and live.
    pub fn user(&self, cookie_header: &str, now: u64) -> Option<String> {
        let id = self.id_of(cookie_header)?;
        let live = self.live.lock().ok()?;
        live.get(&id)
            .filter(|s| s.expires_at > now)
            .map(|s| s.username.clone())
    }

    /// Ends the session in a `Cookie` header, if any.
    pub fn end(&self, cookie_header: &str) {
        if let Some(id) = self.id_of(cookie_header)
            && let Ok(mut live) = self.live.lock()
        {
            live.remove(&id);
        }
    }
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
