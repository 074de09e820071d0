//! MCP server definitions in Claude Code's `.mcp.json` format:
//!
//! ```json
//! {"mcpServers": {
//!   "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/work"]},
//!   "docs":  {"type": "http", "url": "https://mcp.example.com/mcp", "headers": {"X-Team": "a"}}}}
//! ```
//!
//! A plugin's manifest may hold the same map inline. Each server is read on
//! its own: a malformed one is a warning and the others still load.

use std::collections::BTreeMap;

use serde_json::Value;

/// How Cubicle talks to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpTransport {
    /// A program started inside the cubicle, speaking MCP on its stdio.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment.
        env: BTreeMap<String, String>,
        /// Its working folder, if set.
        cwd: Option<String>,
    },
    /// A streamable-HTTP server, reached through the egress proxy.
    Http {
        /// The endpoint.
        url: String,
        /// Extra request headers.
        headers: BTreeMap<String, String>,
    },
}

/// One configured MCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServerConfig {
    /// The server's name: tools appear as `mcp__NAME__TOOL`.
    pub name: String,
    /// How to reach it.
    pub transport: McpTransport,
    /// Where it was configured, for messages.
    pub origin: String,
}

/// Whether `name` can be part of a tool name (`mcp__NAME__TOOL`): ASCII
/// letters, digits, `_` and `-`, at most 64 characters.
pub fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Reads servers from an `.mcp.json` value (`{"mcpServers": {...}}`) or the
/// bare map of servers. `expand` rewrites commands, arguments, environment
/// values and URLs (plugin root variables); `prefix` is put before each
/// name (plugin servers are `plugin_<plugin>_<server>`).
pub fn parse_servers(
    value: &Value,
    origin: &str,
    prefix: &str,
    expand: &dyn Fn(&str) -> String,
    warnings: &mut Vec<String>,
) -> Vec<McpServerConfig> {
    let servers = match value.get("mcpServers") {
        Some(Value::Object(map)) => map,
        Some(_) => {
            warnings.push(format!("{origin}: `mcpServers` should be an object"));
            return Vec::new();
        }
        None => match value {
            Value::Object(map) => map,
            _ => {
                warnings.push(format!("{origin}: MCP servers should be a JSON object"));
                return Vec::new();
            }
        },
    };
    let mut out = Vec::new();
    for (name, def) in servers {
        let full = format!("{prefix}{name}");
        if !valid_server_name(&full) {
            warnings.push(format!(
                "{origin}: MCP server name `{name}` may only use letters, digits, `_` and `-`; ignored"
            ));
            continue;
        }
        match parse_one(def, expand) {
            Ok(transport) => out.push(McpServerConfig {
                name: full,
                transport,
                origin: origin.to_owned(),
            }),
            Err(why) => warnings.push(format!("{origin}: MCP server `{name}`: {why}; ignored")),
        }
    }
    out
}

fn parse_one(def: &Value, expand: &dyn Fn(&str) -> String) -> Result<McpTransport, String> {
    let Value::Object(def) = def else {
        return Err("should be an object".to_owned());
    };
    let kind = match def.get("type") {
        None | Some(Value::Null) => {
            if def.contains_key("url") && !def.contains_key("command") {
                "http"
            } else {
                "stdio"
            }
        }
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err("`type` should be a string".to_owned()),
    };
    let strings = |key: &str| -> Result<BTreeMap<String, String>, String> {
        match def.get(key) {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), expand(s))),
                    _ => Err(format!("`{key}.{k}` should be a string")),
                })
                .collect(),
            Some(_) => Err(format!("`{key}` should be an object of strings")),
        }
    };
    match kind {
        "stdio" => {
            let command = def
                .get("command")
                .and_then(Value::as_str)
                .filter(|c| !c.trim().is_empty())
                .ok_or("no `command`")?;
            let args = match def.get("args") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map(expand).ok_or("`args` should be strings"))
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err("`args` should be a list of strings".to_owned()),
            };
            let cwd = match def.get("cwd") {
                None | Some(Value::Null) => None,
                Some(Value::String(c)) => Some(expand(c)),
                Some(_) => return Err("`cwd` should be a string".to_owned()),
            };
            Ok(McpTransport::Stdio {
                command: expand(command),
                args,
                env: strings("env")?,
                cwd,
            })
        }
        "http" | "streamable-http" => {
            let url = def.get("url").and_then(Value::as_str).ok_or("no `url`")?;
            let url = expand(url);
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("`{url}` is not an http(s) URL"));
            }
            Ok(McpTransport::Http {
                url,
                headers: strings("headers")?,
            })
        }
        "sse" => {
            Err("the old SSE transport is not supported; use a streamable HTTP endpoint".to_owned())
        }
        other => Err(format!("unknown `type` `{other}`")),
    }
}
