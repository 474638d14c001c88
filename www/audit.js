// The audit console: the customer's admin searches the gatekeeper's audit log with a
// customer-admin key held in this browser, and every row shown is proven included in
// the signed checkpoint by the WebAssembly client before its fields are displayed.
// Every /v1/audit/* request is a fresh AuditRequest signed with WebCrypto.
import init, { AuditRequest, LogView, verifyLog } from "./client/countersign.js";

const $ = (id) => document.getElementById(id);
const DB_NAME = "countersign-console";
const STORE = "keys";
const SIGNED_IN = "admin";
const EXPORT_PAGE = 10000; // the search's largest page
const CHART_MAX = 2000; // denied entries the chart reads and proves at most (one search page)
const ED25519_PKCS8_PREFIX = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

let settings; // /audit/console.json: gatekeeperId, keys, logWitnesses, logQuorum
let view; // LogView of the newest checkpoint
let admin; // { keyId, subject, publicKey, privateKey }
let pages = []; // after_seq of each page shown so far (the stack "previous" walks back)
let next = null; // next_after_seq of the page shown
let filter = new URLSearchParams();
let generation = 0; // the newest search shown; an older one still in flight is dropped
let opening = Promise.resolve(false); // the newest openLog(): true once `view` is verified
let firstShown = false;

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

/** Records the User Timing measure `countersign:console:<name>` from `start` to now:
 *  the phases of loading a page, for the browser's profiler and the console benchmark. */
function measure(name, start) {
  performance.measure(`countersign:console:${name}`, { start, end: performance.now() });
}

function status(text, failed = false) {
  $("status").textContent = text;
  $("status").className = failed ? "failed" : "";
}

/** An Error with a stable `code`, like the gatekeeper's and the client's errors. */
function codedError(code, message) {
  return Object.assign(new Error(message), { code });
}

function describe(e) {
  return e?.code ? `${e.code}: ${e.message}` : String(e?.message ?? e);
}

