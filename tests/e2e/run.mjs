// End-to-end: the real gatekeeper, the demo vendor app serving www/ and the package, and the
// report page in headless Chromium, all on 127.0.0.x free ports started (and stopped)
// here. No traffic goes anywhere else.
//
//   npm run build && node tests/e2e/run.mjs
//
// (a) log in with TOTP; the report renders with its images; the vendor's byte
//     counters show only the login/sign JSON, no object bytes;
// (b) vendor app on 127.0.0.2, denied by the gatekeeper's IP rules: the page still
//     works, while a validly signed request sent from 127.0.0.2 gets `ip_denied`;
// (c) an object altered in the bucket directory (encrypted at rest) is refused by the
//     gatekeeper with `stored_object_tampered` and not rendered;
// (d) a replayed and an expired request: `replayed` / `expired` shown in the page;
// (e) another organisation's user sees nothing of the first one's report.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launch } from "../support/browser.mjs";
import { freePort, repo, targetDir } from "../support/servers.mjs";
import { contentType, samples } from "../../scripts/sample-report.mjs";

const ACME = "org-acme/reports/2026-11-printer/";
const BRAVO = "org-bravo/reports/2026-11-login/";
const users = {
  alice: { password: "alice-demo-password", secret: "NZRWWFPCJT6M7PHJIHOUDEEGDZDX2ZXM" },
  bob: { password: "bob-demo-password", secret: "UTRBH2TRNRQGDKKAXSLA2LVG2LLERYZJ" },
};

const build = spawnSync("cargo", ["build", "-p", "countersign-gatekeeper", "-p", "countersign-demo", "-p", "countersign-vendor", "--bins"], { cwd: repo, stdio: "inherit" });
if (build.status !== 0) process.exit(build.status ?? 1);
if (!existsSync(join(repo, "packages/client/pkg/countersign_bg.wasm"))) {
  console.error("packages/client/pkg/ is not built: run `npm run build` (scripts/build-npm.sh) first");
  process.exit(1);
}
const target = targetDir();
const bin = (name) => join(target, "debug", name);
const run = (name, args) => execFileSync(bin(name), args, { cwd: repo }).toString();

const failures = [];
function check(ok, what, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}${!ok && detail ? `: ${detail}` : ""}`);
  if (!ok) failures.push(what);
}

function spawnServer(name, args, url, logs) {
  const child = spawn(bin(name), args, { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  logs.push(() => `--- ${name} ${url}\n${log}`);
  return {
    child,
    async ready() {
      for (let i = 0; i < 300; i++) {
        if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}\n${log}`);
        if (await fetch(url).then((r) => r.ok, () => false)) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`${name} did not come up at ${url}\n${log}`);
    },
  };
}

/** Gatekeeper + seeded sample reports + vendor app on `vendorHost`. Both ports are
 *  chosen before the gatekeeper starts (its config names the app's origin), so the
 *  seeding's own client connections may take the app's port as their ephemeral port
 *  meanwhile: a stack whose server then cannot listen is started again on new ports. */
async function startStack(options = {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startStackOnce(options);
    } catch (e) {
      if (attempt === 3 || !/Address already in use/.test(e.message)) throw e;
      console.log(`     (a port was taken before its server listened: starting again, attempt ${attempt + 1})`);
    }
  }
}

