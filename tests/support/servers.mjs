// Starts the real servers the browser tests need — the gatekeeper binary on its
// embedded defaults (local bucket directory, SQLite) with a generated config — on
// free 127.0.0.1 ports, and stops them.
import { spawn, execFileSync } from "node:child_process";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const repo = new URL("../..", import.meta.url).pathname;

/** The Cargo target directory (honours CARGO_TARGET_DIR). */
export function targetDir() {
  const meta = execFileSync("cargo", ["metadata", "--format-version", "1", "--no-deps"], { cwd: repo, maxBuffer: 64 << 20 });
  return JSON.parse(meta).target_directory;
}

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The base64url Ed25519 public key of a 32-byte seed. */
export function publicKeyOfSeed(seed) {
  const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), Buffer.from(seed)]);
  const priv = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  return createPublicKey(priv).export({ format: "jwk" }).x;
}

async function waitFor(url, child, seconds = 30) {
  for (let i = 0; i < seconds * 10; i++) {
    if (child.exitCode !== null) throw new Error(`${url}: the server exited with ${child.exitCode}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up in ${seconds}s`);
}

/**
 * The Cargo profile of the gatekeeper binary the tests start:
 * `COUNTERSIGN_TEST_GATEKEEPER_PROFILE` (`release` for timings), `debug` by default.
 */
export const gatekeeperProfile = process.env.COUNTERSIGN_TEST_GATEKEEPER_PROFILE ?? "debug";

/**
 * Starts `countersign-gatekeeper serve` (built beforehand with
 * `cargo build -p countersign-gatekeeper`, plus `--release` for the release profile).
 * `config` is TOML text appended to the generated head (id, data dir, key).
 */
/** Writes `dir`/gatekeeper.toml as `startGatekeeper` runs it; returns its path. */
export function writeGatekeeperConfig({ id = "gk.test", config = "", dir }) {
  const file = join(dir, "gatekeeper.toml");
  writeFileSync(file, `gatekeeper_id = "${id}"\ndata_dir = "${dir}"\n[key]\npath = "gatekeeper.key"\nkey_id = "gk-test-1"\n${config}`);
  return file;
}

export async function startGatekeeper({ id = "gk.test", config = "", listen = "127.0.0.1", dir: reuse } = {}) {
  // `dir`: the data directory of a gatekeeper stopped with `stop({ keep: true })`.
  const dir = reuse ?? mkdtempSync(join(tmpdir(), "countersign-e2e-gk-"));
  const port = await freePort();
  const file = writeGatekeeperConfig({ id, config, dir });
  const binary = join(targetDir(), gatekeeperProfile, "countersign-gatekeeper");
  const child = spawn(binary, ["serve", "--config", file, "--listen", `${listen}:${port}`], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const url = `http://${listen}:${port}`;
  try {
    await waitFor(`${url}/healthz`, child);
  } catch (e) {
    child.kill();
    throw new Error(`${e.message}\n${log}`);
  }
  const keys = await (await fetch(`${url}/v1/keys`)).json();
  const key = keys.keys.find((k) => k.role === "gatekeeper");
  return {
    url,
    id,
    dir,
    key: { keyId: key.key_id, publicKey: key.public_key },
    log: () => log,
    async stop({ keep = false } = {}) {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
      if (!keep) rmSync(dir, { recursive: true, force: true });
    },
  };
}
