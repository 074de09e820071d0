//! The egress proxy wired to a real jail cubicle, end to end: commands inside
//! the jail use the `HTTP(S)_PROXY` the backend sets (Python's `urllib`), the
//! guest tunnels each connection to the host, and the host hands it to
//! [`EgressProxy::open_stream`]. The upstreams are HTTP and HTTPS servers on
//! the host's 127.0.0.1 (HTTPS with a test CA), reached by name through a
//! static resolver; loopback upstreams are only reachable because the test
//! names 127.0.0.1 in `allow_addresses`, as the proxy refuses loopback
//! otherwise.
//!
//! Checked: an allowed domain works; denied and unlisted ones get the proxy's
//! 403 explaining why; a credential is added to an HTTPS request through
//! CONNECT while its value is nowhere the cubicle can read (its environment,
//! the response, `/tmp`, `/workspace`) nor in any event; a connection that
//! ignores the proxy goes nowhere; every proxied request is one event.
//!
//! Needs the launcher and guest built first:
//! `cargo build -p cubicle-guest -p cubicle-sandbox --bins`. Skips (with the
//! reason) where the kernel cannot run a jail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cubicle_egress::{
    CertificateAuthority, CredentialRule, DomainRule, EgressConfig, EgressEvent, EgressProxy,
    MapSecrets, SecretRef, UpstreamTls,
};
use cubicle_protocol::guest::ExecRequest;
use cubicle_sandbox::Computer;
use cubicle_sandbox::guest_client::{AsyncReadWrite, EgressConnector};
use cubicle_sandbox::jail::{JailComputer, JailConfig, Limits, locate_jail_init};
use cubicle_sandbox::locate::GuestProgram;
use support::*;
use tokio::sync::mpsc;

/// The secret's value: it must reach the upstream and nothing else.
const SECRET: &str = "s3cret";
/// Where the proxy's CA certificate is put inside the jail.
const CA_BUNDLE: &str = "/tmp/cubicle-ca.pem";

/// Hands each tunnel the guest opens to the proxy, as the CLI will.
struct ProxyConnector(EgressProxy);

#[async_trait]
impl EgressConnector for ProxyConnector {
    async fn connect(&self) -> std::io::Result<Box<dyn AsyncReadWrite + Send + Unpin>> {
        Ok(Box::new(self.0.open_stream()))
    }
}

/// Why jails cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    let missing: Vec<String> = cubicle_sandbox::jail::probe::probe()
        .iter()
        .filter(|f| f.required && !f.available)
        .map(|f| format!("{}: {}", f.name, f.detail))
        .collect();
    (!missing.is_empty()).then(|| missing.join("; "))
}

/// Fetches a URL with the standard library only, the way an agent's script
/// would, and prints the status, the headers as one JSON line, then the body.
const FETCH_PY: &str = r#"
import json, sys, urllib.error, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=30)
    status = r.status
except urllib.error.HTTPError as e:
    r, status = e, e.code
headers, body = dict(r.headers), r.read().decode()
sys.stdout.write(f"{status}\n{json.dumps(headers)}\n{body}")
"#;

/// Connects straight to each host:port given, ignoring the proxy.
const DIRECT_PY: &str = r#"
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        print(target, "CONNECTED")
    except OSError as e:
        print(target, "failed:", e)
"#;

struct Fetched {
    status: u16,
    headers: String,
    body: String,
    /// Everything the command printed, to look for the secret in.
    output: String,
}

async fn sh(jail: &JailComputer, line: &str) -> (String, String, Option<i32>) {
    let mut req = ExecRequest::shell(line);
    req.timeout_ms = Some(60_000);
    let out = jail.exec(req, None).await.unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.result.code,
    )
}

/// Fetches `url` from inside the jail with Python's urllib.
async fn fetch(jail: &JailComputer, url: &str) -> Fetched {
    let (stdout, stderr, code) = sh(jail, &format!("python3 /workspace/fetch.py '{url}'")).await;
    assert_eq!(code, Some(0), "fetching {url} failed:\n{stdout}\n{stderr}");
    let mut parts = stdout.splitn(3, '\n');
    let status = parts.next().and_then(|s| s.parse().ok());
    let headers = parts.next().unwrap_or_default().to_owned();
    let body = parts.next().unwrap_or_default().to_owned();
    Fetched {
        status: status.unwrap_or_else(|| panic!("unexpected output of fetch.py: {stdout}")),
        headers,
        body,
        output: format!("{stdout}{stderr}"),
    }
}

