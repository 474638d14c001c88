// Audit console benchmark (issues 10 and 12): the console page itself (www/audit.*,
// served by a real gatekeeper at /audit/ on 127.0.0.1, the admin flavor of the npm
// package) in headless Chromium, its key imported from a key file:
//
//   (c) the first page: a reload of the console until 100 proven rows are shown —
//       cold (the browser's cache emptied first: the wasm, every hash tile fetched
//       again) and warm (a plain reload) — split by the page's own
//       `performance.measure` phases (wasm start-up, console.json, checkpoint, key,
//       search, proofs), with the requests it made;
//   (a) `LogView.proveEntries` on a page of 100 rows from elsewhere in the log (each
//       round another page): cold (a fresh LogView) and warm (the same LogView
//       again), with the hash-tile requests counted (how many, bytes, how many came
//       from the browser's cache) and the time split into waiting for tiles, the
//       wasm's own work and the rest (JavaScript glue);
//   (b) `verifyLog` of the whole log, entries/s, next to the native
//       `countersign audit verify --url` on the same log and gatekeeper, rounds
//       interleaved.
//
//   scripts/build-npm.sh
//   cargo build --release -p countersign-gatekeeper -p countersign-vendor --bins
//   COUNTERSIGN_TEST_GATEKEEPER_PROFILE=release node tests/bench/console-bench.mjs \
//     [--entries N] [--rounds R] [--verify-rounds V] [--fill ledger] [--data DIR]
//
// The log (default 100,000 entries) is filled with unsigned GETs, each refused and
// logged, 32 at a time; with `--fill ledger`, before the gatekeeper starts, by the
// `fill_log` example (the same entries appended through the ledger from 64 tasks, then
// integrated: a minute for 1,000,000 instead of ten; it is built in release mode).
// `--data DIR` keeps the gatekeeper's data directory (and its log) in DIR and reuses
// it when it already holds the log, so a second run skips the fill. The gatekeeper
// and the CLI are the Cargo `COUNTERSIGN_TEST_GATEKEEPER_PROFILE` builds (`debug`
// unless set; the CLI's `release` build is used when it exists).
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { launch } from "../support/browser.mjs";
import { describePhases, firstPage, loaded } from "../support/console.mjs";
import { gatekeeperProfile, publicKeyOfSeed, repo, startGatekeeper, targetDir, writeGatekeeperConfig } from "../support/servers.mjs";

const args = process.argv.slice(2);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const entries = Number(option("--entries") ?? 100_000);
const rounds = Number(option("--rounds") ?? 3);
const verifyRounds = Number(option("--verify-rounds") ?? rounds);
const fillWithLedger = option("--fill") === "ledger";
const keepDir = option("--data") && resolve(option("--data"));
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const ms = (x) => `${x.toFixed(1)} ms`;
/** The longest chain of `[start, end]` spans each starting after the one before it
 *  ended: how many requests were waited for one after another. */
const chainOf = (spans) => {
  const sorted = [...spans].sort((x, y) => x[0] - y[0]);
  const chain = [];
  sorted.forEach(([a], i) => {
    chain[i] = 1 + Math.max(0, ...sorted.slice(0, i).map(([, b], j) => (b <= a ? chain[j] : 0)));
  });
  return Math.max(0, ...chain);
};

const admin = join(repo, "packages/client/admin");
if (!existsSync(join(admin, "countersign_bg.wasm"))) throw new Error("run scripts/build-npm.sh first");
const target = targetDir();
const cliRelease = join(target, "release", "countersign");

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

