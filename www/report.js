// The report page: log in at the vendor, then fetch every object of a report straight
// from the customer's gatekeeper and verify it in WebAssembly before showing it.
// The vendor only signs request metadata (POST /api/sign); it never sees the bytes.
import init, { CountersignError, GatekeeperClient } from "/pkg/countersign.js";

const $ = (id) => document.getElementById(id);
const REPORT_FILE = "report.json";

// What each error code means for the person looking at the page.
const EXPLAIN = {
  body_mismatch: "The stored bytes differ from what was signed at upload: they were changed in the bucket. Not shown.",
  stored_object_tampered: "The gatekeeper found the encrypted object changed in the bucket and refused to serve it. Not shown.",
  key_unavailable: "The gatekeeper cannot reach the key that decrypts this object; ask its operator.",
  manifest_mismatch: "The object's signed manifest does not match it. Not shown.",
  bad_signature: "A signature does not verify (the data was changed on the way). Not shown.",
  access_denied: "Your organisation may not see this; nothing was fetched.",
  replayed: "This exact request was already used once; the gatekeeper refuses replays.",
  expired: "The request's validity window has passed (is this computer's clock right?).",
  not_yet_valid: "The request is not valid yet (is this computer's clock right?).",
  ip_denied: "The gatekeeper does not accept requests from this network address.",
  not_found: "There is no such object in the bucket.",
  unauthenticated: "Your session has ended; log in again.",
  rate_limited: "Too many requests; wait a moment and try again.",
  timeout: "The request took too long to reach the gatekeeper; try again.",
  overloaded: "The gatekeeper is busy; wait a moment and try again.",
  listing_mismatch: "The list of objects is not the one the gatekeeper signed for this request: it was replaced or cut. Not shown.",
  duplicate_key: "The page's configuration lists one public key twice; the operator must fix it.",
  network: "The gatekeeper or the vendor could not be reached.",
};

let config;
let me;
const clients = new Map(); // bucket -> GatekeeperClient
let folders = new Map(); // report folder -> object keys

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}

function item(child) {
  const li = el("li");
  li.append(child);
  return li;
}

function apiError(code, message) {
  return Object.assign(new Error(message), { code });
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw apiError("network", `the vendor app could not be reached: ${e.message}`);
  }
  const json = await response.json().catch(() => ({}));
  if (!response.ok) {
    const e = json.error ?? { code: `http_${response.status}`, message: response.statusText };
    throw apiError(e.code, e.message);
  }
  return json;
}

/** `code: sentence`, for a CountersignError or an API error. */
function describe(error) {
  const code = error?.code ?? "error";
  return { code, sentence: EXPLAIN[code] ?? error?.message ?? String(error), detail: error?.message ?? "" };
}

function failure(error, what) {
  const { code, sentence, detail } = describe(error);
  const p = el("p", "", "failed verification");
  p.dataset.code = code;
  p.append(`✖ ${what}: `, el("code", code), ` — ${sentence}`);
  if (detail && detail !== sentence) p.title = detail;
  return p;
}

// The vendor signs canonical requests (base64url) for the logged-in user; a refused
// request comes back as {code, message} for the client to report per object.
async function sign(requests) {
  const { results } = await api("POST", "/api/sign", { canonical: requests });
  return results.map((r) => (r.error ? { code: r.error.code, message: r.error.message } : r.signature));
}

function trustedKeys() {
  return [...config.vendor_public_keys, ...config.gatekeeper_public_keys].map((k) => ({
    keyId: k.key_id,
    role: k.role,
    publicKey: k.public_key,
    ...(k.not_before != null && { notBefore: k.not_before }),
    ...(k.not_after != null && { notAfter: k.not_after }),
  }));
}

function client(bucket) {
  if (!clients.has(bucket)) {
    clients.set(bucket, new GatekeeperClient({
      gatekeeperUrl: config.gatekeeper_url,
      gatekeeperId: config.gatekeeper,
      bucket,
      subject: me.subject,
      lifetimeSecs: Math.min(120, config.max_lifetime_secs),
      keys: trustedKeys(),
      sign,
    }));
  }
  return clients.get(bucket);
}

const folderOf = (key) => key.slice(0, key.lastIndexOf("/") + 1);

async function listAll(bucket, prefix) {
  const keys = [];
  let after;
  do {
    const page = await client(bucket).listObjects(prefix, after);
    keys.push(...page.objects.map((o) => o.key));
    after = page.nextAfter;
  } while (after);
  return keys;
}

/** Lists the organisation's reports (folders holding a report.json) from the gatekeeper's index. */
async function loadReports() {
  const grant = me.grants.find((g) => g.methods.includes("LIST"));
  const list = $("reports");
  list.replaceChildren();
  folders = new Map();
  if (!grant) return;
  try {
    for (const key of await listAll(grant.bucket, grant.prefix)) {
      const folder = folderOf(key);
      folders.set(folder, [...(folders.get(folder) ?? []), key]);
    }
  } catch (e) {
    list.append(item(failure(e, "listing the reports")));
    return;
  }
  const reports = [...folders.keys()].filter((f) => folders.get(f).includes(f + REPORT_FILE)).sort().reverse();
  for (const folder of reports) {
    const a = el("a", folder.slice(grant.prefix.length).replace(/\/$/, "") || folder);
    a.href = `#report=${encodeURIComponent(folder)}`;
    list.append(item(a));
  }
  if (reports.length === 0) list.append(el("li", "No reports yet."));
  return reports;
}

