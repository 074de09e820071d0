//! Streamable-HTTP MCP servers, reached through the session's egress proxy.
//!
//! The client runs on the host, but every request goes through the loopback
//! listener of the session's [egress proxy](https://docs.rs/cubicle-egress)
//! (the one the browser sub-agent uses), so the policy's domain rules,
//! address checks and audit apply to MCP servers as to anything else the
//! cubicle reaches. A refusal is reported with the proxy's own words, which
//! name the rule or the missing allowance.
//!
//! Header values and the URL may use `${VAR}` and `${VAR:-default}`, taken
//! from the host's environment as Claude Code does: a token stays on the
//! host and never enters the cubicle. A variable that is not set is an
//! error naming it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{McpError, McpServerConfig, McpTransport, RmcpClient};

/// Most bytes of a proxy refusal read to explain a failed connection.
const REFUSAL_MAX_BYTES: usize = 8 * 1024;
/// Longest the refusal check may take.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to HTTP server `server` through the egress proxy listening on
/// `proxy` (a loopback address), expanding `${VAR}` in its URL and headers
/// with `env` (normally the host environment).
pub async fn connect_http(
    server: &McpServerConfig,
    proxy: SocketAddr,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<RmcpClient, McpError> {
    let connect_err = |message: String| McpError::Connect {
        server: server.name.clone(),
        message,
    };
    let McpTransport::Http { url, headers } = &server.transport else {
        return Err(connect_err("it is not an HTTP server".to_owned()));
    };
    let url = expand_env(url, env).map_err(&connect_err)?;
    let mut expanded = BTreeMap::new();
    for (name, value) in headers {
        let value =
            expand_env(value, env).map_err(|why| connect_err(format!("header `{name}`: {why}")))?;
        expanded.insert(name.clone(), value);
    }
    RmcpClient::connect_http(&server.name, &url, &expanded, proxy).await
}

impl RmcpClient {
    /// Completes the MCP handshake with the streamable-HTTP endpoint `url`,
    /// sending `headers` with every request, with every connection made
    /// through the HTTP proxy at `proxy` (the session's egress proxy).
    pub async fn connect_http(
        name: &str,
        url: &str,
        headers: &BTreeMap<String, String>,
        proxy: SocketAddr,
    ) -> Result<Self, McpError> {
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

        let connect_err = |message: String| McpError::Connect {
            server: name.to_owned(),
            message,
        };
        let target = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| connect_err(format!("`{url}` is not an http(s) URL")))?;
        let mut custom = HashMap::new();
        for (k, v) in headers {
            let key = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| connect_err(format!("`{k}` is not a valid header name")))?;
            let value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| connect_err(format!("header `{k}` has a value HTTP cannot carry")))?;
            custom.insert(key, value);
        }
        let proxy_url = format!("http://{proxy}");
        let client = reqwest::Client::builder()
            // Only the egress proxy: never the environment's proxies, and
            // never straight to the server.
            .no_proxy()
            .proxy(
                reqwest::Proxy::all(&proxy_url)
                    .map_err(|e| connect_err(format!("egress proxy {proxy_url}: {e}")))?,
            )
            // A redirect is the server's business with the proxy, not a way
            // around it; rmcp reports it as an unexpected answer.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| connect_err(format!("cannot set up the HTTP client: {e}")))?;
        let config =
            StreamableHttpClientTransportConfig::with_uri(url.to_owned()).custom_headers(custom);
        let transport = StreamableHttpClientTransport::with_client(client, config);
        match Self::serve(name, transport, Arc::new(Mutex::new(Vec::new()))).await {
            Ok(c) => Ok(c),
            Err(McpError::Connect { server, message }) => {
                let message = match proxy_refusal(proxy, &target).await {
                    Some(refusal) => format!("the egress proxy refused it: {refusal}"),
                    None => format!("{message} (at {url})"),
                };
                Err(McpError::Connect { server, message })
            }
            Err(other) => Err(other),
        }
    }
}

/// Why the proxy at `proxy` refuses connections to `target`'s host and
/// port, if it does: the body of its answer to a `CONNECT`, which names the
/// rule that decided. `None` when it accepts (or cannot be asked).
async fn proxy_refusal(proxy: SocketAddr, target: &reqwest::Url) -> Option<String> {
    let host = target.host_str()?;
    let port = target.port_or_known_default()?;
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(proxy).await.ok()?;
        let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            // A 200 keeps the tunnel open: stop at the end of its head.
            if answer.starts_with(b"HTTP/1.1 200") && answer.windows(4).any(|w| w == b"\r\n\r\n") {
                return None;
            }
            if answer.len() >= REFUSAL_MAX_BYTES {
                break;
            }
        }
        let text = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.lines().next()?;
        if status.split_whitespace().nth(1) == Some("200") {
            return None;
        }
        let body = body.trim();
        Some(if body.is_empty() {
            status.to_owned()
        } else {
            body.to_owned()
        })
    };
    tokio::time::timeout(REFUSAL_TIMEOUT, ask).await.ok()?
}

/// Replaces `${VAR}` and `${VAR:-default}` in `s` with values from `env`;
/// `$` not followed by `{` stays as it is. A variable that is not set and has
/// no default is an error naming it.
pub fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("`{s}` has a `${{` without its closing `}}`"));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "`${{{inner}}}` is not an environment variable reference"
            ));
        }
        match (env(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "the environment variable {name} is not set (it is used as ${{{name}}}); set it before starting the session"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::expand_env;
    use pretty_assertions::assert_eq;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_owned())
    }

    #[test]
    fn variables_are_expanded_from_the_environment() {
        assert_eq!(
            expand_env("Bearer ${TOKEN}", &env).as_deref(),
            Ok("Bearer s3cret")
        );
        assert_eq!(
            expand_env("${MISSING:-none}/${TOKEN}", &env).as_deref(),
            Ok("none/s3cret")
        );
        assert_eq!(
            expand_env("$TOKEN costs $5", &env).as_deref(),
            Ok("$TOKEN costs $5")
        );
        let e = expand_env("Bearer ${MISSING}", &env).unwrap_err();
        assert!(e.contains("MISSING is not set"), "{e}");
        assert!(expand_env("${TOKEN", &env).is_err());
        assert!(expand_env("${1X}", &env).is_err());
    }
}
