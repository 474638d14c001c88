// Export verification benchmark: the same audit export (JSONL) verified by the admin
// flavor's `ExportVerifier` in headless Chromium, reading a `File` picked in an
// `<input type=file>` through `file.stream()` as the audit console does, and by the
// native `countersign audit verify EXPORT`, rounds interleaved; entries/s and the
// ratio.
//
//   scripts/build-npm.sh
//   cargo build --release -p countersign-vendor --bin countersign
//   cargo build -p countersign-gatekeeper --bin countersign-gatekeeper
//   node tests/bench/export-bench.mjs [--entries N] [--rounds R]
//
// The log (default 100,000 entries) is filled by the `fill_log` example (entries of
// refused unsigned GETs appended through the ledger, integrated and checkpointed),
// exported with `countersign-gatekeeper audit export`. The gatekeeper and `fill_log`
// are the Cargo `COUNTERSIGN_TEST_GATEKEEPER_PROFILE` builds (`debug` unless set); the
// CLI is the release build when it exists.
import { createServer } from "node:http";
import { existsSync, readFileSync, writeFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { execFileSync, spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join, extname } from "node:path";
import { chromium } from "playwright-core";
import { freePort, gatekeeperProfile, publicKeyOfSeed, repo, startGatekeeper, targetDir, writeGatekeeperConfig } from "../support/servers.mjs";

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const entries = arg("--entries", 100_000);
const rounds = arg("--rounds", 3);
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const admin = join(repo, "packages/client/admin");
if (!existsSync(join(admin, "countersign_bg.wasm"))) throw new Error("run scripts/build-npm.sh first");
const cliRelease = join(targetDir(), "release", "countersign");
const cli = existsSync(cliRelease) ? cliRelease : join(targetDir(), gatekeeperProfile, "countersign");
const gatekeeperBinary = join(targetDir(), gatekeeperProfile, "countersign-gatekeeper");

// The bench page: a file input and the admin flavor, served from their own origin.
const page = `<!doctype html><input type="file" id="export"><script type="module">
import init, { ExportVerifier } from "/admin/countersign.js";
await init();
window.bench = {
  async verify(keys) {
    const file = document.getElementById("export").files[0];
    const t = performance.now();
    const verifier = new ExportVerifier({ keys });
    const reader = file.stream().getReader();
    let chunks = 0;
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      verifier.push(r.value);
      chunks++;
    }
    const report = verifier.finish();
    return { millis: performance.now() - t, chunks, entries: report.entries, treeSize: report.treeSize, bytes: report.bytes };
  },
};
window.ready = true;
</script>`;
const pagePort = await freePort();
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

const config = `
[[keys]]
key_id = "bench-vendor"
role = "vendor"
public_key = "${publicKeyOfSeed(new Uint8Array(32).fill(32))}"

[buckets.reports]
store = "local"
path = "buckets/reports"
`;
const dir = mkdtempSync(join(tmpdir(), "countersign-export-bench-"));
let browser;
try {
  const file = writeGatekeeperConfig({ id: "gk.bench", config, dir });
  let t = performance.now();
  const profileArgs = gatekeeperProfile === "debug" ? [] : ["--profile", gatekeeperProfile];
  const out = execFileSync("cargo", ["run", "--quiet", ...profileArgs, "-p", "countersign-gatekeeper", "--example", "fill_log", "--", file, String(entries)], { cwd: repo, stdio: ["ignore", "pipe", "inherit"] });
  console.log(`fill_log (${gatekeeperProfile}): ${out.toString().trim()} (${((performance.now() - t) / 1000).toFixed(1)} s with the build)`);

  // The gatekeeper's public keys, as the CLI reads them (`GET /v1/keys`).
  const gk = await startGatekeeper({ id: "gk.bench", config, dir });
  const keysFile = join(dir, "gatekeeper-keys.json");
  writeFileSync(keysFile, await (await fetch(`${gk.url}/v1/keys`)).text());
  const keys = [{ keyId: gk.key.keyId, role: "gatekeeper", publicKey: gk.key.publicKey }];
  await gk.stop({ keep: true });

  const exportFile = join(dir, "export.jsonl");
  t = performance.now();
  execFileSync(gatekeeperBinary, ["audit", "export", "--config", file, "--data-dir", dir, "--out", exportFile], { stdio: ["ignore", "ignore", "inherit"] });
  const size = statSync(exportFile).size;
  console.log(`exported ${entries} entries: ${(size / 1e6).toFixed(1)} MB in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium" });
  const tab = await browser.newPage();
  await tab.goto(`http://127.0.0.1:${pagePort}/`);
  await tab.waitForFunction(() => window.ready === true);
  await tab.setInputFiles("#export", exportFile);

  const wasm = [];
  const native = [];
  for (let r = 0; r < rounds; r++) {
    const v = await tab.evaluate((keys) => window.bench.verify(keys), keys);
    if (v.entries < entries || v.bytes !== size) throw new Error(`ExportVerifier: ${JSON.stringify(v)}`);
    wasm.push((v.entries / v.millis) * 1000);
    console.log(`    round ${r + 1}: ExportVerifier in Chromium ${v.entries} entries (tree ${v.treeSize}), ${v.chunks} chunks, in ${(v.millis / 1000).toFixed(2)} s`);
    t = performance.now();
    const run = spawnSync(cli, ["audit", "verify", exportFile, "--gatekeeper-key", keysFile, "--require-tree"], { encoding: "utf8" });
    const secs = (performance.now() - t) / 1000;
    if (run.status !== 0) throw new Error(`countersign audit verify: ${run.stderr}`);
    const n = Number(/OK: (\d+) entries/.exec(run.stdout)?.[1]);
    if (n !== v.entries) throw new Error(`the CLI verified ${n} entries, the browser ${v.entries}`);
    native.push(n / secs);
    console.log(`    round ${r + 1}: countersign audit verify EXPORT ${n} entries in ${secs.toFixed(2)} s`);
  }
  const w = median(wasm);
  const n = median(native);
  console.log(`export verification, ${entries} entries (${(size / 1e6).toFixed(1)} MB): ExportVerifier in Chromium ${w.toFixed(0)} entries/s, native countersign audit verify ${n.toFixed(0)} entries/s (${cli.includes("/release/") ? "release" : gatekeeperProfile} build); ratio wasm/native ${(w / n).toFixed(2)} (medians of ${rounds} rounds)`);
} finally {
  await browser?.close();
  server.close();
  rmSync(dir, { recursive: true, force: true });
}
