// Browser benchmark of the wasm client (issue 5, item 6), in headless Chromium:
//
//   (a) Ed25519 signature checks per second: the client's strict verification
//       (countersign_core::PublicKey::verify_strict) vs WebCrypto
//       crypto.subtle.verify('Ed25519') vs @noble/ed25519, 64-byte messages;
//   (b) body verification throughput: SHA-256 over 1 MiB and 64 MiB, the client's
//       BodyDigest::of vs WebCrypto crypto.subtle.digest('SHA-256');
//   (c) the .wasm size, raw and gzipped;
//   and the answers of WebCrypto (and of "strict pre-checks in wasm, then WebCrypto")
//   on the Wycheproof and speccheck Ed25519 vectors, compared with ours.
//
//   node tests/bench/browser-bench.mjs [PKG_DIR] [--rounds N] [--scale X] [--json FILE]
//
// PKG_DIR (default: pkg) is a wasm-bindgen `--target web` package named `countersign`
// (countersign.js + countersign_bg.wasm). (a) and (b) need the exports
// `Ed25519PublicKey`, `verifyEd25519Strict` and `sha256`; without them only the
// baselines and (c) are measured. scripts/build-npm.sh builds the package with
// them. @noble/ed25519 comes from tests/bench/package.json
// (`npm install --prefix tests/bench`). Needs /usr/bin/chromium (or $CHROMIUM); the
// page is served from 127.0.0.1 on a free port and nothing else is contacted.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { extname, join, normalize, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");

// ---- arguments -------------------------------------------------------------------
const args = process.argv.slice(2);
let pkgDir = resolve(repo, "packages/client/pkg");
let rounds = 15;
let scale = 1;
let jsonOut = null;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--rounds") rounds = Number(args[++i]);
  else if (a === "--scale") scale = Number(args[++i]);
  else if (a === "--json") jsonOut = resolve(args[++i]);
  else if (a.startsWith("--")) throw new Error(`unknown option ${a}`);
  else pkgDir = resolve(a);
}
const wasmFile = join(pkgDir, "countersign_bg.wasm");
if (!existsSync(join(pkgDir, "countersign.js")) || !existsSync(wasmFile)) {
  console.error(`${pkgDir} has no countersign.js / countersign_bg.wasm (build it first)`);
  process.exit(2);
}
let nobleFile;
try {
  nobleFile = fileURLToPath(import.meta.resolve("@noble/ed25519"));
} catch {
  console.error("@noble/ed25519 is missing: npm install --prefix tests/bench");
  process.exit(2);
}

// ---- (c) size ----------------------------------------------------------------------
const wasmBytes = readFileSync(wasmFile);
// `gzip -9` as scripts/build-npm.sh reports it; zlib's level 9 if gzip is missing.
const gz = spawnSync("gzip", ["-9", "-c", wasmFile], { maxBuffer: 1 << 26 });
const size = { raw: wasmBytes.length, gzip: gz.status === 0 ? gz.stdout.length : gzipSync(wasmBytes, { level: 9 }).length };