function verification(object) {
  const p = el("p", "", "verified verification");
  const signers = [...object.signers.uploader, ...object.signers.gatekeeper].join(", ");
  p.append(`✔ verified · uploaded by ${object.uploader} · sha256 `, el("code", object.sha256.slice(0, 12) + "…"),
    ` · signed by ${signers} · stored ${new Date(object.storedAt * 1000).toISOString()}`);
  p.dataset.code = "verified";
  return p;
}

function renderFields(object) {
  let fields;
  try {
    fields = JSON.parse(object.text());
  } catch {
    return el("p", "The report file is not JSON.", "failed");
  }
  const dl = el("dl");
  for (const [name, value] of Object.entries(fields)) {
    if (typeof value === "object") continue;
    dl.append(el("dt", name), el("dd", String(value)));
  }
  return dl;
}

/** Shows one report: every object fetched with one signing call, each verified or failed. */
async function openReport(folder) {
  const target = $("report");
  target.replaceChildren(el("h2", folder));
  const bucket = (me.grants.find((g) => folder.startsWith(g.prefix)) ?? me.grants[0])?.bucket;
  if (!bucket) {
    target.append(failure(apiError("access_denied", "your organisation has no grants"), "opening this report"));
    return;
  }
  let keys = folders.get(folder);
  try {
    keys ??= await listAll(bucket, folder);
  } catch (e) {
    target.append(failure(e, "opening this report"));
    return;
  }
  keys = [...keys].sort((a, b) => (a.endsWith(REPORT_FILE) ? -1 : b.endsWith(REPORT_FILE) ? 1 : a.localeCompare(b)));
  let results;
  try {
    results = await client(bucket).getObjects(keys);
  } catch (e) {
    target.append(failure(e, "fetching this report"));
    return;
  }
  keys.forEach((key, i) => {
    const box = el("article", undefined, "object");
    box.dataset.key = key;
    box.append(el("h4", key.slice(folder.length)));
    const result = results[i];
    if (result instanceof CountersignError || !result) {
      box.dataset.state = "failed";
      box.append(failure(result, "not verified"));
    } else {
      box.dataset.state = "verified";
      box.append(verification(result));
      if (key.endsWith(REPORT_FILE)) {
        box.append(renderFields(result));
      } else if (/^image\/(png|jpeg)$/.test(result.contentType)) {
        const img = el("img");
        img.alt = `Screenshot ${key.slice(folder.length)}`;
        img.src = result.objectUrl();
        box.append(img);
      } else {
        box.append(el("p", `${result.contentType}, ${result.size} bytes (not displayed)`));
      }
      result.free();
    }
    target.append(box);
  });
  target.dataset.loaded = folder;
}

async function upload(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const status = $("upload-result");
  const grant = me.grants.find((g) => g.methods.includes("PUT"));
  const file = form.get("screenshot");
  status.className = "";
  try {
    if (!["image/png", "image/jpeg"].includes(file.type)) throw apiError("invalid_field", "the screenshot must be a PNG or JPEG image");
    const id = `${new Date().toISOString().slice(0, 10)}-${crypto.randomUUID().slice(0, 8)}`;
    const folder = `${grant.prefix}reports/${id}/`;
    const shot = `screenshot-1.${file.type === "image/png" ? "png" : "jpg"}`;
    const fields = {
      title: form.get("title"),
      reporter: form.get("reporter"),
      organisation: me.organisation_name,
      created: new Date().toISOString(),
      description: form.get("description"),
    };
    const c = client(grant.bucket);
    status.textContent = "Uploading the screenshot to the gatekeeper…";
    await c.putObject(folder + shot, new Uint8Array(await file.arrayBuffer()), file.type);
    status.textContent = "Uploading the report…";
    const stored = await c.putObject(folder + REPORT_FILE, new TextEncoder().encode(JSON.stringify(fields, null, 2)), "application/json");
    status.textContent = `Stored ${folder} (audit entry ${stored.auditSeq}).`;
    event.target.reset();
    await loadReports();
    location.hash = `report=${encodeURIComponent(folder)}`;
  } catch (e) {
    status.replaceChildren(failure(e, "upload failed"));
  }
}

function folderFromHash() {
  const m = /^#report=(.+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : undefined;
}

async function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  $("who").hidden = false;
  $("who").textContent = `${me.username} · ${me.organisation_name}`;
  $("upload").hidden = !me.grants.some((g) => g.methods.includes("PUT"));
  $("status").textContent = "Listing reports…";
  const reports = await loadReports();
  $("status").textContent = "";
  const folder = folderFromHash() ?? reports?.[0];
  if (folder) await openReport(folder);
}

async function login(event) {
  event.preventDefault();
  const form = Object.fromEntries(new FormData(event.target));
  $("login-error").textContent = "";
  try {
    me = await api("POST", "/api/login", form);
    event.target.reset();
    await showApp();
  } catch (e) {
    const { code, sentence } = describe(e);
    $("login-error").textContent = `${code}: ${sentence}`;
  }
}

async function logout() {
  await api("POST", "/api/logout").catch(() => {});
  location.hash = "";
  location.reload();
}

async function main() {
  await init();
  config = await api("GET", "/api/config");
  $("login").addEventListener("submit", login);
  $("upload").addEventListener("submit", upload);
  $("logout").addEventListener("click", logout);
  addEventListener("hashchange", () => {
    const folder = folderFromHash();
    if (me && folder) openReport(folder);
  });
  try {
    me = await api("GET", "/api/me");
  } catch {
    $("status").textContent = "";
    $("login").hidden = false;
    return;
  }
  await showApp();
}

main().catch((e) => {
  const { code, sentence } = describe(e);
  $("status").className = "failed";
  $("status").textContent = `The page could not start (${code}): ${sentence}`;
});
