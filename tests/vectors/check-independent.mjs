// An independent check of the conformance vectors, sharing no code with the Rust
// implementation: Node's own Ed25519 (OpenSSL) and a from-the-spec JavaScript
// rendering of the canonical request and of the signing message.
//
//   node tests/vectors/check-independent.mjs
//
// For every case expected "ok" it checks that
//   - a request case's canonical bytes equal the spec's rendering of its fields;
//   - every signature's message is "countersign/v1/signature\nrole:R\nkey-id:K\n"
//     followed by the signed document, and verifies under Node's Ed25519;
//   - a manifest's embedded PUT request signatures verify too.
import { createPublicKey, verify } from "node:crypto";
import { readFileSync } from "node:fs";

const dir = new URL(".", import.meta.url);
const files = ["requests", "signatures", "receipts", "manifests"];
const hex = (h) => Buffer.from(h, "hex");
const b64url = (s) => Buffer.from(s, "base64url");
let checked = 0;
const fail = (msg) => {
  console.error(`FAIL ${msg}`);
  process.exitCode = 1;
};

function render(f) {
  return Buffer.from(
    "countersign/v1/request\n" +
      `audience:${f.audience}\nmethod:${f.method}\nbucket:${f.bucket}\nkey:${f.key}\n` +
      `range:${f.range}\ncontent-type:${f.content_type}\nbody-sha256:${f.body_sha256}\n` +
      `body-length:${f.body_length}\nsubject:${f.subject}\nissued-at:${f.issued_at}\n` +
      `expires-at:${f.expires_at}\nnonce:${f.nonce}\n`,
    "utf8",
  );
}

function message(role, keyId, doc) {
  return Buffer.concat([Buffer.from(`countersign/v1/signature\nrole:${role}\nkey-id:${keyId}\n`), doc]);
}

function ed25519(publicKey, msg, sig) {
  const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: publicKey.toString("base64url") }, format: "jwk" });
  return verify(null, msg, key, sig);
}

for (const name of files) {
  const { cases } = JSON.parse(readFileSync(new URL(`${name}.json`, dir), "utf8"));
  for (const c of cases.filter((c) => c.expect === "ok")) {
    const doc = hex(c.canonical_hex);
    if (c.kind === "request" && !render(c.request).equals(doc)) fail(`${name}/${c.name}: canonical bytes differ from the spec rendering`);
    for (const s of c.signatures) {
      const msg = message(s.role, s.key_id, doc);
      if (!msg.equals(hex(s.message_hex))) fail(`${name}/${c.name}: message_hex differs from the spec's signing message`);
      const key = c.policy.keys.find((k) => k.key_id === s.key_id);
      if (!ed25519(hex(key.public_key_hex), msg, hex(s.signature_hex))) fail(`${name}/${c.name}: signature by ${s.key_id} does not verify`);
      checked++;
    }
    if (c.kind === "manifest") {
      const fields = Object.fromEntries(doc.toString("utf8").trimEnd().split("\n").slice(1).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1)]));
      const request = b64url(fields.request);
      for (const item of fields["request-signatures"].split(",")) {
        const [role, keyId, sig] = item.split(":");
        const key = c.policy.keys.find((k) => k.key_id === keyId);
        if (!ed25519(hex(key.public_key_hex), message(role, keyId, request), b64url(sig))) fail(`${name}/${c.name}: embedded signature by ${keyId} does not verify`);
        checked++;
      }
    }
  }
}
if (checked === 0) fail("no signatures checked");
console.log(`independent check: ${checked} signatures of "ok" vectors verified with Node's Ed25519${process.exitCode ? " (with failures)" : ""}`);
