// How long the gatekeeper takes to answer its public log endpoints (checkpoint, hash
// tiles, the proof endpoint) next to `GET /v1/keys`, which reads no database: the
// server's share of a browser's `proveLogged` round trip.
//
//   COUNTERSIGN_TEST_GATEKEEPER_PROFILE=release node tests/bench/log-endpoints.mjs [--rounds 200]
//
// Starts a gatekeeper (SQLite, built by `cargo build -p countersign-gatekeeper
// [--release]` beforehand), logs 300 refused GETs and waits for the checkpoint that
// covers them (a tree of two tile levels). Then curl requests every endpoint in
// turn, round after round, one curl process and connection per request (the timings
// of one curl process fetching many URLs are not per request), and each time is
// connection made → first byte received: the server's work plus one loopback hop.
// Prints the median per endpoint and its ratio to `/v1/keys`.
import { execFileSync } from "node:child_process";
import { publicKeyOfSeed, startGatekeeper } from "../support/servers.mjs";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const rounds = arg("--rounds", 200);

const gk = await startGatekeeper({
  config: `
[[keys]]
key_id = "bench-vendor"
role = "vendor"
public_key = "${publicKeyOfSeed(new Uint8Array(32).fill(11))}"

[buckets.reports]
store = "local"
path = "buckets/reports"
`,
});
try {
  for (let i = 0; i < 300; i++) await (await fetch(`${gk.url}/v1/objects/reports/missing-${i}`)).arrayBuffer();
  let size = 0;
  for (let i = 0; i < 300 && size < 300; i++) {
    const r = await fetch(`${gk.url}/v1/log/checkpoint`);
    size = r.ok ? Number((await r.text()).split("\n")[1]) : 0;
    if (size < 300) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (size < 300) throw new Error("the checkpoint did not reach 300 entries");

  const endpoints = ["/v1/keys", "/v1/log/checkpoint", "/v1/log/tile/0/000", "/v1/log/tile/1/000.p/1", "/v1/log/proof/0", "/v1/log/proof/299"];
  const urls = [];
  for (let r = 0; r < rounds + 20; r++) for (const e of endpoints) urls.push(`${gk.url}${e}`);
  const script = `for u in "$@"; do curl -s -o /dev/null -w '%{http_code} %{time_connect} %{time_starttransfer}\\n' "$u"; done`;
  const out = execFileSync("bash", ["-c", script, "bash", ...urls], { maxBuffer: 1 << 26 }).toString();
  const times = Object.fromEntries(endpoints.map((e) => [e, []]));
  out.trim().split("\n").forEach((line, i) => {
    const [status, connected, first] = line.split(" ");
    if (status !== "200") throw new Error(`${urls[i]} answered ${status}`);
    // The first 20 rounds warm up the server.
    if (i >= 20 * endpoints.length) times[endpoints[i % endpoints.length]].push((Number(first) - Number(connected)) * 1000);
  });
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[s.length >> 1];
  };
  const base = median(times["/v1/keys"]);
  console.log(`tree of ${size} entries, ${rounds} rounds, median ms from request to first byte (ratio to /v1/keys):`);
  for (const e of endpoints) console.log(`  ${e.padEnd(24)} ${median(times[e]).toFixed(3)} ms  ${(median(times[e]) / base).toFixed(2)}x`);
} finally {
  await gk.stop();
}
