// Writes the demo's sample helpdesk reports into a directory, as files named by their
// object keys: the text fields as report.json and small PNG "screenshots" drawn here
// (Node's zlib only, no image libraries).
//
//   node scripts/sample-report.mjs OUT_DIR
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { deflateSync } from "node:zlib";

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (buf) => {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, "latin1");
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** An RGB PNG of `width`×`height` whose pixel colour is `paint(x, y) -> [r, g, b]`. */
export function png(width, height, paint) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1); // filter byte 0 (none), then the pixels
    for (let x = 0; x < width; x++) raw.set(paint(x, y), row + 1 + x * 3);
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour, deflate, no filter, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

// A fake application window: title bar, a dialog box, and some grain so the image
// does not compress to nothing (it should weigh like a real screenshot, a few KB).
function windowShot(accent, seed) {
  let s = seed;
  const noise = () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 24) & 7;
  return png(320, 200, (x, y) => {
    if (y < 24) return accent;
    if (x > 60 && x < 260 && y > 70 && y < 150) {
      if (y < 88) return [200, 40, 40];
      return x > 200 && y > 125 && y < 142 ? [60, 60, 60] : [250, 250, 250];
    }
    const g = 226 + noise();
    return [g, g, g + 4];
  });
}

export const samples = {
  "org-acme/reports/2026-11-printer/report.json": JSON.stringify({
    title: "Label printer stops after the first patient label",
    reporter: "Dr. A. Example, front desk",
    organisation: "Acme Clinic",
    created: "2026-11-03T09:14:00Z",
    severity: "medium",
    description: "Printing a patient label works once; the second label shows the error in screenshot 1 and the queue stalls (screenshot 2).",
  }, null, 2),
  "org-acme/reports/2026-11-printer/screenshot-1.png": windowShot([40, 90, 160], 1),
  "org-acme/reports/2026-11-printer/screenshot-2.png": windowShot([40, 90, 160], 2),
  "org-bravo/reports/2026-11-login/report.json": JSON.stringify({
    title: "Reception PC asks for the password twice",
    reporter: "B. Example, reception",
    organisation: "Bravo Dental",
    created: "2026-11-05T16:40:00Z",
    severity: "low",
    description: "After the Monday update the login dialog appears a second time.",
  }, null, 2),
  "org-bravo/reports/2026-11-login/screenshot-1.png": windowShot([30, 120, 90], 3),
};

export const contentType = (key) => (key.endsWith(".png") ? "image/png" : "application/json");

if (import.meta.url === `file://${process.argv[1]}`) {
  const out = process.argv[2];
  if (!out) {
    console.error("usage: node scripts/sample-report.mjs OUT_DIR");
    process.exit(2);
  }
  for (const [key, body] of Object.entries(samples)) {
    mkdirSync(dirname(join(out, key)), { recursive: true });
    writeFileSync(join(out, key), body);
    console.log(`${key}\t${contentType(key)}\t${Buffer.byteLength(body)} bytes`);
  }
}