/// Collects events until none has come for three seconds.
async fn drain(events: &mut mpsc::UnboundedReceiver<EgressEvent>, into: &mut Vec<EgressEvent>) {
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(3), events.recv()).await {
        into.push(e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jail_reaches_the_network_only_through_the_proxy_and_never_sees_the_secret() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED: the jail backend cannot run here: {why}");
        return;
    }
    let launcher = locate_jail_init().unwrap_or_else(|e| {
        panic!("{e}\nrun `cargo build -p cubicle-guest -p cubicle-sandbox --bins` first")
    });
    let guest = GuestProgram::locate().unwrap_or_else(|e| {
        panic!("{e}\nrun `cargo build -p cubicle-guest -p cubicle-sandbox --bins` first")
    });

    // The host side: upstreams on 127.0.0.1, and the proxy in front of them.
    let (http_addr, http_seen) = http_upstream().await;
    let upstream_ca = TestCa::new();
    let (https_addr, https_seen) = https_upstream(&upstream_ca, &["api.example.test"]).await;
    let ca = Arc::new(CertificateAuthority::generate().unwrap());
    let config = EgressConfig {
        allow: allow(&["allowed.test", "api.example.test"]),
        deny: vec![DomainRule::new("denied.test", "test: deny")],
        allow_addresses: loopback_allowed(),
        credentials: vec![CredentialRule {
            domain: "api.example.test".into(),
            header: "Authorization".into(),
            value_template: Some("Bearer {secret}".into()),
            secret: SecretRef::Keyring("example-token".into()),
            origin: "test: credential".into(),
        }],
        ca: Some(ca),
        upstream_tls: UpstreamTls {
            web_roots: false,
            extra_roots_pem: vec![upstream_ca.pem.clone()],
        },
        ..EgressConfig::default()
    };
    // Every name resolves to loopback, so a refusal can only be the domain rules.
    let names = resolver(&[
        ("allowed.test", LOOPBACK),
        ("api.example.test", LOOPBACK),
        ("denied.test", LOOPBACK),
        ("unlisted.test", LOOPBACK),
    ]);
    let secrets = MapSecrets::new().with(SecretRef::Keyring("example-token".into()), SECRET);
    let (tx, mut events) = mpsc::unbounded_channel();
    let proxy = EgressProxy::builder("jail-e2e", config)
        .resolver(Arc::new(names))
        .secrets(Arc::new(secrets))
        .events(tx)
        .build()
        .unwrap();
    let proxy_ca = proxy.ca_cert_pem().unwrap().to_owned();

    // The cubicle: trusts the proxy's CA through the usual variables.
    let workspace = tempfile::tempdir().unwrap();
    let env: BTreeMap<String, String> = ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"]
        .into_iter()
        .map(|k| (k.to_owned(), CA_BUNDLE.to_owned()))
        .collect();
    let jail = JailComputer::start(JailConfig {
        grants: vec![],
        workspace: workspace.path().to_path_buf(),
        guest,
        launcher,
        launcher_args: vec![],
        rootfs: None,
        limits: Limits::default(),
        env,
        dangerously_allow_no_landlock: false,
        egress: Some(Arc::new(ProxyConnector(proxy.clone()))),
        skills: Vec::new(),
        plugins: Vec::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("the jail did not start: {e}"));
    jail.write_file(CA_BUNDLE, proxy_ca.clone().into_bytes())
        .await
        .unwrap();
    jail.write_file("/workspace/fetch.py", FETCH_PY.into())
        .await
        .unwrap();
    jail.write_file("/workspace/direct.py", DIRECT_PY.into())
        .await
        .unwrap();
    let mut seen_events = Vec::new();

    // (a) An allowed domain, plain HTTP: the proxy forwards it.
    let a = fetch(
        &jail,
        &format!("http://allowed.test:{}/a", http_addr.port()),
    )
    .await;
    assert_eq!((a.status, a.body.as_str()), (200, "hello from upstream"));
    {
        let seen = http_seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].uri, "/a");
        assert!(seen[0].header("authorization").is_empty());
    }

    // (b) A denied and an unlisted domain: 403, and the body says why.
    let b = fetch(&jail, &format!("http://denied.test:{}/", http_addr.port())).await;
    assert_eq!(b.status, 403, "{}", b.output);
    assert!(
        b.body
            .contains("denied.test is denied by rule \"denied.test\" (test: deny)"),
        "{}",
        b.body
    );
    let unlisted = fetch(&jail, "http://unlisted.test/").await;
    assert_eq!(unlisted.status, 403, "{}", unlisted.output);
    assert!(
        unlisted.body.contains(
            "unlisted.test is not on the allowed list — ask the person to allow it \
             (cubicle policy allow-domain unlisted.test)"
        ),
        "{}",
        unlisted.body
    );
    assert_eq!(
        http_seen.lock().unwrap().len(),
        1,
        "a refused request got through"
    );

    // (c) HTTPS through CONNECT to the credential's domain: the upstream sees
    // the header, the command gets the response, and the secret stays out.
    let c = fetch(
        &jail,
        &format!("https://api.example.test:{}/c", https_addr.port()),
    )
    .await;
    assert_eq!(
        (c.status, c.body.as_str()),
        (200, "hello from upstream"),
        "{}",
        c.output
    );
    {
        let seen = https_seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].uri, "/c");
        assert_eq!(
            seen[0].header("authorization"),
            vec![format!("Bearer {SECRET}")]
        );
    }
    for (what, text) in [
        ("the response body", &c.body),
        ("the response headers", &c.headers),
        ("the command's output", &c.output),
    ] {
        assert!(!text.contains(SECRET), "the secret is in {what}: {text}");
    }
    let (env_out, _, _) = sh(&jail, "env; cat /proc/self/environ | tr '\\0' '\\n'").await;
    assert!(
        env_out.contains(&format!("SSL_CERT_FILE={CA_BUNDLE}")),
        "{env_out}"
    );
    assert!(
        env_out.contains("HTTPS_PROXY=http://127.0.0.1:3128"),
        "{env_out}"
    );
    assert!(
        !env_out.contains(SECRET),
        "the secret is in the environment: {env_out}"
    );
    let (grep_out, grep_err, code) = sh(
        &jail,
        &format!("grep -rlsF -- '{SECRET}' /tmp /workspace; echo \"grep exit $?\""),
    )
    .await;
    assert_eq!(
        (grep_out.as_str(), code),
        ("grep exit 1\n", Some(0)),
        "the secret is in a file the cubicle can read: {grep_out}{grep_err}"
    );

    // (d) A connection that ignores the proxy goes nowhere: the jail's network
    // namespace has only its own loopback, so the host's upstreams are not
    // there, and nothing outside is routable.
    let (direct, _, _) = sh(
        &jail,
        &format!(
            "python3 /workspace/direct.py 127.0.0.1:{} 127.0.0.1:{} 1.1.1.1:80",
            http_addr.port(),
            https_addr.port()
        ),
    )
    .await;
    assert_eq!(direct.lines().count(), 3, "{direct}");
    for line in direct.lines() {
        assert!(
            line.contains(" failed: "),
            "a direct connection worked: {direct}"
        );
    }
    assert_eq!(http_seen.lock().unwrap().len(), 1);
    assert_eq!(https_seen.lock().unwrap().len(), 1);

    // (e) One event per request the proxy saw, none for the direct attempts,
    // and never the secret.
    drain(&mut events, &mut seen_events).await;
    let summary: Vec<(String, String, bool, Option<u16>, bool)> = seen_events
        .iter()
        .map(|e| {
            (
                e.method.clone(),
                e.host.clone(),
                e.allowed,
                e.status,
                e.intercepted,
            )
        })
        .collect();
    let mut sorted = summary.clone();
    sorted.sort();
    let s = |m: &str, h: &str, allowed, status, intercepted| {
        (m.to_owned(), h.to_owned(), allowed, status, intercepted)
    };
    assert_eq!(
        sorted,
        vec![
            s("CONNECT", "api.example.test", true, Some(200), true),
            s("GET", "allowed.test", true, Some(200), false),
            s("GET", "api.example.test", true, Some(200), true),
            s("GET", "denied.test", false, Some(403), false),
            s("GET", "unlisted.test", false, Some(403), false),
        ],
        "events: {seen_events:#?}"
    );
    for e in &seen_events {
        assert_eq!(e.session, "jail-e2e");
        let text = format!("{e:?}");
        assert!(!text.contains(SECRET), "the secret is in an event: {text}");
    }
    let inner = seen_events
        .iter()
        .find(|e| e.method == "GET" && e.host == "api.example.test")
        .unwrap();
    assert_eq!(
        inner.reason,
        "credential added: header authorization from keyring:example-token"
    );

    jail.stop().await.unwrap();
    proxy.shutdown().await;
}
