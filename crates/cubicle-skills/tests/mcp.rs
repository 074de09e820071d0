//! MCP client ⇄ a real server, over a child process's stdio.
//!
//! This test binary is also the server: started with `CUBICLE_MCP_FIXTURE=1`
//! it serves an `rmcp` `#[tool]` server on stdin/stdout instead of running
//! the tests (hence `harness = false`: libtest would print on stdout). Where
//! Node is installed with `@modelcontextprotocol/server-filesystem`, the
//! reference server is exercised too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;

use cubicle_protocol::conversation::ToolResultContent;
use cubicle_skills::in_cubicle::connect_stdio;
use cubicle_skills::mcp::{
    McpClient, McpError, McpServerConfig, McpTransport, RmcpClient, mcp_tools,
};
use cubicle_tools::Tool as _;
use pretty_assertions::assert_eq;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt as _, schemars, tool, tool_handler, tool_router};
use serde_json::json;

const FIXTURE_ENV: &str = "CUBICLE_MCP_FIXTURE";

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct SumRequest {
    /// Left operand.
    a: i64,
    /// Right operand.
    b: i64,
}

#[derive(Debug, Clone)]
struct Fixture;

#[tool_router]
impl Fixture {
    #[tool(description = "Adds two integers")]
    fn sum(&self, Parameters(SumRequest { a, b }): Parameters<SumRequest>) -> String {
        (a + b).to_string()
    }

    #[tool(description = "Always fails")]
    fn broken(&self) -> Result<String, rmcp::ErrorData> {
        Err(rmcp::ErrorData::internal_error(
            "the fixture is broken on purpose",
            None,
        ))
    }
}

#[tool_handler]
impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    if std::env::var_os(FIXTURE_ENV).is_some() {
        rt.block_on(async {
            let server = Fixture.serve(rmcp::transport::stdio()).await.unwrap();
            let _ = server.waiting().await;
        });
        return;
    }
    type Test = fn(&tokio::runtime::Runtime);
    let tests: [(&str, Test); 5] = [
        ("child_process_round_trip", child_process_round_trip),
        (
            "server_inside_a_cubicle_round_trip",
            server_inside_a_cubicle,
        ),
        (
            "a_server_inside_a_cubicle_that_is_not_mcp_is_a_clear_error",
            not_mcp_inside_a_cubicle,
        ),
        ("a_server_that_is_not_mcp_is_a_clear_error", not_mcp),
        ("reference_filesystem_server", reference_filesystem_server),
    ];
    for (name, test) in tests {
        println!("test {name} ...");
        test(&rt);
        println!("test {name} ... ok");
    }
}

fn fixture_command() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(std::env::current_exe().unwrap());
    cmd.env(FIXTURE_ENV, "1");
    cmd
}

fn child_process_round_trip(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let client: Arc<dyn McpClient> = Arc::new(
            RmcpClient::connect_command("calc", fixture_command())
                .await
                .unwrap(),
        );
        let mut names: Vec<String> = client
            .list_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        names.sort();
        assert_eq!(names, ["broken", "sum"]);

        let tools = mcp_tools(Arc::clone(&client)).await.unwrap();
        let sum = tools.iter().find(|t| t.info().name == "sum").unwrap();
        assert_eq!(sum.name(), "mcp__calc__sum");
        let spec = sum.spec();
        assert_eq!(spec.input_schema["properties"]["a"]["type"], "integer");
        assert!(spec.description.contains("Adds two integers"));

        let out = sum.invoke(json!({"a": 2, "b": 40})).await;
        assert!(!out.is_error);
        assert_eq!(out.content, vec![ToolResultContent::text("42")]);

        // Wrong arguments and a failing tool come back as errors the model
        // can read, not panics; the connection keeps working after them.
        let bad = sum.invoke(json!({"a": "two"})).await;
        assert!(bad.is_error, "{bad:?}");
        let broken = tools.iter().find(|t| t.info().name == "broken").unwrap();
        let out = broken.invoke(json!({})).await;
        assert!(out.is_error);
        assert!(out.text_summary().contains("broken on purpose"), "{out:?}");
        let again = sum.invoke(json!({"a": 1, "b": 1})).await;
        assert_eq!(again.content, vec![ToolResultContent::text("2")]);
        client.close().await;
        let after = sum.invoke(json!({"a": 1, "b": 1})).await;
        assert!(after.is_error, "a call after close must fail: {after:?}");
    });
}

fn not_mcp(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "echo 'this is not json-rpc'; echo oops >&2; exit 3"]);
        match RmcpClient::connect_command("junk", cmd).await {
            Err(McpError::Connect { server, message }) => {
                assert_eq!(server, "junk");
                assert!(!message.is_empty());
            }
            Err(other) => panic!("expected a connect error, got {other}"),
            Ok(_) => panic!("a server that is not MCP must not connect"),
        }
    });
}

