// Runs the wasm client's browser tests (crates/countersign-wasm/tests/browser.rs) in
// headless Chromium against real gatekeepers started here: the main one, directly and
// through a proxy that tampers with its answers (tamper-proxy.mjs); one whose SQLite
// audit row was rewritten while it was stopped (the console's `verifyLog` must name
// the entry); one whose checkpoints two real witness processes (`countersign witness
// serve`) cosign with a quorum of two:
//
//   node tests/browser/wasm-client.mjs [-- TEST-ARGS]
//
// Arguments after `--` go to the test runner, for example `-- --nocapture
// receipts_prove` to run one test and see what it prints (the proof timing).
// COUNTERSIGN_TEST_GATEKEEPER_PROFILE=release runs a release build of the gatekeeper.
// The test page is served on a fixed free port so that the gatekeeper's CORS
// configuration can name its origin.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { freePort, gatekeeperProfile, publicKeyOfSeed, repo, startGatekeeper, targetDir } from "../support/servers.mjs";
import { sqlite } from "../support/sqlite.mjs";
import { startTamperProxy } from "./tamper-proxy.mjs";

const profileArgs = gatekeeperProfile === "debug" ? [] : ["--profile", gatekeeperProfile];
const build = spawnSync("cargo", ["build", "-p", "countersign-gatekeeper", "-p", "countersign-vendor", "--bin", "countersign-gatekeeper", "--bin", "countersign", ...profileArgs], { cwd: repo, stdio: "inherit" });
if (build.status !== 0) process.exit(build.status ?? 1);

const pagePort = await freePort();
const vendor = publicKeyOfSeed(new Uint8Array(32).fill(11));
const admin = publicKeyOfSeed(new Uint8Array(32).fill(13));
const baseConfig = `
[[keys]]
key_id = "test-vendor"
role = "vendor"
public_key = "${vendor}"

[[keys]]
key_id = "test-admin"
role = "customer-admin"
public_key = "${admin}"

[buckets.reports]
store = "local"
path = "buckets/reports"

[[acl]]
effect = "allow"
subjects = ["*"]
buckets = ["reports"]
prefix = "org-1/"
operations = ["GET", "HEAD", "PUT", "LIST"]

[cors]
origins = ["http://127.0.0.1:${pagePort}"]
`;
const gk = await startGatekeeper({ config: baseConfig });
const proxy = await startTamperProxy(gk.url);
const cli = join(targetDir(), gatekeeperProfile, "countersign");

/** Polls the log's checkpoint until it covers `size` entries. */
async function waitForCheckpoint(url, size) {
  for (let i = 0; i < 300; i++) {
    const r = await fetch(`${url}/v1/log/checkpoint`);
    const text = await r.text();
    if (r.ok && Number(text.split("\n")[1]) >= size) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url}: the checkpoint did not reach ${size} entries`);
}

// A gatekeeper whose log an attacker with write access to its database rewrote:
// 300 refused requests logged and checkpointed, then, while it is stopped, entry
// TAMPERED_SEQ's denial turned into an allow in SQLite.
const TAMPERED_SEQ = 7;
const tampered = await (async () => {
  const first = await startGatekeeper({ id: "gk.tampered", config: baseConfig });
  for (let i = 0; i < 300; i++) await (await fetch(`${first.url}/v1/objects/reports/org-1/missing-${i}`)).arrayBuffer();
  await waitForCheckpoint(first.url, 300);
  await first.stop({ keep: true });
  sqlite(join(first.dir, "gatekeeper.sqlite"), "UPDATE audit_log SET decision = 'allow', error_code = '' WHERE seq = ?", [TAMPERED_SEQ]);
  return startGatekeeper({ id: "gk.tampered", config: baseConfig, dir: first.dir });
})();

// Two witnesses (`countersign witness serve`, keys from `countersign keygen --role
// witness`) and a gatekeeper that needs both cosignatures (quorum 2).
const witnessDir = mkdtempSync(join(tmpdir(), "countersign-e2e-witnesses-"));
const witnesses = [];
for (const name of ["w1.test", "w2.test"]) {
  const key = join(witnessDir, `${name}.key`);
  execFileSync(cli, ["keygen", "--key-id", name, "--role", "witness", "--out", key]);
  const pk = Buffer.from(JSON.parse(readFileSync(`${key}.pub`, "utf8")).public_key, "base64url");
  // The C2SP vkey of a cosignature/v1 key: name+keyid+base64(0x04 || key), keyid the
  // first 4 bytes of SHA-256(name || "\n" || 0x04 || key).
  const id = createHash("sha256").update(Buffer.concat([Buffer.from(`${name}\n`), Buffer.from([4]), pk])).digest().subarray(0, 4);
  const vkey = `${name}+${id.toString("hex")}+${Buffer.concat([Buffer.from([4]), pk]).toString("base64")}`;
  witnesses.push({ name, key, vkey, port: await freePort() });
}
const witnessed = await startGatekeeper({
  id: "gk.witnessed",
  config: `${baseConfig}
[log]
quorum = 2
witness_timeout_ms = 2000
${witnesses.map((w) => `[[log.witnesses]]\nurl = "http://127.0.0.1:${w.port}"\nvkey = "${w.vkey}"\n`).join("")}`,
});
const logKeyFile = join(witnessDir, "gatekeeper-keys.json");
writeFileSync(logKeyFile, await (await fetch(`${witnessed.url}/v1/keys`)).text());
const witnessProcesses = [];
for (const w of witnesses) {
  const child = spawn(cli, ["witness", "serve", "--listen", `127.0.0.1:${w.port}`, "--log-key", logKeyFile, "--origin", "gk.witnessed/audit", "--name", w.name, "--key", w.key, "--state", join(witnessDir, `${w.name}.state`)], { stdio: ["ignore", "pipe", "inherit"] });
  witnessProcesses.push(child);
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`witness ${w.name} exited with ${code}`)));
  });
  if (!line.endsWith(` vkey ${w.vkey}`)) throw new Error(`witness ${w.name}: unexpected first line \`${line}\` (expected vkey ${w.vkey})`);
}

