//! Verifying an audit export file in the browser (admin flavor; `docs/API.md`,
//! "Audit console"): [`ExportVerifier`] wraps the core's
//! [`countersign_core::export::ExportVerifier`] — what `countersign audit verify
//! EXPORT` runs natively — fed the file's chunks as they are read, so memory stays one
//! chunk and one line whatever the file's size.
//!
//! ```js
//! import init, { ExportVerifier } from "@countersign/client/admin";
//! await init();
//! const verifier = new ExportVerifier({ keys });
//! const reader = file.stream().getReader();
//! for (let r = await reader.read(); !r.done; r = await reader.read()) {
//!   verifier.push(r.value); // throws a CountersignError at the first bad line
//!   bar.value = verifier.bytes / file.size;
//! }
//! const report = verifier.finish();
//! ```

use crate::error::{CountersignError, make_errors_extend_error};
use crate::options::Fields;
use countersign_core::export::ExportVerifier as CoreVerifier;
use countersign_core::text::hex;
use countersign_core::{Keyring, Policy, Role};
use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const EXPORT_TS: &str = r#"
/** Options of `new ExportVerifier(options)`. */
export interface ExportVerifierOptions {
  /** As `ClientOptions.keys`: the gatekeeper's key(s) (role `gatekeeper`) sign the checkpoints. */
  keys: TrustedKey[];
  /** Witness verifier keys (`name+keyid+base64`, type 0x04), as `ClientOptions.logWitnesses`. */
  logWitnesses?: string[];
  /** How many of `logWitnesses` must have cosigned the tree checkpoint (default 0). */
  logQuorum?: number;
}

/** What `ExportVerifier.finish()` verified. */
export interface ExportReport {
  /** Entries verified (the hash chain from entry 0). */
  entries: number;
  /** Signed chain checkpoints verified. */
  chainCheckpoints: number;
  /** The SHA-256 of the last entry (the chain's head), lowercase hex. */
  headHash: string;
  /** The signed tree checkpoint's size, absent when the export had none: the first `treeSize` entries hash to its root. */
  treeSize?: number;
  /** That checkpoint's root, lowercase hex. */
  rootHash?: string;
  /** Witnesses whose cosignatures on the tree checkpoint verified. */
  cosignedBy: string[];
  /** Bytes of the export read. */
  bytes: number;
}
"#;

/// An export (the JSONL of `GET /v1/audit/export`) verified as it is read.
#[wasm_bindgen]
pub struct ExportVerifier {
    inner: CoreVerifier<'static>,
}

#[wasm_bindgen]
impl ExportVerifier {
    /// A verifier trusting `options.keys` (the gatekeeper's, role `gatekeeper`) and
    /// the witness quorum. Throws a `CountersignError` `bad_options`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "ExportVerifierOptions")] options: JsValue,
    ) -> Result<ExportVerifier, CountersignError> {
        make_errors_extend_error();
        let o = Fields::new(
            &options,
            "options".to_owned(),
            &["keys", "logWitnesses", "logQuorum"],
        )?;
        let keys: Vec<_> = o
            .keys()?
            .into_iter()
            .filter(|k| k.role == Role::gatekeeper())
            .collect();
        if keys.is_empty() {
            return Err(CountersignError::other(
                "bad_options",
                "options.keys must hold the gatekeeper's key (role gatekeeper)",
            ));
        }
        let (witnesses, quorum) = o.witnesses()?;
        let log_keys = keys.iter().map(|k| k.public_key).collect();
        let gatekeeper = Policy::new(Keyring::new(keys)?, [(Role::gatekeeper(), 1)])?;
        Ok(Self {
            inner: CoreVerifier::owning(gatekeeper, log_keys, witnesses, quorum),
        })
    }

    /// The next chunk of the file, split anywhere: verifies every line it completes.
    /// Throws a `CountersignError` naming the line (`line N of the export: …`):
    /// `malformed` (not an export line), `audit_chain_broken` (an entry altered,
    /// removed, inserted or reordered, a checkpoint that does not match), a signature
    /// code (`bad_signature`, `unknown_key`, `threshold_not_met`); after one, every call
    /// throws it again.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), CountersignError> {
        Ok(self.inner.chunk(chunk)?)
    }

    /// Entries verified so far.
    #[wasm_bindgen(getter)]
    pub fn entries(&self) -> f64 {
        self.inner.entries() as f64
    }

    /// Bytes pushed so far (for progress: `bytes / file.size`).
    #[wasm_bindgen(getter)]
    pub fn bytes(&self) -> f64 {
        self.inner.bytes() as f64
    }

    /// Ends the file (a last line without its newline is verified) and returns the
    /// report; throws as `push` does, or `audit_chain_broken` if the signed tree
    /// checkpoint covers more entries than the file holds. The verifier is used up.
    #[wasm_bindgen(unchecked_return_type = "ExportReport")]
    pub fn finish(self) -> Result<JsValue, CountersignError> {
        let bytes = self.inner.bytes();
        let report = self.inner.finish()?;
        let out = Object::new();
        let set = |name: &str, value: JsValue| {
            // Setting a property of a fresh plain object cannot fail.
            let _ = Reflect::set(&out, &JsValue::from_str(name), &value);
        };
        set("entries", JsValue::from_f64(report.entries as f64));
        set(
            "chainCheckpoints",
            JsValue::from_f64(report.chain_checkpoints as f64),
        );
        set("headHash", JsValue::from_str(&hex(&report.head)));
        if let (Some(size), Some(root)) = (report.tree_size, report.tree_root) {
            set("treeSize", JsValue::from_f64(size as f64));
            set("rootHash", JsValue::from_str(&hex(&root)));
        }
        let cosigned: js_sys::Array = report
            .cosigned_by
            .iter()
            .map(|w| JsValue::from_str(w))
            .collect();
        set("cosignedBy", cosigned.into());
        set("bytes", JsValue::from_f64(bytes as f64));
        Ok(out.into())
    }
}