fn reference_filesystem_server(rt: &tokio::runtime::Runtime) {
    let Some(entry) = find_reference_server() else {
        println!(
            "skipped: Node or @modelcontextprotocol/server-filesystem is not installed \
             (npm install -g @modelcontextprotocol/server-filesystem)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello from cubicle\n").unwrap();
    rt.block_on(async {
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(&entry).arg(dir.path());
        let client: Arc<dyn McpClient> =
            Arc::new(RmcpClient::connect_command("fs", cmd).await.unwrap());
        let tools = mcp_tools(Arc::clone(&client)).await.unwrap();
        let read = tools
            .iter()
            .find(|t| t.info().name == "read_text_file" || t.info().name == "read_file")
            .expect("the filesystem server offers a read tool");
        let out = read
            .invoke(json!({"path": dir.path().join("hello.txt")}))
            .await;
        assert!(!out.is_error, "{out:?}");
        assert!(out.text_summary().contains("hello from cubicle"), "{out:?}");
        let outside = read.invoke(json!({"path": "/etc/passwd"})).await;
        assert!(
            outside.is_error,
            "the server must refuse paths outside its root"
        );
        client.close().await;
    });
}

/// The reference server's entry point in the global npm folder, if Node and
/// the package are installed.
fn find_reference_server() -> Option<std::path::PathBuf> {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .ok()?;
    if !node.status.success() {
        return None;
    }
    let root = std::process::Command::new("npm")
        .args(["root", "-g"])
        .output()
        .ok()?;
    let root = String::from_utf8(root.stdout).ok()?;
    let entry = std::path::Path::new(root.trim())
        .join("@modelcontextprotocol/server-filesystem/dist/index.js");
    entry.is_file().then_some(entry)
}

/// A `host` cubicle (the real guest over pipes), or `None` with the reason
/// printed when the guest is not built.
async fn host_cubicle(workspace: &std::path::Path) -> Option<Arc<dyn cubicle_sandbox::Computer>> {
    let Ok(guest) = cubicle_sandbox::locate::GuestProgram::locate() else {
        println!("skipped: cubicle-guest is not built (cargo build -p cubicle-guest)");
        return None;
    };
    let computer = cubicle_sandbox::host::HostComputer::start(cubicle_sandbox::host::HostConfig {
        grants: vec![],
        workspace: workspace.to_path_buf(),
        guest,
        env: Default::default(),
        egress: None,
        egress_listen: None,
    })
    .await
    .unwrap();
    Some(Arc::new(computer))
}

fn stdio_server(name: &str, command: &str, args: &[&str], env: &[(&str, &str)]) -> McpServerConfig {
    McpServerConfig {
        name: name.to_owned(),
        transport: McpTransport::Stdio {
            command: command.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            cwd: None,
        },
        origin: "test".to_owned(),
    }
}

/// The server runs inside the cubicle, its stdio carried over the guest
/// protocol; its tools work as Cubicle tools.
fn server_inside_a_cubicle(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let Some(computer) = host_cubicle(dir.path()).await else {
            return;
        };
        let exe = std::env::current_exe().unwrap();
        let config = stdio_server("calc", exe.to_str().unwrap(), &[], &[(FIXTURE_ENV, "1")]);
        let client: Arc<dyn McpClient> =
            Arc::new(connect_stdio(computer.clone(), &config).await.unwrap());
        let tools = mcp_tools(Arc::clone(&client)).await.unwrap();
        let sum = tools.iter().find(|t| t.info().name == "sum").unwrap();
        assert_eq!(sum.name(), "mcp__calc__sum");
        let out = sum.invoke(json!({"a": 20, "b": 22})).await;
        assert_eq!(out.content, vec![ToolResultContent::text("42")]);
        // Many calls in a row over the same pipes.
        for i in 0..20 {
            let out = sum.invoke(json!({"a": i, "b": 1})).await;
            assert_eq!(
                out.content,
                vec![ToolResultContent::text((i + 1).to_string())]
            );
        }
        client.close().await;
        computer.stop().await.unwrap();
    });
}

fn not_mcp_inside_a_cubicle(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let Some(computer) = host_cubicle(dir.path()).await else {
            return;
        };
        let config = stdio_server(
            "junk",
            "sh",
            &[
                "-c",
                "echo 'not json-rpc'; echo 'junk server says no' >&2; exit 3",
            ],
            &[],
        );
        match connect_stdio(computer.clone(), &config).await {
            Err(McpError::Connect { server, message }) => {
                assert_eq!(server, "junk");
                assert!(!message.is_empty());
            }
            Err(other) => panic!("expected a connect error, got {other}"),
            Ok(_) => panic!("a server that is not MCP must not connect"),
        }
        computer.stop().await.unwrap();
    });
}