function b64url(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function unb64url(text) {
  const s = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

// ---- the key in IndexedDB -------------------------------------------------------

function db() {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(DB_NAME, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE);
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
}

async function stored(mode, action) {
  const d = await db();
  try {
    return await new Promise((resolve, reject) => {
      const tx = d.transaction(STORE, mode);
      const req = action(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    d.close();
  }
}

const loadKey = () => stored("readonly", (s) => s.get(SIGNED_IN));
const saveKey = (record) => stored("readwrite", (s) => s.put(record, SIGNED_IN));
const deleteKey = () => stored("readwrite", (s) => s.delete(SIGNED_IN));

async function generate(keyId, subject) {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const publicKey = b64url(new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey)));
  return { keyId, subject, publicKey, privateKey: pair.privateKey, generated: true };
}

/** A `countersign-secret-key/v1` file (one key) as a non-extractable CryptoKey, after
 *  checking that its secret key signs for its public key. */
async function importKeyFile(text, subject) {
  let doc;
  try {
    doc = JSON.parse(text);
  } catch {
    throw codedError("malformed", "the file is not JSON: choose a secret key file written by `countersign keygen`");
  }
  if (Array.isArray(doc)) {
    if (doc.length !== 1) throw codedError("malformed", "the file holds several keys: import a file with one key");
    doc = doc[0];
  }
  if (doc?.format !== "countersign-secret-key/v1" || typeof doc.secret_key !== "string" || typeof doc.public_key !== "string" || typeof doc.key_id !== "string") {
    throw codedError("malformed", "the file is not a countersign-secret-key/v1 document with key_id, public_key and secret_key");
  }
  let seed;
  let publicKey;
  try {
    seed = unb64url(doc.secret_key);
    publicKey = unb64url(doc.public_key);
  } catch {
    throw codedError("malformed", "secret_key and public_key must be base64url");
  }
  if (seed.length !== 32 || publicKey.length !== 32) {
    throw codedError("malformed", "secret_key and public_key must each be 32 bytes of base64url");
  }
  const pkcs8 = new Uint8Array([...ED25519_PKCS8_PREFIX, ...seed]);
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
  pkcs8.fill(0);
  seed.fill(0);
  const probe = new TextEncoder().encode("countersign console key check");
  const verifier = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, true, ["verify"]);
  const ok = await crypto.subtle.verify("Ed25519", verifier, await crypto.subtle.sign("Ed25519", privateKey, probe), probe);
  if (!ok) throw codedError("bad_key", "the file's secret_key does not belong to its public_key");
  return { keyId: doc.key_id, subject, publicKey: doc.public_key, privateKey, role: doc.role, generated: false };
}

// ---- signed audit requests --------------------------------------------------------

const sign = async (message) => new Uint8Array(await crypto.subtle.sign("Ed25519", admin.privateKey, message));

/** GET /v1/audit/search (or another read-only audit `endpoint`) with `params`, as a
 *  fresh signed request; the answer must hold the array `field`. */
async function search(params, endpoint = "search", field = "entries") {
  const req = new AuditRequest({ gatekeeperId: settings.gatekeeperId, subject: admin.subject, keyId: admin.keyId, action: "read" });
  let headers;
  try {
    headers = { "Countersign-Request": req.requestHeader, "Countersign-Signature": req.signatureHeader(await sign(req.signingMessage)) };
  } finally {
    req.free();
  }
  let r;
  try {
    r = await fetch(`/v1/audit/${endpoint}?${params}`, { headers, cache: "no-store" });
  } catch (e) {
    throw codedError("network", `the gatekeeper could not be reached: ${e.message}`);
  }
  const json = await r.json().catch(() => null);
  if (!r.ok || !json || !Array.isArray(json[field])) {
    const e = json?.error ?? { code: `http_${r.status}`, message: `the gatekeeper's answer to /v1/audit/${endpoint} has no ${field} list` };
    throw codedError(e.code, e.message);
  }
  return json;
}

// ---- the checkpoint ---------------------------------------------------------------

/** The newest `cosignature/v1` timestamp in the note (Unix seconds), if any: a
 *  cosignature line's signature is key id (4 bytes), timestamp (8, big-endian), signature. */
function newestCosignatureTime(note) {
  let newest;
  for (const line of note.split("\n")) {
    const m = /^\u2014 \S+ ([A-Za-z0-9+/=]+)$/.exec(line);
    if (!m) continue;
    const bytes = Uint8Array.from(atob(m[1]), (c) => c.charCodeAt(0));
    if (bytes.length !== 76) continue;
    const t = Number(new DataView(bytes.buffer).getBigUint64(4));
    if (newest === undefined || t > newest) newest = t;
  }
  return newest;
}

async function openLog() {
  $("checkpoint-error").hidden = true;
  const started = performance.now();
  try {
    const opened = await LogView.open({ gatekeeperUrl: location.origin, ...settings });
    view?.free();
    view = opened;
    measure("checkpoint", started);
  } catch (e) {
    $("checkpoint-error").textContent = `The checkpoint could not be verified: ${describe(e)}`;
    $("checkpoint-error").hidden = false;
    return false;
  }
  $("tree-size").textContent = view.treeSize.toLocaleString("en");
  $("root").textContent = view.rootHash;
  $("cosigners").textContent = view.cosignedBy.length ? view.cosignedBy.join(", ") : "no witness (none configured, or no quorum yet)";
  const t = newestCosignatureTime(view.note);
  $("age").textContent = t === undefined
    ? `fetched ${new Date().toLocaleTimeString()} (a checkpoint without cosignatures carries no time)`
    : `${Math.max(0, Math.round(Date.now() / 1000 - t))} s (newest witness cosignature)`;
  return true;
}

// ---- the timeline -----------------------------------------------------------------

function filterFromForm() {
  const form = new FormData($("filters"));
  const p = new URLSearchParams();
  const time = (name, param) => {
    const v = form.get(name);
    if (v) p.set(param, String(new Date(v).getTime()));
  };
  time("from", "from_ms");
  time("to", "to_ms");
  for (const name of ["subject", "group", "ip", "bucket", "key_prefix", "key", "operation", "decision", "error"]) {
    const v = String(form.get(name) ?? "").trim();
    if (v) p.set(name, v);
  }
  return p;
}

function setForm(values) {
  const f = $("filters");
  for (const name of ["subject", "group", "ip", "bucket", "key_prefix", "key", "operation", "decision", "error", "from", "to"]) {
    f.elements[name].value = values[name] ?? "";
  }
}

/** The membership a group filter used (the search answer's `group`), in words. */
function describeGroup(group) {
  const members = group.members.length ? group.members.join(", ") : "no members";
  return `group ${group.name} = ${members} (its members in the gatekeeper's policy now, not when the entries were written)`;
}

function describeView(group) {
  const key = filter.get("key");
  const subject = filter.get("subject");
  if (key !== null && filter.has("bucket")) return `Who touched ${filter.get("bucket")}/${key}: every access, in order.`;
  if (subject !== null && !group) return `Everything ${subject} did or tried.`;
  const terms = [...filter].filter(([k]) => k !== "group").map(([k, v]) => `${k} = ${v}`);
  if (group) return `Everything done or tried by ${describeGroup(group)}${terms.length ? `, where ${terms.join(", ")}` : ""}.`;
  return terms.length ? `Filter: ${terms.join(", ")}.` : "All entries.";
}

async function show(afterSeq) {
  const mine = ++generation;
  const limit = Math.min(1000, Math.max(1, Number(new FormData($("filters")).get("limit")) || 100));
  const p = new URLSearchParams(filter);
  p.set("limit", String(limit));
  if (afterSeq !== null) p.set("after_seq", String(afterSeq));
  status("Searching…");
  // The search runs while the checkpoint is still being fetched and verified (on the
  // first load): the rows wait for it only to be proven.
  const searchStarted = performance.now();
  const searched = search(p);
  searched.then(() => measure("search", searchStarted), () => {});
  await opening;
  if (!view) {
    if (mine === generation) status("The log's checkpoint did not verify, so no entry can be proven: nothing is shown (see above).", true);
    return;
  }
  let answer;
  try {
    answer = await searched;
  } catch (e) {
    if (mine !== generation) return;
    status(`The gatekeeper refused the search: ${describe(e)}`, true);
    $("rows").replaceChildren();
    return;
  }
  const started = performance.now();
  const checks = await view.proveEntries(answer.entries.map((r) => r.entry));
  const proofMs = performance.now() - started;
  measure("prove", started);
  if (mine !== generation) {
    checks.forEach((c) => c.free());
    return;
  }
  render(answer.entries, checks);
  checks.forEach((c) => c.free());
  next = answer.next_after_seq;
  $("next").disabled = next === null;
  $("prev").disabled = pages.length < 2;
  $("page-info").textContent = `page ${pages.length}`;
  $("view-title").textContent = describeView(answer.group);
  const failed = answer.entries.length - $("rows").querySelectorAll("tr.verified-row, tr.pending-row").length;
  status(`${answer.entries.length} entries; inclusion proofs checked in ${proofMs.toFixed(0)} ms${failed ? `; ${failed} FAILED` : ""}.`, failed > 0);
  document.body.dataset.loaded = String(Date.now());
  if (!firstShown) {
    firstShown = true;
    measure("first-page", 0);
  }
}

function link(text, onClick) {
  const b = el("button", text, "link");
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

function openView(values) {
  setForm(values);
  filter = filterFromForm();
  pages = [null];
  show(null);
}

function render(records, checks) {
  const rows = records.map((record, i) => {
    const check = checks[i];
    const f = check.fields;
    const tr = el("tr");
    const mark = el("td", null, `mark ${check.status}`);
    if (check.status === "verified") {
      mark.textContent = "✓ verified";
      tr.className = "verified-row";
    } else if (check.status === "pending") {
      mark.textContent = "… pending";
      mark.title = "Not yet covered by the signed checkpoint: refresh to check again.";
      tr.className = "pending-row";
    } else {
      mark.textContent = "✗ FAILED";
      mark.append(el("span", `${check.code}: ${check.message}`, "why"));
      tr.className = "failed";
    }
    tr.dataset.seq = String(check.seq ?? record.seq);
    tr.dataset.status = check.status;
    if (!f) {
      const td = el("td", `seq ${record.seq} (as the search said): the entry's bytes do not parse, so nothing of it is shown`);
      td.colSpan = 10;
      tr.append(mark, td);
      return tr;
    }
    if (f.decision === "deny") tr.classList.add("deny");
    const object = el("td");
    object.append(link(`${f.bucket}/${f.key}`, () => openView({ bucket: f.bucket, key: f.key })));
    const who = el("td");
    who.append(link(f.subject, () => openView({ subject: f.subject })));
    tr.append(
      mark,
      el("td", f.seq, "num"),
      el("td", new Date(f.timeMs).toISOString().replace("T", " ").replace("Z", "")),
      who,
      el("td", f.clientIp),
      el("td", f.operation),
      object,
      el("td", f.decision),
      el("td", f.error ?? ""),
      el("td", f.bytes, "num"),
      el("td", `${(f.latencyUs / 1000).toFixed(1)} ms`, "num"),
    );
    return tr;
  });
  $("rows").replaceChildren(...rows);
}

// ---- the chart of denied attempts -----------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** A stacked bar chart of `points` ({t, series}) in `bins` time slots, the five
 *  largest series with a colour each and the rest as "other". */
function stackedChart(container, title, points, from, to) {
  const totals = new Map();
  for (const p of points) totals.set(p.series, (totals.get(p.series) ?? 0) + 1);
  const top = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([s]) => s);
  const seriesOf = (s) => (top.includes(s) ? s : "other");
  const names = totals.size > top.length ? [...top, "other"] : top;
  const bins = 24;
  const width = 720;
  const height = 160;
  const span = Math.max(1, to - from);
  const counts = Array.from({ length: bins }, () => new Map());
  for (const p of points) {
    const i = Math.min(bins - 1, Math.floor(((p.t - from) / span) * bins));
    const s = seriesOf(p.series);
    counts[i].set(s, (counts[i].get(s) ?? 0) + 1);
  }
  const max = Math.max(1, ...counts.map((c) => [...c.values()].reduce((a, b) => a + b, 0)));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height + 30}`, width, height: height + 30, role: "img", "aria-label": title });
  const bar = width / bins;
  counts.forEach((c, i) => {
    let y = height;
    names.forEach((name, n) => {
      const v = c.get(name) ?? 0;
      if (!v) return;
      const h = (v / max) * (height - 10);
      y -= h;
      const r = svg("rect", { x: i * bar + 1, y, width: bar - 2, height: h, class: `c${n}` });
      r.append(svg("title", {}));
      r.firstChild.textContent = `${name}: ${v}`;
      chart.append(r);
    });
  });
  const label = (x, text, anchor) => {
    const t = svg("text", { x, y: height + 15, "text-anchor": anchor });
    t.textContent = text;
    chart.append(t);
  };
  label(0, new Date(from).toLocaleString(), "start");
  label(width, new Date(to).toLocaleString(), "end");
  const top_ = svg("text", { x: 2, y: 10 });
  top_.textContent = `max ${max} per ${(span / bins / 60000).toFixed(1)} min`;
  chart.append(top_);
  const legend = el("div", null, "legend");
  names.forEach((name, n) => {
    const item = el("span");
    item.append(el("span", null, `swatch c${n}`), `${name} (${name === "other" ? points.filter((p) => !top.includes(p.series)).length : totals.get(name)})`);
    legend.append(item);
  });
  container.replaceChildren(el("h3", title), chart, legend);
}

async function drawChart() {
  const p = new URLSearchParams(filter);
  if (p.get("decision") === "allow") {
    $("chart-note").textContent = "The filter selects allowed entries only: there are no denied attempts in it.";
    $("chart-by-code").replaceChildren();
    $("chart-by-ip").replaceChildren();
    return;
  }
  p.set("decision", "deny");
  p.set("limit", String(CHART_MAX));
  $("chart-note").textContent = "Reading the denied attempts…";
  let answer;
  try {
    answer = await search(p);
  } catch (e) {
    $("chart-note").textContent = `The gatekeeper refused the search: ${describe(e)}`;
    return;
  }
  const started = performance.now();
  const checks = await view.proveEntries(answer.entries.map((r) => r.entry));
  const proofMs = performance.now() - started;
  const points = [];
  let failed = 0;
  for (const c of checks) {
    if (c.status === "failed" || !c.fields) failed += 1;
    else points.push({ t: c.fields.timeMs, code: c.fields.error ?? "", ip: c.fields.clientIp });
    c.free();
  }
  const times = points.map((q) => q.t);
  const from = p.has("from_ms") ? Number(p.get("from_ms")) : Math.min(...times, Date.now());
  const to = p.has("to_ms") ? Number(p.get("to_ms")) : Math.max(...times, from + 1);
  const cut = answer.next_after_seq !== null ? ` Only the first ${CHART_MAX.toLocaleString("en")} of them are charted: narrow the time range to see the rest.` : "";
  $("chart-note").textContent = `${points.length} denied attempts, each proven included (${proofMs.toFixed(0)} ms)${failed ? `; ${failed} entries FAILED verification and are not charted` : ""}.${cut}`;
  stackedChart($("chart-by-code"), "By error code", points.map((q) => ({ t: q.t, series: q.code })), from, to);
  stackedChart($("chart-by-ip"), "By client IP", points.map((q) => ({ t: q.t, series: q.ip })), from, to);
}

// ---- export -----------------------------------------------------------------------

const CSV_COLUMNS = ["seq", "time_ms", "gatekeeper", "request_id", "client_ip", "operation", "bucket", "key", "subject", "decision", "error", "bytes", "latency_us", "entry_sha256"];

/** One CSV field: quoted, quotes doubled, and a leading formula character (= + - @,
 *  or a tab / carriage return) neutralized with a leading apostrophe. */
export function csvField(value) {
  let s = value === undefined || value === null ? "" : String(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return `"${s.replaceAll('"', '""')}"`;
}

async function exportAs(format) {
  const parts = [];
  if (format === "csv") parts.push(CSV_COLUMNS.map(csvField).join(",") + "\r\n");
  let after = null;
  let n = 0;
  let group; // the first page's membership: every page must have used the same
  try {
    for (;;) {
      const p = new URLSearchParams(filter);
      p.set("limit", String(EXPORT_PAGE));
      if (after !== null) p.set("after_seq", String(after));
      const answer = await search(p);
      if (answer.group) {
        if (group === undefined) {
          group = answer.group;
          // The JSONL export records what the group meant: a first line without `seq`.
          if (format !== "csv") parts.unshift(JSON.stringify({ group }) + "\n");
        } else if (JSON.stringify(group) !== JSON.stringify(answer.group)) {
          throw codedError("group_changed", `the members of group ${group.name} changed during the export (the policy was reloaded): export again`);
        }
      }
      for (const r of answer.entries) {
        parts.push(format === "csv" ? CSV_COLUMNS.map((c) => csvField(r[c])).join(",") + "\r\n" : JSON.stringify(r) + "\n");
      }
      n += answer.entries.length;
      $("export-status").textContent = `Exporting… ${n} entries`;
      if (answer.next_after_seq === null) break;
      after = answer.next_after_seq;
    }
  } catch (e) {
    $("export-status").textContent = `Export failed after ${n} entries: ${describe(e)}`;
    $("export-status").className = "failed";
    return;
  }
  const blob = new Blob(parts, { type: format === "csv" ? "text/csv" : "application/x-ndjson" });
  const a = el("a");
  a.href = URL.createObjectURL(blob);
  a.download = `audit-${settings.gatekeeperId}-${new Date().toISOString().replaceAll(":", "")}.${format === "csv" ? "csv" : "jsonl"}`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  $("export-status").className = "";
  const recorded = group ? ` The filter's ${describeGroup(group)}${format === "csv" ? "" : " is the file's first line"}.` : "";
  $("export-status").textContent = `Exported ${n} entries (${format === "csv" ? "CSV" : "JSONL, with each entry's bytes"}): the search's records as the gatekeeper returned them.${recorded}`;
}

// ---- verify the whole log ---------------------------------------------------------

async function verifyWholeLog() {
  const bar = $("verify-progress");
  const result = $("verify-result");
  $("verify-log").disabled = true;
  bar.hidden = false;
  bar.value = 0;
  result.className = "";
  result.textContent = "Verifying every entry against the signed checkpoint…";
  try {
    const report = await verifyLog({
      gatekeeperUrl: location.origin,
      ...settings,
      subject: admin.subject,
      keyId: admin.keyId,
      sign,
      onProgress: (done, total) => {
        bar.max = Math.max(1, total);
        bar.value = done;
      },
    });
    const rate = report.millis > 0 ? Math.round(report.entries / (report.millis / 1000)) : report.entries;
    result.className = "verified";
    result.textContent = `Verified: ${report.entries.toLocaleString("en")} entries from ${report.bundles} entry bundles match the signed checkpoint (tree size ${report.treeSize}, root ${report.rootHash}) in ${(report.millis / 1000).toFixed(1)} s, ${rate.toLocaleString("en")} entries/s.`;
  } catch (e) {
    result.className = "failed";
    result.textContent = `Verification FAILED: ${describe(e)}`;
  } finally {
    bar.hidden = true;
    $("verify-log").disabled = false;
  }
}

// ---- the groups the gatekeeper's policy defines ----------------------------------

/** Fills the group field's suggestions from GET /v1/audit/groups (the policy in force;
 *  a typed name works without them: the search itself resolves it). */
async function loadGroups() {
  let answer;
  try {
    answer = await search(new URLSearchParams(), "groups", "groups");
  } catch {
    return; // the search reports a refused key; the suggestions are only a help
  }
  $("group-names").replaceChildren(...answer.groups.map((g) => {
    const o = el("option");
    o.value = g.name;
    o.label = `${g.name} (${g.members.length} member${g.members.length === 1 ? "" : "s"})`;
    return o;
  }));
}

// ---- sign-in ----------------------------------------------------------------------

function tomlSnippet(record) {
  return `[[keys]]\nkey_id = "${record.keyId}"\nrole = "customer-admin"\npublic_key = "${record.publicKey}"\n\n# and, once in the file:\n[thresholds]\nAUDIT = { customer-admin = 1 }\n`;
}

async function signedIn(record) {
  admin = record;
  $("signin").hidden = true;
  $("who").hidden = false;
  const role = record.role && record.role !== "customer-admin" ? ` · role ${record.role}, not customer-admin: the gatekeeper refuses it` : "";
  $("who").textContent = `${record.subject} · key ${record.keyId} · public ${record.publicKey}${role}`;
  $("signout").hidden = false;
  $("register").hidden = false;
  $("toml").textContent = tomlSnippet(record);
  $("register").open = Boolean(record.generated);
  $("app").hidden = false;
  filter = filterFromForm();
  pages = [null];
  const shown = show(null);
  await opening;
  if (admin === record) $("verify-log").disabled = !view;
  await shown;
  // The group names are suggestions for the filter form: fetched after the first
  // page, so that they do not delay it.
  loadGroups();
}

function signedOut() {
  admin = undefined;
  $("signin").hidden = false;
  $("who").hidden = true;
  $("signout").hidden = true;
  $("register").hidden = true;
  $("app").hidden = true;
  $("verify-log").disabled = true;
  $("rows").replaceChildren();
  status("Sign in with a customer-admin key.");
}

function wire() {
  $("generate").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    try {
      const record = await generate(String(f.get("keyId")), String(f.get("subject")));
      await saveKey(record);
      await signedIn(record);
    } catch (e) {
      $("signin-error").textContent = `The key could not be made: ${describe(e)}`;
    }
  });
  $("import").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    try {
      const record = await importKeyFile(await f.get("file").text(), String(f.get("subject")));
      await saveKey(record);
      ev.target.reset();
      await signedIn(record);
    } catch (e) {
      $("signin-error").textContent = `The key file could not be imported: ${describe(e)}`;
    }
  });
  $("signout").addEventListener("click", async () => {
    await deleteKey();
    signedOut();
  });
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    filter = filterFromForm();
    pages = [null];
    show(null);
  });
  $("clear-filters").addEventListener("click", () => setTimeout(() => openView({}), 0));
  $("next").addEventListener("click", () => {
    if (next === null) return;
    pages.push(next);
    show(next);
  });
  $("prev").addEventListener("click", () => {
    if (pages.length < 2) return;
    pages.pop();
    show(pages[pages.length - 1]);
  });
  $("refresh").addEventListener("click", async () => {
    opening = openLog();
    if ((await opening) && admin) await show(pages[pages.length - 1] ?? null);
  });
  $("verify-log").addEventListener("click", verifyWholeLog);
  $("draw-chart").addEventListener("click", drawChart);
  $("export-jsonl").addEventListener("click", () => exportAs("jsonl"));
  $("export-csv").addEventListener("click", () => exportAs("csv"));
  $("generate").elements.keyId.value = `console-${new Date().toISOString().slice(0, 10).replaceAll("-", "")}-${b64url(crypto.getRandomValues(new Uint8Array(3)))}`;
}

