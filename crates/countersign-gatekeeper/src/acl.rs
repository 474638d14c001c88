//! The customer's access control: IP allow/deny lists (global and per bucket), the
//! client address behind trusted proxies, and subject/group rules over bucket, prefix
//! and operation. Deny always wins; nothing is allowed unless a rule allows it.

use crate::error::ApiError;
use countersign_core::{Bucket, ErrorCode, Method, Operation, Request, Subject};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// An allow list (empty = everyone) and a deny list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpRules {
    /// If not empty, only these networks are allowed.
    pub allow: Vec<IpNet>,
    /// These networks are always denied.
    pub deny: Vec<IpNet>,
}

impl IpRules {
    /// Checks `ip`; `scope` names the rule set in the error sentence.
    pub fn check(&self, ip: IpAddr, scope: &str) -> Result<(), ApiError> {
        let ip = canonical_ip(ip);
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return Err(ApiError::new(
                ErrorCode::IpDenied,
                format!("the client address {ip} is denied by the {scope} IP rules"),
            ));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&ip)) {
            return Err(ApiError::new(
                ErrorCode::IpDenied,
                format!("the client address {ip} is not in the {scope} IP allow list"),
            ));
        }
        Ok(())
    }
}

/// IPv4-mapped IPv6 addresses are treated as the IPv4 address they carry.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The client address used for every decision: the socket peer, unless the peer is a
/// trusted proxy, in which case `X-Forwarded-For` is read from the right, skipping
/// trusted proxies. `X-Forwarded-For` from an untrusted peer is refused (`ip_denied`):
/// it is either a spoofing attempt or a proxy that the customer has not declared.
pub fn client_ip(
    peer: IpAddr,
    forwarded_for: Option<&[u8]>,
    trusted_proxies: &[IpNet],
) -> Result<IpAddr, ApiError> {
    let peer = canonical_ip(peer);
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    let Some(header) = forwarded_for else {
        return Ok(peer);
    };
    if !trusted(&peer) {
        return Err(ApiError::new(
            ErrorCode::IpDenied,
            format!(
                "X-Forwarded-For is accepted only from configured trusted proxies, and {peer} is not one"
            ),
        ));
    }
    let text = std::str::from_utf8(header)
        .map_err(|_| ApiError::new(ErrorCode::Malformed, "X-Forwarded-For is not valid text"))?;
    let mut client = peer;
    for part in text.rsplit(',') {
        let ip: IpAddr = part.trim().parse().map_err(|_| {
            ApiError::new(
                ErrorCode::Malformed,
                "X-Forwarded-For must be a comma-separated list of IP addresses",
            )
        })?;
        client = canonical_ip(ip);
        if !trusted(&client) {
            break;
        }
    }
    Ok(client)
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Grants access.
    Allow,
    /// Refuses access; wins over any allow.
    Deny,
}

/// One ACL rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclRule {
    /// Allow or deny.
    pub effect: Effect,
    /// Subjects the rule names.
    pub subjects: BTreeSet<Subject>,
    /// Groups the rule names.
    pub groups: BTreeSet<String>,
    /// Whether the rule applies to every subject (`subjects = ["*"]`).
    pub everyone: bool,
    /// Buckets the rule covers (`None` = all).
    pub buckets: Option<BTreeSet<Bucket>>,
    /// Key prefix the rule covers (empty = all keys).
    pub prefix: String,
    /// Operations the rule covers.
    pub operations: BTreeSet<Method>,
}

/// Groups and rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acl {
    /// Group name to members.
    pub groups: BTreeMap<String, BTreeSet<Subject>>,
    /// The rules, in file order (order does not matter: deny wins).
    pub rules: Vec<AclRule>,
}

impl Acl {
    fn applies_to_subject(&self, rule: &AclRule, subject: &Subject) -> bool {
        rule.everyone
            || rule.subjects.contains(subject)
            || rule
                .groups
                .iter()
                .any(|g| self.groups.get(g).is_some_and(|m| m.contains(subject)))
    }

    /// Decides a verified request. For LIST, an allow rule must cover the whole
    /// prefix (the list prefix starts with the rule's prefix), and a deny rule applies
    /// if the two prefixes overlap at all, so a listing never reveals a denied key.
    pub fn check(&self, request: &Request) -> Result<(), ApiError> {
        let subject = request.subject();
        let bucket = request.bucket();
        let method = request.method();
        let (text, is_list) = match request.operation() {
            Operation::List { prefix } => (prefix.as_str(), true),
            other => (other.key_text(), false),
        };
        let mut allowed = false;
        for rule in &self.rules {
            if !rule.operations.contains(&method)
                || !rule.buckets.as_ref().is_none_or(|b| b.contains(bucket))
                || !self.applies_to_subject(rule, subject)
            {
                continue;
            }
            let covers = text.starts_with(&rule.prefix);
            match rule.effect {
                Effect::Deny if covers || (is_list && rule.prefix.starts_with(text)) => {
                    return Err(ApiError::new(
                        ErrorCode::AccessDenied,
                        format!("a deny rule forbids `{subject}` to {method} in {bucket}/{text}"),
                    ));
                }
                Effect::Allow if covers => allowed = true,
                _ => {}
            }
        }
        if allowed {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::AccessDenied,
                format!("no rule allows `{subject}` to {method} in {bucket}/{text}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        let outsider: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(client_ip(outsider, None, &proxies).unwrap(), outsider);
        assert_eq!(
            client_ip(outsider, Some(b"1.2.3.4"), &proxies)
                .unwrap_err()
                .code,
            ErrorCode::IpDenied
        );
        assert_eq!(
            client_ip(peer, Some(b"203.0.113.9, 10.2.2.2"), &proxies).unwrap(),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // The left-most entry is client-controlled; only the first untrusted hop from
        // the right counts.
        assert_eq!(
            client_ip(peer, Some(b"1.1.1.1, 203.0.113.9"), &proxies).unwrap(),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(peer, Some(b"nonsense"), &proxies)
                .unwrap_err()
                .code,
            ErrorCode::Malformed
        );
    }

    #[test]
    fn mapped_ipv6_is_ipv4() {
        let rules = IpRules {
            allow: vec![],
            deny: vec!["127.0.0.2/32".parse().unwrap()],
        };
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(
            rules.check(mapped, "global").unwrap_err().code,
            ErrorCode::IpDenied
        );
        assert!(rules.check("127.0.0.1".parse().unwrap(), "global").is_ok());
    }
}
