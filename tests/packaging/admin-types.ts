// Type-checks the admin flavor's declarations (`@countersign/client/admin`) the way
// the audit console uses them; `tsc --noEmit -p tests/packaging/tsconfig.json` runs it.
import init, { AuditRequest, CountersignError, EntryCheck, ExportVerifier, LogView, verifyLog } from "@countersign/client/admin";
import type { AuditEntryFields, ExportReport, ExportVerifierOptions, LogVerifyReport, LogViewOptions, VerifyLogOptions } from "@countersign/client/admin";

export async function consoleUsage(key: CryptoKey, entries: string[]): Promise<void> {
  await init();
  const options: LogViewOptions = {
    gatekeeperUrl: "https://gk.acme.example",
    gatekeeperId: "gk.acme",
    keys: [{ keyId: "gatekeeper-1", role: "gatekeeper", publicKey: "AAAA" }],
    logWitnesses: [],
    logQuorum: 0,
  };
  const view: LogView = await LogView.open(options);
  const size: number = view.treeSize;
  const root: string = view.rootHash;
  const witnesses: string[] = view.cosignedBy;
  const note: string = view.note;
  const checks: EntryCheck[] = await view.proveEntries(entries);
  for (const c of checks) {
    const status: "verified" | "failed" | "pending" = c.status;
    const seq: number | undefined = c.seq;
    const code: string | undefined = c.code;
    const message: string | undefined = c.message;
    const fields: AuditEntryFields | undefined = c.fields;
    console.log(status, seq, code, message, fields?.decision, fields?.error, size, root, witnesses, note);
  }
  const verify: VerifyLogOptions = {
    ...options,
    subject: "admin-ann",
    keyId: "admin-ann-1",
    sign: async (m) => new Uint8Array(await crypto.subtle.sign("Ed25519", key, m)),
    onProgress: (done, total) => console.log(done / total),
  };
  try {
    const report: LogVerifyReport = await verifyLog(verify);
    console.log(report.entries, report.bundles, report.treeSize, report.rootHash, report.millis);
  } catch (e) {
    if (e instanceof CountersignError) console.log(e.code, e.message);
  }
  const req = new AuditRequest({ gatekeeperId: "gk.acme", subject: "admin-ann", keyId: "admin-ann-1", action: "read" });
  console.log(req.requestHeader);
}

/** Verifies an export file read as a stream, as the console does. */
export async function exportUsage(file: File): Promise<void> {
  await init();
  const options: ExportVerifierOptions = {
    keys: [{ keyId: "gatekeeper-1", role: "gatekeeper", publicKey: "AAAA" }],
    logWitnesses: [],
    logQuorum: 0,
  };
  const verifier = new ExportVerifier(options);
  const reader = file.stream().getReader();
  try {
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      verifier.push(r.value);
      console.log(verifier.bytes / file.size, verifier.entries);
    }
    const report: ExportReport = verifier.finish();
    const tree: number | undefined = report.treeSize;
    const root: string | undefined = report.rootHash;
    console.log(report.entries, report.chainCheckpoints, report.headHash, tree, root, report.cosignedBy, report.bytes);
  } catch (e) {
    if (e instanceof CountersignError) console.log(e.code, e.message);
  }
}
