// End-to-end: the audit console (www/audit.*) served by a real gatekeeper (SQLite, local
// bucket) at /audit/, in headless Chromium, against a log of a few thousand entries.
// Everything runs on 127.0.0.x free ports started (and stopped) here.
//
//   npm run build && node tests/e2e/console.mjs
//   CONSOLE_ENTRIES=100000 node tests/e2e/console.mjs     (BENCHMARKS.md, "Audit console")
//
// (a) a key generated in the page, its public key written into the gatekeeper's config
//     by this test and the policy reloaded (SIGHUP); the page then shows the log;
// (b) filters, paging, the per-object and per-subject views: the rows are exactly those
//     the database holds for the filter;
// (c) every row shown carries its inclusion proof's mark; "verify whole log" succeeds;
// (d) an entry altered in the SQLite file is shown FAILED with its reason, and "verify
//     whole log" fails;
// (e) JSONL and CSV exports hold exactly the filter's entries (CSV formula-safe);
// (g) the group filter: a group's members in the policy in force (offered from
//     /v1/audit/groups), with another filter, in the export, after a reload that
//     changes the group, and an unknown group refused with its code;
// (f) a vendor (non-admin) key file imported into the page: the gatekeeper's refusal
//     code is shown;
// (h) an export file made by the gatekeeper's CLI verifies in the page ("verify an
//     export file"), and the same file with an entry removed is refused.
// Screenshots go to target/e2e/console-*.png.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { Agent, request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launch } from "../support/browser.mjs";
import { describePhases, firstPage, loaded } from "../support/console.mjs";
import { freePort, repo, targetDir } from "../support/servers.mjs";
import { sqlite } from "../support/sqlite.mjs";

const ENTRIES = Number(process.env.CONSOLE_ENTRIES ?? 3000);
const DENIED_IPS = ["127.0.0.5", "127.0.0.6"];
const CLIENT = join(repo, "packages/client/admin");
const OBJECTS = ["patients/p1/scan.png", "patients/p2/scan.png", "patients/p3/notes.txt"];
const READERS = ["alice", "bob", "carol"];

const build = spawnSync("cargo", ["build", "-p", "countersign-gatekeeper", "-p", "countersign-vendor", "--bins"], { cwd: repo, stdio: "inherit" });
if (build.status !== 0) process.exit(build.status ?? 1);
if (!existsSync(join(CLIENT, "countersign_bg.wasm"))) {
  console.error("packages/client/admin/ is not built: run `npm run build` (scripts/build-npm.sh) first");
  process.exit(1);
}
const target = targetDir();
const shots = join(target, "e2e");
mkdirSync(shots, { recursive: true });
const bin = (name) => join(target, "debug", name);
const run = (name, args) => execFileSync(bin(name), args, { cwd: repo }).toString();

const failures = [];
function check(ok, what, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}${!ok && detail ? `: ${detail}` : ""}`);
  if (!ok) failures.push(what);
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const dir = mkdtempSync(join(tmpdir(), "countersign-e2e-console-"));
const db = join(dir, "gk", "gatekeeper.sqlite");
/** Rows of `sql` from the gatekeeper's SQLite file. */
const query = (sql, params = []) => sqlite(db, sql, params);
const seqs = (sql, params) => query(sql, params).map((r) => r[0]);

const port = await freePort();
const gkUrl = `http://127.0.0.1:${port}`;
const vendorKey = join(dir, "vendor.key");
run("countersign", ["keygen", "--key-id", "vendor-e2e", "--out", vendorKey]);
const vendorPublic = JSON.parse(readFileSync(`${vendorKey}.pub`, "utf8")).public_key;
const configFile = join(dir, "gk.toml");
writeFileSync(configFile, `gatekeeper_id = "gk.console"
data_dir = "${join(dir, "gk")}"

[limits]
preauth_failure_burst = 1000000
preauth_failures_per_sec = 1000000

[audit]
checkpoint_interval_ms = 100

[[keys]]
key_id = "vendor-e2e"
role = "vendor"
public_key = "${vendorPublic}"

[buckets.local]
store = "local"

[network]
deny_ips = [${DENIED_IPS.map((ip) => `"${ip}/32"`).join(", ")}]

[groups]
radiology = ["alice", "bob"]

[[acl]]
effect = "allow"
subjects = ["*"]
operations = ["GET", "HEAD", "PUT", "LIST"]

[console]
client_dir = "${CLIENT}"
`);

