//! The HTTP client both providers share: how it is built, and how secrets
//! become headers without ever being printed.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};

use crate::ModelError;

/// A header value holding a secret, marked so that it is never printed.
pub(crate) fn secret_header(what: &str, value: &str) -> Result<HeaderValue, ModelError> {
    let mut header = HeaderValue::from_str(value.trim()).map_err(|_| {
        ModelError::Config(format!(
            "{what} contains characters that cannot be sent in an HTTP header"
        ))
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// The HTTP client both providers use: no overall deadline (answers can
/// stream for many minutes), but a bound on connecting and on silence.
pub(crate) fn http_client(
    headers: HeaderMap,
    idle_timeout: Duration,
) -> Result<reqwest::Client, ModelError> {
    reqwest::Client::builder()
        .default_headers(headers)
        .user_agent(concat!("cubicle/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(idle_timeout)
        .build()
        .map_err(|e| ModelError::Config(format!("cannot set up the HTTP client: {e}")))
}
