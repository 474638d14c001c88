//! Writes the conformance vectors `tests/vectors/*.json`, deterministically (fixed
//! seeds, fixed nonces, fixed clock), so regenerating must reproduce every byte.
//!
//! Usage: `cargo run -p countersign-vectors --bin generate-vectors -- <output dir>`
//!
//! Every case states its expected result by hand; the generator replays each case
//! before writing it and fails if the implementation disagrees.

// The generator works on its own fixed data; a panic here is a generator bug, never
// a reaction to outside input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use countersign_core::ed25519_dalek::SigningKey;
use countersign_core::signature::signing_message;
use countersign_core::text::{b64, hex};
use countersign_core::{
    Decision, ErrorCode, GatekeeperId, KeyId, Keyring, Manifest, Policy, Receipt, RequestVerifier,
    Role, SignatureEntry,
};
use countersign_vectors::tlog::{TlogCase, TlogKind, TlogVectorFile, tlog_outcome};
use countersign_vectors::{
    Case, KeySpec, Kind, PolicySpec, RequestFields, SignatureSpec, Target, VectorFile, outcome,
};
use sha2_free::sha256_hex;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// SHA-256 through the core's types, so the generator needs no extra dependency.
mod sha2_free {
    pub fn sha256_hex(data: &[u8]) -> String {
        countersign_core::text::hex(&countersign_core::BodyDigest::of(data).sha256)
    }
}

const T: u64 = 1_800_000_000;
const AUDIENCE: &str = "gk.acme";

/// A key the generator signs with.
struct Signer {
    key: SigningKey,
    key_id: &'static str,
    role: &'static str,
}

impl Signer {
    fn new(seed: u8, key_id: &'static str, role: &'static str) -> Self {
        Self {
            key: SigningKey::from_bytes(&[seed; 32]),
            key_id,
            role,
        }
    }

    fn public_hex(&self) -> String {
        hex(&self.key.verifying_key().to_bytes())
    }

    fn spec(&self) -> KeySpec {
        KeySpec {
            key_id: self.key_id.into(),
            role: self.role.into(),
            public_key_hex: self.public_hex(),
            not_before: None,
            not_after: None,
        }
    }

    /// Signs `doc` claiming `role`/`key_id` (normally its own).
    fn sign_as(&self, role: &str, key_id: &str, doc: &[u8]) -> SignatureSpec {
        let (role, key_id) = (
            Role::parse(role).expect("generator roles are valid"),
            kid(key_id),
        );
        let entry = SignatureEntry::sign(&self.key, role.clone(), key_id.clone(), doc);
        SignatureSpec {
            key_id: key_id.to_string(),
            role: role.to_string(),
            public_key_hex: self.public_hex(),
            signature_hex: hex(&entry.signature),
            message_hex: hex(&signing_message(&role, &key_id, doc)),
        }
    }

    fn sign(&self, doc: &[u8]) -> SignatureSpec {
        self.sign_as(self.role, self.key_id, doc)
    }

    /// Signs `doc` under the signing-message prefix of another version (`prefix`,
    /// such as `countersign/v1/signature`), as its own role and key id.
    fn sign_under_prefix(&self, prefix: &str, doc: &[u8]) -> SignatureSpec {
        use countersign_core::ed25519_dalek::Signer as _;
        let mut message =
            format!("{prefix}\nrole:{}\nkey-id:{}\n", self.role, self.key_id).into_bytes();
        message.extend_from_slice(doc);
        SignatureSpec {
            key_id: self.key_id.into(),
            role: self.role.into(),
            public_key_hex: self.public_hex(),
            signature_hex: hex(&self.key.sign(&message).to_bytes()),
            message_hex: hex(&message),
        }
    }

    fn entry(&self, doc: &[u8]) -> SignatureEntry {
        SignatureEntry::sign(
            &self.key,
            Role::parse(self.role).expect("generator roles are valid"),
            kid(self.key_id),
            doc,
        )
    }
}

fn kid(s: &str) -> KeyId {
    KeyId::parse(s).expect("generator key ids are valid")
}

struct World {
    vendor1: Signer,
    vendor2: Signer,
    vendor3: Signer,
    gatekeeper: Signer,
    admin: Signer,
    stranger: Signer,
}

impl World {
    fn new() -> Self {
        Self {
            vendor1: Signer::new(1, "vendor-2026-01", "vendor"),
            vendor2: Signer::new(2, "vendor-2026-02", "vendor"),
            vendor3: Signer::new(3, "vendor-2026-03", "vendor"),
            gatekeeper: Signer::new(10, "gatekeeper-1", "gatekeeper"),
            admin: Signer::new(20, "admin-1", "customer-admin"),
            stranger: Signer::new(99, "stranger-1", "vendor"),
        }
    }

    /// vendor-1 and vendor-2, gatekeeper-1, admin-1; requires one vendor key.
    fn policy(&self) -> PolicySpec {
        PolicySpec {
            audience: AUDIENCE.into(),
            max_lifetime: 900,
            clock_skew: 30,
            keys: vec![
                self.vendor1.spec(),
                self.vendor2.spec(),
                self.vendor3.spec(),
                self.gatekeeper.spec(),
                self.admin.spec(),
            ],
            require: BTreeMap::from([("vendor".to_owned(), 1)]),
        }
    }
}

fn base_get() -> RequestFields {
    RequestFields {
        audience: AUDIENCE.into(),
        method: "GET".into(),
        bucket: "patient-reports".into(),
        key: "org-17/reports/2026/visit-0001.pdf".into(),
        range: String::new(),
        content_type: String::new(),
        body_sha256: String::new(),
        body_length: String::new(),
        subject: "user-42".into(),
        issued_at: T,
        expires_at: T + 300,
        nonce: "000102030405060708090a0b0c0d0e0f".into(),
    }
}

const PUT_BODY: &[u8] = b"%PDF-1.7\n% Countersign demo report\n";

fn base_put() -> RequestFields {
    RequestFields {
        method: "PUT".into(),
        key: "org-17/reports/2026/visit-0002.pdf".into(),
        content_type: "application/pdf".into(),
        body_sha256: sha256_hex(PUT_BODY),
        body_length: PUT_BODY.len().to_string(),
        nonce: "101112131415161718191a1b1c1d1e1f".into(),
        ..base_get()
    }
}

/// The generator's own rendering of the text form, independent of the encoder.
fn render(f: &RequestFields) -> Vec<u8> {
    format!(
        "countersign/v1/request\naudience:{}\nmethod:{}\nbucket:{}\nkey:{}\nrange:{}\ncontent-type:{}\nbody-sha256:{}\nbody-length:{}\nsubject:{}\nissued-at:{}\nexpires-at:{}\nnonce:{}\n",
        f.audience, f.method, f.bucket, f.key, f.range, f.content_type, f.body_sha256,
        f.body_length, f.subject, f.issued_at, f.expires_at, f.nonce
    )
    .into_bytes()
}

fn replace(doc: &[u8], from: &str, to: &str) -> Vec<u8> {
    String::from_utf8_lossy(doc)
        .replacen(from, to, 1)
        .into_bytes()
}

struct Builder {
    cases: Vec<Case>,
    failures: Vec<String>,
}

impl Builder {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        name: &str,
        description: &str,
        kind: Kind,
        request: RequestFields,
        doc: Vec<u8>,
        policy: PolicySpec,
        signatures: Vec<SignatureSpec>,
        now: u64,
        expect: &str,
        extra: impl FnOnce(&mut Case),
    ) {
        let mut case = Case {
            name: name.into(),
            description: description.into(),
            kind,
            request,
            canonical_hex: hex(&doc),
            message_hex: signatures
                .first()
                .map(|s| s.message_hex.clone())
                .unwrap_or_default(),
            request_hex: None,
            target: None,
            body_hex: None,
            list_after: None,
            entry_sha256: None,
            policy,
            signatures,
            now,
            expect: expect.into(),
        };
        extra(&mut case);
        match outcome(&case) {
            Ok(got) if got == expect => {}
            Ok(got) => self
                .failures
                .push(format!("{name}: expected {expect}, got {got}")),
            Err(e) => self.failures.push(format!("{name}: broken case: {e}")),
        }
        if self.cases.iter().any(|c| c.name == name) {
            self.failures.push(format!("{name}: duplicate name"));
        }
        self.cases.push(case);
    }

    /// A request case signed by `signers` over `doc`.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        name: &str,
        description: &str,
        fields: RequestFields,
        doc: Vec<u8>,
        policy: PolicySpec,
        signers: &[&Signer],
        now: u64,
        expect: &str,
    ) {
        let sigs = signers.iter().map(|s| s.sign(&doc)).collect();
        self.push(
            name,
            description,
            Kind::Request,
            fields,
            doc,
            policy,
            sigs,
            now,
            expect,
            |_| {},
        );
    }

    fn take(&mut self) -> Vec<Case> {
        std::mem::take(&mut self.cases)
    }
}

