// Seeds each fuzz target's corpus from the conformance vectors (ok and failing cases
// alike: both are interesting starting points).
//
//   node fuzz/seed-corpus.mjs
//
// Writes fuzz/corpus/<target>/<vector name>; the corpus is generated, not committed.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";

const root = new URL("..", import.meta.url);
const corpus = new URL("fuzz/corpus/", root);
const seeds = {};
const add = (target, name, bytes) => ((seeds[target] ??= new Map()).set(name, bytes));
const hex = (h) => Buffer.from(h, "hex");

for (const file of ["requests", "signatures", "receipts", "manifests", "listings", "audit-entries"]) {
  const { cases } = JSON.parse(readFileSync(new URL(`tests/vectors/${file}.json`, root), "utf8"));
  for (const c of cases) {
    const doc = hex(c.canonical_hex);
    const target = { request: "request_parse", receipt: "receipt_parse", manifest: "manifest_parse", listing: "listing_parse", audit_entry: "audit_entry" }[c.kind];
    add(target, c.name, doc);
    if (c.request_hex) add("request_parse", `${c.name}-request`, hex(c.request_hex));
    if (c.signatures.length) {
      const list = c.signatures.map((s) => `${s.role}:${s.key_id}:${hex(s.signature_hex).toString("base64url")}`).join(",");
      add("signature_list", c.name, Buffer.from(list));
    }
  }
}
let n = 0;
for (const [target, files] of Object.entries(seeds)) {
  const dir = new URL(`${target}/`, corpus);
  mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of files) {
    writeFileSync(new URL(name, dir), bytes);
    n++;
  }
}
console.log(`seeded ${n} inputs for ${Object.keys(seeds).length} targets`);
