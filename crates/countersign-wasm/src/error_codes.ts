/** The protocol's stable error codes (docs/PROTOCOL.md, "Error codes"). */
export type ProtocolErrorCode =
  | "malformed"
  | "unsupported_version"
  | "non_canonical"
  | "invalid_field"
  | "invalid_bucket"
  | "invalid_key_path"
  | "too_large"
  | "expired"
  | "not_yet_valid"
  | "lifetime_too_long"
  | "wrong_audience"
  | "bad_signature"
  | "weak_key"
  | "unknown_key"
  | "wrong_role"
  | "key_outside_window"
  | "threshold_not_met"
  | "replayed"
  | "receipt_mismatch"
  | "manifest_mismatch"
  | "body_mismatch"
  | "request_mismatch"
  | "audit_chain_broken"
  | "ip_denied"
  | "access_denied"
  | "already_exists"
  | "not_found"
  | "audit_unavailable"
  | "storage_unavailable"
  | "internal"
  | "rate_limited"
  | "timeout"
  | "overloaded"
  | "duplicate_key"
  | "listing_mismatch"
  | "stored_object_tampered"
  | "key_unavailable";

/**
 * Codes of the client itself: `network` when the gatekeeper or the signing function
 * could not be reached, `bad_options` for a misconfigured client.
 */
export type ClientErrorCode = "network" | "bad_options";

/**
 * What `CountersignError.code` holds: a protocol code, a client code, or a code the
 * page's signing function refused a request with (`{code, message}`).
 */
export type ErrorCode = ProtocolErrorCode | ClientErrorCode | (string & {});
