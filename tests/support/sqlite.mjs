// Reads and alters a stopped (or idle) gatekeeper's SQLite file in the browser and
// console tests, through Python's sqlite3 module: python3 is needed by the test
// services anyway (scripts/services.sh), so no sqlite3 command-line tool is installed.
import { execFileSync } from "node:child_process";

const SCRIPT = `
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=30)
rows = c.execute(sys.argv[2], json.loads(sys.argv[3])).fetchall()
c.commit()
print(json.dumps([[v.decode() if isinstance(v, bytes) else v for v in r] for r in rows]))
`;

/**
 * Runs one SQL statement with `?` parameters on the SQLite file `db` and commits;
 * returns its rows (arrays of values, text for blobs).
 */
export function sqlite(db, sql, params = []) {
  const out = execFileSync("python3", ["-c", SCRIPT, db, sql, JSON.stringify(params)], { maxBuffer: 1 << 28 });
  return JSON.parse(out.toString());
}
