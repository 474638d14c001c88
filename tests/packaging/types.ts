// Compiled with `tsc --noEmit` against the package's generated declarations: the
// public API a report page uses must type-check.
import init, { CountersignError, GatekeeperClient, type ClientOptions, type VerifiedObject } from "@countersign/client";

async function report(): Promise<string[]> {
  await init();
  const options: ClientOptions = {
    gatekeeperUrl: "https://gk.acme.example",
    gatekeeperId: "gk.acme",
    bucket: "patient-reports",
    subject: "user-42",
    lifetimeSecs: 60,
    keys: [{ keyId: "gk-1", role: "gatekeeper", publicKey: "o1HEnwofyWYuyKYTTH22e4LHDTqiqav4WPokrDFfL-k", notBefore: 0 }],
    sign: async (requests: string[]): Promise<string[]> => requests.map(() => ""),
  };
  const client = new GatekeeperClient(options);
  const one: VerifiedObject = await client.getObject("org-1/report.json");
  const url: string = one.objectUrl();
  const text: string = one.text();
  const bytes: Uint8Array = one.bytes;
  const size: number = one.size + one.storedAt + one.auditSeq;
  const signers: { uploader: string[]; gatekeeper: string[] } = one.signers;
  const many = await client.getObjects(["a", "b"]);
  const codes = many.map((r) => (r instanceof CountersignError ? r.code : r.contentType));
  const put = await client.putObject("org-1/new.png", new Uint8Array([1, 2]), "image/png");
  const page = await client.listObjects("org-1/");
  const next: string | undefined = page.nextAfter;
  return [url, text, String(bytes.length + size + put.size), ...signers.uploader, ...codes, next ?? ""];
}

export { report };