let log = "";
const gk = spawn(bin("countersign-gatekeeper"), ["serve", "--config", configFile, "--listen", `127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "pipe"] });
gk.stdout.on("data", (d) => (log += d));
gk.stderr.on("data", (d) => (log += d));
let browser;

async function waitUntil(what, test, seconds = 60) {
  for (let i = 0; i < seconds * 10; i++) {
    if (gk.exitCode !== null) throw new Error(`the gatekeeper exited with ${gk.exitCode}`);
    if (await test()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${seconds}s`);
}

async function treeSize() {
  const r = await fetch(`${gkUrl}/v1/log/checkpoint`).catch(() => null);
  if (!r?.ok) return 0;
  return Number((await r.text()).split("\n")[1]);
}

/** `count` requests the gatekeeper denies (and logs): from the denied addresses
 *  (`ip_denied`) and unsigned from 127.0.0.1 (`malformed`), over 50 patients' objects. */
async function deniedRequests(count) {
  const sources = ["127.0.0.1", ...DENIED_IPS]; // request i comes from sources[i % 3]
  const agents = sources.map((localAddress) => new Agent({ keepAlive: true, maxSockets: 8, localAddress }));
  let next = 0;
  const one = (i) => new Promise((resolve, reject) => {
    const key = i === 8 ? "%3DHYPERLINK(1)" : `patients/p${i % 50}/scan.png`;
    const req = httpRequest(`${gkUrl}/v1/objects/local/${key}`, { agent: agents[i % agents.length] }, (res) => {
      res.resume();
      res.on("end", resolve);
    });
    req.on("error", reject);
    req.end();
  });
  const worker = async () => {
    while (next < count) await one(next++);
  };
  await Promise.all(Array.from({ length: 24 }, worker));
  for (const a of agents) a.destroy();
}

async function reloadPolicy(what = "the policy with the console's key is reloaded") {
  const outcomes = () => log.split("\n").filter((l) => /SIGHUP: policy (reloaded|reload refused)/.test(l));
  const before = outcomes().length;
  gk.kill("SIGHUP");
  await waitUntil("policy reload", () => outcomes().length > before, 20);
  const last = outcomes().pop();
  check(last.includes("SIGHUP: policy reloaded"), what, last);
}

const rowsOf = (page) => page.$$eval("#rows tr", (trs) => trs.map((tr) => ({
  seq: Number(tr.dataset.seq),
  status: tr.dataset.status,
  cells: [...tr.children].map((td) => td.textContent),
})));

async function filterBy(page, values) {
  await page.$eval("#filters", (f) => f.reset());
  for (const [name, value] of Object.entries(values)) {
    const field = `#filters [name=${name}]`;
    if ((await page.$eval(field, (e) => e.tagName)) === "SELECT") await page.selectOption(field, value);
    else await page.fill(field, String(value));
  }
  await loaded(page, () => page.click("#filters button[type=submit]"));
}

async function download(page, button) {
  const [file] = await Promise.all([page.waitForEvent("download", { timeout: 120000 }), page.click(button)]);
  return readFileSync(await file.path(), "utf8");
}

