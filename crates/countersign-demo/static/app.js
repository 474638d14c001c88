// The report page: log in, list reports, have the vendor sign one GET per object in a
// single batch, then fetch every object straight from the customer's gatekeeper.
"use strict";

const $ = (id) => document.getElementById(id);
let config = null;
let me = null;

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const json = await response.json().catch(() => ({}));
  if (!response.ok) {
    const e = json.error || { code: "http_" + response.status, message: response.statusText };
    throw new Error(e.code + ": " + e.message);
  }
  return json;
}

// Percent-encodes an object key exactly like ObjectKey::to_url_path: every UTF-8 byte
// outside A-Z a-z 0-9 - . _ ~ / becomes %XX (uppercase hex).
function urlPath(key) {
  let out = "";
  for (const b of new TextEncoder().encode(key)) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-._~\/]/.test(c) ? c : "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function nonceHex() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function text(tag, content, className) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (className) el.className = className;
  return el;
}

async function showReport(report) {
  const target = $("report");
  target.replaceChildren(text("h3", report.title));
  const now = Math.floor(Date.now() / 1000);
  const lifetime = Math.min(120, config.max_lifetime_secs);
  const requests = report.objects.map((key) => ({
    audience: config.gatekeeper, method: "GET", bucket: report.bucket, key,
    subject: me.subject, issued_at: now, expires_at: now + lifetime, nonce: nonceHex(),
  }));
  let signed;
  try {
    signed = (await api("POST", "/api/sign", { requests })).results;
  } catch (e) {
    target.append(text("p", "Signing failed: " + e.message, "error"));
    return;
  }
  report.objects.forEach((key, i) => {
    const box = document.createElement("div");
    box.className = "object";
    box.append(text("h4", key));
    target.append(box);
    const result = signed[i];
    if (result.error) {
      box.append(text("p", result.error.code + ": " + result.error.message, "error"));
      return;
    }
    fetchObject(report.bucket, key, result, box);
  });
}

async function fetchObject(bucket, key, signed, box) {
  const url = config.gatekeeper_url.replace(/\/$/, "") + "/v1/objects/" + bucket + "/" + urlPath(key);
  try {
    const response = await fetch(url, {
      headers: { "Countersign-Request": signed.request, "Countersign-Signature": signed.signature },
      credentials: "omit",
    });
    if (!response.ok) {
      const json = await response.json().catch(() => ({}));
      const e = json.error || { code: "http_" + response.status, message: response.statusText };
      box.append(text("p", "Gatekeeper refused: " + e.code + ": " + e.message, "error"));
      return;
    }
    const receipt = response.headers.get("Countersign-Receipt");
    const blob = await response.blob();
    if (blob.type.startsWith("image/")) {
      const img = document.createElement("img");
      img.src = URL.createObjectURL(blob);
      img.alt = key;
      box.append(img);
    } else if (blob.type.startsWith("text/")) {
      box.append(text("pre", await blob.text()));
    } else {
      const a = text("a", "Download (" + blob.size + " bytes)");
      a.href = URL.createObjectURL(blob);
      a.download = key.split("/").pop();
      box.append(a);
    }
    box.append(text("p", receipt ? "Countersigned by the gatekeeper (receipt received)." : "No receipt was returned.", receipt ? "" : "error"));
  } catch (e) {
    box.append(text("p", "Gatekeeper unreachable: " + e.message, "error"));
  }
}

// Signs one request (fields without audience, subject, times and nonce) and returns
// {request, signature}, or throws with the vendor's error code.
async function signOne(fields) {
  const now = Math.floor(Date.now() / 1000);
  const request = Object.assign({
    audience: config.gatekeeper, subject: me.subject, issued_at: now,
    expires_at: now + Math.min(120, config.max_lifetime_secs), nonce: nonceHex(),
  }, fields);
  const result = (await api("POST", "/api/sign", { requests: [request] })).results[0];
  if (result.error) throw new Error(result.error.code + ": " + result.error.message);
  return result;
}

function gatekeeperUrl(path) {
  return config.gatekeeper_url.replace(/\/$/, "") + path;
}

async function gatekeeperError(response) {
  const json = await response.json().catch(() => ({}));
  const e = json.error || { code: "http_" + response.status, message: response.statusText };
  return new Error(e.code + ": " + e.message);
}

function grantFor(method) {
  return (me.grants || []).find((g) => g.methods.includes(method));
}

