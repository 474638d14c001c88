// The page side of tests/bench/browser-bench.mjs. Loaded as a module by the bench page;
// exposes `window.countersignBench` for the runner to drive with page.evaluate.
//
// Every contender runs in the same page: rounds are interleaved (each round runs every
// contender once, starting from a different one each round) and the runner reports
// medians over rounds.
import init, * as cs from "/pkg/countersign.js";
import * as noble from "/noble/index.js";

await init();

const subtle = crypto.subtle;
const hasExports = typeof cs.Ed25519PublicKey === "function" && typeof cs.sha256 === "function";
const hasStudyExports = typeof cs.ed25519PrecheckReport === "function";

const fromHex = (h) => Uint8Array.from(h.match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** Deterministic filler (xorshift32), fast enough for 64 MiB. */
function filled(bytes) {
  const buf = new Uint8Array(bytes);
  const words = new Uint32Array(buf.buffer);
  let x = 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  return buf;
}

/**
 * Interleaved rounds: `contenders` is a list of { name, iterations, run(iterations) },
 * where `run` may be async and returns the number of operations that succeeded.
 * Returns { name, perOp: [seconds per operation, one per round], failures }.
 */
async function interleave(contenders, rounds, warmup = 1) {
  const results = contenders.map((c) => ({ name: c.name, perOp: [], failures: 0 }));
  for (let r = -warmup; r < rounds; r++) {
    for (let k = 0; k < contenders.length; k++) {
      const i = (((r % contenders.length) + contenders.length) % contenders.length + k) % contenders.length;
      const c = contenders[i];
      const t0 = performance.now();
      const ok = await c.run(c.iterations);
      const dt = (performance.now() - t0) / 1000;
      if (r >= 0) {
        results[i].perOp.push(dt / c.iterations);
        results[i].failures += c.iterations - ok;
      }
    }
  }
  return results;
}

async function ed25519Bench({ rounds, scale }) {
  const K = 32;
  const keyPair = await subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const pub = new Uint8Array(await subtle.exportKey("raw", keyPair.publicKey));
  const msgs = Array.from({ length: K }, () => crypto.getRandomValues(new Uint8Array(64)));
  const sigs = await Promise.all(
    msgs.map(async (m) => new Uint8Array(await subtle.sign("Ed25519", keyPair.privateKey, m))),
  );
  const wcKey = await subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
  const wasmKey = hasExports ? new cs.Ed25519PublicKey(pub) : null;
  const n = (x) => Math.max(1, Math.round(x * scale));

  const contenders = [];
  if (hasExports) {
    contenders.push({
      name: "wasm strict (key parsed once)",
      iterations: n(300),
      run(N) {
        let ok = 0;
        for (let i = 0; i < N; i++) ok += wasmKey.verifyStrict(msgs[i % K], sigs[i % K]);
        return ok;
      },
    });
    contenders.push({
      name: "wasm strict one-shot (key checks per call)",
      iterations: n(150),
      run(N) {
        let ok = 0;
        for (let i = 0; i < N; i++) ok += cs.verifyEd25519Strict(pub, msgs[i % K], sigs[i % K]);
        return ok;
      },
    });
  }
  contenders.push({
    name: "WebCrypto Ed25519 (await each)",
    iterations: n(400),
    async run(N) {
      let ok = 0;
      for (let i = 0; i < N; i++) ok += await subtle.verify("Ed25519", wcKey, sigs[i % K], msgs[i % K]);
      return ok;
    },
  });
  contenders.push({
    name: "WebCrypto Ed25519 (32 in flight)",
    iterations: n(640),
    async run(N) {
      let ok = 0;
      for (let i = 0; i < N; i += K) {
        const batch = [];
        for (let j = 0; j < K && i + j < N; j++) batch.push(subtle.verify("Ed25519", wcKey, sigs[j], msgs[j]));
        for (const v of await Promise.all(batch)) ok += v;
      }
      return ok;
    },
  });
  if (hasStudyExports) {
    contenders.push({
      name: "wasm R/S pre-checks + WebCrypto (await each)",
      iterations: n(400),
      async run(N) {
        let ok = 0;
        for (let i = 0; i < N; i++) {
          const s = sigs[i % K];
          if (cs.ed25519SignaturePrechecks(s)) ok += await subtle.verify("Ed25519", wcKey, s, msgs[i % K]);
        }
        return ok;
      },
    });
    contenders.push({
      name: "wasm R/S pre-checks alone",
      iterations: n(1000),
      run(N) {
        let ok = 0;
        for (let i = 0; i < N; i++) ok += cs.ed25519SignaturePrechecks(sigs[i % K]);
        return ok;
      },
    });
  }
  contenders.push({
    name: "@noble/ed25519 verifyAsync (zip215: false)",
    iterations: n(40),
    async run(N) {
      let ok = 0;
      for (let i = 0; i < N; i++) ok += await noble.verifyAsync(sigs[i % K], msgs[i % K], pub, { zip215: false });
      return ok;
    },
  });
  // A tampered signature must fail everywhere (sanity check of the harness).
  const bad = sigs[0].slice();
  bad[5] ^= 1;
  const sanity = {
    webcrypto: await subtle.verify("Ed25519", wcKey, bad, msgs[0]),
    noble: await noble.verifyAsync(bad, msgs[0], pub, { zip215: false }),
    wasm: wasmKey ? wasmKey.verifyStrict(msgs[0], bad) : null,
  };
  return { sanityTamperedAccepted: sanity, results: await interleave(contenders, rounds) };
}

async function sha256Bench({ size, rounds, iterations }) {
  const data = filled(size);
  const expect = toHex(await subtle.digest("SHA-256", data));
  const contenders = [];
  let mismatch = false;
  if (hasExports) {
    if (toHex(cs.sha256(data)) !== expect) mismatch = true;
    contenders.push({
      name: "wasm sha256 (BodyDigest::of)",
      iterations,
      run(N) {
        for (let i = 0; i < N; i++) cs.sha256(data);
        return N;
      },
    });
  }
  if (typeof cs.bodySha256 === "function") {
    if (toHex(await cs.bodySha256(data)) !== expect) mismatch = true;
    contenders.push({
      name: "client body hash (bodySha256, as getObject verifies)",
      iterations,
      async run(N) {
        for (let i = 0; i < N; i++) await cs.bodySha256(data);
        return N;
      },
    });
  }
  contenders.push({
    name: "WebCrypto digest SHA-256",
    iterations,
    async run(N) {
      for (let i = 0; i < N; i++) await subtle.digest("SHA-256", data);
      return N;
    },
  });
  return { size, mismatch, results: await interleave(contenders, rounds) };
}

/** Answers of every verifier on the third-party vector files. */
async function vectorAnswers() {
  const get = async (p) => (await fetch(p)).json();
  const wy = await get("/vectors/wycheproof/ed25519_test.json");
  const sc = await get("/vectors/ed25519-speccheck/cases.json");
  const cases = [];
  for (const g of wy.testGroups) {
    for (const t of g.tests) {
      cases.push({ set: "wycheproof", id: t.tcId, comment: t.comment, flags: t.flags, expected: t.result, pk: g.publicKey.pk, msg: t.msg, sig: t.sig });
    }
  }
  sc.forEach((c, i) => cases.push({ set: "speccheck", id: i, comment: "", flags: [], expected: "invalid", pk: c.pub_key, msg: c.message, sig: c.signature }));

  const out = [];
  for (const c of cases) {
    const pk = fromHex(c.pk), msg = fromHex(c.msg), sig = fromHex(c.sig);
    let webcrypto, webcryptoNote = "";
    try {
      const key = await subtle.importKey("raw", pk, { name: "Ed25519" }, false, ["verify"]);
      try {
        webcrypto = await subtle.verify("Ed25519", key, sig, msg);
      } catch (e) {
        webcrypto = false;
        webcryptoNote = `verify threw ${e.name}`;
      }
    } catch (e) {
      webcrypto = false;
      webcryptoNote = `importKey threw ${e.name}`;
    }
    let nobleAnswer;
    try {
      nobleAnswer = await noble.verifyAsync(sig, msg, pk, { zip215: false });
    } catch {
      nobleAnswer = false;
    }
    const ours = hasExports ? cs.verifyEd25519Strict(pk, msg, sig) : null;
    const report = hasStudyExports ? cs.ed25519PrecheckReport(pk, sig) : null;
    const prechecks = hasStudyExports ? cs.ed25519KeyAcceptable(pk) && cs.ed25519SignaturePrechecks(sig) : null;
    out.push({
      set: c.set, id: c.id, comment: c.comment, flags: c.flags, expected: c.expected,
      ours, webcrypto, webcryptoNote, noble: nobleAnswer,
      combined: prechecks === null ? null : prechecks && webcrypto,
      strictViolations: report,
    });
  }
  return out;
}

window.countersignBench = {
  hasExports,
  hasStudyExports,
  userAgent: navigator.userAgent,
  crossOriginIsolated: self.crossOriginIsolated,
  ed25519Bench,
  sha256Bench,
  vectorAnswers,
  median,
};
window.countersignBenchReady = true;