async function main() {
  wire();
  // What does not depend on another step starts at once: the key from IndexedDB, the
  // wasm start-up and console.json; then the checkpoint and the first search together
  // (`show` waits for the checkpoint only to prove the rows).
  const started = performance.now();
  const key = loadKey().catch(() => undefined);
  key.then(() => measure("key", started));
  try {
    const [, r] = await Promise.all([init(), fetch("/audit/console.json", { cache: "no-store" })]);
    if (!r.ok) throw new Error(`GET /audit/console.json answered ${r.status}`);
    settings = await r.json();
  } catch (e) {
    status(`The console could not start: ${describe(e)}`, true);
    return;
  }
  measure("start", started);
  $("gatekeeper").textContent = settings.gatekeeperId;
  opening = openLog();
  const record = await key;
  if (record) await signedIn(record);
  else signedOut();
}

main();

// ---- verify an export file (self-contained: the file is read in chunks and fed to
// the client's ExportVerifier, the same code as `countersign audit verify EXPORT`) --

import { ExportVerifier } from "./client/countersign.js";

async function verifyExportFile(file) {
  const bar = $("verify-export-progress");
  const result = $("verify-export-result");
  const input = $("verify-export-file");
  result.className = "";
  if (!settings) {
    result.className = "failed";
    result.textContent = "The console has not loaded the gatekeeper's keys yet: try again in a moment.";
    return;
  }
  input.disabled = true;
  bar.hidden = false;
  bar.value = 0;
  result.textContent = `Verifying ${file.name}…`;
  const started = performance.now();
  let verifier;
  try {
    verifier = new ExportVerifier({ keys: settings.keys, logWitnesses: settings.logWitnesses, logQuorum: settings.logQuorum });
    const reader = file.stream().getReader();
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      try {
        verifier.push(r.value);
      } catch (e) {
        await reader.cancel();
        throw e;
      }
      bar.value = file.size > 0 ? verifier.bytes / file.size : 1;
    }
    // finish() uses the verifier up, whether it returns or throws.
    const last = verifier;
    verifier = undefined;
    const report = last.finish();
    const secs = (performance.now() - started) / 1000;
    const tree = report.treeSize === undefined
      ? "the file has no signed tree checkpoint, so only the hash chain and its signed checkpoints were checked"
      : `the first ${report.treeSize.toLocaleString("en")} entries match the signed tree checkpoint (root ${report.rootHash})${report.cosignedBy.length ? `, cosigned by ${report.cosignedBy.join(", ")}` : ""}`;
    result.className = "verified";
    result.textContent = `Verified ${file.name}: ${report.entries.toLocaleString("en")} entries chained, ${report.chainCheckpoints} signed checkpoints, ${tree}; head ${report.headHash}. ${secs.toFixed(1)} s.`;
  } catch (e) {
    result.className = "failed";
    result.textContent = `${file.name} does NOT verify: ${describe(e)}`;
  } finally {
    verifier?.free();
    bar.hidden = true;
    input.disabled = false;
    input.value = "";
  }
}

$("verify-export-file").addEventListener("change", (ev) => {
  const file = ev.target.files?.[0];
  if (file) verifyExportFile(file);
});
