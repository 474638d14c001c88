// A man in the middle for the browser tests: an HTTP proxy in front of the gatekeeper
// that tampers with its answers, so the tests can check that the wasm client refuses
// them. The first path segment picks what it does; the rest of the path (and the
// query) goes to the gatekeeper unchanged, so the gatekeeper sees exactly what the
// client signed:
//
//   /pass/…            forwards untouched (shows the proxy itself breaks nothing)
//   /longer/…          GET of an object: appends bytes and announces them in Content-Length
//   /endless/…         GET of an object: no Content-Length; after the real bytes, sends
//                      more bytes forever, until the client stops reading
//   /hide/…            LIST: removes the page's second object from the signed listing
//                      (and from the unsigned members), keeping the signature
//   /first-page/…      LIST: drops the `after` cursor, so the gatekeeper answers (and
//                      signs) the first page although the client asked for a later one
//   /proof-path/…      GET /v1/log/proof/N: flips a bit of the audit path's first hash
//   /proof-size/…      GET /v1/log/proof/N: says the path is for a tree one entry smaller
//                      than the checkpoint's
//   /proof-key/…       GET /v1/log/proof/N: the checkpoint signed by another key under the
//                      log's key name, instead of the gatekeeper's signature
//   /proof-cut/…       GET /v1/log/proof/N: the answer without its last 20 bytes
import { createHash, createPrivateKey, createPublicKey, sign } from "node:crypto";
import { request as httpRequest, createServer } from "node:http";

const PROOF_MODES = ["proof-path", "proof-size", "proof-key", "proof-cut"];
const MODES = new Set(["pass", "longer", "endless", "hide", "first-page", ...PROOF_MODES]);

/** A note signature line of `text` by the Ed25519 key of seed 99…, named `name`. */
function otherSignature(name, text) {
  const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), Buffer.alloc(32, 99)]);
  const key = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  const pub = Buffer.from(createPublicKey(key).export({ format: "jwk" }).x, "base64url");
  // The note key id: the first 4 bytes of SHA-256(name || "\n" || 0x01 || key).
  const id = createHash("sha256").update(Buffer.concat([Buffer.from(`${name}\n`), Buffer.from([1]), pub])).digest().subarray(0, 4);
  return `\u2014 ${name} ${Buffer.concat([id, sign(null, Buffer.from(text), key)]).toString("base64")}\n`;
}

/** A `countersign/v1/log-proof` answer (four document lines, then the note), tampered. */
function tamperProof(mode, body) {
  const text = body.toString("utf8");
  const lines = text.split("\n");
  const doc = lines.slice(0, 4);
  const note = lines.slice(4).join("\n");
  if (mode === "proof-path") {
    const path = Buffer.from(doc[3].slice("path:".length), "base64url");
    path[0] ^= 1;
    doc[3] = `path:${path.toString("base64url")}`;
  } else if (mode === "proof-size") {
    doc[2] = `size:${Number(doc[2].slice("size:".length)) - 1}`;
  } else if (mode === "proof-key") {
    const signed = note.slice(0, note.indexOf("\n\n") + 1);
    return `${doc.join("\n")}\n${signed}\n${otherSignature(signed.split("\n")[0], signed)}`;
  } else {
    return text.slice(0, -20);
  }
  return `${doc.join("\n")}\n${note}`;
}

/** Removes the second object line of a listing (base64url), fixing `count`. */
function hideSecondObject(listing) {
  const lines = Buffer.from(listing, "base64url").toString("utf8").split("\n");
  const objects = lines.flatMap((l, i) => (l.startsWith("object:") ? [i] : []));
  if (objects.length < 2) throw new Error("the page has fewer than two objects to hide one");
  const hidden = lines[objects[1]];
  const kept = lines
    .filter((_, i) => i !== objects[1])
    .map((l) => (l.startsWith("count:") ? `count:${objects.length - 1}` : l));
  return { listing: Buffer.from(kept.join("\n")).toString("base64url"), hidden };
}

/**
 * Starts the proxy in front of `target` (the gatekeeper's base URL). Returns its
 * `url`, a `log` of what it did, and `stop()`.
 */
export async function startTamperProxy(target) {
  const upstream = new URL(target);
  const log = [];
  const server = createServer((req, res) => {
    const [, mode, ...rest] = req.url.split("/");
    if (!MODES.has(mode)) {
      res.writeHead(404).end();
      return;
    }
    let path = `/${rest.join("/")}`;
    const isList = req.method === "GET" && path.includes("?");
    const isProof = req.method === "GET" && path.startsWith("/v1/log/proof/");
    const isObjectGet = req.method === "GET" && !isList && !isProof;
    if (mode === "first-page" && isList) {
      const [p, q] = path.split("?");
      path = `${p}?${q.split("&").filter((kv) => !kv.startsWith("after=")).join("&")}`;
    }
    const headers = { ...req.headers, host: upstream.host };
    const forward = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path, headers },
      (up) => {
        const tamper =
          up.statusCode === 200 &&
          ((mode === "longer" || mode === "endless") && isObjectGet ||
            mode === "hide" && isList ||
            PROOF_MODES.includes(mode) && isProof);
        if (!tamper) {
          res.writeHead(up.statusCode, up.headers);
          up.pipe(res);
          return;
        }
        const chunks = [];
        up.on("data", (c) => chunks.push(c));
        up.on("end", () => {
          const body = Buffer.concat(chunks);
          const out = { ...up.headers };
          delete out["content-length"];
          delete out["transfer-encoding"];
          if (PROOF_MODES.includes(mode)) {
            const tampered = Buffer.from(tamperProof(mode, body));
            log.push(`${mode}: ${path}`);
            res.writeHead(200, { ...out, "content-length": String(tampered.length) });
            res.end(tampered);
          } else if (mode === "longer") {
            const longer = Buffer.concat([body, Buffer.from(" and more")]);
            log.push(`longer: ${path} ${body.length} -> ${longer.length} bytes`);
            res.writeHead(200, { ...out, "content-length": String(longer.length) });
            res.end(longer);
          } else if (mode === "endless") {
            log.push(`endless: ${path} after ${body.length} bytes`);
            res.writeHead(200, out);
            res.write(body);
            let sent = 0;
            let gaveUp = false;
            const more = setInterval(() => {
              res.write(Buffer.alloc(1024, 0x41));
              sent += 1024;
              // A client that keeps reading would hang for good; end after 30 s.
              if (sent >= 30 * 20 * 1024) {
                gaveUp = true;
                clearInterval(more);
                res.end();
              }
            }, 50);
            res.on("close", () => {
              clearInterval(more);
              log.push(
                gaveUp
                  ? `endless: the proxy gave up after ${sent} extra bytes: the client read them all`
                  : `endless: the client stopped reading after ${sent} extra bytes`,
              );
            });
          } else {
            const json = JSON.parse(body.toString("utf8"));
            const { listing, hidden } = hideSecondObject(json.listing);
            json.listing = listing;
            json.objects = (json.objects ?? []).filter((_, i) => i !== 1);
            log.push(`hide: ${path} without ${hidden}`);
            res.writeHead(200, { ...out, "content-type": "application/json" });
            res.end(JSON.stringify(json));
          }
        });
      },
    );
    forward.on("error", (e) => {
      log.push(`error: ${e.message}`);
      res.destroy();
    });
    req.pipe(forward);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    log,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  };
}
