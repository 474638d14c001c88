// Runs the wasm client's browser tests (crates/countersign-wasm/tests/browser.rs) in
// headless Chromium against a real gatekeeper started here, directly and through a
// proxy that tampers with its answers (tamper-proxy.mjs):
//
//   node tests/browser/wasm-client.mjs [-- TEST-ARGS]
//
// Arguments after `--` go to the test runner, for example `-- --nocapture
// receipts_prove` to run one test and see what it prints (the proof timing).
// COUNTERSIGN_TEST_GATEKEEPER_PROFILE=release runs a release build of the gatekeeper.
// The test page is served on a fixed free port so that the gatekeeper's CORS
// configuration can name its origin.
import { spawn, spawnSync } from "node:child_process";
import { freePort, gatekeeperProfile, publicKeyOfSeed, repo, startGatekeeper } from "../support/servers.mjs";
import { startTamperProxy } from "./tamper-proxy.mjs";

const profileArgs = gatekeeperProfile === "debug" ? [] : ["--profile", gatekeeperProfile];
const build = spawnSync("cargo", ["build", "-p", "countersign-gatekeeper", ...profileArgs], { cwd: repo, stdio: "inherit" });
if (build.status !== 0) process.exit(build.status ?? 1);

const pagePort = await freePort();
const vendor = publicKeyOfSeed(new Uint8Array(32).fill(11));
const admin = publicKeyOfSeed(new Uint8Array(32).fill(13));
const gk = await startGatekeeper({
  config: `
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
`,
});
const proxy = await startTamperProxy(gk.url);
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
      COUNTERSIGN_TEST_GATEKEEPER_URL: gk.url,
      COUNTERSIGN_TEST_GATEKEEPER_ID: gk.id,
      COUNTERSIGN_TEST_GATEKEEPER_KEY: `${gk.key.keyId}:${gk.key.publicKey}`,
      COUNTERSIGN_TEST_PROXY_URL: proxy.url,
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
  if (status !== 0) console.error(gk.log());
  await proxy.stop();
  await gk.stop();
}
process.exit(status);
