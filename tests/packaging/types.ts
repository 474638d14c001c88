// Compiled with `tsc --noEmit` against the package's generated declarations: every
// export, method and property of the public API must type-check with exact types.
import init, {
  CountersignError,
  Ed25519PublicKey,
  GatekeeperClient,
  bodySha256,
  initSync,
  sha256,
  verifyEd25519Strict,
  type ClientOptions,
  type ErrorCode,
  type ListPage,
  type ListedObject,
  type LogProof,
  type LogReceipt,
  type ProtocolErrorCode,
  type PutResult,
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
  const meta: string[] = [one.key, one.contentType, one.uploader, one.sha256];
  const put: PutResult = await client.putObject("org-1/new.png", new Uint8Array([1, 2]), "image/png");
  const stored: [string, string, number, number] = [put.key, put.sha256, put.size, put.auditSeq];
  const page: ListPage = await client.listObjects("org-1/");
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
      const sentence: string = e.message;
      failure = `${asError.name}: ${explain(e)} ${sentence} ${e.toString()}`;
    }
  }
  return [url, text, String(bytes.length + size + put.size + sizes), ...meta, ...stored.map(String), ...signers.uploader, ...codes, next ?? "", ...described, failure, logged];
}

/** The primitives: hashing and strict Ed25519 verification, as the client does them. */
async function primitives(key: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean[]> {
  const loadFromBytes: (module: { module: BufferSource }) => unknown = initSync;
  const digest: Uint8Array = sha256(message);
  const bodyDigest: Uint8Array = await bodySha256(message);
  const parsed: Ed25519PublicKey = new Ed25519PublicKey(key);
  const codes: ProtocolErrorCode[] = CountersignError.protocolCodes();
  return [
    typeof loadFromBytes === "function",
    digest.length === bodyDigest.length,
    parsed.verifyStrict(message, signature),
    verifyEd25519Strict(key, message, signature),
    codes.length > 0,
  ];
}

export { primitives, report };
