//! MCP client ⇄ a real server, over a child process's stdio and over
//! streamable HTTP through a real egress proxy.
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
    let tests: [(&str, Test); 7] = [
        (
            "http_server_through_the_egress_proxy",
            http_server_through_the_egress_proxy,
        ),
        (
            "http_server_on_a_refused_domain_is_a_clear_error",
            http_server_on_a_refused_domain,
        ),
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

/// Requests the HTTP fixture received.
static HTTP_REQUESTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Refuses requests without `X-Team: blue`, so the test sees headers arrive.
async fn require_team(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    HTTP_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if req.headers().get("x-team").is_none_or(|v| v != "blue") {
        return (axum::http::StatusCode::UNAUTHORIZED, "no team").into_response();
    }
    next.run(req).await
}

/// The fixture served over streamable HTTP on loopback at `/mcp`,
/// accepting the `Host` names `names`; returns its port.
async fn http_fixture(names: &[&str]) -> u16 {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let mut config = StreamableHttpServerConfig::default();
    config.allowed_hosts = names.iter().map(|n| (*n).to_owned()).collect();
    let service = StreamableHttpService::new(
        || Ok(Fixture),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(require_team));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    port
}

/// An egress proxy on loopback that allows `mcp.test` (and, by an explicit
/// address rule, 127.0.0.1 behind it), denies `blocked.test` by rule, and
/// knows `other.test` without allowing it; all three names map to
/// 127.0.0.1.
async fn test_proxy() -> (
    cubicle_egress::EgressProxy,
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<cubicle_egress::EgressEvent>,
) {
    use cubicle_egress::{AddressRule, DomainRule, EgressConfig, EgressProxy, StaticResolver};
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let config = EgressConfig {
        allow: vec![DomainRule::new("mcp.test", "test policy")],
        deny: vec![DomainRule::new("blocked.test", "test policy: deny")],
        allow_addresses: vec![AddressRule::new("127.0.0.1", "test policy")],
        ..EgressConfig::default()
    };
    let resolver = StaticResolver::new()
        .with("mcp.test", [loopback])
        .with("blocked.test", [loopback])
        .with("other.test", [loopback]);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let proxy = EgressProxy::builder("mcp-test", config)
        .resolver(Arc::new(resolver))
        .events(tx)
        .build()
        .unwrap();
    let addr = proxy.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (proxy, addr, rx)
}

fn http_server(name: &str, url: &str, headers: &[(&str, &str)]) -> McpServerConfig {
    McpServerConfig {
        name: name.to_owned(),
        transport: McpTransport::Http {
            url: url.to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        },
        origin: "test .mcp.json".to_owned(),
    }
}

fn team_env(team: &'static str) -> impl Fn(&str) -> Option<String> {
    move |name: &str| (name == "TEAM").then(|| team.to_owned())
}

/// An HTTP server's tools work as Cubicle tools, every request passing the
/// egress proxy, with a header taken from the host environment.
fn http_server_through_the_egress_proxy(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let port = http_fixture(&["mcp.test"]).await;
        let (proxy, proxy_addr, mut events) = test_proxy().await;
        let config = http_server(
            "remote",
            &format!("http://mcp.test:{port}/mcp"),
            &[("X-Team", "${TEAM}")],
        );
        let client: Arc<dyn McpClient> = Arc::new(
            cubicle_skills::mcp::connect_http(&config, proxy_addr, &team_env("blue"))
                .await
                .unwrap(),
        );
        let tools = mcp_tools(Arc::clone(&client)).await.unwrap();
        let mut names: Vec<&str> = tools.iter().map(|t| t.name()).collect();
        names.sort();
        assert_eq!(names, ["mcp__remote__broken", "mcp__remote__sum"]);
        let sum = tools.iter().find(|t| t.info().name == "sum").unwrap();
        let out = sum.invoke(json!({"a": 40, "b": 2})).await;
        assert!(!out.is_error, "{out:?}");
        assert_eq!(out.content, vec![ToolResultContent::text("42")]);
        let broken = tools.iter().find(|t| t.info().name == "broken").unwrap();
        let out = broken.invoke(json!({})).await;
        assert!(out.is_error && out.text_summary().contains("broken on purpose"));
        client.close().await;

        // The proxy saw (and allowed) the requests, by name.
        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            seen.push((e.host, e.allowed));
        }
        assert!(seen.contains(&("mcp.test".to_owned(), true)), "{seen:?}");
        assert!(seen.iter().all(|(h, _)| h == "mcp.test"), "{seen:?}");

        // A header variable that is not set is named; a wrong value is the
        // server's refusal, reported as a failed start.
        let e = cubicle_skills::mcp::connect_http(&config, proxy_addr, &|_| None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("TEAM is not set"), "{e}");
        match cubicle_skills::mcp::connect_http(&config, proxy_addr, &team_env("red")).await {
            Err(McpError::Connect { server, .. }) => assert_eq!(server, "remote"),
            Err(other) => panic!("expected a connect error, got {other}"),
            Ok(_) => panic!("the server refuses a wrong team"),
        }
        proxy.shutdown().await;
    });
}

/// A server on a domain the policy does not allow, or denies by rule, is
/// not reached; the error says why, naming the rule.
fn http_server_on_a_refused_domain(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let port = http_fixture(&["other.test", "blocked.test"]).await;
        let (proxy, proxy_addr, _events) = test_proxy().await;
        let before = HTTP_REQUESTS.load(std::sync::atomic::Ordering::SeqCst);
        let connect = |host: &'static str, scheme: &'static str| {
            let config = http_server("far", &format!("{scheme}://{host}:{port}/mcp"), &[]);
            async move {
                match cubicle_skills::mcp::connect_http(&config, proxy_addr, &|_| None).await {
                    Err(McpError::Connect { message, .. }) => message,
                    Err(other) => panic!("expected a connect error, got {other}"),
                    Ok(_) => panic!("{host} must not be reachable"),
                }
            }
        };
        let not_listed = connect("other.test", "http").await;
        assert!(
            not_listed.contains("egress proxy refused")
                && not_listed.contains("other.test is not on the allowed list"),
            "{not_listed}"
        );
        let denied = connect("blocked.test", "http").await;
        assert!(
            denied.contains(r#"denied by rule "blocked.test" (test policy: deny)"#),
            "{denied}"
        );
        // Over https the proxy refuses the tunnel itself; same explanation.
        let denied_tls = connect("blocked.test", "https").await;
        assert!(
            denied_tls.contains(r#"denied by rule "blocked.test" (test policy: deny)"#),
            "{denied_tls}"
        );
        assert_eq!(
            HTTP_REQUESTS.load(std::sync::atomic::Ordering::SeqCst),
            before,
            "the server must not have been reached"
        );
        proxy.shutdown().await;
    });
}