async function startStackOnce({ vendorHost = "127.0.0.1", network = "" } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "countersign-e2e-"));
  const [gkPort, appPort] = [await freePort(), await freePort()];
  const gkUrl = `http://127.0.0.1:${gkPort}`;
  const appUrl = `http://${vendorHost}:${appPort}`;
  const key = join(dir, "vendor.key");
  run("countersign", ["keygen", "--key-id", "vendor-e2e", "--out", key]);
  const config = JSON.parse(readFileSync(join(repo, "crates/countersign-demo/demo-config.json"), "utf8"));
  config.gatekeeper_url = gkUrl;
  writeFileSync(join(dir, "demo.json"), JSON.stringify(config));
  const toml = run("countersign-demo", ["gatekeeper-config", "--config", join(dir, "demo.json"), "--vendor-key", `${key}.pub`, "--data-dir", join(dir, "gk"), "--origin", appUrl]);
  writeFileSync(join(dir, "gk.toml"), `${toml}
[[acl]]
effect = "allow"
subjects = ["helpdesk-import"]
buckets = ["local"]
prefix = ""
operations = ["PUT"]
${network}`);
  const servers = [];
  const logs = [];
  const stop = async () => {
    for (const s of servers) {
      s.child.kill("SIGTERM");
      if (s.child.exitCode === null) await new Promise((r) => s.child.once("exit", r));
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const gk = spawnServer("countersign-gatekeeper", ["serve", "--config", join(dir, "gk.toml"), "--listen", `127.0.0.1:${gkPort}`], `${gkUrl}/healthz`, logs);
    servers.push(gk);
    await gk.ready();
    writeFileSync(join(dir, "gk-keys.json"), await (await fetch(`${gkUrl}/v1/keys`)).text());
    for (const [object, body] of Object.entries(samples)) {
      const file = join(dir, "sample");
      writeFileSync(file, body);
      run("countersign", ["put", "--no-progress", "--gatekeeper", gkUrl, "--gatekeeper-key", join(dir, "gk-keys.json"), "--signing-key", key,
        "--audience", "local", "--bucket", "local", "--subject", "helpdesk-import", "--object", object, "--content-type", contentType(object), file]);
    }
    const app = spawnServer("countersign-demo", ["serve", "--config", join(dir, "demo.json"), "--listen", `${vendorHost}:${appPort}`, "--signing-key", key,
      "--gatekeeper-key", join(dir, "gk-keys.json"), "--www", join(repo, "www"), "--pkg", join(repo, "packages/client/pkg")], `${appUrl}/api/config`, logs);
    servers.push(app);
    await app.ready();
  } catch (e) {
    await stop();
    throw e;
  }
  return { dir, gkUrl, appUrl, key, bucketDir: join(dir, "gk", "buckets", "local"), log: () => logs.map((l) => l()).join("\n"), stop };
}

async function login(page, appUrl, name, { navigate = true } = {}) {
  if (navigate) await page.goto(`${appUrl}/`);
  await page.waitForSelector("#login:not([hidden])");
  const totp = run("countersign-demo", ["totp-code", "--secret", users[name].secret]).trim();
  await page.fill("[name=username]", name);
  await page.fill("[name=password]", users[name].password);
  await page.fill("[name=totp]", totp);
  await page.click("#login button[type=submit]");
}

/** `{key: {state, code, images}}` of the rendered report. */
async function rendered(page, folder) {
  await page.waitForSelector(`#report[data-loaded="${folder}"]`, { timeout: 30_000 }).catch(async (e) => {
    throw new Error(`${e.message}\nthe page shows: ${await page.innerText("body")}`);
  });
  return page.$$eval("#report article", (boxes) => Object.fromEntries(boxes.map((b) => [b.dataset.key, {
    state: b.dataset.state,
    code: b.querySelector("[data-code]")?.dataset.code,
    images: [...b.querySelectorAll("img")].map((i) => i.naturalWidth),
  }])));
}

/** Sends a signed request's headers to the gatekeeper from `localAddress`. */
function sendFrom(localAddress, url, headers) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { localAddress, headers }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

function signedHeaders(key, object) {
  const out = run("countersign", ["sign", "--signing-key", key, "--audience", "local", "--method", "get", "--bucket", "local", "--object", object, "--subject", "user-alice", "--lifetime", "60"]);
  return Object.fromEntries(out.trim().split("\n").map((l) => l.split(": ")));
}

