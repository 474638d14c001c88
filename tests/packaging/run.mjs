// Packaging test (what ships is what is tested): packs the npm package with
// `npm pack`, installs the tarball into a plain page (an import map, no build step)
// and into a Vite app, and loads both in headless Chromium.
//
//   npm run build && node tests/packaging/run.mjs
//
// The package is the folder packages/client (its own package.json); the repository
// root's package.json is this test harness.
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launch } from "../support/browser.mjs";
import { repo } from "../support/servers.mjs";
import { serveStatic } from "../support/static.mjs";

const work = mkdtempSync(join(tmpdir(), "countersign-packaging-"));
const npm = (args, cwd) => execFileSync("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], { cwd, stdio: ["ignore", "pipe", "inherit"] }).toString();
const expected = {
  initialised: true,
  badBucket: "invalid_bucket",
  unreachable: "network",
  traversal: "invalid_key_path",
  badCursor: "invalid_key_path",
  newCodes: true,
};

let failed = false;
const browser = await launch();
try {
  npm(["pack", "--pack-destination", work], join(repo, "packages/client"));
  const tarball = join(work, readdirSync(work).find((f) => f.endsWith(".tgz")));

  // 1. A plain page: <script type="module"> with an import map into node_modules.
  const plain = join(work, "plain");
  cpSync(join(repo, "tests/packaging/smoke.js"), join(plain, "smoke.js"));
  writeFileSync(join(plain, "package.json"), '{"name":"plain","private":true}');
  npm(["install", tarball], plain);
  writeFileSync(
    join(plain, "index.html"),
    `<!doctype html><script type="importmap">{"imports":{"@countersign/client":"./node_modules/@countersign/client/pkg/countersign.js"}}</script>
<script type="module">import * as cs from "@countersign/client"; import { smoke } from "./smoke.js"; smoke(cs);</script>`,
  );

  // 2. A Vite app: the bundler resolves the package and emits the .wasm as an asset.
  const app = join(work, "vite");
  cpSync(join(repo, "tests/packaging/smoke.js"), join(app, "smoke.js"));
  writeFileSync(join(app, "package.json"), '{"name":"vite-app","private":true,"type":"module"}');
  npm(["install", tarball], app);
  writeFileSync(join(app, "index.html"), '<!doctype html><script type="module" src="./main.js"></script>');
  writeFileSync(join(app, "main.js"), 'import * as cs from "@countersign/client";\nimport { smoke } from "./smoke.js";\nsmoke(cs);\n');
  execFileSync(process.execPath, [join(repo, "node_modules/vite/bin/vite.js"), "build", "--logLevel", "warn"], { cwd: app, stdio: "inherit" });

  for (const [name, root] of [["plain page", plain], ["vite build", join(app, "dist")]]) {
    const server = await serveStatic(root);
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${server.url}/`);
    await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 30_000 });
    const result = await page.evaluate(() => window.__result);
    await page.close();
    await server.close();
    const ok = JSON.stringify(result) === JSON.stringify(expected) && errors.length === 0;
    console.log(`${ok ? "ok  " : "FAIL"} ${name}: ${JSON.stringify(result)}${errors.length ? ` page errors: ${errors}` : ""}`);
    failed ||= !ok;
  }
} finally {
  await browser.close();
  rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
