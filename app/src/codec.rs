//! The server functions' output encoding: the same JSON as server_fn's default (`Json`), read
//! in the browser through `serde_json::from_str` instead of `from_slice`.
//!
//! Why: the page's resources are hydrated with `from_str` (codee's JSON codec) and the live
//! stream is read with `from_str` too, while server_fn's own JSON codec reads responses with
//! `from_slice`. serde_json compiles a separate deserializer for each reader, so every type the
//! browser reads both ways (the card list above all) was compiled twice into the WASM. Reading
//! responses as text as well keeps one copy: measured 25,957 B raw, 6,974 B gzip (-9) less WASM.
//! The wire format does not change: same JSON, same content type, and the server side encodes
//! exactly as before.

use leptos::server_fn::{codec::Post, Bytes, ContentType, Decodes, Encodes, Format, FormatType};
use serde::{de::DeserializeOwned, Serialize};

/// JSON in the body of a `POST` response, decoded from text. Use as a server function's
/// `output`.
pub type JsonText = Post<JsonTextEncoding>;

/// See the module documentation.
pub struct JsonTextEncoding;

impl ContentType for JsonTextEncoding {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl FormatType for JsonTextEncoding {
    const FORMAT_TYPE: Format = Format::Text;
}

impl<T: Serialize> Encodes<T> for JsonTextEncoding {
    type Error = serde_json::Error;

    fn encode(output: &T) -> Result<Bytes, Self::Error> {
        serde_json::to_vec(output).map(Bytes::from)
    }
}

impl<T: DeserializeOwned> Decodes<T> for JsonTextEncoding {
    type Error = serde_json::Error;

    fn decode(bytes: Bytes) -> Result<T, Self::Error> {
        // JSON is UTF-8; what is not cannot be JSON.
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            <serde_json::Error as serde::de::Error>::custom("response is not UTF-8")
        })?;
        serde_json::from_str(text)
    }
}