fn requests(w: &World, b: &mut Builder) {
    let p = w.policy();
    let now = T + 10;
    let v1 = [&w.vendor1];
    let simple = |b: &mut Builder, name: &str, desc: &str, f: RequestFields, expect: &str| {
        let doc = render(&f);
        b.request(name, desc, f, doc, p.clone(), &v1, now, expect);
    };

    simple(
        b,
        "get-basic",
        "A plain GET signed by one vendor key.",
        base_get(),
        "ok",
    );
    simple(
        b,
        "get-range",
        "A GET of bytes 0-1023.",
        RequestFields {
            range: "0-1023".into(),
            ..base_get()
        },
        "ok",
    );
    simple(
        b,
        "get-range-single-byte",
        "A range of one byte (first = last).",
        RequestFields {
            range: "5-5".into(),
            ..base_get()
        },
        "ok",
    );
    simple(
        b,
        "get-range-inverted",
        "A range whose first byte is after its last.",
        RequestFields {
            range: "9-5".into(),
            ..base_get()
        },
        ErrorCode::InvalidField.as_str(),
    );
    simple(
        b,
        "head-basic",
        "A HEAD (manifest only).",
        RequestFields {
            method: "HEAD".into(),
            ..base_get()
        },
        "ok",
    );
    simple(
        b,
        "put-basic",
        "A PUT binding content type, body SHA-256 and length.",
        base_put(),
        "ok",
    );
    simple(
        b,
        "put-empty-body",
        "A PUT of an empty body (length 0).",
        RequestFields {
            body_sha256: sha256_hex(b""),
            body_length: "0".into(),
            ..base_put()
        },
        "ok",
    );
    simple(
        b,
        "put-missing-content-type",
        "A PUT must name its content type.",
        RequestFields {
            content_type: String::new(),
            ..base_put()
        },
        ErrorCode::InvalidField.as_str(),
    );
    simple(
        b,
        "put-content-type-parameters",
        "Content types carry no parameters.",
        RequestFields {
            content_type: "text/plain;charset=utf-8".into(),
            ..base_put()
        },
        ErrorCode::InvalidField.as_str(),
    );
    simple(
        b,
        "put-with-range",
        "Only a GET may carry a range.",
        RequestFields {
            range: "0-1".into(),
            ..base_put()
        },
        ErrorCode::InvalidField.as_str(),
    );
    simple(
        b,
        "get-with-body-hash",
        "Only a PUT may carry a body hash.",
        RequestFields {
            body_sha256: sha256_hex(b"x"),
            ..base_get()
        },
        ErrorCode::InvalidField.as_str(),
    );
    simple(
        b,
        "put-body-length-leading-zero",
        "Decimals have no leading zeros.",
        RequestFields {
            body_length: format!("0{}", PUT_BODY.len()),
            ..base_put()
        },
        ErrorCode::NonCanonical.as_str(),
    );
    simple(
        b,
        "put-body-hash-uppercase",
        "Hex is lowercase.",
        RequestFields {
            body_sha256: sha256_hex(PUT_BODY).to_uppercase(),
            ..base_put()
        },
        ErrorCode::NonCanonical.as_str(),
    );
    simple(
        b,
        "list-whole-bucket",
        "A LIST with the empty prefix.",
        RequestFields {
            method: "LIST".into(),
            key: String::new(),
            ..base_get()
        },
        "ok",
    );
    simple(
        b,
        "list-prefix-trailing-slash",
        "A LIST prefix may end with `/`.",
        RequestFields {
            method: "LIST".into(),
            key: "org-17/reports/".into(),
            ..base_get()
        },
        "ok",
    );
    simple(
        b,
        "list-prefix-traversal",
        "A LIST prefix may not contain a `..` segment.",
        RequestFields {
            method: "LIST".into(),
            key: "org-17/../org-18/".into(),
            ..base_get()
        },
        ErrorCode::InvalidKeyPath.as_str(),
    );
    simple(
        b,
        "method-lowercase",
        "Methods are uppercase.",
        RequestFields {
            method: "get".into(),
            ..base_get()
        },
        ErrorCode::InvalidField.as_str(),
    );
    simple(
        b,
        "method-delete",
        "There is no DELETE.",
        RequestFields {
            method: "DELETE".into(),
            ..base_get()
        },
        ErrorCode::InvalidField.as_str(),
    );

    let key = |k: &str| RequestFields {
        key: k.into(),
        ..base_get()
    };
    simple(
        b,
        "key-unicode-nfc",
        "Keys are UTF-8 in NFC; signed raw, never percent-encoded.",
        key("org-17/Berichte/größe-日本語.png"),
        "ok",
    );
    simple(
        b,
        "key-not-nfc",
        "`u` + U+0308 is NFD; only NFC is accepted.",
        key("org-17/gro\u{308}sse.png"),
        ErrorCode::InvalidKeyPath.as_str(),
    );
    simple(
        b,
        "key-space",
        "Space is signed as itself (the URL spells it %20).",
        key("org-17/scan 1.png"),
        "ok",
    );
    simple(
        b,
        "key-plus",
        "`+` is a literal plus, never a space.",
        key("org-17/a+b.png"),
        "ok",
    );
    simple(
        b,
        "key-percent-literal",
        "`%20` in a key is three literal characters; there is no decoding.",
        key("org-17/scan%201.png"),
        "ok",
    );
    simple(
        b,
        "key-dot-dot-segment",
        "Path traversal is unrepresentable.",
        key("org-17/../org-18/secret.pdf"),
        ErrorCode::InvalidKeyPath.as_str(),
    );
    simple(
        b,
        "key-dot-segment",
        "`.` segments are refused, not normalised.",
        key("org-17/./a.pdf"),
        ErrorCode::InvalidKeyPath.as_str(),
    );
    simple(
        b,
        "key-dots-in-name",
        "Dots inside a segment are fine.",
        key("org-17/..a/b../.c"),
        "ok",
    );
    simple(
        b,
        "key-leading-slash",
        "Keys do not start with `/`.",
        key("/org-17/a.pdf"),
        ErrorCode::InvalidKeyPath.as_str(),
    );
    simple(
        b,
        "key-trailing-slash",
        "Keys do not end with `/`.",
        key("org-17/"),
        ErrorCode::InvalidKeyPath.as_str(),
    );
    simple(
        b,
        "key-double-slash",
        "Empty segments are refused.",
        key("org-17//a.pdf"),
        ErrorCode::InvalidKeyPath.as_str(),
    );
    simple(
        b,
        "key-backslash",
        "Backslashes are refused (a separator on some systems).",
        key("org-17\\..\\a.pdf"),
        ErrorCode::InvalidKeyPath.as_str(),
    );
    simple(
        b,
        "key-tab",
        "Control characters are refused.",
        key("org-17/a\tb.pdf"),
        ErrorCode::InvalidKeyPath.as_str(),
    );
    simple(
        b,
        "key-c1-control",
        "C1 control U+0085 is refused.",
        key("org-17/a\u{85}b.pdf"),
        ErrorCode::InvalidKeyPath.as_str(),
    );
    simple(
        b,
        "key-bidi-override",
        "U+202E makes a key display reversed; refused.",
        key("org-17/report\u{202e}fdp.exe"),
        ErrorCode::InvalidKeyPath.as_str(),
    );
    simple(
        b,
        "key-zero-width-space",
        "Invisible U+200B is refused.",
        key("org-17/a\u{200b}.pdf"),
        ErrorCode::InvalidKeyPath.as_str(),
    );
    simple(
        b,
        "key-max-length",
        "A key of exactly 1024 bytes.",
        key(&format!("org-17/{}", "k".repeat(1017))),
        "ok",
    );
    simple(
        b,
        "key-too-long",
        "A key of 1025 bytes.",
        key(&format!("org-17/{}", "k".repeat(1018))),
        ErrorCode::InvalidKeyPath.as_str(),
    );
    simple(
        b,
        "key-max-length-multibyte",
        "1024 bytes of 3-byte characters plus ASCII; limits count bytes.",
        key(&format!("o/{}", "日".repeat(340) + "ab")),
        "ok",
    );
    simple(
        b,
        "bucket-uppercase",
        "Bucket names are lowercase.",
        RequestFields {
            bucket: "Patient-Reports".into(),
            ..base_get()
        },
        ErrorCode::InvalidBucket.as_str(),
    );
    simple(
        b,
        "bucket-ip-address",
        "Bucket names may not look like IP addresses.",
        RequestFields {
            bucket: "10.0.0.1".into(),
            ..base_get()
        },
        ErrorCode::InvalidBucket.as_str(),
    );
    simple(
        b,
        "subject-max-length",
        "A subject of 128 printable ASCII bytes.",
        RequestFields {
            subject: "u".repeat(128),
            ..base_get()
        },
        "ok",
    );
    simple(
        b,
        "subject-too-long",
        "A subject of 129 bytes.",
        RequestFields {
            subject: "u".repeat(129),
            ..base_get()
        },
        ErrorCode::InvalidField.as_str(),
    );
    simple(
        b,
        "subject-space",
        "Subjects contain no spaces.",
        RequestFields {
            subject: "user 42".into(),
            ..base_get()
        },
        ErrorCode::InvalidField.as_str(),
    );
    simple(
        b,
        "nonce-uppercase",
        "The nonce is lowercase hex.",
        RequestFields {
            nonce: "000102030405060708090A0B0C0D0E0F".into(),
            ..base_get()
        },
        ErrorCode::NonCanonical.as_str(),
    );
    simple(
        b,
        "nonce-short",
        "The nonce is exactly 16 bytes.",
        RequestFields {
            nonce: "0001020304050607".into(),
            ..base_get()
        },
        ErrorCode::InvalidField.as_str(),
    );
    let doc = replace(
        &render(&base_get()),
        &format!("issued-at:{T}"),
        &format!("issued-at:0{T}"),
    );
    b.request(
        "issued-at-leading-zero",
        "Timestamps have no leading zeros.",
        base_get(),
        doc,
        p.clone(),
        &v1,
        now,
        ErrorCode::NonCanonical.as_str(),
    );
    simple(
        b,
        "expires-before-issued",
        "expires-at must be after issued-at.",
        RequestFields {
            expires_at: T,
            ..base_get()
        },
        ErrorCode::InvalidField.as_str(),
    );
    simple(
        b,
        "lifetime-over-policy",
        "The policy allows at most 900 s.",
        RequestFields {
            expires_at: T + 901,
            ..base_get()
        },
        ErrorCode::LifetimeTooLong.as_str(),
    );
    simple(
        b,
        "lifetime-over-protocol",
        "The protocol allows at most 86400 s.",
        RequestFields {
            expires_at: T + 86_401,
            ..base_get()
        },
        ErrorCode::LifetimeTooLong.as_str(),
    );
    simple(
        b,
        "lifetime-at-policy-max",
        "Exactly the policy's 900 s.",
        RequestFields {
            expires_at: T + 900,
            ..base_get()
        },
        "ok",
    );
    simple(
        b,
        "wrong-audience",
        "Addressed to another gatekeeper.",
        RequestFields {
            audience: "gk.other".into(),
            ..base_get()
        },
        ErrorCode::WrongAudience.as_str(),
    );

    let g = render(&base_get());
    let mutated = |b: &mut Builder, name: &str, desc: &str, doc: Vec<u8>, expect: &str| {
        b.request(name, desc, base_get(), doc, p.clone(), &v1, now, expect);
    };
    mutated(
        b,
        "crlf-line-endings",
        "Lines end with LF only.",
        String::from_utf8_lossy(&g)
            .replace('\n', "\r\n")
            .into_bytes(),
        ErrorCode::NonCanonical.as_str(),
    );
    mutated(
        b,
        "missing-final-newline",
        "The last line ends with LF.",
        g[..g.len() - 1].to_vec(),
        ErrorCode::NonCanonical.as_str(),
    );
    mutated(
        b,
        "extra-field",
        "No field may be added.",
        [g.clone(), b"extra:1\n".to_vec()].concat(),
        ErrorCode::NonCanonical.as_str(),
    );
    mutated(
        b,
        "fields-swapped",
        "Fields appear in the fixed order.",
        replace(
            &replace(
                &g,
                "audience:gk.acme\nmethod:GET\n",
                "method:GET\naudience:gk.acme\n",
            ),
            "",
            "",
        ),
        ErrorCode::NonCanonical.as_str(),
    );
    mutated(
        b,
        "space-after-colon",
        "No whitespace around values.",
        replace(&g, "subject:user-42", "subject: user-42"),
        ErrorCode::InvalidField.as_str(),
    );
    mutated(
        b,
        "version-2",
        "An unknown protocol version.",
        replace(&g, "countersign/v1/request", "countersign/v2/request"),
        ErrorCode::UnsupportedVersion.as_str(),
    );
    mutated(
        b,
        "wrong-document-type",
        "A receipt header on a request.",
        replace(&g, "countersign/v1/request", "countersign/v1/receipt"),
        ErrorCode::NonCanonical.as_str(),
    );
    mutated(
        b,
        "not-utf8",
        "Canonical bytes are UTF-8.",
        [&g[..g.len() - 1], &[0xff, b'\n'][..]].concat(),
        ErrorCode::NonCanonical.as_str(),
    );
    mutated(
        b,
        "too-large",
        "Canonical requests are at most 4096 bytes.",
        replace(
            &g,
            "subject:user-42",
            &format!("subject:{}", "u".repeat(4000)),
        ),
        ErrorCode::TooLarge.as_str(),
    );

    // Time window: issued T, expires T+300, skew 30.
    let at = |b: &mut Builder, name: &str, desc: &str, now: u64, expect: &str| {
        b.request(
            name,
            desc,
            base_get(),
            g.clone(),
            p.clone(),
            &v1,
            now,
            expect,
        );
    };
    at(
        b,
        "time-first-valid-second",
        "issued-at - skew is the first accepted second.",
        T - 30,
        "ok",
    );
    at(
        b,
        "time-not-yet-valid",
        "One second before issued-at - skew.",
        T - 31,
        ErrorCode::NotYetValid.as_str(),
    );
    at(
        b,
        "time-last-valid-second",
        "expires-at + skew - 1 is the last accepted second.",
        T + 329,
        "ok",
    );
    at(
        b,
        "time-expired",
        "expires-at + skew is refused.",
        T + 330,
        ErrorCode::Expired.as_str(),
    );
    at(
        b,
        "time-expired-long-ago",
        "A day after expiry.",
        T + 86_400,
        ErrorCode::Expired.as_str(),
    );
}