let status = 1;
try {
  // Not spawnSync: the tamper proxy runs in this process and must keep serving.
  const run = spawn("cargo", ["test", "-p", "countersign-wasm", "--features", "admin", "--target", "wasm32-unknown-unknown", ...process.argv.slice(2)], {
    cwd: repo,
    stdio: "inherit",
    env: {
      ...process.env,
      CHROMEDRIVER: process.env.CHROMEDRIVER ?? "/usr/bin/chromedriver",
      WASM_BINDGEN_TEST_WEBDRIVER_JSON: `${repo}tests/webdriver.json`,
      WASM_BINDGEN_TEST_ADDRESS: `127.0.0.1:${pagePort}`,
      // The whole suite runs in one page; the runner's default of 20 s is too short
      // for it on a loaded machine.
      WASM_BINDGEN_TEST_TIMEOUT: process.env.WASM_BINDGEN_TEST_TIMEOUT ?? "300",
      COUNTERSIGN_TEST_GATEKEEPER_URL: gk.url,
      COUNTERSIGN_TEST_GATEKEEPER_ID: gk.id,
      COUNTERSIGN_TEST_GATEKEEPER_KEY: `${gk.key.keyId}:${gk.key.publicKey}`,
      COUNTERSIGN_TEST_PROXY_URL: proxy.url,
      COUNTERSIGN_TEST_TAMPERED_URL: tampered.url,
      COUNTERSIGN_TEST_TAMPERED_KEY: `${tampered.key.keyId}:${tampered.key.publicKey}`,
      COUNTERSIGN_TEST_TAMPERED_SEQ: String(TAMPERED_SEQ),
      COUNTERSIGN_TEST_WITNESSED_URL: witnessed.url,
      COUNTERSIGN_TEST_WITNESSED_KEY: `${witnessed.key.keyId}:${witnessed.key.publicKey}`,
      COUNTERSIGN_TEST_WITNESSES: witnesses.map((w) => w.vkey).join(" "),
    },
  });
  status = await new Promise((resolve) => run.on("exit", (code) => resolve(code ?? 1)));
  console.log(`tamper proxy:\n  ${proxy.log.join("\n  ")}`);
  // The client must have stopped reading the endless body right after the signed
  // size (a client that read on would have hung the test instead).
  if (status === 0 && !proxy.log.some((l) => l.startsWith("endless: the client stopped reading"))) {
    console.error("the client did not stop reading the endless body");
    status = 1;
  }
} finally {
  if (status !== 0) console.error(gk.log(), tampered.log(), witnessed.log());
  await proxy.stop();
  for (const child of witnessProcesses) child.kill("SIGTERM");
  await Promise.all([gk.stop(), tampered.stop(), witnessed.stop()]);
  rmSync(witnessDir, { recursive: true, force: true });
}
process.exit(status);