const browser = await launch();
const stacks = [];
try {
  // ---- (a), (c), (d), (e) against a vendor app on 127.0.0.1 ----
  const a = await startStack();
  stacks.push(a);
  const alice = await browser.newContext();
  const page = await alice.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));

  // Every body byte the browser exchanges with the vendor app, by request.
  const vendorTraffic = [];
  const captured = {};
  page.on("requestfinished", async (req) => {
    if (req.url().startsWith(a.gkUrl) && req.method() === "GET" && req.url().endsWith("/report.json")) {
      captured.reportJson ??= await req.allHeaders();
    }
    if (!req.url().startsWith(a.appUrl)) return;
    const resp = await req.response();
    const body = resp ? await resp.body().catch(() => Buffer.alloc(0)) : Buffer.alloc(0);
    vendorTraffic.push({ path: new URL(req.url()).pathname, sent: req.postDataBuffer()?.length ?? 0, received: body.length, png: body.includes(Buffer.from("IHDR")) });
  });

  await page.goto(`${a.appUrl}/`);
  await page.waitForSelector("#login:not([hidden])");
  const statsText = await (await fetch(`${a.appUrl}/api/stats`)).text();
  const before = JSON.parse(statsText);
  vendorTraffic.length = 0;
  await login(page, a.appUrl, "alice", { navigate: false });
  const report = await rendered(page, ACME);
  const keys = Object.keys(samples).filter((k) => k.startsWith(ACME));
  check(keys.every((k) => report[k]?.state === "verified"), "(a) every object of the report verified", JSON.stringify(report));
  check(report[`${ACME}screenshot-1.png`]?.images[0] > 0 && report[`${ACME}screenshot-2.png`]?.images[0] > 0, "(a) both screenshots rendered", JSON.stringify(report));
  check((await page.textContent("#report")).includes("Label printer stops"), "(a) the report's text fields rendered");
  mkdirSync(join(target, "e2e"), { recursive: true });
  await page.screenshot({ path: join(target, "e2e", "report.png"), fullPage: true });

  await new Promise((r) => setTimeout(r, 300)); // let the last requestfinished handlers run
  const after = await (await fetch(`${a.appUrl}/api/stats`)).json();
  const objectBytes = keys.reduce((n, k) => n + Buffer.byteLength(samples[k]), 0);
  const sent = vendorTraffic.reduce((n, t) => n + t.sent, 0);
  const received = vendorTraffic.reduce((n, t) => n + t.received, 0);
  const delta = { sent: after.request_body_bytes - before.request_body_bytes, received: after.response_body_bytes - before.response_body_bytes };
  console.log(`     vendor during login+report: ${delta.sent} B received, ${delta.received} B sent (${vendorTraffic.map((t) => t.path).join(" ")}); report objects: ${objectBytes} B`);
  check(delta.sent === sent && delta.received === received + statsText.length, "(a) the vendor's counters are exactly the page's API JSON", `${JSON.stringify(delta)} vs page ${sent}/${received}+${statsText.length}`);
  check(vendorTraffic.every((t) => t.path.startsWith("/api/") && !t.png), "(a) the page sent the vendor only API calls, no image bytes", JSON.stringify(vendorTraffic));
  check(delta.sent + delta.received < objectBytes / 4, "(a) vendor body bytes are a small fraction of the object bytes", `${delta.sent + delta.received} vs ${objectBytes}`);

  // The upload form: a new report with a screenshot, PUT through the gatekeeper.
  await page.fill("[name=title]", "Scanner shows a blank page");
  await page.fill("[name=reporter]", "e2e test");
  await page.fill("[name=description]", "Uploaded by tests/e2e/run.mjs.");
  await page.setInputFiles("[name=screenshot]", { name: "shot.png", mimeType: "image/png", buffer: samples[`${ACME}screenshot-1.png`] });
  await page.click("#upload button[type=submit]");
  await page.waitForFunction(() => /\/reports\/\d{4}-\d\d-\d\d-/.test(document.querySelector("#report")?.dataset.loaded ?? ""), null, { timeout: 30_000 });
  const uploaded = await rendered(page, await page.$eval("#report", (e) => e.dataset.loaded));
  check(Object.values(uploaded).length === 2 && Object.values(uploaded).every((o) => o.state === "verified"), "(a) the upload form stores a new report that then verifies", JSON.stringify(uploaded));
  // Open ACME's report by name: the new report's date can sort before it.
  await page.goto(`${a.appUrl}/#report=${encodeURIComponent(ACME)}`);

  // (d) replay: the first report.json request's exact headers, sent again by the page.
  check(Boolean(captured.reportJson?.["countersign-request"]), "(d) captured a signed request from the page");
  await page.route("**/report.json", (route) => {
    const req = route.request();
    if (req.method() !== "GET") return route.continue();
    return route.continue({ headers: { ...req.headers(), "countersign-request": captured.reportJson["countersign-request"], "countersign-signature": captured.reportJson["countersign-signature"] } });
  });
  await page.reload();
  const replayed = await rendered(page, ACME);
  check(replayed[`${ACME}report.json`]?.code === "replayed", "(d) a replayed request is refused and the page shows `replayed`", JSON.stringify(replayed));
  await page.unroute("**/report.json");

  // (d) expired: the browser's clock an hour behind (its own context, with alice's
  // session cookie); the page shows the refusal.
  const lateContext = await browser.newContext();
  await lateContext.addCookies(await alice.cookies());
  const late = await lateContext.newPage();
  await late.clock.setFixedTime(Date.now() - 3600_000);
  await late.goto(`${a.appUrl}/`);
  const expired = await late.waitForSelector("#reports [data-code]", { timeout: 30_000 }).then((e) => e.getAttribute("data-code"));
  check(expired === "expired", "(d) an expired request is refused and the page shows `expired`", expired);
  await lateContext.close();

  // (c) an object altered in the bucket directory.
  // The bucket holds opaque names; the manifest sidecar names the key.
  const name = readdirSync(join(a.bucketDir, "manifests")).find(
    (n) => JSON.parse(readFileSync(join(a.bucketDir, "manifests", n), "utf8")).key === `${ACME}screenshot-2.png`);
  const file = join(a.bucketDir, "objects", name);
  const bytes = readFileSync(file);
  bytes[bytes.length - 20] ^= 0xff;
  writeFileSync(file, bytes);
  await page.reload();
  const tampered = await rendered(page, ACME);
  const bad = tampered[`${ACME}screenshot-2.png`];
  // The bucket is encrypted at rest, so the gatekeeper itself refuses the changed
  // ciphertext; the client's own `body_mismatch` check is the second line (tested
  // through a tampering proxy by tests/browser/wasm-client.mjs).
  check(bad?.state === "failed" && bad.code === "stored_object_tampered" && bad.images.length === 0, "(c) the altered object shows `stored_object_tampered` and is not rendered", JSON.stringify(bad));
  check(tampered[`${ACME}screenshot-1.png`]?.state === "verified", "(c) the other objects still verify");
  check(pageErrors.length === 0, "(a,c,d) no page errors", pageErrors.join("; "));

  // (e) Bob (Bravo Dental) sees only his organisation's report.
  const bobContext = await browser.newContext();
  const bob = await bobContext.newPage();
  await login(bob, a.appUrl, "bob");
  const bravo = await rendered(bob, BRAVO);
  check(Object.keys(bravo).length === 2 && Object.values(bravo).every((o) => o.state === "verified"), "(e) bob's own report renders", JSON.stringify(bravo));
  check(!(await bob.content()).includes("org-acme"), "(e) bob's page shows nothing of Acme's");
  await bob.goto(`${a.appUrl}/#report=${encodeURIComponent(ACME)}`);
  const foreign = await bob.waitForSelector("#report [data-code]", { timeout: 30_000 }).then((e) => e.getAttribute("data-code"));
  check(foreign === "access_denied", "(e) opening Acme's report as bob: the vendor refuses (`access_denied`)", foreign);
  const direct = await bob.evaluate(async (key) => {
    const now = Math.floor(Date.now() / 1000);
    const r = await fetch("/api/sign", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ requests: [{
      audience: "local", method: "GET", bucket: "local", key, subject: "user-bob", issued_at: now, expires_at: now + 60, nonce: "0123456789abcdef0123456789abcdef" }] }) });
    return (await r.json()).results[0];
  }, `${ACME}report.json`);
  check(direct?.error?.code === "access_denied", "(e) the vendor refuses to sign Acme's object for bob", JSON.stringify(direct));
  await bobContext.close();
  await alice.close();

  // ---- (b) the vendor app on 127.0.0.2, which the gatekeeper denies ----
  const b = await startStack({ vendorHost: "127.0.0.2", network: '\n[network]\ndeny_ips = ["127.0.0.2/32"]\n' });
  stacks.push(b);
  const ctx = await browser.newContext();
  const p2 = await ctx.newPage();
  await login(p2, b.appUrl, "alice");
  const viaDenied = await rendered(p2, ACME);
  check(Object.values(viaDenied).length === 3 && Object.values(viaDenied).every((o) => o.state === "verified"), "(b) the report renders with the vendor's address denied", JSON.stringify(viaDenied));
  await ctx.close();
  const objectUrl = `${b.gkUrl}/v1/objects/local/${ACME}report.json`;
  const fromVendor = await sendFrom("127.0.0.2", objectUrl, signedHeaders(b.key, `${ACME}report.json`));
  check(fromVendor.status === 403 && JSON.parse(fromVendor.body).error?.code === "ip_denied", "(b) a validly signed request from 127.0.0.2 is refused with `ip_denied`", `${fromVendor.status} ${fromVendor.body}`);
  const fromBrowserAddress = await sendFrom("127.0.0.1", objectUrl, signedHeaders(b.key, `${ACME}report.json`));
  check(fromBrowserAddress.status === 200, "(b) the same kind of request from 127.0.0.1 is served", `${fromBrowserAddress.status}`);
} catch (e) {
  failures.push(String(e.stack ?? e));
  console.error(e);
} finally {
  if (failures.length) for (const s of stacks) console.error(s.log());
  await browser.close();
  for (const s of stacks) await s.stop();
}
if (failures.length) {
  console.error(`\n${failures.length} check(s) failed:\n  ${failures.join("\n  ")}`);
  process.exit(1);
}
console.log("\nall end-to-end checks passed");