fn signatures(w: &World, b: &mut Builder) {
    let g = render(&base_get());
    let now = T + 10;
    let p = w.policy();
    let two = PolicySpec {
        require: BTreeMap::from([("vendor".to_owned(), 2)]),
        ..w.policy()
    };
    let three = PolicySpec {
        require: BTreeMap::from([("vendor".to_owned(), 3)]),
        ..w.policy()
    };
    let req = |b: &mut Builder,
               name: &str,
               desc: &str,
               policy: &PolicySpec,
               sigs: Vec<SignatureSpec>,
               expect: &str| {
        b.push(
            name,
            desc,
            Kind::Request,
            base_get(),
            g.clone(),
            policy.clone(),
            sigs,
            now,
            expect,
            |_| {},
        );
    };
    req(
        b,
        "two-of-two",
        "Two distinct vendor keys meet a threshold of 2.",
        &two,
        vec![w.vendor1.sign(&g), w.vendor2.sign(&g)],
        "ok",
    );
    req(
        b,
        "two-of-three-with-three",
        "Extra valid signatures are fine.",
        &two,
        vec![w.vendor1.sign(&g), w.vendor2.sign(&g), w.vendor3.sign(&g)],
        "ok",
    );
    req(
        b,
        "three-of-three",
        "All three vendor keys.",
        &three,
        vec![w.vendor3.sign(&g), w.vendor1.sign(&g), w.vendor2.sign(&g)],
        "ok",
    );
    req(
        b,
        "threshold-not-met",
        "One signature for a threshold of 2.",
        &two,
        vec![w.vendor1.sign(&g)],
        ErrorCode::ThresholdNotMet.as_str(),
    );
    req(
        b,
        "duplicate-signer",
        "The same key twice counts once: 1 of 2.",
        &two,
        vec![w.vendor1.sign(&g), w.vendor1.sign(&g)],
        ErrorCode::ThresholdNotMet.as_str(),
    );
    req(
        b,
        "duplicate-signer-threshold-one",
        "The same key twice meets a threshold of 1.",
        &p,
        vec![w.vendor1.sign(&g), w.vendor1.sign(&g)],
        "ok",
    );
    req(
        b,
        "no-signature-for-required-role",
        "Only a gatekeeper signature; the vendor role is required.",
        &p,
        vec![w.gatekeeper.sign(&g)],
        ErrorCode::ThresholdNotMet.as_str(),
    );
    req(
        b,
        "unknown-key",
        "A key id the policy does not know.",
        &p,
        vec![w.stranger.sign(&g)],
        ErrorCode::UnknownKey.as_str(),
    );
    req(
        b,
        "unknown-key-among-valid",
        "Every presented signature must be valid, even when the threshold is met.",
        &p,
        vec![w.vendor1.sign(&g), w.stranger.sign(&g)],
        ErrorCode::UnknownKey.as_str(),
    );
    req(
        b,
        "wrong-role",
        "A vendor key claiming the gatekeeper role.",
        &p,
        vec![w.vendor1.sign_as("gatekeeper", w.vendor1.key_id, &g)],
        ErrorCode::WrongRole.as_str(),
    );
    req(
        b,
        "admin-key-as-vendor",
        "A customer-admin key cannot approve as vendor.",
        &p,
        vec![w.admin.sign_as("vendor", w.admin.key_id, &g)],
        ErrorCode::WrongRole.as_str(),
    );
    req(
        b,
        "key-id-substitution",
        "vendor-1 signs under vendor-2's id: the message binds the key id.",
        &p,
        vec![w.vendor1.sign_as("vendor", w.vendor2.key_id, &g)],
        ErrorCode::BadSignature.as_str(),
    );
    req(
        b,
        "no-signatures",
        "An empty signature list.",
        &p,
        vec![],
        ErrorCode::Malformed.as_str(),
    );

    let flipped = replace(&g, "subject:user-42", "subject:user-43");
    b.push(
        "flipped-byte-in-canonical",
        "The vendor signed user-42; the bytes say user-43.",
        Kind::Request,
        base_get(),
        flipped,
        p.clone(),
        vec![w.vendor1.sign(&g)],
        now,
        ErrorCode::BadSignature.as_str(),
        |_| {},
    );
    let mut bad = w.vendor1.sign(&g);
    bad.signature_hex = flip_bit(&bad.signature_hex, 3);
    req(
        b,
        "flipped-bit-in-signature-r",
        "One bit of R flipped.",
        &p,
        vec![bad],
        ErrorCode::BadSignature.as_str(),
    );
    let mut bad = w.vendor1.sign(&g);
    bad.signature_hex = flip_bit(&bad.signature_hex, 40);
    req(
        b,
        "flipped-bit-in-signature-s",
        "One bit of S flipped.",
        &p,
        vec![bad],
        ErrorCode::BadSignature.as_str(),
    );
    let mut bad = w.vendor1.sign(&g);
    bad.signature_hex = add_l_to_s(&bad.signature_hex);
    req(
        b,
        "malleable-s-plus-l",
        "S replaced by S + L: equal mod L but not canonical (S >= L).",
        &p,
        vec![bad],
        ErrorCode::BadSignature.as_str(),
    );
    let mut bad = w.vendor1.sign(&g);
    bad.signature_hex.truncate(126);
    req(
        b,
        "signature-63-bytes",
        "A truncated signature.",
        &p,
        vec![bad],
        ErrorCode::BadSignature.as_str(),
    );

    let mut windowed = w.policy();
    if let Some(k) = windowed.keys.first_mut() {
        k.not_before = Some(T);
        k.not_after = Some(T + 100);
    }
    let win = |b: &mut Builder, name: &str, desc: &str, now: u64, expect: &str| {
        b.push(
            name,
            desc,
            Kind::Request,
            base_get(),
            g.clone(),
            windowed.clone(),
            vec![w.vendor1.sign(&g)],
            now,
            expect,
            |_| {},
        );
    };
    win(
        b,
        "key-window-first-second",
        "not_before is the first valid second.",
        T,
        "ok",
    );
    win(
        b,
        "key-window-last-second",
        "not_after - 1 is the last valid second.",
        T + 99,
        "ok",
    );
    win(
        b,
        "key-retired",
        "At not_after the key is retired.",
        T + 100,
        ErrorCode::KeyOutsideWindow.as_str(),
    );
    win(
        b,
        "key-not-yet-active",
        "Before not_before the key is not active yet.",
        T - 1,
        ErrorCode::KeyOutsideWindow.as_str(),
    );

    let mut weak = w.policy();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    weak.keys.push(KeySpec {
        key_id: "weak-1".into(),
        role: "vendor".into(),
        public_key_hex: hex(&identity),
        not_before: None,
        not_after: None,
    });
    let sig = SignatureSpec {
        key_id: "weak-1".into(),
        role: "vendor".into(),
        public_key_hex: hex(&identity),
        signature_hex: hex(&[&[1u8][..], &[0u8; 63][..]].concat()),
        message_hex: hex(&signing_message(&Role::vendor(), &kid("weak-1"), &g)),
    };
    req(
        b,
        "small-order-public-key",
        "The identity point as a public key: any message 'verifies' under cofactored rules, so such keys are refused when the policy loads.",
        &weak,
        vec![sig],
        ErrorCode::WeakKey.as_str(),
    );

    let mut dup = w.policy();
    dup.keys.push(w.vendor1.spec());
    req(
        b,
        "duplicate-key-id-in-policy",
        "Key ids must be unique in a policy.",
        &dup,
        vec![w.vendor1.sign(&g)],
        ErrorCode::InvalidField.as_str(),
    );

    // One Ed25519 key registered under a second key id: if the keyring accepted it,
    // the key alone would meet a threshold of 2 by signing under both ids.
    let mut twin = two.clone();
    twin.keys.push(KeySpec {
        key_id: "vendor-2026-01-twin".into(),
        ..w.vendor1.spec()
    });
    req(
        b,
        "duplicate-public-key-in-policy",
        "The same public key under two key ids is refused when the policy loads, so one key cannot count twice towards a threshold of 2.",
        &twin,
        vec![
            w.vendor1.sign(&g),
            w.vendor1.sign_as("vendor", "vendor-2026-01-twin", &g),
        ],
        ErrorCode::DuplicateKey.as_str(),
    );
}

fn flip_bit(hex_sig: &str, byte: usize) -> String {
    let mut bytes = countersign_vectors::from_hex(hex_sig).unwrap();
    if let Some(b) = bytes.get_mut(byte) {
        *b ^= 0x01;
    }
    hex(&bytes)
}