// ---- server ------------------------------------------------------------------------
const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json", ".wasm": "application/wasm" };
const mounts = [
  ["/pkg/", pkgDir],
  ["/vectors/", join(repo, "tests/vectors/third_party")],
];
const files = {
  "/bench-page.mjs": join(here, "bench-page.mjs"),
  "/noble/index.js": nobleFile,
};
const page = `<!doctype html><meta charset="utf-8"><title>countersign bench</title><script type="module" src="/bench-page.mjs"></script>`;
const server = createServer(async (req, res) => {
  // Cross-origin isolation gives performance.now() its fine resolution.
  const headers = { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp", "cache-control": "no-store" };
  const path = decodeURIComponent(new URL(req.url, "http://127.0.0.1").pathname);
  if (path === "/") return res.writeHead(200, { ...headers, "content-type": types[".html"] }).end(page);
  let file = files[path];
  for (const [prefix, dir] of mounts) {
    if (!file && path.startsWith(prefix)) {
      const f = normalize(join(dir, path.slice(prefix.length)));
      if (f.startsWith(normalize(dir) + "/")) file = f;
    }
  }
  if (!file) return res.writeHead(404, headers).end();
  try {
    const body = await readFile(file);
    res.writeHead(200, { ...headers, "content-type": types[extname(file)] ?? "application/octet-stream" }).end(body);
  } catch {
    res.writeHead(404, headers).end();
  }
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const origin = `http://127.0.0.1:${server.address().port}`;

// ---- browser -----------------------------------------------------------------------
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const fmt = (x, d = 2) => x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
const out = { size, pkgDir };
try {
  const ctx = await browser.newContext();
  const tab = await ctx.newPage();
  // Only the bench server is reachable from the page.
  await ctx.route((url) => !url.href.startsWith(origin + "/"), (route) => route.abort());
  tab.on("pageerror", (e) => console.error("page error:", e.message));
  await tab.goto(`${origin}/`);
  await tab.waitForFunction(() => window.countersignBenchReady === true, null, { timeout: 60_000 });
  const env = await tab.evaluate(() => ({ ua: navigator.userAgent, hasExports: window.countersignBench.hasExports, hasStudyExports: window.countersignBench.hasStudyExports, isolated: self.crossOriginIsolated }));
  out.env = env;
  const browserVersion = browser.version();
  console.log(`Chromium ${browserVersion} (headless), cross-origin isolated: ${env.isolated}; ${rounds} interleaved rounds after 1 warm-up; medians`);
  console.log(`package: ${pkgDir}${env.hasExports ? "" : "  (no bench exports: wasm rows skipped)"}`);
  console.log("");

  // (c)
  console.log("## .wasm size");
  console.log("");
  console.log("| file | raw | gzip -9 | goal |");
  console.log("| --- | --- | --- | --- |");
  console.log(`| countersign_bg.wasm | ${size.raw.toLocaleString("en-US")} B (${fmt(size.raw / 1000, 1)} KB) | ${size.gzip.toLocaleString("en-US")} B (${fmt(size.gzip / 1000, 1)} KB) | ≤ 120 KB gzip: ${size.gzip <= 120_000 ? "met" : "NOT met"} |`);
  console.log("");

  // (a)
  const ed = await tab.evaluate(({ rounds, scale }) => window.countersignBench.ed25519Bench({ rounds, scale }), { rounds, scale });
  out.ed25519 = ed;
  const med = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  };
  const wcName = "WebCrypto Ed25519 (await each)";
  const edRows = ed.results.map((r) => ({ ...r, med: med(r.perOp), min: Math.min(...r.perOp), max: Math.max(...r.perOp) }));
  const wc = edRows.find((r) => r.name === wcName);
  console.log("## (a) Ed25519 verify, 64-byte messages");
  console.log("");
  // Ratios two ways: of the medians, and the median of per-round ratios (each round's
  // contenders ran back to back, so the latter cancels slow drifts in machine load).
  const paired = (r, base) => med(r.perOp.map((t, i) => base.perOp[i] / t));
  console.log("| verifier | µs / verify (median) | min–max over rounds | verifies / s | rate ÷ WebCrypto (await each) | same, median of per-round ratios | failures |");
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const r of edRows) {
    console.log(`| ${r.name} | ${fmt(r.med * 1e6)} | ${fmt(r.min * 1e6)}–${fmt(r.max * 1e6)} | ${fmt(1 / r.med, 0)} | ${fmt(wc.med / r.med, 3)} | ${fmt(paired(r, wc), 3)} | ${r.failures} |`);
  }
  console.log("");
  console.log(`tampered signature accepted? ${JSON.stringify(ed.sanityTamperedAccepted)}`);
  const wasmOnce = edRows.find((r) => r.name === "wasm strict (key parsed once)");
  if (wasmOnce) console.log(`goal (wasm strict ≥ WebCrypto rate): ratio ${fmt(wc.med / wasmOnce.med, 3)} (per-round ${fmt(paired(wasmOnce, wc), 3)}) → ${wc.med / wasmOnce.med >= 1 ? "met" : "NOT met"}`);
  console.log("");

  // (b)
  console.log("## (b) body verification, SHA-256");
  console.log("");
  console.log("| body | hasher | MiB/s (median) | ms per body (median) | min–max MiB/s | throughput ÷ WebCrypto (medians; per-round) |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  out.sha256 = [];
  for (const [bytes, iterations, r] of [[1 << 20, Math.max(1, Math.round(16 * scale)), rounds], [64 << 20, 1, Math.max(5, Math.min(rounds, 9))]]) {
    const sh = await tab.evaluate((a) => window.countersignBench.sha256Bench(a), { size: bytes, rounds: r, iterations });
    out.sha256.push(sh);
    if (sh.mismatch) console.log(`!! wasm and WebCrypto SHA-256 differ on ${bytes} bytes`);
    const rows = sh.results.map((x) => ({ ...x, med: med(x.perOp) }));
    const base = rows.find((x) => x.name.startsWith("WebCrypto"));
    for (const x of rows) {
      const mibs = (t) => bytes / (1 << 20) / t;
      const ratio = base.med / x.med;
      const pr = med(x.perOp.map((t, i) => base.perOp[i] / t));
      console.log(`| ${bytes >> 20} MiB | ${x.name} | ${fmt(mibs(x.med), 1)} | ${fmt(x.med * 1000)} | ${fmt(mibs(Math.max(...x.perOp)), 1)}–${fmt(mibs(Math.min(...x.perOp)), 1)} | ${fmt(ratio, 3)}; ${fmt(pr, 3)}${x === base ? "" : ratio >= 0.7 ? " (goal ≥ 0.70 met)" : " (goal ≥ 0.70 NOT met)"} |`);
    }
  }
  console.log("");

  // Agreement on the vector files.
  const answers = await tab.evaluate(() => window.countersignBench.vectorAnswers());
  out.vectors = answers;
  const b = (x) => (x === null ? "–" : x ? "accept" : "reject");
  const sets = ["wycheproof", "speccheck"];
  console.log("## Ed25519 vectors: WebCrypto vs ours");
  console.log("");
  console.log("| file | cases | ours ≠ expected | WebCrypto ≠ ours | (wasm pre-checks ∧ WebCrypto) ≠ ours | noble (zip215: false) ≠ ours |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const s of sets) {
    const cs = answers.filter((a) => a.set === s);
    const ne = (k) => (env.hasExports ? cs.filter((a) => a[k] !== null && a[k] !== a.ours).length : "–");
    const wrong = env.hasExports ? cs.filter((a) => a.expected !== "acceptable" && a.ours !== (a.expected === "valid")).length : "–";
    console.log(`| ${s} | ${cs.length} | ${wrong} | ${ne("webcrypto")} | ${env.hasStudyExports ? ne("combined") : "–"} | ${ne("noble")} |`);
  }
  console.log("");
  const interesting = answers.filter((a) => a.set === "speccheck" || (env.hasExports && (a.webcrypto !== a.ours || (a.combined != null && a.combined !== a.ours) || a.noble !== a.ours)));
  console.log("Cases where any verifier differs from ours, and all speccheck cases:");
  console.log("");
  console.log("| case | expected | ours | WebCrypto | pre-checks ∧ WebCrypto | noble | strict rules broken | note |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const a of interesting) {
    const label = a.set === "wycheproof" ? `wycheproof #${a.id} ${a.comment}` : `speccheck ${a.id}`;
    console.log(`| ${label} | ${a.expected} | ${b(a.ours)} | ${b(a.webcrypto)} | ${b(a.combined)} | ${b(a.noble)} | ${a.strictViolations ?? "–"} | ${a.webcryptoNote} |`);
  }
} finally {
  await browser.close();
  server.close();
}
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(out, null, 1));