// A key segment from a file name: NFC, without `/`, `\`, control characters or the
// invisible format characters object keys may not contain.
function safeName(name) {
  const forbidden = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\/\\]/g;
  const cleaned = name.normalize("NFC").replace(forbidden, "_");
  return cleaned === "" || cleaned === "." || cleaned === ".." ? "file" : cleaned;
}

async function upload(event) {
  event.preventDefault();
  const grant = grantFor("PUT");
  const file = new FormData(event.target).get("file");
  const status = $("upload-result");
  status.className = "";
  status.textContent = "Hashing…";
  try {
    const bytes = await file.arrayBuffer();
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    const type = /^[a-z0-9!#$&\-^_.+]+\/[a-z0-9!#$&\-^_.+]+$/.test(file.type) ? file.type : "application/octet-stream";
    const key = grant.prefix + "uploads/" + safeName(file.name);
    const signed = await signOne({
      method: "PUT", bucket: grant.bucket, key, content_type: type,
      body_sha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
      body_length: bytes.byteLength,
    });
    status.textContent = "Uploading to the gatekeeper…";
    const response = await fetch(gatekeeperUrl("/v1/objects/" + grant.bucket + "/" + urlPath(key)), {
      method: "PUT", body: bytes, credentials: "omit",
      headers: { "Countersign-Request": signed.request, "Countersign-Signature": signed.signature },
    });
    if (!response.ok) throw await gatekeeperError(response);
    const stored = await response.json();
    status.textContent = "Stored " + stored.key + " (" + stored.size + " bytes, audit entry " + stored.audit_seq + ").";
  } catch (e) {
    status.className = "error";
    status.textContent = "Upload failed: " + e.message;
  }
}

async function listFiles() {
  const grant = grantFor("LIST");
  const list = $("file-list");
  list.replaceChildren();
  try {
    const signed = await signOne({ method: "LIST", bucket: grant.bucket, key: grant.prefix });
    const response = await fetch(gatekeeperUrl("/v1/objects/" + grant.bucket + "?prefix=" + urlPath(grant.prefix)), {
      headers: { "Countersign-Request": signed.request, "Countersign-Signature": signed.signature },
      credentials: "omit",
    });
    if (!response.ok) throw await gatekeeperError(response);
    const listing = await response.json();
    for (const object of listing.objects) {
      const li = document.createElement("li");
      const button = text("button", object.key + " (" + object.size + " bytes)");
      button.type = "button";
      button.addEventListener("click", () => openFile(grant.bucket, object.key));
      li.append(button);
      list.append(li);
    }
    if (listing.objects.length === 0) list.append(text("li", "No files yet."));
  } catch (e) {
    list.append(text("li", "Listing failed: " + e.message, "error"));
  }
}

async function openFile(bucket, key) {
  const box = document.createElement("div");
  box.className = "object";
  box.append(text("h4", key));
  $("file-view").replaceChildren(box);
  try {
    fetchObject(bucket, key, await signOne({ method: "GET", bucket, key }), box);
  } catch (e) {
    box.append(text("p", "Signing failed: " + e.message, "error"));
  }
}

async function showReports() {
  $("login").hidden = true;
  $("reports").hidden = false;
  $("who").textContent = me.username;
  $("org").textContent = me.organisation_name;
  $("files").hidden = !(grantFor("PUT") || grantFor("LIST"));
  $("upload-form").hidden = !grantFor("PUT");
  $("list-button").hidden = !grantFor("LIST");
  const list = $("report-list");
  list.replaceChildren();
  for (const report of (await api("GET", "/api/reports")).reports) {
    const li = document.createElement("li");
    const button = text("button", report.title);
    button.type = "button";
    button.addEventListener("click", () => showReport(report));
    li.append(button);
    list.append(li);
  }
}

async function start() {
  config = await api("GET", "/api/config");
  try {
    me = await api("GET", "/api/me");
    await showReports();
  } catch (_) {
    $("login").hidden = false;
  }
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    try {
      me = await api("POST", "/api/login", {
        username: form.get("username"), password: form.get("password"), totp: form.get("totp"),
      });
      $("login-error").textContent = "";
      await showReports();
    } catch (e) {
      $("login-error").textContent = e.message;
    }
  });
  $("upload-form").addEventListener("submit", upload);
  $("list-button").addEventListener("click", listFiles);
  $("logout").addEventListener("click", async () => {
    await api("POST", "/api/logout").catch(() => {});
    location.reload();
  });
}

start();