/// Adds the group order L to the little-endian S half of a signature.
fn add_l_to_s(hex_sig: &str) -> String {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut bytes = countersign_vectors::from_hex(hex_sig).unwrap();
    let mut carry = 0u16;
    for (b, l) in bytes.iter_mut().skip(32).zip(L) {
        let sum = u16::from(*b) + u16::from(l) + carry;
        *b = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    hex(&bytes)
}

/// The leaf hash the receipt cases name (any 32 bytes: a receipt's verification does
/// not look into the log).
const RECEIPT_LEAF: [u8; 32] = [0x5a; 32];

fn receipts(w: &World, b: &mut Builder) {
    let request = render(&base_get());
    let digest = countersign_core::BodyDigest::of(&request).sha256;
    let receipt = |decision| Receipt {
        gatekeeper: GatekeeperId::parse(AUDIENCE).unwrap(),
        request_sha256: digest,
        decision,
        decided_at: T + 11,
        audit_seq: 7,
        leaf_sha256: Some(RECEIPT_LEAF),
    };
    let policy = PolicySpec {
        require: BTreeMap::from([("gatekeeper".to_owned(), 1)]),
        ..w.policy()
    };
    let rc = |b: &mut Builder,
              name: &str,
              desc: &str,
              doc: Vec<u8>,
              sigs: Vec<SignatureSpec>,
              for_request: &[u8],
              expect: &str| {
        let for_request = hex(for_request);
        b.push(
            name,
            desc,
            Kind::Receipt,
            base_get(),
            doc,
            policy.clone(),
            sigs,
            T + 11,
            expect,
            |c| c.request_hex = Some(for_request),
        );
    };
    let allow = receipt(Decision::Allow).encode();
    rc(
        b,
        "receipt-allow",
        "The gatekeeper's countersignature on an allowed request.",
        allow.clone(),
        vec![w.gatekeeper.sign(&allow)],
        &request,
        "ok",
    );
    let v1 = Receipt {
        leaf_sha256: None,
        ..receipt(Decision::Allow)
    }
    .encode();
    rc(
        b,
        "receipt-v1-allow",
        "A version-1 receipt (no leaf hash, signed under countersign/v1/signature) keeps verifying.",
        v1.clone(),
        vec![w.gatekeeper.sign(&v1)],
        &request,
        "ok",
    );
    rc(
        b,
        "receipt-v2-signed-under-v1-prefix",
        "A version-2 receipt is signed under countersign/v2/signature: a signature under the version-1 prefix does not verify.",
        allow.clone(),
        vec![
            w.gatekeeper
                .sign_under_prefix("countersign/v1/signature", &allow),
        ],
        &request,
        ErrorCode::BadSignature.as_str(),
    );
    let no_leaf = replace(&allow, &format!("leaf-sha256:{}\n", hex(&RECEIPT_LEAF)), "");
    rc(
        b,
        "receipt-v2-without-leaf-hash",
        "A version-2 receipt must carry leaf-sha256.",
        no_leaf.clone(),
        vec![w.gatekeeper.sign(&no_leaf)],
        &request,
        ErrorCode::NonCanonical.as_str(),
    );
    let v3 = replace(&allow, "countersign/v2/receipt", "countersign/v3/receipt");
    rc(
        b,
        "receipt-v3",
        "A receipt of a version this implementation does not know.",
        v3.clone(),
        vec![w.gatekeeper.sign(&v3)],
        &request,
        ErrorCode::UnsupportedVersion.as_str(),
    );
    let deny = receipt(Decision::Deny(ErrorCode::AccessDenied)).encode();
    rc(
        b,
        "receipt-deny",
        "A signed denial verifies too; its decision says deny.",
        deny.clone(),
        vec![w.gatekeeper.sign(&deny)],
        &request,
        "ok",
    );
    let other = render(&RequestFields {
        key: "org-17/other.pdf".into(),
        ..base_get()
    });
    rc(
        b,
        "receipt-for-other-request",
        "A receipt cannot be reused for another request.",
        allow.clone(),
        vec![w.gatekeeper.sign(&allow)],
        &other,
        ErrorCode::ReceiptMismatch.as_str(),
    );
    rc(
        b,
        "receipt-signed-by-vendor",
        "The vendor key cannot sign receipts.",
        allow.clone(),
        vec![w.vendor1.sign_as("gatekeeper", w.vendor1.key_id, &allow)],
        &request,
        ErrorCode::WrongRole.as_str(),
    );
    let tampered = replace(&allow, "audit-seq:7", "audit-seq:8");
    rc(
        b,
        "receipt-tampered",
        "A receipt changed after signing.",
        tampered,
        vec![w.gatekeeper.sign(&allow)],
        &request,
        ErrorCode::BadSignature.as_str(),
    );
    let unknown = replace(&deny, "error:access_denied", "error:no_such_code");
    rc(
        b,
        "receipt-unknown-error-code",
        "Error codes come from the fixed list.",
        unknown.clone(),
        vec![w.gatekeeper.sign(&unknown)],
        &request,
        ErrorCode::InvalidField.as_str(),
    );
    let allow_with_error = replace(&allow, "error:\n", "error:expired\n");
    rc(
        b,
        "receipt-allow-with-error",
        "An allow carries no error code.",
        allow_with_error.clone(),
        vec![w.gatekeeper.sign(&allow_with_error)],
        &request,
        ErrorCode::InvalidField.as_str(),
    );
    let foreign = Receipt {
        gatekeeper: GatekeeperId::parse("gk.other").unwrap(),
        ..receipt(Decision::Allow)
    }
    .encode();
    rc(
        b,
        "receipt-from-other-gatekeeper",
        "A receipt must come from the gatekeeper the request was addressed to.",
        foreign.clone(),
        vec![w.gatekeeper.sign(&foreign)],
        &request,
        ErrorCode::ReceiptMismatch.as_str(),
    );
    let late = Receipt {
        decided_at: T + 300 + 600,
        ..receipt(Decision::Allow)
    }
    .encode();
    rc(
        b,
        "receipt-decided-after-window",
        "An allow's decided-at must lie before expires-at + 600 s (the largest clock skew).",
        late.clone(),
        vec![w.gatekeeper.sign(&late)],
        &request,
        ErrorCode::ReceiptMismatch.as_str(),
    );
    let early = Receipt {
        decided_at: T - 601,
        ..receipt(Decision::Allow)
    }
    .encode();
    rc(
        b,
        "receipt-allow-decided-before-window",
        "An allow's decided-at must not lie before issued-at - 600 s.",
        early.clone(),
        vec![w.gatekeeper.sign(&early)],
        &request,
        ErrorCode::ReceiptMismatch.as_str(),
    );

    // Denials verify whatever the request's window and audience: the gatekeeper's
    // signature and the request's SHA-256 bind them.
    let expired = Receipt {
        decided_at: T + 300 + 600,
        ..receipt(Decision::Deny(ErrorCode::Expired))
    }
    .encode();
    rc(
        b,
        "receipt-deny-expired",
        "A request refused as expired: decided after its window, and the deny receipt still verifies.",
        expired.clone(),
        vec![w.gatekeeper.sign(&expired)],
        &request,
        "ok",
    );
    let early_deny = Receipt {
        decided_at: T - 601,
        ..receipt(Decision::Deny(ErrorCode::NotYetValid))
    }
    .encode();
    rc(
        b,
        "receipt-deny-not-yet-valid",
        "A request refused as not yet valid: decided before its window, and the deny receipt still verifies.",
        early_deny.clone(),
        vec![w.gatekeeper.sign(&early_deny)],
        &request,
        "ok",
    );
    let away_request = render(&RequestFields {
        audience: "gk.other".into(),
        ..base_get()
    });
    let wrong_audience = Receipt {
        request_sha256: countersign_core::BodyDigest::of(&away_request).sha256,
        ..receipt(Decision::Deny(ErrorCode::WrongAudience))
    }
    .encode();
    rc(
        b,
        "receipt-deny-wrong-audience",
        "A request addressed to gk.other, refused by gk.acme (the gatekeeper it reached, whose keys the client holds): the deny receipt verifies.",
        wrong_audience.clone(),
        vec![w.gatekeeper.sign(&wrong_audience)],
        &away_request,
        "ok",
    );
    let allow_away = Receipt {
        request_sha256: countersign_core::BodyDigest::of(&away_request).sha256,
        ..receipt(Decision::Allow)
    }
    .encode();
    rc(
        b,
        "receipt-allow-for-other-audience",
        "gk.acme cannot allow a request addressed to gk.other.",
        allow_away.clone(),
        vec![w.gatekeeper.sign(&allow_away)],
        &away_request,
        ErrorCode::ReceiptMismatch.as_str(),
    );
    let foreign_deny = Receipt {
        gatekeeper: GatekeeperId::parse("gk.other").unwrap(),
        ..receipt(Decision::Deny(ErrorCode::AccessDenied))
    }
    .encode();
    rc(
        b,
        "receipt-deny-from-other-gatekeeper",
        "A deny receipt must name the gatekeeper whose keys signed it (the client's gk.acme).",
        foreign_deny.clone(),
        vec![w.gatekeeper.sign(&foreign_deny)],
        &request,
        ErrorCode::ReceiptMismatch.as_str(),
    );
    let deny_other = Receipt {
        decided_at: T + 300 + 600,
        ..receipt(Decision::Deny(ErrorCode::Expired))
    }
    .encode();
    rc(
        b,
        "receipt-deny-for-other-request",
        "A deny receipt cannot be replayed against another request (other bytes, so another SHA-256).",
        deny_other.clone(),
        vec![w.gatekeeper.sign(&deny_other)],
        &other,
        ErrorCode::ReceiptMismatch.as_str(),
    );
}

fn manifests(w: &World, b: &mut Builder) {
    let policy = PolicySpec {
        require: BTreeMap::from([("gatekeeper".to_owned(), 1), ("vendor".to_owned(), 1)]),
        ..w.policy()
    };
    let put_doc = render(&base_put());
    let make_at = |audience: &str, signers: &[&Signer], doc: &[u8], stored_at: u64| -> Vec<u8> {
        let vendor_keys = [&w.vendor1, &w.vendor2, &w.vendor3]
            .iter()
            .filter_map(|s| {
                Some(countersign_core::AuthorizedKey {
                    key_id: kid(s.key_id),
                    role: Role::vendor(),
                    public_key: countersign_core::PublicKey::from_bytes(
                        &s.key.verifying_key().to_bytes(),
                    )
                    .ok()?,
                    not_before: None,
                    not_after: None,
                })
            })
            .collect::<Vec<_>>();
        let built = (|| {
            let policy = Policy::new(Keyring::new(vendor_keys)?, [(Role::vendor(), 1)])?;
            let verifier = RequestVerifier::new(GatekeeperId::parse(audience)?, policy, 900, 30)?;
            let sigs: Vec<SignatureEntry> = signers.iter().map(|s| s.entry(doc)).collect();
            let verified = verifier.verify(doc, &sigs, T + 10)?;
            Ok::<_, countersign_core::Error>(
                Manifest::for_put(&verified, GatekeeperId::parse(AUDIENCE)?, stored_at, 8)?
                    .encode(),
            )
        })();
        built.expect("the generator builds a valid manifest")
    };
    let make =
        |audience: &str, signers: &[&Signer], doc: &[u8]| make_at(audience, signers, doc, T + 12);
    let target = Target {
        bucket: "patient-reports".into(),
        key: base_put().key,
    };
    let mf = |b: &mut Builder,
              name: &str,
              desc: &str,
              doc: Vec<u8>,
              sigs: Vec<SignatureSpec>,
              target: &Target,
              body: &[u8],
              expect: &str| {
        let (target, body) = (target.clone(), hex(body));
        b.push(
            name,
            desc,
            Kind::Manifest,
            base_put(),
            doc,
            policy.clone(),
            sigs,
            T + 12,
            expect,
            |c| {
                c.target = Some(target);
                c.body_hex = Some(body);
            },
        );
    };
    let m = make(AUDIENCE, &[&w.vendor1], &put_doc);
    mf(
        b,
        "manifest-ok",
        "Both signatures verify and the body matches.",
        m.clone(),
        vec![w.gatekeeper.sign(&m)],
        &target,
        PUT_BODY,
        "ok",
    );
    let m2 = make(AUDIENCE, &[&w.vendor2, &w.vendor1], &put_doc);
    mf(
        b,
        "manifest-two-uploader-signatures",
        "Request signatures are stored sorted by role and key id.",
        m2.clone(),
        vec![w.gatekeeper.sign(&m2)],
        &target,
        PUT_BODY,
        "ok",
    );
    let mut altered = PUT_BODY.to_vec();
    if let Some(x) = altered.last_mut() {
        *x ^= 1;
    }
    mf(
        b,
        "manifest-body-altered",
        "One byte of the object changed in the bucket.",
        m.clone(),
        vec![w.gatekeeper.sign(&m)],
        &target,
        &altered,
        ErrorCode::BodyMismatch.as_str(),
    );
    mf(
        b,
        "manifest-body-truncated",
        "The object lost its last byte in the bucket.",
        m.clone(),
        vec![w.gatekeeper.sign(&m)],
        &target,
        &PUT_BODY[..PUT_BODY.len() - 1],
        ErrorCode::BodyMismatch.as_str(),
    );
    let other = Target {
        key: "org-17/reports/2026/visit-0001.pdf".into(),
        ..target.clone()
    };
    mf(
        b,
        "manifest-other-object",
        "A valid manifest served for a different key.",
        m.clone(),
        vec![w.gatekeeper.sign(&m)],
        &other,
        PUT_BODY,
        ErrorCode::ManifestMismatch.as_str(),
    );
    let tampered = replace(&m, "stored-at:", "stored-at:1");
    mf(
        b,
        "manifest-tampered",
        "A manifest changed after the gatekeeper signed it.",
        tampered,
        vec![w.gatekeeper.sign(&m)],
        &target,
        PUT_BODY,
        ErrorCode::BadSignature.as_str(),
    );
    mf(
        b,
        "manifest-signed-by-vendor",
        "Only the gatekeeper role signs manifests.",
        m.clone(),
        vec![w.vendor1.sign(&m)],
        &target,
        PUT_BODY,
        ErrorCode::ThresholdNotMet.as_str(),
    );
    let away = make(
        "gk.other",
        &[&w.vendor1],
        &replace(&put_doc, "audience:gk.acme", "audience:gk.other"),
    );
    mf(
        b,
        "manifest-audience-mismatch",
        "The PUT was addressed to another gatekeeper.",
        away.clone(),
        vec![w.gatekeeper.sign(&away)],
        &target,
        PUT_BODY,
        ErrorCode::ManifestMismatch.as_str(),
    );
    // Hand-written manifest with the request signatures out of order.
    let s1 = w.vendor1.entry(&put_doc).encode();
    let s2 = w.vendor2.entry(&put_doc).encode();
    let unsorted = format!(
        "countersign/v1/manifest\ngatekeeper:{AUDIENCE}\nstored-at:{}\naudit-seq:8\nrequest:{}\nrequest-signatures:{s2},{s1}\n",
        T + 12,
        b64(&put_doc)
    )
    .into_bytes();
    mf(
        b,
        "manifest-unsorted-signatures",
        "One encoding: request signatures sorted by role, key id.",
        unsorted.clone(),
        vec![w.gatekeeper.sign(&unsorted)],
        &target,
        PUT_BODY,
        ErrorCode::NonCanonical.as_str(),
    );
    let forged = replace(
        &m,
        &b64(&put_doc),
        &b64(&replace(&put_doc, "subject:user-42", "subject:user-66")),
    );
    mf(
        b,
        "manifest-uploader-forged",
        "The gatekeeper signed a manifest whose PUT the vendor never signed.",
        forged.clone(),
        vec![w.gatekeeper.sign(&forged)],
        &target,
        PUT_BODY,
        ErrorCode::BadSignature.as_str(),
    );
    let late = make_at(AUDIENCE, &[&w.vendor1], &put_doc, T + 300 + 600);
    mf(
        b,
        "manifest-stored-after-window",
        "stored-at must lie before the PUT's expires-at + 600 s.",
        late.clone(),
        vec![w.gatekeeper.sign(&late)],
        &target,
        PUT_BODY,
        ErrorCode::ManifestMismatch.as_str(),
    );
}

fn base_list() -> RequestFields {
    RequestFields {
        method: "LIST".into(),
        key: "org-17/reports/".into(),
        nonce: "202122232425262728292a2b2c2d2e2f".into(),
        ..base_get()
    }
}

/// A listing's fields, rendered by the generator itself from the spec (not by the
/// encoder). Keys and cursors are given already URL-encoded; `count` is written as
/// given, so a case can disagree with its object lines.
#[derive(Clone)]
struct ListingText {
    gatekeeper: String,
    request_sha256: String,
    audit_seq: u64,
    listed_at: u64,
    bucket: String,
    prefix: String,
    after: String,
    count: usize,
    objects: Vec<String>,
    next_after: String,
}

impl ListingText {
    fn render(&self) -> Vec<u8> {
        let mut out = format!(
            "countersign/v1/listing\ngatekeeper:{}\nrequest-sha256:{}\naudit-seq:{}\nlisted-at:{}\nbucket:{}\nprefix:{}\nafter:{}\ncount:{}\n",
            self.gatekeeper,
            self.request_sha256,
            self.audit_seq,
            self.listed_at,
            self.bucket,
            self.prefix,
            self.after,
            self.count
        );
        for o in &self.objects {
            out.push_str(&format!("object:{o}\n"));
        }
        out.push_str(&format!("next-after:{}\n", self.next_after));
        out.into_bytes()
    }

    /// The same page with other objects (and a matching count).
    fn with_objects(&self, objects: &[&str], next_after: &str) -> Self {
        Self {
            count: objects.len(),
            objects: objects.iter().map(|o| object_line(o)).collect(),
            next_after: next_after.into(),
            ..self.clone()
        }
    }
}

/// An object line for an already URL-encoded key.
fn object_line(encoded_key: &str) -> String {
    format!(
        "{encoded_key} {} {} application/pdf {}",
        PUT_BODY.len(),
        sha256_hex(PUT_BODY),
        T - 3600
    )
}

fn listings(w: &World, b: &mut Builder) {
    let request = render(&base_list());
    let policy = PolicySpec {
        require: BTreeMap::from([("gatekeeper".to_owned(), 1)]),
        ..w.policy()
    };
    // Byte order of the decoded keys: `~` (0x7E) sorts before `ü` (0xC3 0xBC), though
    // their URL-encoded forms `~` and `%C3%BC` sort the other way as text.
    let (k1, k2, k3, k4) = (
        "org-17/reports/2026/a%20b.pdf",
        "org-17/reports/2026/visit-0001.pdf",
        "org-17/reports/2026/~draft.pdf",
        "org-17/reports/2026/%C3%BC.pdf",
    );
    let first = ListingText {
        gatekeeper: AUDIENCE.into(),
        request_sha256: sha256_hex(&request),
        audit_seq: 9,
        listed_at: T + 11,
        bucket: "patient-reports".into(),
        prefix: "org-17/reports/".into(),
        after: String::new(),
        count: 0,
        objects: Vec::new(),
        next_after: String::new(),
    }
    .with_objects(&[k1, k2, k3], k3);
    let ls = |b: &mut Builder,
              name: &str,
              desc: &str,
              doc: Vec<u8>,
              sigs: Vec<SignatureSpec>,
              for_request: &[u8],
              after: &str,
              expect: &str| {
        let (for_request, after) = (hex(for_request), after.to_owned());
        b.push(
            name,
            desc,
            Kind::Listing,
            base_list(),
            doc,
            policy.clone(),
            sigs,
            T + 11,
            expect,
            |c| {
                c.request_hex = Some(for_request);
                c.list_after = Some(after);
            },
        );
    };
    // A signed page and the request it answers, for the common case.
    let signed =
        |b: &mut Builder, name: &str, desc: &str, page: &ListingText, after: &str, expect: &str| {
            let doc = page.render();
            ls(
                b,
                name,
                desc,
                doc.clone(),
                vec![w.gatekeeper.sign(&doc)],
                &request,
                after,
                expect,
            );
        };
    signed(
        b,
        "listing-first-page",
        "The first page: three objects in byte order of key (`~` before `ü`), more to follow after the last.",
        &first,
        "",
        "ok",
    );
    let last = ListingText {
        after: k3.into(),
        ..first.with_objects(&[k4], "")
    };
    signed(
        b,
        "listing-last-page",
        "The page after the first page's next-after, with the last object; next-after is empty.",
        &last,
        "org-17/reports/2026/~draft.pdf",
        "ok",
    );
    signed(
        b,
        "listing-empty",
        "A page without objects: count 0, no object line, empty next-after.",
        &first.with_objects(&[], ""),
        "",
        "ok",
    );
    let doc = first.render();
    let hidden = ListingText {
        next_after: k2.into(),
        ..first.with_objects(&[k1, k2], k2)
    }
    .render();
    ls(
        b,
        "listing-object-hidden",
        "An object removed from a signed page in transit.",
        hidden,
        vec![w.gatekeeper.sign(&doc)],
        &request,
        "",
        ErrorCode::BadSignature.as_str(),
    );
    ls(
        b,
        "listing-signed-by-vendor",
        "A vendor key claiming the gatekeeper role cannot sign listings.",
        doc.clone(),
        vec![w.vendor1.sign_as("gatekeeper", w.vendor1.key_id, &doc)],
        &request,
        "",
        ErrorCode::WrongRole.as_str(),
    );
    let other_request = render(&RequestFields {
        nonce: "303132333435363738393a3b3c3d3e3f".into(),
        ..base_list()
    });
    ls(
        b,
        "listing-for-other-request",
        "A genuine page replayed as the answer to another LIST request (another nonce).",
        doc.clone(),
        vec![w.gatekeeper.sign(&doc)],
        &other_request,
        "",
        ErrorCode::ListingMismatch.as_str(),
    );
    let get_request = render(&base_get());
    let for_get = ListingText {
        request_sha256: sha256_hex(&get_request),
        ..first.clone()
    }
    .render();
    ls(
        b,
        "listing-for-get-request",
        "A listing answers LIST requests only.",
        for_get.clone(),
        vec![w.gatekeeper.sign(&for_get)],
        &get_request,
        "",
        ErrorCode::ListingMismatch.as_str(),
    );
    signed(
        b,
        "listing-from-other-gatekeeper",
        "The listing must come from the request's audience.",
        &ListingText {
            gatekeeper: "gk.other".into(),
            ..first.clone()
        },
        "",
        ErrorCode::ListingMismatch.as_str(),
    );
    signed(
        b,
        "listing-after-window",
        "listed-at must lie before the request's expires-at + 600 s.",
        &ListingText {
            listed_at: T + 300 + 600,
            ..first.clone()
        },
        "",
        ErrorCode::ListingMismatch.as_str(),
    );
    signed(
        b,
        "listing-other-bucket",
        "The page lists another bucket than the request's.",
        &ListingText {
            bucket: "other-reports".into(),
            ..first.clone()
        },
        "",
        ErrorCode::ListingMismatch.as_str(),
    );
    signed(
        b,
        "listing-other-prefix",
        "The page lists a narrower prefix than the request's (hiding the rest).",
        &ListingText {
            prefix: "org-17/reports/2026/".into(),
            ..first.clone()
        },
        "",
        ErrorCode::ListingMismatch.as_str(),
    );
    signed(
        b,
        "listing-key-outside-prefix",
        "A listed key does not start with the prefix.",
        &first.with_objects(&[k1, "org-18/x.pdf"], ""),
        "",
        ErrorCode::ListingMismatch.as_str(),
    );
    signed(
        b,
        "listing-key-not-after-cursor",
        "Every key must sort strictly after `after`; here the first equals it.",
        &ListingText {
            after: k1.into(),
            ..first.clone()
        },
        "org-17/reports/2026/a b.pdf",
        ErrorCode::ListingMismatch.as_str(),
    );
    signed(
        b,
        "listing-other-cursor",
        "A genuine later page served for a first-page request (the cursor is not in the signed request).",
        &last,
        "",
        ErrorCode::ListingMismatch.as_str(),
    );
    signed(
        b,
        "listing-unsorted",
        "Objects out of order.",
        &first.with_objects(&[k2, k1], ""),
        "",
        ErrorCode::NonCanonical.as_str(),
    );
    signed(
        b,
        "listing-sorted-by-encoded-form",
        "Sorted by the URL-encoded text instead of the decoded bytes (`%C3%BC` before `~`).",
        &first.with_objects(&[k4, k3], ""),
        "",
        ErrorCode::NonCanonical.as_str(),
    );
    signed(
        b,
        "listing-duplicate-key",
        "A key listed twice.",
        &first.with_objects(&[k1, k1], ""),
        "",
        ErrorCode::NonCanonical.as_str(),
    );
    signed(
        b,
        "listing-lowercase-escape",
        "Percent-encoding uses uppercase hex digits only.",
        &first.with_objects(&["org-17/reports/2026/a%2fb.pdf"], ""),
        "",
        ErrorCode::NonCanonical.as_str(),
    );
    signed(
        b,
        "listing-escaped-unreserved-byte",
        "`%2D` spells `-`, which is never escaped: one spelling per key.",
        &first.with_objects(&["org%2D17/reports/2026/a.pdf"], ""),
        "",
        ErrorCode::NonCanonical.as_str(),
    );
    signed(
        b,
        "listing-raw-space-in-key",
        "A raw space splits the object line into six parts.",
        &first.with_objects(&["org-17/reports/2026/a b.pdf"], ""),
        "",
        ErrorCode::NonCanonical.as_str(),
    );
    signed(
        b,
        "listing-count-exceeds-lines",
        "count says 3, two object lines follow.",
        &ListingText {
            count: 3,
            ..first.with_objects(&[k1, k2], "")
        },
        "",
        ErrorCode::NonCanonical.as_str(),
    );
    signed(
        b,
        "listing-too-many-objects",
        "At most 1000 objects per page.",
        &ListingText {
            count: 1001,
            ..first.clone()
        },
        "",
        ErrorCode::TooLarge.as_str(),
    );
    signed(
        b,
        "listing-next-after-not-last",
        "next-after must be the last object's key.",
        &first.with_objects(&[k1, k2], k1),
        "",
        ErrorCode::InvalidField.as_str(),
    );
    signed(
        b,
        "listing-key-traversal",
        "A listed key must be a valid object key.",
        &first.with_objects(&["org-17/reports/../secret.pdf"], ""),
        "",
        ErrorCode::InvalidKeyPath.as_str(),
    );
}

fn audit_entries(b: &mut Builder) {
    use countersign_core::audit::{AuditEntry, CapturedHeader, GENESIS, UNVERIFIED_CAPTURE_BYTES};
    let put_request = render(&base_put());
    let put_header = b64(&put_request);
    let base = AuditEntry {
        seq: 0,
        prev_sha256: GENESIS,
        time_ms: T * 1000 + 250,
        gatekeeper: GatekeeperId::parse(AUDIENCE).unwrap(),
        // Entry version 1 (no request id): logs hold both versions.
        request_id: None,
        client_ip: "203.0.113.7".parse().unwrap(),
        operation: b"PUT".to_vec(),
        bucket: b"patient-reports".to_vec(),
        key: base_put().key.into_bytes(),
        subject: b"user-42".to_vec(),
        decision: Decision::Allow,
        bytes: PUT_BODY.len() as u64,
        latency_us: 5120,
        request: CapturedHeader::whole(put_header.as_bytes()),
        signatures: CapturedHeader::whole(
            World::new().vendor1.entry(&put_request).encode().as_bytes(),
        ),
    };
    let entry = |b: &mut Builder, name: &str, desc: &str, doc: Vec<u8>, expect: &str| {
        let sha = (expect == "ok").then(|| sha256_hex(&doc));
        b.push(
            name,
            desc,
            Kind::AuditEntry,
            RequestFields::default(),
            doc,
            PolicySpec::default(),
            Vec::new(),
            0,
            expect,
            |c| c.entry_sha256 = sha,
        );
    };
    let ok = |b: &mut Builder, name: &str, desc: &str, e: &AuditEntry| {
        entry(b, name, desc, e.encode(), "ok");
    };
    ok(
        b,
        "audit-allowed-put",
        "An allowed PUT: the request header's base64url text as received, complete, with its SHA-256 and length.",
        &base,
    );
    let raw = AuditEntry {
        seq: 1,
        prev_sha256: base.hash(),
        request_id: Some(b"4c1d9e0f2a7b6c5d8e3f1a0b9c2d7e6f".to_vec()),
        client_ip: "2001:db8::42".parse().unwrap(),
        operation: b"G\0ET".to_vec(),
        bucket: vec![0xff, 0xfe, b'b'],
        key: b"reports/100% done.pdf\0".to_vec(),
        subject: Vec::new(),
        decision: Decision::Deny(ErrorCode::Malformed),
        bytes: 0,
        latency_us: 310,
        request: CapturedHeader::whole(&[b'Y', 0x80, 0x00, b'%', b'4', b'1', b' ']),
        signatures: CapturedHeader::whole(b"vendor:k%1:\xc3\xa9"),
        ..base.clone()
    };
    ok(
        b,
        "audit-nul-non-utf8-and-percent",
        "An entry of version 2 (with the request id). Free text holding NUL, bytes that are not UTF-8 (0xFF 0xFE, a lone 0x80), `%` and spaces: every byte kept and escaped, none replaced.",
        &raw,
    );
    let flood = AuditEntry {
        seq: 2,
        prev_sha256: raw.hash(),
        client_ip: "::ffff:198.51.100.9".parse().unwrap(),
        operation: b"GET".to_vec(),
        decision: Decision::Deny(ErrorCode::Malformed),
        bytes: 0,
        request: CapturedHeader::prefix(&[b'A'; 5000], UNVERIFIED_CAPTURE_BYTES),
        signatures: CapturedHeader::prefix(&[b','; 3000], UNVERIFIED_CAPTURE_BYTES),
        ..raw.clone()
    };
    ok(
        b,
        "audit-truncated-captures",
        "Unverified junk headers of 5000 and 3000 bytes: only their first 1024 bytes are stored, SHA-256 and length describe the whole values. The client is an IPv4-mapped IPv6 address.",
        &flood,
    );
    let text = String::from_utf8(raw.encode()).unwrap();
    let bad = |b: &mut Builder, name: &str, desc: &str, from: &str, to: &str, expect: &str| {
        let edited = text.replacen(from, to, 1);
        assert_ne!(edited, text, "{name}: `{from}` not found");
        entry(b, name, desc, edited.into_bytes(), expect);
    };
    bad(
        b,
        "audit-escaped-graphic-byte",
        "`%45` spells `E`, which is never escaped: one spelling per byte string.",
        "operation:G%00ET",
        "operation:G%00%45T",
        ErrorCode::NonCanonical.as_str(),
    );
    bad(
        b,
        "audit-lowercase-escape",
        "Escapes use uppercase hex digits.",
        "bucket:%FF%FEb",
        "bucket:%ff%FEb",
        ErrorCode::NonCanonical.as_str(),
    );
    bad(
        b,
        "audit-truncated-escape",
        "A `%` must be followed by two hex digits.",
        "key:reports/100%25%20done.pdf%00",
        "key:reports/100%25%20done.pdf%0",
        ErrorCode::NonCanonical.as_str(),
    );
    bad(
        b,
        "audit-raw-space",
        "A space is written %20.",
        "key:reports/100%25%20done.pdf",
        "key:reports/100%25 done.pdf",
        ErrorCode::NonCanonical.as_str(),
    );
    bad(
        b,
        "audit-raw-utf8",
        "Bytes >= 0x80 are escaped, even in valid UTF-8.",
        "signatures:vendor:k%251:%C3%A9",
        "signatures:vendor:k%251:\u{e9}",
        ErrorCode::NonCanonical.as_str(),
    );
    bad(
        b,
        "audit-capture-longer-than-value",
        "The stored bytes cannot be longer than the value they were taken from.",
        "request-length:7",
        "request-length:6",
        ErrorCode::InvalidField.as_str(),
    );
    bad(
        b,
        "audit-complete-capture-wrong-hash",
        "A capture as long as its value is the value: its SHA-256 must match.",
        "request:Y%80%00%2541%20",
        "request:Y%80%00%2541%1F",
        ErrorCode::InvalidField.as_str(),
    );
    bad(
        b,
        "audit-client-ip-uppercase",
        "IPv6 addresses are written in RFC 5952 form (lowercase).",
        "client-ip:2001:db8::42",
        "client-ip:2001:DB8::42",
        ErrorCode::NonCanonical.as_str(),
    );
    bad(
        b,
        "audit-client-ip-not-an-address",
        "client-ip must be an IP address.",
        "client-ip:2001:db8::42",
        "client-ip:localhost",
        ErrorCode::InvalidField.as_str(),
    );
    bad(
        b,
        "audit-v1-with-request-id",
        "request-id belongs to entry version 2; a version-1 entry has no such line.",
        "countersign/v2/audit-entry",
        "countersign/v1/audit-entry",
        ErrorCode::NonCanonical.as_str(),
    );
    bad(
        b,
        "audit-request-id-raw-space",
        "request-id is escaped free text like the others.",
        "request-id:4c1d",
        "request-id:4c 1d",
        ErrorCode::NonCanonical.as_str(),
    );
    bad(
        b,
        "audit-missing-length",
        "Every field is present, in order.",
        "signatures-length:",
        "signatures-size:",
        ErrorCode::NonCanonical.as_str(),
    );
}

/// Encryption at rest: round trips at the segment edges, both AEADs, and every kind
/// of tampering (each expected `stored_object_tampered`).
#[cfg(not(target_arch = "wasm32"))]
fn at_rest_vectors() -> Result<String, String> {
    use countersign_vectors::at_rest::{AtRestCase, AtRestFile, Mutation, complete, outcome};
    const SEG: u64 = 65_536;
    const NAME: &str = "7f3a9c0e5b2d4f6a8c1e3b5d7f9a0c2e";
    let case = |name: &str, description: &str, length: u64, aead: &str| AtRestCase {
        name: name.into(),
        description: description.into(),
        data_key_hex: hex(&[0x42; 32]),
        salt_hex: "000102030405060708090a0b0c0d0e0f".into(),
        aead: aead.into(),
        bucket: "patient-reports".into(),
        storage_name: NAME.into(),
        key: "org-1/Jane Doe/report 7.pdf".into(),
        plaintext_length: length,
        binding_sha256: String::new(),
        stored_hex: None,
        stored_sha256: String::new(),
        stored_length: 0,
        stored_head_hex: String::new(),
        stored_tail_hex: String::new(),
        mutation: None,
        expect: "ok".into(),
    };
    let gcm = "aes-256-gcm";
    let mut cases = vec![
        case(
            "empty",
            "An empty object: the header and one empty, last segment (a tag alone).",
            0,
            gcm,
        ),
        case("one-byte", "One byte: one last segment.", 1, gcm),
        case("short", "100 bytes, given in full.", 100, gcm),
        case(
            "segment-minus-one",
            "65,535 bytes: one last segment, not full.",
            SEG - 1,
            gcm,
        ),
        case(
            "one-segment",
            "Exactly 65,536 bytes: one full last segment, no empty segment after it.",
            SEG,
            gcm,
        ),
        case(
            "segment-plus-one",
            "65,537 bytes: a full segment, then a last segment of one byte.",
            SEG + 1,
            gcm,
        ),
        case(
            "three-segments",
            "196,608 bytes: three full segments, the third last.",
            3 * SEG,
            gcm,
        ),
        case(
            "chacha20-poly1305",
            "100 bytes under ChaCha20-Poly1305 (AEAD id 2).",
            100,
            "chacha20-poly1305",
        ),
    ];
    let base = case("", "", 3 * SEG, gcm);
    let tampered = |name: &str, description: &str, mutation: Mutation| AtRestCase {
        name: name.into(),
        description: description.into(),
        mutation: Some(mutation),
        expect: "stored_object_tampered".into(),
        ..base.clone()
    };
    let seg = 65_552;
    cases.extend([
        tampered(
            "flipped-header",
            "The salt's first byte flipped: every segment's associated data and key change.",
            Mutation::Flip { at: 8 },
        ),
        tampered(
            "flipped-ciphertext",
            "One ciphertext byte of segment 1 flipped.",
            Mutation::Flip { at: 24 + seg + 7 },
        ),
        tampered(
            "flipped-tag",
            "The last byte of segment 0's tag flipped.",
            Mutation::Flip { at: 24 + seg - 1 },
        ),
        tampered(
            "swapped-segments",
            "Segments 0 and 1 exchanged: each is opened with the other's index in its nonce.",
            Mutation::SwapSegments { a: 0, b: 1 },
        ),
        tampered(
            "reordered-last",
            "Segments 1 and 2 exchanged: the last flag no longer matches.",
            Mutation::SwapSegments { a: 1, b: 2 },
        ),
        tampered(
            "truncated-at-segment",
            "The last segment dropped.",
            Mutation::Truncate {
                length: 24 + 2 * seg,
            },
        ),
        tampered(
            "truncated-mid-segment",
            "Cut inside the last segment.",
            Mutation::Truncate {
                length: 24 + 2 * seg + 100,
            },
        ),
        tampered(
            "extended",
            "One byte appended after the last segment.",
            Mutation::Append { hex: "00".into() },
        ),
        tampered(
            "moved",
            "The honest bytes opened as another storage name's object.",
            Mutation::MoveTo {
                storage_name: "00000000000000000000000000000000".into(),
            },
        ),
    ]);
    let cases = cases
        .into_iter()
        .map(complete)
        .collect::<Result<Vec<_>, _>>()?;
    for c in &cases {
        let got = outcome(c)?;
        if got != c.expect {
            return Err(format!("case {}: expected {}, got {got}", c.name, c.expect));
        }
    }
    let file = AtRestFile {
        description: "Encryption at rest, format v1: stored bytes of fixed plaintexts (byte i is i mod 251) and tamperings that must be refused.".into(),
        cases,
    };
    serde_json::to_string_pretty(&file)
        .map(|j| j + "\n")
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: generate-vectors <output dir>");
        return ExitCode::from(2);
    };
    let w = World::new();
    let mut b = Builder {
        cases: Vec::new(),
        failures: Vec::new(),
    };
    let mut files = Vec::new();
    requests(&w, &mut b);
    files.push(("requests", "Canonical request encoding: every field's edges, non-canonical forms, the time window and the audience.", b.take()));
    signatures(&w, &mut b);
    files.push(("signatures", "Signatures and policies: thresholds, duplicate signers, unknown keys, roles, key windows, Ed25519 edge cases.", b.take()));
    receipts(&w, &mut b);
    files.push((
        "receipts",
        "The gatekeeper's receipts (countersignatures).",
        b.take(),
    ));
    manifests(&w, &mut b);
    files.push((
        "manifests",
        "Signed object manifests and the bodies they vouch for.",
        b.take(),
    ));
    listings(&w, &mut b);
    files.push((
        "listings",
        "Signed LIST pages and the LIST requests they answer.",
        b.take(),
    ));
    audit_entries(&mut b);
    files.push((
        "audit-entries",
        "Audit entries: exact bytes in, exact bytes out, whatever the client sent.",
        b.take(),
    ));
    let tlog = match tlog_cases() {
        Ok(cases) => TlogVectorFile {
            description: "The audit log as a transparency log: RFC 6962 tree heads and proofs, C2SP checkpoints and cosignatures, tlog-tiles paths and entry bundles, answers of the proof endpoint.".into(),
            cases,
        },
        Err(e) => {
            b.failures.push(e);
            TlogVectorFile { description: String::new(), cases: Vec::new() }
        }
    };
    #[cfg(not(target_arch = "wasm32"))]
    match at_rest_vectors() {
        Ok(json) => {
            let path = std::path::Path::new(&dir).join("at-rest.json");
            if let Err(e) = std::fs::write(&path, json) {
                eprintln!("cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        Err(e) => b.failures.push(format!("at-rest: {e}")),
    }
    if !b.failures.is_empty() {
        for f in &b.failures {
            eprintln!("{f}");
        }
        return ExitCode::FAILURE;
    }
    for (name, description, cases) in files {
        let file = VectorFile {
            description: description.into(),
            cases,
        };
        let json = match serde_json::to_string_pretty(&file) {
            Ok(j) => j + "\n",
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let path = std::path::Path::new(&dir).join(format!("{name}.json"));
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let path = std::path::Path::new(&dir).join("tlog.json");
    let written = serde_json::to_string_pretty(&tlog)
        .map_err(|e| e.to_string())
        .and_then(|j| {
            std::fs::write(&path, j + "\n")
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        });
    if let Err(e) = written {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The transparency-log vectors (`tlog.json`): every case is replayed before it is
/// written, and an `ok` case pins its outputs.
fn tlog_cases() -> Result<Vec<TlogCase>, String> {
    use countersign_core::merkle::{MemoryTree, leaf_hash};
    use countersign_core::note::{Checkpoint, NoteSigner, SignedNote};
    use countersign_core::tiles::encode_bundle;

    let entries: Vec<Vec<u8>> = (0..300u32)
        .map(|i| format!("entry {i}\n").into_bytes())
        .collect();
    let mem = MemoryTree::from_leaves(entries.iter().map(|e| leaf_hash(e)).collect());
    let root = |n: u64| hex(&mem.root(n).unwrap());
    let proof = |v: Vec<[u8; 32]>| v.iter().map(|h| hex(h)).collect::<Vec<_>>();
    let mut cases = Vec::new();
    let mut add = |name: &str,
                   description: &str,
                   kind: TlogKind,
                   expect: &str,
                   fill: &dyn Fn(&mut TlogCase)| {
        let mut c = TlogCase {
            name: name.into(),
            description: description.into(),
            kind,
            expect: expect.into(),
            ..TlogCase::default()
        };
        fill(&mut c);
        cases.push(c);
    };

    for n in [0u64, 1, 2, 7, 256, 300] {
        add(
            &format!("tree_head_{n}"),
            &format!(
                "The tree head of {n} entries (`entry <i>\\n`): leaf = SHA-256(0x00 || bytes), node = SHA-256(0x01 || left || right); the empty tree is SHA-256 of nothing."
            ),
            TlogKind::TreeHead,
            "ok",
            &|c| {
                c.entries_hex = entries[..n as usize].iter().map(|e| hex(e)).collect();
                c.root_hex = Some(root(n));
            },
        );
    }
    for (i, n) in [(0u64, 1u64), (0, 7), (6, 7), (4, 7), (255, 256), (257, 300)] {
        add(
            &format!("inclusion_{i}_of_{n}"),
            "An RFC 6962 audit path, leaf side first.",
            TlogKind::Inclusion,
            "ok",
            &|c| {
                c.index = Some(i);
                c.size = Some(n);
                c.leaf_hex = Some(hex(&leaf_hash(&entries[i as usize])));
                c.proof_hex = proof(mem.inclusion_proof(i, n).unwrap());
                c.root_hex = Some(root(n));
            },
        );
    }
    let good_inclusion = |c: &mut TlogCase| {
        c.index = Some(4);
        c.size = Some(7);
        c.leaf_hex = Some(hex(&leaf_hash(&entries[4])));
        c.proof_hex = proof(mem.inclusion_proof(4, 7).unwrap());
        c.root_hex = Some(root(7));
    };
    add(
        "inclusion_rewritten_entry",
        "The entry was changed after it was logged: its leaf hash no longer leads to the root.",
        TlogKind::Inclusion,
        "audit_chain_broken",
        &|c| {
            good_inclusion(c);
            c.leaf_hex = Some(hex(&leaf_hash(b"entry 4 rewritten\n")));
        },
    );
    add(
        "inclusion_tampered_proof",
        "One proof hash has a flipped bit.",
        TlogKind::Inclusion,
        "audit_chain_broken",
        &|c| {
            good_inclusion(c);
            c.proof_hex[1] = hex(&[0x5a; 32]);
        },
    );
    add(
        "inclusion_extra_hash",
        "A proof with one hash too many.",
        TlogKind::Inclusion,
        "audit_chain_broken",
        &|c| {
            good_inclusion(c);
            c.proof_hex.push(hex(&[1; 32]));
        },
    );
    add(
        "inclusion_short_proof",
        "A proof with one hash too few.",
        TlogKind::Inclusion,
        "audit_chain_broken",
        &|c| {
            good_inclusion(c);
            c.proof_hex.pop();
        },
    );
    add(
        "inclusion_index_past_size",
        "Leaf 7 is not in a tree of 7.",
        TlogKind::Inclusion,
        "audit_chain_broken",
        &|c| {
            good_inclusion(c);
            c.index = Some(7);
        },
    );
    for (m, n) in [
        (1u64, 7u64),
        (3, 7),
        (4, 7),
        (7, 7),
        (0, 300),
        (256, 300),
        (299, 300),
    ] {
        add(
            &format!("consistency_{m}_to_{n}"),
            "An RFC 6962 consistency proof: the newer tree extends the older one.",
            TlogKind::Consistency,
            "ok",
            &|c| {
                c.old_size = Some(m);
                c.size = Some(n);
                c.old_root_hex = Some(root(m));
                c.root_hex = Some(root(n));
                c.proof_hex = proof(mem.consistency_proof(m, n).unwrap());
            },
        );
    }
    let good_consistency = |c: &mut TlogCase| {
        c.old_size = Some(3);
        c.size = Some(7);
        c.old_root_hex = Some(root(3));
        c.root_hex = Some(root(7));
        c.proof_hex = proof(mem.consistency_proof(3, 7).unwrap());
    };
    let forged = MemoryTree::from_leaves(
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                if i == 1 {
                    leaf_hash(b"entry 1 rewritten\n")
                } else {
                    leaf_hash(e)
                }
            })
            .collect(),
    );
    add(
        "consistency_rewritten_history",
        "The newer tree rewrote entry 1, which the older checkpoint covers: no proof can join them.",
        TlogKind::Consistency,
        "audit_chain_broken",
        &|c| {
            good_consistency(c);
            c.root_hex = Some(hex(&forged.root(7).unwrap()));
            c.proof_hex = proof(forged.consistency_proof(3, 7).unwrap());
        },
    );
    add(
        "consistency_rollback",
        "A tree smaller than the last checkpoint (a database restored from an older backup, or truncated).",
        TlogKind::Consistency,
        "audit_chain_broken",
        &|c| {
            c.old_size = Some(7);
            c.size = Some(3);
            c.old_root_hex = Some(root(7));
            c.root_hex = Some(root(3));
        },
    );
    add(
        "consistency_fork_same_size",
        "Two different trees of the same size (a split view).",
        TlogKind::Consistency,
        "audit_chain_broken",
        &|c| {
            c.old_size = Some(7);
            c.size = Some(7);
            c.old_root_hex = Some(root(7));
            c.root_hex = Some(hex(&forged.root(7).unwrap()));
        },
    );
    add(
        "consistency_tampered_proof",
        "One proof hash is changed.",
        TlogKind::Consistency,
        "audit_chain_broken",
        &|c| {
            good_consistency(c);
            c.proof_hex[0] = hex(&[0x11; 32]);
        },
    );

    // Checkpoints: a log key and a witness key from fixed seeds.
    let origin = "gk.acme/audit";
    let log = NoteSigner::ed25519(origin, SigningKey::from_bytes(&[0x71; 32]))
        .map_err(|e| e.to_string())?;
    let witness = NoteSigner::cosigner("witness.example/w1", SigningKey::from_bytes(&[0x72; 32]))
        .map_err(|e| e.to_string())?;
    let other = NoteSigner::ed25519(origin, SigningKey::from_bytes(&[0x73; 32]))
        .map_err(|e| e.to_string())?;
    let cp = Checkpoint::new(origin, 300, mem.root(300).unwrap(), Vec::new())
        .map_err(|e| e.to_string())?;
    let signed = SignedNote::sign(cp.body(), &[&log]).map_err(|e| e.to_string())?;
    let mut cosigned = signed.clone();
    cosigned
        .add_signature(
            witness
                .cosign(cosigned.text(), T)
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
    let checkpoint = |c: &mut TlogCase, note: String, keys: Vec<String>| {
        c.note = Some(note);
        c.origin = Some(origin.into());
        c.verifier_keys = keys;
        c.size = Some(300);
        c.root_hex = Some(root(300));
    };
    add(
        "checkpoint_signed",
        "A C2SP checkpoint (origin, size, base64 root) signed as a signed note with the log's Ed25519 key (type 0x01).",
        TlogKind::Checkpoint,
        "ok",
        &|c| {
            checkpoint(c, signed.encode(), vec![log.verifier_key()]);
        },
    );
    add(
        "checkpoint_cosigned",
        "The same checkpoint with a tlog-cosignature/v1 (type 0x04, timestamped) of a witness: both verify.",
        TlogKind::Checkpoint,
        "ok",
        &|c| {
            checkpoint(
                c,
                cosigned.encode(),
                vec![log.verifier_key(), witness.verifier_key()],
            );
            c.cosignature_times = vec![T];
        },
    );
    add(
        "checkpoint_unknown_extra_signature",
        "A signature of an unknown key is ignored.",
        TlogKind::Checkpoint,
        "ok",
        &|c| {
            let mut n = signed.clone();
            n.add_signature(other.sign_text(n.text()).unwrap()).unwrap();
            checkpoint(c, n.encode(), vec![log.verifier_key()]);
        },
    );
    add(
        "checkpoint_other_log",
        "The checkpoint is of another origin than the verifier expects.",
        TlogKind::Checkpoint,
        "wrong_audience",
        &|c| {
            checkpoint(c, signed.encode(), vec![log.verifier_key()]);
            c.origin = Some("gk.other/audit".into());
        },
    );
    add(
        "checkpoint_forged_size",
        "The size line was changed after signing.",
        TlogKind::Checkpoint,
        "bad_signature",
        &|c| {
            checkpoint(
                c,
                signed.encode().replacen("\n300\n", "\n301\n", 1),
                vec![log.verifier_key()],
            );
        },
    );
    add(
        "checkpoint_only_unknown_key",
        "Signed by another key of the same name (another key id): no known signature.",
        TlogKind::Checkpoint,
        "unknown_key",
        &|c| {
            checkpoint(
                c,
                SignedNote::sign(cp.body(), &[&other]).unwrap().encode(),
                vec![log.verifier_key()],
            );
        },
    );
    add(
        "checkpoint_forged_cosignature_time",
        "The cosignature's time was changed: the time is signed.",
        TlogKind::Checkpoint,
        "bad_signature",
        &|c| {
            let mut n = cosigned.clone();
            let mut sig = n.signatures()[1].clone();
            sig.bytes[11] ^= 1;
            n = SignedNote::parse(
                n.encode()
                    .replace(&n.signatures()[1].line(), &sig.line())
                    .as_bytes(),
            )
            .unwrap();
            checkpoint(
                c,
                n.encode(),
                vec![log.verifier_key(), witness.verifier_key()],
            );
        },
    );
    add(
        "checkpoint_no_blank_line",
        "A note without the blank line before its signatures.",
        TlogKind::Checkpoint,
        "malformed",
        &|c| {
            checkpoint(
                c,
                signed.encode().replacen("\n\n", "\n", 1),
                vec![log.verifier_key()],
            );
        },
    );
    add(
        "checkpoint_size_leading_zero",
        "The size `0300`: one encoding per number.",
        TlogKind::Checkpoint,
        "non_canonical",
        &|c| {
            let text = cp.body().replacen("\n300\n", "\n0300\n", 1);
            let n = format!("{text}\n{}", log.sign_text(&text).unwrap().line());
            checkpoint(c, n, vec![log.verifier_key()]);
        },
    );

    // Answers of the proof endpoint, for the receipt of leaf 7, against the checkpoint
    // of 300 entries above.
    let answer = |index: u64, size: u64, path: &[[u8; 32]], note: &str| {
        countersign_core::logged::LogProofAnswer {
            index,
            size,
            path: path.to_vec(),
            note: note.as_bytes().to_vec(),
        }
        .encode()
    };
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    let path7 = mem.inclusion_proof(7, 300).unwrap();
    let good = text(answer(7, 300, &path7, &signed.encode()));
    let log_proof = |c: &mut TlogCase, answer: String| {
        c.answer = Some(answer);
        c.origin = Some(origin.into());
        c.verifier_keys = vec![log.verifier_key()];
        c.index = Some(7);
        c.leaf_hex = Some(hex(&leaf_hash(&entries[7])));
        c.size = Some(300);
        c.root_hex = Some(root(300));
    };
    let mut flipped = path7.clone();
    flipped[0][0] ^= 1;
    let other_signed = SignedNote::sign(cp.body(), &[&other])
        .map_err(|e| e.to_string())?
        .encode();
    for (name, description, expect, a) in [
        (
            "log_proof",
            "A proof endpoint answer (countersign/v1/log-proof: index, size, the audit path as unpadded base64url, then the signed checkpoint) that proves leaf 7.",
            "ok",
            good.clone(),
        ),
        (
            "log_proof_wrong_hash",
            "A bit of the path's first hash flipped.",
            "audit_chain_broken",
            text(answer(7, 300, &flipped, &signed.encode())),
        ),
        (
            "log_proof_short_path",
            "The path without its last hash.",
            "audit_chain_broken",
            text(answer(7, 300, &path7[..path7.len() - 1], &signed.encode())),
        ),
        (
            "log_proof_other_size",
            "The path to the tree of 299 entries, said to be for 299, with the checkpoint of 300.",
            "invalid_field",
            text(answer(
                7,
                299,
                &mem.inclusion_proof(7, 299).unwrap(),
                &signed.encode(),
            )),
        ),
        (
            "log_proof_other_index",
            "A proof of leaf 8 for the receipt of leaf 7.",
            "invalid_field",
            text(answer(
                8,
                300,
                &mem.inclusion_proof(8, 300).unwrap(),
                &signed.encode(),
            )),
        ),
        (
            "log_proof_other_key",
            "The checkpoint signed by another key under the log's name.",
            "unknown_key",
            text(answer(7, 300, &path7, &other_signed)),
        ),
        (
            "log_proof_no_checkpoint",
            "The document alone, without the note.",
            "malformed",
            text(answer(7, 300, &path7, "")),
        ),
        (
            "log_proof_unsigned_checkpoint",
            "The checkpoint's text without signature lines.",
            "malformed",
            text(answer(7, 300, &path7, &cp.body())),
        ),
        (
            "log_proof_index_leading_zero",
            "The index `07`: one encoding per number.",
            "non_canonical",
            good.replacen("index:7\n", "index:07\n", 1),
        ),
        (
            "log_proof_version_2",
            "A log-proof document of a version this one does not speak.",
            "unsupported_version",
            good.replacen("countersign/v1/", "countersign/v2/", 1),
        ),
        (
            "log_proof_index_not_below_size",
            "Index 300 in a tree of 300 entries.",
            "invalid_field",
            text(answer(300, 300, &[], &signed.encode())),
        ),
        (
            "log_proof_partial_hash",
            "A path of 33 bytes: not whole hashes.",
            "invalid_field",
            format!(
                "countersign/v1/log-proof\nindex:7\nsize:300\npath:{}\n{}",
                b64(&[7; 33]),
                signed.encode()
            ),
        ),
    ] {
        add(name, description, TlogKind::LogProof, expect, &|c| {
            log_proof(c, a.clone())
        });
    }

    for (path, tile) in [
        ("tile/0/000", [0i64, 0, 256]),
        ("tile/0/001.p/44", [0, 1, 44]),
        ("tile/2/x001/x234/067", [2, 1_234_067, 256]),
        ("tile/entries/x002/005.p/255", [-1, 2005, 255]),
    ] {
        add(
            &format!("tile_path_{}", path.replace(['/', '.'], "_")),
            "A tlog-tiles path: level, index in 3-digit elements (x on all but the last), optional partial width.",
            TlogKind::TilePath,
            "ok",
            &|c| {
                c.path = Some(path.into());
                c.tile = Some(tile);
            },
        );
    }
    for (name, path) in [
        ("tile_path_unpadded", "tile/0/1"),
        ("tile_path_leading_x000", "tile/0/x000/001"),
        ("tile_path_width_256", "tile/0/000.p/256"),
        ("tile_path_width_leading_zero", "tile/0/000.p/05"),
        ("tile_path_level_8", "tile/8/000"),
        ("tile_path_last_element_with_x", "tile/0/x001"),
    ] {
        add(
            name,
            "Not the one encoding of a tile path.",
            TlogKind::TilePath,
            "malformed",
            &|c| c.path = Some(path.into()),
        );
    }
    let bundle_entries: Vec<&[u8]> = vec![&entries[0], b"", &entries[299]];
    let bundle = encode_bundle(bundle_entries.iter().copied()).map_err(|e| e.to_string())?;
    add(
        "entry_bundle",
        "An entry bundle: each entry is a big-endian uint16 length, then its bytes.",
        TlogKind::EntryBundle,
        "ok",
        &|c| {
            c.bundle_hex = Some(hex(&bundle));
            c.entries_hex = bundle_entries.iter().map(|e| hex(e)).collect();
        },
    );
    add(
        "entry_bundle_truncated",
        "The bundle ends inside its last entry.",
        TlogKind::EntryBundle,
        "malformed",
        &|c| {
            c.bundle_hex = Some(hex(&bundle[..bundle.len() - 1]));
        },
    );

    for c in &cases {
        let got = tlog_outcome(c)?;
        if got != c.expect {
            return Err(format!(
                "tlog case {}: expected {}, got {got}",
                c.name, c.expect
            ));
        }
    }
    Ok(cases)
}
