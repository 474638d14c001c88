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
import { request as httpRequest, createServer } from "node:http";

const MODES = new Set(["pass", "longer", "endless", "hide", "first-page"]);

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
    const isObjectGet = req.method === "GET" && !isList;
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
            mode === "hide" && isList);
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
          if (mode === "longer") {
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
