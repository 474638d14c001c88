//! The error class JavaScript sees: a stable `code` to switch on, and a sentence.

use wasm_bindgen::prelude::*;

/// The TypeScript declarations of the error codes: `error_codes.ts`, generated from
/// the core's [`ErrorCode::ALL`](countersign_core::ErrorCode::ALL) by the test
/// `error_codes_ts_is_generated_from_the_core` (run it with `COUNTERSIGN_REGENERATE=1`
/// to rewrite the file; without, it fails when the file is stale).
// wasm-bindgen embeds it through `ERROR_CODES_TS` in a way rustc does not count as a use.
#[allow(dead_code)]
const ERROR_CODES: &str = include_str!("error_codes.ts");

#[wasm_bindgen(typescript_custom_section)]
const ERROR_CODES_TS: &str = ERROR_CODES;

#[wasm_bindgen(typescript_custom_section)]
const EXTENDS_ERROR_TS: &str = r#"
/** `CountersignError` is an `Error`: `instanceof Error` holds, `name` is `"CountersignError"`. */
export interface CountersignError extends Error {}
"#;

/// Puts `Error.prototype` under `CountersignError.prototype` (once), so a page's
/// generic error handling (`instanceof Error`, `err.name`, logging) treats it as the
/// error it is. `new GatekeeperClient` calls it first, before any error can be thrown.
pub(crate) fn make_errors_extend_error() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let sample = JsValue::from(CountersignError::other("internal", ""));
        let class_prototype = js_sys::Object::get_prototype_of(&sample);
        let error_prototype = js_sys::Object::get_prototype_of(&js_sys::Error::new("").into());
        js_sys::Object::set_prototype_of(&class_prototype, &error_prototype);
        let _ = js_sys::Reflect::set(
            &class_prototype,
            &JsValue::from_str("name"),
            &JsValue::from_str("CountersignError"),
        );
    });
}

/// A Countersign error. `code` is one of the protocol's stable error codes
/// (`docs/PROTOCOL.md`, "Error codes"), or `network` when the gatekeeper or the signing
/// function could not be reached, or `bad_options` for a client misconfiguration.
#[wasm_bindgen]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountersignError {
    code: String,
    message: String,
}

#[wasm_bindgen]
impl CountersignError {
    /// The stable machine-readable code.
    #[wasm_bindgen(getter, unchecked_return_type = "ErrorCode")]
    pub fn code(&self) -> String {
        self.code.clone()
    }

    /// Every protocol error code this client knows, in the order of
    /// `docs/PROTOCOL.md` (for pages that explain each code to their users).
    #[wasm_bindgen(js_name = protocolCodes, unchecked_return_type = "ProtocolErrorCode[]")]
    pub fn protocol_codes() -> Vec<String> {
        countersign_core::ErrorCode::ALL
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect()
    }

    /// What went wrong, for humans.
    #[wasm_bindgen(getter)]
    pub fn message(&self) -> String {
        self.message.clone()
    }

    /// `code: message`.
    #[wasm_bindgen(js_name = toString)]
    pub fn to_js_string(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }
}

impl CountersignError {
    /// An error with a code that is not a protocol code (`network`, `bad_options`).
    pub(crate) fn other(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// A protocol error code with a sentence.
    pub(crate) fn protocol(code: &str, message: impl Into<String>) -> Self {
        Self::other(code, message)
    }
}

impl From<countersign_core::Error> for CountersignError {
    fn from(e: countersign_core::Error) -> Self {
        Self {
            code: e.code().as_str().to_owned(),
            message: e.message().to_owned(),
        }
    }
}

/// Describes a thrown JavaScript value for an error message.
pub(crate) fn describe(value: &JsValue) -> String {
    value
        .as_string()
        .or_else(|| {
            value
                .dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// `error_codes.ts` as generated from the core's codes.
    #[cfg(not(target_arch = "wasm32"))]
    fn generated_error_codes_ts() -> String {
        let mut out = String::from(
            "/** The protocol's stable error codes (docs/PROTOCOL.md, \"Error codes\"). */\n\
             export type ProtocolErrorCode =\n",
        );
        let codes = countersign_core::ErrorCode::ALL;
        for (i, code) in codes.iter().enumerate() {
            let end = if i + 1 == codes.len() { ";" } else { "" };
            out.push_str(&format!("  | \"{}\"{end}\n", code.as_str()));
        }
        out.push_str(CLIENT_CODES_TS);
        out
    }

    /// The codes of the client itself, after the protocol's.
    #[cfg(not(target_arch = "wasm32"))]
    const CLIENT_CODES_TS: &str = r#"
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
"#;

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn error_codes_ts_is_generated_from_the_core() {
        let generated = generated_error_codes_ts();
        if std::env::var_os("COUNTERSIGN_REGENERATE").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/error_codes.ts");
            std::fs::write(path, &generated).unwrap();
        } else {
            assert!(
                ERROR_CODES == generated,
                "src/error_codes.ts is stale: run `COUNTERSIGN_REGENERATE=1 cargo test -p countersign-wasm error_codes_ts`"
            );
        }
    }

    #[test]
    fn the_typescript_union_lists_exactly_the_protocol_codes() {
        let union = ERROR_CODES
            .split("export type ProtocolErrorCode =")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap();
        let listed: Vec<&str> = union
            .split('|')
            .map(|c| c.trim().trim_matches('"'))
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(listed, CountersignError::protocol_codes());
    }
}
