// Shared by the plain-page and the bundler packaging tests: loads the package the way
// a user does and records what happened in window.__result.
export async function smoke({ default: init, GatekeeperClient, CountersignError }) {
  const result = {};
  try {
    await init();
    result.initialised = true;
    const options = {
      gatekeeperUrl: "http://127.0.0.1:9",
      gatekeeperId: "gk.test",
      bucket: "reports",
      subject: "user-1",
      keys: [
        { keyId: "gk-1", role: "gatekeeper", publicKey: "o1HEnwofyWYuyKYTTH22e4LHDTqiqav4WPokrDFfL-k" },
        { keyId: "vendor-1", role: "vendor", publicKey: "Zr5-Myx6RTMyvZ0Kf32wVfXF7xoGraZtmLOftoEMRzo" },
      ],
      sign: async (requests) => requests.map(() => "vendor:v1:" + "A".repeat(86)),
    };
    try {
      new GatekeeperClient({ ...options, bucket: "Not A Bucket" });
    } catch (e) {
      result.badBucket = e instanceof CountersignError ? e.code : String(e);
    }
    const client = new GatekeeperClient(options);
    try {
      await client.getObject("org-1/a.png");
    } catch (e) {
      result.unreachable = e instanceof CountersignError ? e.code : String(e);
    }
    try {
      await client.getObject("org-1/../b.png");
    } catch (e) {
      result.traversal = e.code;
    }
    try {
      await client.listObjects("org-1/", "org-1/../b.png");
    } catch (e) {
      result.badCursor = e.code;
    }
    const codes = CountersignError.protocolCodes();
    result.newCodes = ["duplicate_key", "listing_mismatch", "rate_limited", "timeout", "overloaded"].every((c) => codes.includes(c));
  } catch (e) {
    result.error = String(e?.stack ?? e);
  }
  window.__result = result;
}