try {
  await waitUntil("the gatekeeper's health", () => fetch(`${gkUrl}/healthz`).then((r) => r.ok, () => false), 30);
  const keysFile = join(dir, "gk-keys.json");
  writeFileSync(keysFile, await (await fetch(`${gkUrl}/v1/keys`)).text());

  // The log: a few signed uploads and reads, then many denied requests.
  const started = Date.now();
  const cli = (verb, object, subject, file) => run("countersign", [verb, "--no-progress", "--gatekeeper", gkUrl, "--gatekeeper-key", keysFile, "--signing-key", vendorKey,
    "--audience", "gk.console", "--bucket", "local", "--subject", subject, "--object", object, ...(verb === "put" ? ["--content-type", "application/octet-stream", file] : ["--out", file])]);
  const sample = join(dir, "sample");
  writeFileSync(sample, "a scan");
  for (const object of OBJECTS) cli("put", object, "uploader", sample);
  for (const reader of READERS) cli("get", OBJECTS[0], reader, join(dir, `read-${reader}`));
  cli("get", OBJECTS[1], "alice", join(dir, "read-alice-2"));
  await deniedRequests(ENTRIES);
  const total = seqs("SELECT count(*) FROM audit_log")[0];
  await waitUntil("the checkpoint covering the log", async () => (await treeSize()) >= total, 120);
  console.log(`log of ${total} entries written and covered by a checkpoint in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  browser = await launch();
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  // A refused request is logged by Chromium as a failed resource: that is expected here.
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && pageErrors.push(m.text()));

  // (a) Key generation and registration.
  const response = await page.goto(`${gkUrl}/audit/`);
  check(response.headers()["content-security-policy"]?.includes("script-src 'self' 'wasm-unsafe-eval'"), "the page is served with its Content-Security-Policy");
  await page.waitForSelector("#signin:not([hidden])");
  await page.waitForFunction(() => /\d/.test(document.querySelector("#tree-size").textContent) || !document.querySelector("#checkpoint-error").hidden);
  check(Number((await page.textContent("#tree-size")).replaceAll(",", "")) >= total, "the verified checkpoint's tree size is shown", await page.textContent("#checkpoint-error"));
  await page.fill("#generate [name=keyId]", "console-e2e");
  await page.fill("#generate [name=subject]", "ann-admin");
  await page.click("#generate button[type=submit]");
  await page.waitForSelector("#register:not([hidden])");
  const toml = await page.textContent("#toml");
  const publicKey = /public_key = "([A-Za-z0-9_-]{43})"/.exec(toml)?.[1];
  check(publicKey !== undefined && toml.includes('role = "customer-admin"') && toml.includes('key_id = "console-e2e"'), "the page shows the [[keys]] snippet of its new key", toml);
  await page.waitForFunction(() => document.querySelector("#status").className === "failed");
  const unregistered = await page.textContent("#status");
  check(/The gatekeeper refused the search: [a-z_]+: ./.test(unregistered), "before registration the gatekeeper refuses the key, and the page shows its code", unregistered);
  console.log(`     (${unregistered})`);
  await page.screenshot({ path: join(shots, "console-register.png"), fullPage: true });

  appendFileSync(configFile, `
[thresholds]
AUDIT = { customer-admin = 1 }

[[keys]]
key_id = "console-e2e"
role = "customer-admin"
public_key = "${publicKey}"
`);
  await reloadPolicy();
  const first = await firstPage(page);
  let rows = await rowsOf(page);
  check(same(rows.map((r) => r.seq), seqs("SELECT seq FROM audit_log ORDER BY seq LIMIT 100")), "the key survives a reload (IndexedDB); the first page holds entries 0-99", JSON.stringify(rows.map((r) => r.seq).slice(0, 5)));
  check(rows.length === 100 && rows.every((r) => r.status === "verified"), "every row of the first page is proven included (verified)", JSON.stringify(rows.filter((r) => r.status !== "verified").slice(0, 3)));
  console.log(`page load to the first page of ${rows.length} verified rows: ${first.ms} ms, of which proving the page's entries ${first.proofMs} ms (log of ${total} entries)`);
  console.log(`     (phases, ms from the navigation: ${describePhases(first.phases)})`);
  await page.screenshot({ path: join(shots, "console-timeline.png"), fullPage: true });

  // (b) Filters and paging.
  await filterBy(page, { ip: DENIED_IPS[0], decision: "deny", limit: 100 });
  const ipDenied = seqs("SELECT seq FROM audit_log WHERE client_ip = ? AND decision = 'deny' ORDER BY seq", [DENIED_IPS[0]]);
  rows = await rowsOf(page);
  check(same(rows.map((r) => r.seq), ipDenied.slice(0, 100)), "client IP + decision filter: the rows are the database's", `${rows.length} rows`);
  check(rows.every((r) => r.cells[4] === DENIED_IPS[0] && r.cells[8] === "ip_denied"), "the rows show the verified client IP and error code");
  await loaded(page, () => page.click("#next"));
  rows = await rowsOf(page);
  check(same(rows.map((r) => r.seq), ipDenied.slice(100, 200)), "next page (after_seq)", JSON.stringify(rows.map((r) => r.seq).slice(0, 3)));
  await loaded(page, () => page.click("#prev"));
  rows = await rowsOf(page);
  check(same(rows.map((r) => r.seq), ipDenied.slice(0, 100)), "previous page");

  await filterBy(page, { operation: "PUT" });
  rows = await rowsOf(page);
  check(same(rows.map((r) => r.seq), seqs("SELECT seq FROM audit_log WHERE CAST(operation AS TEXT) = 'PUT' ORDER BY seq")) && rows.length === OBJECTS.length, "operation filter", JSON.stringify(rows.map((r) => r.cells[6])));

  await filterBy(page, { error: "malformed", key_prefix: "patients/p3", decision: "deny" });
  rows = await rowsOf(page);
  check(same(rows.map((r) => r.seq), seqs("SELECT seq FROM audit_log WHERE error_code = 'malformed' AND CAST(object_key AS TEXT) LIKE 'patients/p3%' ORDER BY seq LIMIT 100")) && rows.length > 0, "error code + key prefix filter", `${rows.length} rows`);

  // Per-object view: who read the scan, when, from where.
  await filterBy(page, { operation: "GET", decision: "allow" });
  await loaded(page, () => page.click(`#rows button.link:text-is("local/${OBJECTS[0]}")`));
  rows = await rowsOf(page);
  const history = seqs("SELECT seq FROM audit_log WHERE CAST(bucket AS TEXT) = 'local' AND CAST(object_key AS TEXT) = ? ORDER BY seq LIMIT 100", [OBJECTS[0]]);
  check(same(rows.map((r) => r.seq), history), "per-object view: the object's whole history", `${rows.length} vs ${history.length}`);
  const readers = rows.filter((r) => r.cells[7] === "allow" && r.cells[5] === "GET").map((r) => r.cells[3]);
  check(same(readers, READERS), "per-object view: who read it", JSON.stringify(readers));
  check((await page.textContent("#view-title")).includes(`local/${OBJECTS[0]}`), "per-object view is titled with the object");
  await page.screenshot({ path: join(shots, "console-object.png"), fullPage: true });

  // Per-subject view.
  await loaded(page, () => page.click('#rows button.link:text-is("alice")'));
  rows = await rowsOf(page);
  check(same(rows.map((r) => r.seq), seqs("SELECT seq FROM audit_log WHERE CAST(subject AS TEXT) = 'alice' ORDER BY seq")) && rows.length === 2, "per-subject view", `${rows.length} rows`);

  // (g) The group filter: the members of the group in the policy in force.
  const groupRows = (members, extra = "", params = []) => seqs(`SELECT seq FROM audit_log WHERE CAST(subject AS TEXT) IN (${members.map(() => "?").join(", ")})${extra} ORDER BY seq LIMIT 100`, [...members, ...params]);
  const offered = await page.$$eval("#group-names option", (os) => os.map((o) => o.value));
  check(same(offered, ["radiology"]), "the group field offers the policy's groups (GET /v1/audit/groups)", JSON.stringify(offered));
  await filterBy(page, { group: "radiology" });
  rows = await rowsOf(page);
  check(same(rows.map((r) => r.seq), groupRows(["alice", "bob"])) && rows.length === 3, "group filter: exactly the members' entries", JSON.stringify(rows.map((r) => r.cells[3])));
  check(rows.every((r) => r.status === "verified"), "group filter: every row proven included");
  const title = await page.textContent("#view-title");
  check(title.includes("group radiology = alice, bob") && title.includes("policy now"), "the view names the membership the filter used", title);
  await page.screenshot({ path: join(shots, "console-group.png"), fullPage: true });
  await filterBy(page, { group: "radiology", key: OBJECTS[1], bucket: "local" });
  rows = await rowsOf(page);
  check(same(rows.map((r) => r.seq), groupRows(["alice", "bob"], " AND CAST(object_key AS TEXT) = ?", [OBJECTS[1]])) && rows.length === 1, "group filter with a key filter (AND)", JSON.stringify(rows.map((r) => r.cells[3])));
  await filterBy(page, { group: "radiology" });
  const groupExport = (await download(page, "#export-jsonl")).trim().split("\n").map((l) => JSON.parse(l));
  const header = groupExport[0];
  check(same(Object.keys(header), ["group"]) && header.group.name === "radiology" && same(header.group.members, ["alice", "bob"]) && same(groupExport.slice(1).map((r) => r.seq), groupRows(["alice", "bob"])), "JSONL export of a group filter: the membership first, then the members' entries", JSON.stringify(header));
  writeFileSync(configFile, readFileSync(configFile, "utf8").replace('radiology = ["alice", "bob"]', 'radiology = ["alice", "bob", "carol"]'));
  await reloadPolicy("the policy with carol in radiology is reloaded");
  await filterBy(page, { group: "radiology" });
  rows = await rowsOf(page);
  check(same(rows.map((r) => r.seq), groupRows(["alice", "bob", "carol"])) && rows.length === 4, "after the reload the same group filter includes carol's earlier entry", JSON.stringify(rows.map((r) => r.cells[3])));
  check((await page.textContent("#view-title")).includes("group radiology = alice, bob, carol"), "the view names the new membership");
  await filterBy(page, { group: "cardiology" });
  const unknownGroup = await page.textContent("#status");
  check(unknownGroup.includes("invalid_field") && unknownGroup.includes("group `cardiology` is not defined") && (await page.$$("#rows tr")).length === 0, "an unknown group is refused with its code, not shown as an empty result", unknownGroup);

  // The chart of denied attempts for a filter.
  await filterBy(page, { decision: "deny" });
  await page.click("#draw-chart");
  await page.waitForSelector("#chart-by-ip svg", { timeout: 120000 });
  const legend = await page.textContent("#chart-by-ip .legend");
  console.log(`     (${await page.textContent("#chart-note")})`);
  check(DENIED_IPS.every((ip) => legend.includes(ip)) && (await page.textContent("#chart-by-code .legend")).includes("ip_denied"), "the chart of denied attempts by code and by IP", legend);
  await page.screenshot({ path: join(shots, "console-chart.png"), fullPage: true });

  // (e) Exports of a filter that spans several pages of the page's size.
  await filterBy(page, { ip: DENIED_IPS[1], limit: 50 });
  const expected = query("SELECT seq, CAST(object_key AS TEXT) FROM audit_log WHERE client_ip = ? ORDER BY seq", [DENIED_IPS[1]]);
  const jsonl = (await download(page, "#export-jsonl")).trim().split("\n").map((l) => JSON.parse(l));
  check(same(jsonl.map((r) => r.seq), expected.map((r) => r[0])), "JSONL export: every entry of the filter, not only the page shown", `${jsonl.length} vs ${expected.length}`);
  check(jsonl.every((r) => r.client_ip === DENIED_IPS[1] && typeof r.entry === "string" && r.entry.length > 0), "JSONL export: the search's records with each entry's bytes");
  const csv = (await download(page, "#export-csv")).trim().split("\r\n");
  check(csv.length === expected.length + 1 && csv[0].startsWith('"seq","time_ms"'), "CSV export: a header and one line per entry", `${csv.length} lines`);
  const fields = await page.evaluate(async () => {
    const { csvField } = await import("/audit/audit.js");
    return ["=SUM(A1)", "+1", "-2", "@x", "a\"b", "plain", 7].map(csvField);
  });
  check(same(fields, ['"\'=SUM(A1)"', '"\'+1"', '"\'-2"', '"\'@x"', '"a""b"', '"plain"', '"7"']), "CSV fields are quoted and formula characters neutralized", JSON.stringify(fields));
  const formula = expected.find((r) => r[1].startsWith("="));
  const formulaLine = formula && csv.find((l) => l.startsWith(`"${formula[0]}",`));
  check(formula !== undefined && formulaLine?.includes(`"'${formula[1]}"`), "CSV export: a key starting with = is neutralized", formulaLine);

  // (c) Verify the whole log.
  await page.click("#verify-log");
  await page.waitForFunction(() => /Verified|FAILED/.test(document.querySelector("#verify-result").textContent), null, { timeout: 300000 });
  const verified = await page.textContent("#verify-result");
  check(verified.startsWith("Verified") && verified.includes("entries/s"), "verify whole log succeeds", verified);
  console.log(verified);

  // (h) Verify an export file: the log exported by the gatekeeper's
  // CLI verifies in the page; the same file with one entry line removed is refused.
  const exportFile = join(dir, "export.jsonl");
  run("countersign-gatekeeper", ["audit", "export", "--config", configFile, "--out", exportFile]);
  const verifyExport = async (file) => {
    await page.setInputFiles("#verify-export-file", file);
    await page.waitForFunction(() => /Verified|does NOT verify/.test(document.querySelector("#verify-export-result").textContent) && !document.querySelector("#verify-export-file").disabled, null, { timeout: 300000 });
    return page.textContent("#verify-export-result");
  };
  const exported = await verifyExport(exportFile);
  check(exported.startsWith("Verified export.jsonl") && exported.includes("match the signed tree checkpoint"), "an export file verifies in the page", exported);
  const exportLines = readFileSync(exportFile, "utf8").split("\n");
  const cutFile = join(dir, "cut.jsonl");
  writeFileSync(cutFile, exportLines.filter((l, i) => i !== exportLines.findIndex((m) => m.startsWith('{"type":"entry","seq":2,'))).join("\n"));
  const cut = await verifyExport(cutFile);
  check(cut.includes("does NOT verify") && cut.includes("audit_chain_broken") && cut.includes("line "), "an export with an entry removed is refused, naming the line", cut);

  // (d) An entry altered in the database.
  const victim = ipDenied[5];
  query("UPDATE audit_log SET client_ip = '10.66.66.66' WHERE seq = ?", [victim]);
  await filterBy(page, { decision: "deny", limit: 100 });
  rows = await rowsOf(page);
  const tampered = rows.find((r) => r.seq === victim);
  check(tampered?.status === "failed" && tampered.cells[0].includes("FAILED"), "the altered entry is marked FAILED", JSON.stringify(tampered));
  check(await page.isVisible(`#rows tr[data-seq="${victim}"] .why`), "the failure's reason is shown, not hidden", tampered?.cells[0]);
  check(rows.filter((r) => r.seq !== victim).every((r) => r.status === "verified"), "the other rows stay verified");
  check((await page.textContent("#status")).includes("FAILED"), "the status line counts the failure");
  await page.screenshot({ path: join(shots, "console-tampered.png"), fullPage: true });
  await page.click("#verify-log");
  await page.waitForFunction(() => /Verified|FAILED/.test(document.querySelector("#verify-result").textContent) && !document.querySelector("#verify-log").disabled, null, { timeout: 300000 });
  const broken = await page.textContent("#verify-result");
  check(broken.includes("FAILED") && broken.includes("audit_chain_broken"), "verify whole log fails on the altered log", broken);

  // (f) A non-admin key.
  await page.click("#signout");
  await page.waitForSelector("#signin:not([hidden])");
  await page.setInputFiles("#import [name=file]", vendorKey);
  await page.fill("#import [name=subject]", "mallory");
  await page.click("#import button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#status").className === "failed");
  const refused = await page.textContent("#status");
  check(refused.includes("wrong_role"), "a vendor key is refused and the gatekeeper's code (wrong_role) shown", refused);
  check((await page.$$("#rows tr")).length === 0, "a refused key sees no rows");
  await page.screenshot({ path: join(shots, "console-refused.png"), fullPage: true });
  check(pageErrors.length === 0, "no script errors in the page", pageErrors.join(" | "));
} catch (e) {
  console.error(e);
  failures.push(String(e.message ?? e));
  console.error(log.split("\n").slice(-30).join("\n"));
} finally {
  await browser?.close();
  gk.kill("SIGTERM");
  if (gk.exitCode === null) await new Promise((r) => gk.once("exit", r));
  rmSync(dir, { recursive: true, force: true });
}

if (failures.length) {
  console.error(`\n${failures.length} check(s) failed`);
  process.exit(1);
}
console.log("\nall console checks passed");
