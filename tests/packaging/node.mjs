// The package's "node" export condition, tested as shipped: packs packages/client
// with `npm pack`, installs the tarball into a plain Node project, and runs the
// client there (Node's own fetch and WebAssembly, no browser) against a real
// gatekeeper: PUT, GET, a batch GET, LIST and refusals, each verified.
//
//   npm run build && cargo build -p countersign-gatekeeper && node tests/packaging/node.mjs
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { publicKeyOfSeed, repo, startGatekeeper } from "../support/servers.mjs";

const build = spawnSync("cargo", ["build", "-p", "countersign-gatekeeper"], { cwd: repo, stdio: "inherit" });
if (build.status !== 0) process.exit(build.status ?? 1);

const seed = new Uint8Array(32).fill(12);
const gk = await startGatekeeper({
  config: `
[[keys]]
key_id = "node-vendor"
role = "vendor"
public_key = "${publicKeyOfSeed(seed)}"

[buckets.reports]
store = "local"
path = "buckets/reports"

[[acl]]
effect = "allow"
subjects = ["*"]
buckets = ["reports"]
prefix = "org-1/"
operations = ["GET", "HEAD", "PUT", "LIST"]
`,
});

// What the Node project runs: the package resolved through its "node" condition.
const app = `
import { createPrivateKey, sign } from "node:crypto";
import init, { CountersignError, GatekeeperClient } from "@countersign/client";

await init(); // already initialised by the node entry; must be harmless
const seed = Buffer.from(process.env.SEED, "hex");
const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
const key = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
const prefix = Buffer.from("countersign/v1/signature\\nrole:vendor\\nkey-id:node-vendor\\n");
const client = new GatekeeperClient({
  gatekeeperUrl: process.env.GK_URL,
  gatekeeperId: process.env.GK_ID,
  bucket: "reports",
  subject: "node-user",
  keys: [
    { keyId: process.env.GK_KEY_ID, role: "gatekeeper", publicKey: process.env.GK_KEY },
    { keyId: "node-vendor", role: "vendor", publicKey: process.env.VENDOR_KEY },
  ],
  sign: async (requests) =>
    requests.map((r) => {
      const message = Buffer.concat([prefix, Buffer.from(r, "base64url")]);
      return "vendor:node-vendor:" + sign(null, message, key).toString("base64url");
    }),
});
const code = async (p) => p.then(() => "ok", (e) => (e instanceof CountersignError && e instanceof Error ? e.code : String(e)));
const put = await client.putObject("org-1/node.txt", new TextEncoder().encode("hello node!"), "text/plain");
const object = await client.getObject("org-1/node.txt");
const many = await client.getObjects(["org-1/node.txt", "org-1/missing.txt"]);
const page = await client.listObjects("org-1/");
console.log(JSON.stringify({
  put: put.size,
  text: object.text(),
  url: object.objectUrl().startsWith("blob:"),
  many: many.map((r) => (r instanceof CountersignError ? r.code : r.text())),
  listed: page.objects.map((o) => o.key),
  again: await code(client.putObject("org-1/node.txt", new Uint8Array([1]), "text/plain")),
  denied: await code(client.getObject("org-2/other.txt")),
}));
`;
const expected = {
  put: 11,
  text: "hello node!",
  url: true,
  many: ["hello node!", "not_found"],
  listed: ["org-1/node.txt"],
  again: "already_exists",
  denied: "access_denied",
};

const work = mkdtempSync(join(tmpdir(), "countersign-node-"));
let ok = false;
try {
  const npm = (args, cwd) => execFileSync("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], { cwd, stdio: ["ignore", "pipe", "inherit"] });
  npm(["pack", "--pack-destination", work], join(repo, "packages/client"));
  const tarball = join(work, readdirSync(work).find((f) => f.endsWith(".tgz")));
  const project = join(work, "project");
  execFileSync("mkdir", ["-p", project]);
  writeFileSync(join(project, "package.json"), '{"name":"node-project","private":true,"type":"module"}');
  npm(["install", tarball], project);
  writeFileSync(join(project, "main.mjs"), app);
  const out = execFileSync(process.execPath, ["main.mjs"], {
    cwd: project,
    env: {
      ...process.env,
      SEED: Buffer.from(seed).toString("hex"),
      GK_URL: gk.url,
      GK_ID: gk.id,
      GK_KEY_ID: gk.key.keyId,
      GK_KEY: gk.key.publicKey,
      VENDOR_KEY: publicKeyOfSeed(seed),
    },
    stdio: ["ignore", "pipe", "inherit"],
  }).toString();
  const result = JSON.parse(out.trim().split("\n").pop());
  ok = JSON.stringify(result) === JSON.stringify(expected);
  console.log(`${ok ? "ok  " : "FAIL"} node condition: ${JSON.stringify(result)}`);
} finally {
  await gk.stop();
  rmSync(work, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
