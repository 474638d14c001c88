// Side-by-side speed of several builds of the wasm client in one headless Chromium
// page: what a size option (opt-level, curve25519's precomputed tables, the compact
// SHA-2) costs. Each build is a wasm-bindgen `--target web` package directory holding
// countersign.js + countersign_bg.wasm (scripts/build-npm.sh's output, or a copy of it
// built with other settings). Rounds interleave the builds; medians, and each build's
// time as a ratio to the first build's, next to WebCrypto's Ed25519 verify.
//
//   node tests/bench/builds-bench.mjs DIR_A DIR_B ... [--rounds N]
//
// Needs /usr/bin/chromium (or $CHROMIUM); the page is served from 127.0.0.1 on a free
// port and nothing else is contacted.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { gzipSync, brotliCompressSync, constants } from "node:zlib";
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
let rounds = 9;
const dirs = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--rounds") rounds = Number(args[++i]);
  else if (args[i].startsWith("--")) throw new Error(`unknown option ${args[i]}`);
  else dirs.push(resolve(args[i]));
}
if (dirs.length === 0) {
  console.error("usage: node tests/bench/builds-bench.mjs DIR_A DIR_B ... [--rounds N]");
  process.exit(2);
}

const sizes = dirs.map((d) => {
  const bytes = readFileSync(join(d, "countersign_bg.wasm"));
  const gz = spawnSync("gzip", ["-9", "-c"], { input: bytes, maxBuffer: 1 << 26 });
  return {
    raw: bytes.length,
    gzip: gz.status === 0 ? gz.stdout.length : gzipSync(bytes, { level: 9 }).length,
    brotli: brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length } }).length,
  };
});

// The page: imports every build, then times them in interleaved rounds.
const pageScript = `
const dirs = ${JSON.stringify(dirs.map((_, i) => `/b${i}/`))};
const builds = [];
for (const d of dirs) {
  const m = await import(d + "countersign.js");
  await m.default({ module_or_path: d + "countersign_bg.wasm" });
  builds.push(m);
}
const kp = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
const pub = new Uint8Array(await crypto.subtle.exportKey("raw", kp.publicKey));
const msg = crypto.getRandomValues(new Uint8Array(64));
const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, kp.privateKey, msg));
const body = new Uint8Array(1 << 20).map((_, i) => (i * 131 + 7) & 255);
const time = async (n, f) => { const t = performance.now(); for (let i = 0; i < n; i++) await f(); return (performance.now() - t) / n; };
window.run = async (rounds) => {
  const keys = builds.map((b) => new b.Ed25519PublicKey(pub));
  for (const k of keys) if (!k.verifyStrict(msg, sig)) throw new Error("a build rejects a good signature");
  const out = { verify: builds.map(() => []), sha: builds.map(() => []), webcrypto: [] };
  for (let r = 0; r <= rounds; r++) {
    const wc = await time(200, () => crypto.subtle.verify({ name: "Ed25519" }, kp.publicKey, sig, msg));
    const v = [], s = [];
    for (let i = 0; i < builds.length; i++) {
      v.push(await time(200, () => keys[i].verifyStrict(msg, sig)));
      s.push(await time(5, () => builds[i].sha256(body)));
    }
    if (r === 0) continue; // warm-up
    out.webcrypto.push(wc);
    v.forEach((x, i) => out.verify[i].push(x));
    s.forEach((x, i) => out.sha[i].push(x));
  }
  return out;
};
window.ready = true;
`;
const headers = { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp", "cache-control": "no-store" };
const server = createServer(async (req, res) => {
  const path = new URL(req.url, "http://127.0.0.1").pathname;
  if (path === "/") return res.writeHead(200, { ...headers, "content-type": "text/html" }).end(`<!doctype html><script type="module" src="/page.mjs"></script>`);
  if (path === "/page.mjs") return res.writeHead(200, { ...headers, "content-type": "text/javascript" }).end(pageScript);
  const m = /^\/b(\d+)\/(countersign\.js|countersign_bg\.wasm)$/.exec(path);
  if (!m || !dirs[Number(m[1])]) return res.writeHead(404, headers).end();
  const body = await readFile(join(dirs[Number(m[1])], m[2]));
  res.writeHead(200, { ...headers, "content-type": m[2].endsWith(".js") ? "text/javascript" : "application/wasm" }).end(body);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const origin = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-gpu"] });
try {
  const ctx = await browser.newContext();
  await ctx.route((url) => !url.href.startsWith(origin + "/"), (route) => route.abort());
  const tab = await ctx.newPage();
  tab.on("pageerror", (e) => console.error("page error:", e.message));
  await tab.goto(origin + "/");
  await tab.waitForFunction(() => window.ready === true, null, { timeout: 60_000 });
  const out = await tab.evaluate((n) => window.run(n), rounds);
  const med = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
  const f = (x, d = 1) => x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
  const wc = med(out.webcrypto);
  console.log(`Chromium ${browser.version()} headless; ${rounds} interleaved rounds after a warm-up; medians. WebCrypto Ed25519 verify: ${f(wc * 1000)} µs`);
  console.log("");
  console.log("| build | raw B | gzip -9 B | brotli -q 11 B | strict verify µs | ÷ first | WebCrypto rate ÷ ours | wasm SHA-256 MiB/s | ÷ first |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const v0 = med(out.verify[0]), s0 = med(out.sha[0]);
  dirs.forEach((d, i) => {
    const v = med(out.verify[i]), s = med(out.sha[i]);
    console.log(`| ${d.split("/").pop()} | ${sizes[i].raw.toLocaleString("en-US")} | ${sizes[i].gzip.toLocaleString("en-US")} | ${sizes[i].brotli.toLocaleString("en-US")} | ${f(v * 1000)} | ${f(v / v0, 2)} | ${f(wc / v, 2)} | ${f(1000 / s)} | ${f(s0 / s, 2)} |`);
  });
} finally {
  await browser.close();
  server.close();
}
