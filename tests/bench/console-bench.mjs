// Audit console benchmark (issues 10 and 12), in headless Chromium against a real
// gatekeeper on 127.0.0.1:
//
//   (a) `LogView.proveEntries` on a page of 100 rows (an admin-signed audit search
//       page from the middle of the log): cold (a fresh LogView: every hash tile
//       fetched) and warm (the same LogView again: tiles cached);
//   (b) `verifyLog` of the whole log, entries/s, side by side with the native
//       `countersign audit verify --url` on the same log and gatekeeper, rounds
//       interleaved.
//
//   (c) the console's first page: a fresh `LogView.open`, the first signed search page
//       (100 rows, no filter) and `proveEntries` on it, as www/audit.js does on load.
//
//   scripts/build-npm.sh
//   node tests/bench/console-bench.mjs [--entries N] [--rounds R] [--fill ledger]
//
// The log (default 100,000 entries) is filled with unsigned GETs, each refused and
// logged, 32 at a time; with `--fill ledger`, before the gatekeeper starts, by the
// `fill_log` example (the same entries appended through the ledger from 64 tasks, then
// integrated: a minute for 1,000,000 instead of ten; it is built in release mode). The admin flavor comes from packages/client/admin; the
// gatekeeper and the CLI are the Cargo `COUNTERSIGN_TEST_GATEKEEPER_PROFILE` builds
// (`debug` unless set; the CLI's `release` build is used when it exists).
import { createServer } from "node:http";
import { existsSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { execFileSync, spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join, resolve, dirname, extname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { freePort, gatekeeperProfile, publicKeyOfSeed, startGatekeeper, targetDir, writeGatekeeperConfig } from "../support/servers.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const entries = arg("--entries", 100_000);
const rounds = arg("--rounds", 3);
const fillWithLedger = args.includes("--fill") && args[args.indexOf("--fill") + 1] === "ledger";
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const admin = join(repo, "packages/client/admin");
if (!existsSync(join(admin, "countersign_bg.wasm"))) throw new Error("run scripts/build-npm.sh first");
const cliRelease = join(targetDir(), "release", "countersign");

// The bench page and the admin flavor, served from their own origin.
const pagePort = await freePort();
const page = `<!doctype html><script type="module">
import init, * as cs from "/admin/countersign.js";
await init();
const der = Uint8Array.from(atob(new URLSearchParams(location.search).get("pkcs8")), (c) => c.charCodeAt(0));
const key = await crypto.subtle.importKey("pkcs8", der, "Ed25519", false, ["sign"]);
const sign = async (m) => new Uint8Array(await crypto.subtle.sign("Ed25519", key, m));
window.bench = {
  async search(o, query) {
    const req = new cs.AuditRequest({ gatekeeperId: o.gatekeeperId, subject: "console-bench", keyId: "bench-admin", action: "read" });
    const r = await fetch(o.gatekeeperUrl + "/v1/audit/search?" + query, { headers: {
      "Countersign-Request": req.requestHeader, "Countersign-Signature": req.signatureHeader(await sign(req.signingMessage)) } });
    return (await r.json()).entries.map((e) => e.entry);
  },
  async prove(o, rows, warmRuns) {
    const view = await cs.LogView.open(o);
    let t = performance.now();
    const checks = await view.proveEntries(rows);
    const cold = performance.now() - t;
    const warm = [];
    for (let i = 0; i < warmRuns; i++) {
      t = performance.now();
      await view.proveEntries(rows);
      warm.push(performance.now() - t);
    }
    return { cold, warm, verified: checks.filter((c) => c.status === "verified").length, treeSize: view.treeSize };
  },
  async firstPage(o) {
    const t0 = performance.now();
    const view = await cs.LogView.open(o);
    const t1 = performance.now();
    const rows = await this.search(o, "limit=100");
    const t2 = performance.now();
    const checks = await view.proveEntries(rows);
    const t3 = performance.now();
    view.free();
    return { total: t3 - t0, open: t1 - t0, search: t2 - t1, prove: t3 - t2, verified: checks.filter((c) => c.status === "verified").length, rows: rows.length };
  },
  async verify(o) {
    const r = await cs.verifyLog({ ...o, subject: "console-bench", keyId: "bench-admin", sign });
    return { entries: r.entries, bundles: r.bundles, millis: r.millis };
  },
};
window.ready = true;
</script>`;
const server = createServer((req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  if (path === "/") return res.writeHead(200, { "content-type": "text/html" }).end(page);
  if (path.startsWith("/admin/")) {
    const file = join(admin, path.slice("/admin/".length));
    if (existsSync(file)) {
      const type = { ".js": "text/javascript", ".wasm": "application/wasm" }[extname(file)] ?? "application/octet-stream";
      return res.writeHead(200, { "content-type": type }).end(readFileSync(file));
    }
  }
  res.writeHead(404).end();
});
await new Promise((r) => server.listen(pagePort, "127.0.0.1", r));

const seed = new Uint8Array(32).fill(31);
const adminPublic = publicKeyOfSeed(seed);
const gkConfig = `
[[keys]]
key_id = "bench-vendor"
role = "vendor"
public_key = "${publicKeyOfSeed(new Uint8Array(32).fill(32))}"

[[keys]]
key_id = "bench-admin"
role = "customer-admin"
public_key = "${adminPublic}"

[buckets.reports]
store = "local"
path = "buckets/reports"

[cors]
origins = ["http://127.0.0.1:${pagePort}"]
`;
let filledBefore = false;
let dir;
if (fillWithLedger) {
  dir = mkdtempSync(join(tmpdir(), "countersign-console-bench-gk-"));
  const file = writeGatekeeperConfig({ id: "gk.bench", config: gkConfig, dir });
  const t = performance.now();
  const out = execFileSync("cargo", ["run", "--quiet", "--release", "-p", "countersign-gatekeeper", "--example", "fill_log", "--", file, String(entries)], { cwd: repo, stdio: ["ignore", "pipe", "inherit"] });
  console.log(`fill_log: ${out.toString().trim()} (${((performance.now() - t) / 1000).toFixed(1)} s with the build)`);
  filledBefore = true;
}
const gk = await startGatekeeper({ id: "gk.bench", config: gkConfig, dir });
const work = mkdtempSync(join(tmpdir(), "countersign-console-bench-"));
let browser;
try {
  // Fill the log.
  let t = performance.now();
  let next = filledBefore ? entries : 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < entries) {
        const i = next++;
        await (await fetch(`${gk.url}/v1/objects/reports/org-${i % 97}/patient-${i}.pdf`)).arrayBuffer();
      }
    }),
  );
  for (;;) {
    const note = await (await fetch(`${gk.url}/v1/log/checkpoint`)).text();
    if (Number(note.split("\n")[1]) >= entries) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  console.log(`filled ${entries} entries in ${((performance.now() - t) / 1000).toFixed(1)} s (gatekeeper: ${gatekeeperProfile} build)`);

  // The native verifier's files: the admin's secret key, the gatekeeper's keys.
  const adminKey = join(work, "admin.key");
  const secret = Buffer.from(seed).toString("base64url");
  writeFileSync(adminKey, JSON.stringify({ format: "countersign-secret-key/v1", key_id: "bench-admin", role: "customer-admin", not_before: null, not_after: null, public_key: adminPublic, secret_key: secret }), { mode: 0o600 });
  const gkKeys = join(work, "gatekeeper-keys.json");
  writeFileSync(gkKeys, await (await fetch(`${gk.url}/v1/keys`)).text());

  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), Buffer.from(seed)]).toString("base64");
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium" });
  const tab = await browser.newPage();
  await tab.goto(`http://127.0.0.1:${pagePort}/?pkcs8=${encodeURIComponent(pkcs8)}`);
  await tab.waitForFunction(() => window.ready === true);
  const options = { gatekeeperUrl: gk.url, gatekeeperId: gk.id, keys: [{ keyId: gk.key.keyId, role: "gatekeeper", publicKey: gk.key.publicKey }] };

  // (a) proveEntries, a page of 100 rows from the middle of the log.
  const rows = await tab.evaluate(([o, q]) => window.bench.search(o, q), [options, `after_seq=${Math.floor(entries / 2)}&limit=100`]);
  const colds = [];
  let warms = [];
  for (let r = 0; r < rounds; r++) {
    const p = await tab.evaluate(([o, rows]) => window.bench.prove(o, rows, 20), [options, rows]);
    if (p.verified !== rows.length) throw new Error(`only ${p.verified} of ${rows.length} rows verified`);
    colds.push(p.cold);
    warms = warms.concat(p.warm);
  }
  console.log(`(a) proveEntries, page of ${rows.length} rows, log of ${entries} entries: cold ${median(colds).toFixed(1)} ms, warm ${median(warms).toFixed(1)} ms (medians of ${rounds} and ${warms.length} runs)`);

  // (c) The console's first page, from a fresh LogView each round.
  const firsts = [];
  for (let r = 0; r < rounds; r++) {
    const f = await tab.evaluate((o) => window.bench.firstPage(o), options);
    if (f.verified !== f.rows) throw new Error(`only ${f.verified} of ${f.rows} first-page rows verified`);
    firsts.push(f);
    console.log(`    round ${r + 1}: first page ${f.total.toFixed(1)} ms (open ${f.open.toFixed(1)}, search ${f.search.toFixed(1)}, prove ${f.rows} rows ${f.prove.toFixed(1)})`);
  }
  const mid = [...firsts].sort((a, b) => a.total - b.total)[firsts.length >> 1];
  console.log(`(c) first proven page of ${mid.rows} rows, log of ${entries} entries: ${mid.total.toFixed(1)} ms (open ${mid.open.toFixed(1)}, search ${mid.search.toFixed(1)}, prove ${mid.prove.toFixed(1)}; median of ${rounds})`);

  // (b) verifyLog vs the native CLI, interleaved rounds.
  const cli = existsSync(cliRelease) ? cliRelease : join(targetDir(), gatekeeperProfile, "countersign");
  const wasm = [];
  const native = [];
  for (let r = 0; r < rounds; r++) {
    const v = await tab.evaluate((o) => window.bench.verify(o), options);
    if (v.entries < entries) throw new Error(`verifyLog verified ${v.entries} entries`);
    wasm.push((v.entries / v.millis) * 1000);
    console.log(`    round ${r + 1}: verifyLog ${v.entries} entries, ${v.bundles} bundles in ${(v.millis / 1000).toFixed(1)} s`);
    t = performance.now();
    // Not spawnSync: this process must keep reading the gatekeeper's log pipe, or the
    // gatekeeper blocks writing its request log lines.
    const run = await new Promise((resolve, reject) => {
      const child = spawn(cli, ["audit", "verify", "--url", gk.url, "--admin-key", adminKey, "--gatekeeper-key", gkKeys, "--subject", "console-bench"]);
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.on("error", reject);
      child.on("exit", (status) => resolve({ status, stdout, stderr }));
    });
    const secs = (performance.now() - t) / 1000;
    if (run.status !== 0) throw new Error(`countersign audit verify: ${run.stderr}`);
    const n = Number(/OK: (\d+) entries/.exec(run.stdout)?.[1]);
    native.push(n / secs);
    console.log(`    round ${r + 1}: countersign audit verify --url ${n} entries in ${secs.toFixed(1)} s`);
  }
  const w = median(wasm);
  const n = median(native);
  console.log(`(b) whole-log verification, ${entries}+ entries: verifyLog in Chromium ${w.toFixed(0)} entries/s, native countersign audit verify --url ${n.toFixed(0)} entries/s (${cli.includes("/release/") ? "release" : gatekeeperProfile} build); ratio wasm/native ${(w / n).toFixed(2)} (medians of ${rounds} rounds)`);
} finally {
  await browser?.close();
  server.close();
  await gk.stop();
  rmSync(work, { recursive: true, force: true });
}
