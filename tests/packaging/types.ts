// Compiled with `tsc --noEmit` against the package's generated declarations: the
// public API a report page uses must type-check.
import init, {
  CountersignError,
  GatekeeperClient,
  type ClientOptions,
  type ErrorCode,
  type ListedObject,
  type LogProof,
  type LogReceipt,
  type ProtocolErrorCode,
  type VerifiedObject,
} from "@countersign/client";

/** A page's explanation of every protocol code: the compiler checks it lists each one. */
const EXPLAIN: Record<ProtocolErrorCode, string> = Object.fromEntries(
  CountersignError.protocolCodes().map((c) => [c, c.replace(/_/g, " ")]),
) as Record<ProtocolErrorCode, string>;

function explain(e: CountersignError): string {
  const code: ErrorCode = e.code;
  switch (code) {
    case "listing_mismatch":
    case "body_mismatch":
    case "duplicate_key":
    case "rate_limited":
    case "timeout":
    case "overloaded":
    case "network":
    case "bad_options":
      return code;
    default:
      return EXPLAIN[code as ProtocolErrorCode] ?? code;
  }
}

async function report(): Promise<string[]> {
  await init();
  const options: ClientOptions = {
    gatekeeperUrl: "https://gk.acme.example",
    gatekeeperId: "gk.acme",
    bucket: "patient-reports",
    subject: "user-42",
    lifetimeSecs: 60,
    concurrency: 4,
    logWitnesses: ["witness.example+1e2f6a3b+BGh5bHlvZ3JhcGh5aGh5bHlvZ3JhcGh5aGh5bHlvZ3I="],
    logQuorum: 1,
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
  const listed: ListedObject[] = page.objects;
  const more = await client.listObjects("org-1/", next, 50);
  const sizes: number = listed.reduce((n, o) => n + o.size + o.storedAt, page.auditSeq + page.listedAt);
  const described: string[] = more.objects.map((o) => `${o.key} ${o.contentType} ${o.sha256}`);
  const receipt: LogReceipt = put.receipt;
  const proof: LogProof = await client.proveLogged(receipt);
  const cosigners: string[] = proof.cosignedBy;
  const logged = `${proof.leafIndex}/${proof.treeSize} ${proof.leafSha256} ${proof.rootHash} ${receipt.decision} ${receipt.leafSha256 ?? "v1"} ${cosigners.join(",")}`;
  await client.proveLogged(one.receipt);
  let failure = "";
  try {
    await client.listObjects("org-1/", "../not-a-key");
  } catch (e) {
    if (e instanceof CountersignError) {
      const denied: LogReceipt | undefined = e.receipt;
      if (denied) await client.proveLogged(denied);
      // A CountersignError is an Error: generic handlers take it as one.
      const asError: Error = e;
      failure = `${asError.name}: ${explain(e)}`;
    }
  }
  return [url, text, String(bytes.length + size + put.size + sizes), ...signers.uploader, ...codes, next ?? "", ...described, failure, logged];
}

export { report };