[console]
client_dir = "${admin}"
`;

async function treeSize(url) {
  const r = await fetch(`${url}/v1/log/checkpoint`).catch(() => null);
  return r?.ok ? Number((await r.text()).split("\n")[1]) : 0;
}

let dir = keepDir;
if (dir) mkdirSync(dir, { recursive: true });
const filled = dir !== undefined && existsSync(join(dir, "gatekeeper.sqlite"));
if (fillWithLedger && !filled) {
  dir ??= mkdtempSync(join(tmpdir(), "countersign-console-bench-gk-"));
  const file = writeGatekeeperConfig({ id: "gk.bench", config: gkConfig, dir });
  const t = performance.now();
  const out = execFileSync("cargo", ["run", "--quiet", "--release", "-p", "countersign-gatekeeper", "--example", "fill_log", "--", file, String(entries)], { cwd: repo, stdio: ["ignore", "pipe", "inherit"] });
  console.log(`fill_log: ${out.toString().trim()} (${((performance.now() - t) / 1000).toFixed(1)} s with the build)`);
}
const gk = await startGatekeeper({ id: "gk.bench", config: gkConfig, dir });
const work = mkdtempSync(join(tmpdir(), "countersign-console-bench-"));
let browser;
try {
  // Fill the log (the rest of it, over HTTP).
  let t = performance.now();
  let next = await treeSize(gk.url);
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < entries) {
        const i = next++;
        await (await fetch(`${gk.url}/v1/objects/reports/org-${i % 97}/patient-${i}.pdf`)).arrayBuffer();
      }
    }),
  );
  while ((await treeSize(gk.url)) < entries) await new Promise((r) => setTimeout(r, 200));
  const size = await treeSize(gk.url);
  console.log(`log of ${size} entries ready in ${((performance.now() - t) / 1000).toFixed(1)} s (gatekeeper: ${gatekeeperProfile} build)`);

  // The admin's key file (imported by the page, and the native verifier's), the
  // gatekeeper's keys (the native verifier's).
  const adminKey = join(work, "admin.key");
  const secret = Buffer.from(seed).toString("base64url");
  writeFileSync(adminKey, JSON.stringify({ format: "countersign-secret-key/v1", key_id: "bench-admin", role: "customer-admin", not_before: null, not_after: null, public_key: adminPublic, secret_key: secret }), { mode: 0o600 });
  const gkKeys = join(work, "gatekeeper-keys.json");
  writeFileSync(gkKeys, await (await fetch(`${gk.url}/v1/keys`)).text());

  browser = await launch();
  const tab = await browser.newPage();
  const cdp = await tab.context().newCDPSession(tab);
  await tab.goto(`${gk.url}/audit/`);
  await tab.waitForSelector("#signin:not([hidden])");
  await tab.setInputFiles("#import [name=file]", adminKey);
  await tab.fill("#import [name=subject]", "console-bench");
  await loaded(tab, () => tab.click("#import button[type=submit]"));

  // (c) The console's first page.
  const requests = () => tab.evaluate(() => performance.getEntriesByType("resource").map((e) => ({ path: new URL(e.name).pathname, transfer: e.transferSize, body: e.encodedBodySize })));
  const firsts = { cold: [], warm: [] };
  for (let r = 0; r < rounds; r++) {
    for (const kind of ["cold", "warm"]) {
      if (kind === "cold") await cdp.send("Network.clearBrowserCache");
      const f = await firstPage(tab);
      const rows = await tab.$$eval("#rows tr", (trs) => trs.map((tr) => tr.dataset.status));
      if (rows.length !== 100 || rows.some((s) => s !== "verified")) throw new Error(`the first page shows ${rows.length} rows, not 100 verified: ${rows.join(",")}`);
      const all = await requests();
      const tiles = all.filter((q) => q.path.startsWith("/v1/log/tile/"));
      f.requests = all.length;
      f.tiles = tiles.length;
      f.tileRounds = chainOf(f.phases.filter((p) => p.name === "countersign:logView:tile").map((p) => [p.start, p.start + p.duration]));
      f.tileBytes = tiles.reduce((a, q) => a + q.body, 0);
      f.fromCache = all.filter((q) => q.transfer === 0).length;
      firsts[kind].push(f);
      console.log(`    round ${r + 1}, ${kind}: first page ${f.pageMs?.toFixed(0) ?? "?"} ms (${f.ms} ms seen by the test), proving ${f.proofMs} ms; ${f.requests} requests (${f.fromCache} from the cache), ${f.tiles} hash tiles in ${f.tileRounds} round(s) (${f.tileBytes} bytes); ${describePhases(f.phases)}`);
    }
  }
  for (const kind of ["cold", "warm"]) {
    const runs = firsts[kind];
    const range = (f) => `${median(runs.map(f)).toFixed(0)} ms [${Math.min(...runs.map(f)).toFixed(0)}–${Math.max(...runs.map(f)).toFixed(0)}]`;
    const page = runs.every((f) => f.pageMs !== undefined) ? `${range((f) => f.pageMs)} by the page's measure, ` : "";
    console.log(`(c) first proven page of 100 rows, ${kind} cache, log of ${size} entries: ${page}${range((f) => f.ms)} seen by the test; proving ${range((f) => f.proofMs)} (medians of ${rounds})`);
  }

  // The bench's helpers in the console's page: the page's own instance of the client
  // (already initialized by audit.js) and the admin key.
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), Buffer.from(seed)]).toString("base64");
  await tab.evaluate(async (pkcs8) => {
    const cs = await import("/audit/client/countersign.js");
    const settings = await (await fetch("/audit/console.json")).json();
    const o = { gatekeeperUrl: location.origin, ...settings };
    const der = Uint8Array.from(atob(pkcs8), (c) => c.charCodeAt(0));
    const key = await crypto.subtle.importKey("pkcs8", der, "Ed25519", false, ["sign"]);
    const sign = async (m) => new Uint8Array(await crypto.subtle.sign("Ed25519", key, m));
    // The union of intervals' length.
    const covered = (spans) => {
      let total = 0;
      let end = -Infinity;
      for (const [a, b] of [...spans].sort((x, y) => x[0] - y[0])) {
        if (b > end) {
          total += b - Math.max(a, end);
          end = b;
        }
      }
      return total;
    };
    /** Runs `call`, then counts the hash-tile requests and measures made during it. */
    const counted = async (call) => {
      performance.clearResourceTimings();
      const t0 = performance.now();
      const result = await call();
      const t1 = performance.now();
      const tiles = performance.getEntriesByType("resource").filter((e) => e.name.includes("/v1/log/tile/") && e.startTime >= t0);
      const wasm = performance.getEntriesByType("measure").filter((m) => m.startTime >= t0 && /^countersign:logView:(plan|prove)$/.test(m.name));
      const network = covered(tiles.map((e) => [e.startTime, e.responseEnd]));
      const compute = wasm.reduce((a, m) => a + m.duration, 0);
      return {
        result,
        millis: t1 - t0,
        tiles: tiles.length,
        spans: tiles.map((e) => [e.startTime, e.responseEnd]),
        fromCache: tiles.filter((e) => e.transferSize === 0).length,
        bytes: tiles.reduce((a, e) => a + e.encodedBodySize, 0),
        network,
        wasm: compute,
        rest: t1 - t0 - network - compute,
      };
    };
    window.bench = {
      async search(query) {
        const req = new cs.AuditRequest({ gatekeeperId: o.gatekeeperId, subject: "console-bench", keyId: "bench-admin", action: "read" });
        const r = await fetch(`/v1/audit/search?${query}`, { headers: {
          "Countersign-Request": req.requestHeader, "Countersign-Signature": req.signatureHeader(await sign(req.signingMessage)) } });
        req.free();
        return (await r.json()).entries.map((e) => e.entry);
      },
      async prove(rows, warmRuns) {
        const view = await cs.LogView.open(o);
        const verified = (checks) => checks.filter((c) => c.status === "verified").length;
        const cold = await counted(async () => verified(await view.proveEntries(rows)));
        const warm = [];
        for (let i = 0; i < warmRuns; i++) warm.push(await counted(async () => verified(await view.proveEntries(rows))));
        view.free();
        return { cold, warm };
      },
      async verify() {
        const r = await cs.verifyLog({ ...o, subject: "console-bench", keyId: "bench-admin", sign });
        return { entries: r.entries, bundles: r.bundles, millis: r.millis };
      },
    };
  }, pkcs8);

  // (a) proveEntries, a page of 100 rows; each round another page of the log.
  const colds = [];
  let warms = [];
  for (let r = 0; r < rounds; r++) {
    const after = Math.floor((size * (r + 1)) / (rounds + 1));
    const rows = await tab.evaluate((q) => window.bench.search(q), `after_seq=${after}&limit=100`);
    const p = await tab.evaluate((rows) => window.bench.prove(rows, 20), rows);
    for (const run of [p.cold, ...p.warm]) if (run.result !== rows.length) throw new Error(`only ${run.result} of ${rows.length} rows verified`);
    for (const run of [p.cold, ...p.warm]) run.rounds = chainOf(run.spans);
    colds.push(p.cold);
    warms = warms.concat(p.warm);
    const c = p.cold;
    console.log(`    round ${r + 1}: rows after ${after}: cold ${ms(c.millis)}: ${c.tiles} tile requests in ${c.rounds} round(s) (${c.fromCache} from the browser's cache), ${c.bytes} bytes; waiting for tiles ${ms(c.network)}, wasm ${ms(c.wasm)}, rest ${ms(c.rest)}`);
  }
  const by = (runs, f) => median(runs.map(f));
  const split = (runs) => `waiting for tiles ${ms(by(runs, (x) => x.network))}, wasm ${ms(by(runs, (x) => x.wasm))}, rest ${ms(by(runs, (x) => x.rest))}`;
  console.log(`(a) proveEntries, page of 100 rows, log of ${size} entries: cold ${ms(by(colds, (x) => x.millis))} (${by(colds, (x) => x.tiles)} tile requests in ${by(colds, (x) => x.rounds)} round(s), ${by(colds, (x) => x.bytes)} bytes; ${split(colds)}), warm ${ms(by(warms, (x) => x.millis))} (${by(warms, (x) => x.tiles)} tile requests; ${split(warms)}) (medians of ${rounds} and ${warms.length} runs)`);

  // (b) verifyLog vs the native CLI, interleaved rounds.
  const cli = existsSync(cliRelease) ? cliRelease : join(target, gatekeeperProfile, "countersign");
  const wasm = [];
  const native = [];
  for (let r = 0; r < verifyRounds; r++) {
    const v = await tab.evaluate(() => window.bench.verify());
    if (v.entries < size) throw new Error(`verifyLog verified ${v.entries} entries`);
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
  if (verifyRounds > 0) console.log(`(b) whole-log verification, ${size}+ entries: verifyLog in Chromium ${w.toFixed(0)} entries/s, native countersign audit verify --url ${n.toFixed(0)} entries/s (${cli.includes("/release/") ? "release" : gatekeeperProfile} build); ratio wasm/native ${(w / n).toFixed(2)} (medians of ${verifyRounds} rounds)`);
} finally {
  await browser?.close();
  await gk.stop({ keep: keepDir !== undefined });
  rmSync(work, { recursive: true, force: true });
}
