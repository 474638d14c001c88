//! The error class JavaScript sees: a stable `code` to switch on, and a sentence.

use wasm_bindgen::prelude::*;

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
    #[wasm_bindgen(getter)]
    pub fn code(&self) -> String {
        self.code.clone()
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
