//! Credential injection end to end: a client inside "the cubicle" speaks TLS
//! through CONNECT trusting only the proxy's CA; the HTTPS upstream (a test CA
//! on 127.0.0.1) sees the secret header; the secret appears in no event and no
//! response the client gets. Domains without a credential rule are never
//! intercepted: the client sees the upstream's own certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use cubicle_egress::{
    CertificateAuthority, CredentialRule, EgressConfig, EgressProxy, MapSecrets, SecretRef,
    UpstreamTls,
};
use pretty_assertions::assert_eq;
use support::*;

const SECRET: &str = "s3cret";

struct Setup {
    h: Harness,
    proxy_ca: String,
    upstream_ca: TestCa,
    port: u16,
    seen: SeenLog,
}

async fn setup(via: Via, secrets: MapSecrets) -> Setup {
    let upstream_ca = TestCa::new();
    let (up, seen) =
        https_upstream(&upstream_ca, &["api.example.test", "plain.example.test"]).await;
    let ca = Arc::new(CertificateAuthority::generate().unwrap());
    let proxy_ca = ca.cert_pem().to_owned();
    let config = EgressConfig {
        allow: allow(&["api.example.test", "plain.example.test"]),
        allow_addresses: loopback_allowed(),
        credentials: vec![CredentialRule {
            domain: "api.example.test".into(),
            header: "Authorization".into(),
            value_template: Some("Bearer {secret}".into()),
            secret: SecretRef::Keyring("example-token".into()),
            origin: "user: ~/.config/cubicle/settings.toml:7".into(),
        }],
        ca: Some(ca),
        // The test upstream's CA stands in for the web roots.
        upstream_tls: UpstreamTls {
            web_roots: false,
            extra_roots_pem: vec![upstream_ca.pem.clone()],
        },
        ..EgressConfig::default()
    };
    let names = resolver(&[
        ("api.example.test", LOOPBACK),
        ("plain.example.test", LOOPBACK),
    ]);
    let builder = EgressProxy::builder("test-session", config)
        .resolver(Arc::new(names))
        .secrets(Arc::new(secrets));
    let h = Harness::with(builder, via).await;
    assert_eq!(h.proxy.ca_cert_pem(), Some(proxy_ca.as_str()));
    Setup {
        h,
        proxy_ca,
        upstream_ca,
        port: up.port(),
        seen,
    }
}

fn token_secrets() -> MapSecrets {
    MapSecrets::new().with(SecretRef::Keyring("example-token".into()), SECRET)
}

#[tokio::test]
async fn the_credential_is_added_and_never_leaks() {
    for via in [Via::Tcp, Via::Stream] {
        let mut s = setup(via, token_secrets()).await;
        let mut c = s.h.client().await;
        let connected = connect(&mut c, &format!("api.example.test:{}", s.port)).await;
        assert_eq!(connected.status, 200, "{via:?}");
        let mut tls = tls_client(c, "api.example.test", &[&s.proxy_ca])
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        // The client's own Authorization is replaced, not added to.
        let first = raw(
            &mut tls,
            "GET /whoami HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: Bearer from-inside\r\nProxy-Authorization: x\r\n\r\n",
        )
        .await;
        assert_eq!(
            (first.status, first.body.as_str()),
            (200, "hello from upstream")
        );
        // A second request on the same tunnel gets it too.
        let second = raw(
            &mut tls,
            "POST /echo HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 4\r\n\r\nping",
        )
        .await;
        assert_eq!((second.status, second.body.as_str()), (200, "ping"));
        drop(tls);

        let seen = s.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        for request in &seen {
            assert_eq!(
                request.header("authorization"),
                vec![format!("Bearer {SECRET}")]
            );
            assert!(request.header("proxy-authorization").is_empty());
        }
        assert_eq!(seen[0].uri, "/whoami");

        let mut events = Vec::new();
        for _ in 0..3 {
            events.push(s.h.event().await);
        }
        let all = format!("{events:?} {:?}", serde_json_like(&events));
        assert!(
            !all.contains(SECRET),
            "the secret leaked into an event: {all}"
        );
        for resp in [&first, &second] {
            assert!(!resp.body.contains(SECRET) && !format!("{:?}", resp.headers).contains(SECRET));
        }
        let inner: Vec<_> = events.iter().filter(|e| e.method != "CONNECT").collect();
        assert_eq!(inner.len(), 2);
        for e in &inner {
            assert_eq!(
                (e.allowed, e.intercepted, e.status),
                (true, true, Some(200))
            );
            assert_eq!(
                e.reason,
                "credential added: header authorization from keyring:example-token"
            );
        }
        let tunnel = events.iter().find(|e| e.method == "CONNECT").unwrap();
        assert!(tunnel.intercepted && tunnel.allowed);
        assert!(
            tunnel.reason.ends_with(
                "TLS intercepted to add header authorization from keyring:example-token"
            )
        );
    }
}

/// Events as a reader of the audit log would see them.
fn serde_json_like(events: &[cubicle_egress::EgressEvent]) -> String {
    events
        .iter()
        .map(|e| format!("{} {} {} {:?}", e.host, e.reason, e.method, e.rule))
        .collect()
}

#[tokio::test]
async fn a_domain_without_a_credential_rule_is_not_intercepted() {
    let s = setup(Via::Stream, token_secrets()).await;
    // Trusting only the upstream's own CA works: the proxy did not terminate TLS.
    let mut c = s.h.client().await;
    assert_eq!(
        connect(&mut c, &format!("plain.example.test:{}", s.port))
            .await
            .status,
        200
    );
    let mut tls = tls_client(c, "plain.example.test", &[&s.upstream_ca.pem])
        .await
        .unwrap();
    let resp = raw(
        &mut tls,
        "GET / HTTP/1.1\r\nHost: plain.example.test\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = s.seen.lock().unwrap().pop().unwrap();
    assert!(seen.header("authorization").is_empty());
    // Trusting only the proxy CA fails for the same domain.
    let mut c = s.h.client().await;
    assert_eq!(
        connect(&mut c, &format!("plain.example.test:{}", s.port))
            .await
            .status,
        200
    );
    assert!(
        tls_client(c, "plain.example.test", &[&s.proxy_ca])
            .await
            .is_err()
    );
    // And the intercepted domain is not signed by the upstream's CA.
    let mut c = s.h.client().await;
    assert_eq!(
        connect(&mut c, &format!("api.example.test:{}", s.port))
            .await
            .status,
        200
    );
    assert!(
        tls_client(c, "api.example.test", &[&s.upstream_ca.pem])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_request_for_another_host_inside_the_tunnel_is_misdirected() {
    let s = setup(Via::Stream, token_secrets()).await;
    let mut c = s.h.client().await;
    assert_eq!(
        connect(&mut c, &format!("api.example.test:{}", s.port))
            .await
            .status,
        200
    );
    let mut tls = tls_client(c, "api.example.test", &[&s.proxy_ca])
        .await
        .unwrap();
    let resp = raw(
        &mut tls,
        "GET / HTTP/1.1\r\nHost: attacker.example.test\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 421);
    assert_eq!(
        resp.body,
        "cubicle egress: this connection is for api.example.test; a request for \"attacker.example.test\" must use its own CONNECT\n"
    );
    assert!(
        s.seen.lock().unwrap().is_empty(),
        "nothing may reach the upstream"
    );
}

#[tokio::test]
async fn a_missing_secret_refuses_the_connect_without_naming_a_value() {
    let mut s = setup(Via::Stream, MapSecrets::new()).await;
    let mut c = s.h.client().await;
    let resp = connect(&mut c, &format!("api.example.test:{}", s.port)).await;
    assert_eq!(resp.status, 502);
    assert_eq!(
        resp.body,
        "cubicle egress: the credential for api.example.test is not available (secret keyring:example-token is not set on this computer) — ask the person to set it up on their computer\n"
    );
    assert!(!s.h.event().await.allowed);
}

#[tokio::test]
async fn an_upstream_with_an_untrusted_certificate_is_refused() {
    // Upstream verification uses the configured roots: with the web roots only,
    // the test upstream's private CA is not trusted.
    let upstream_ca = TestCa::new();
    let (up, seen) = https_upstream(&upstream_ca, &["api.example.test"]).await;
    let ca = Arc::new(CertificateAuthority::generate().unwrap());
    let config = EgressConfig {
        allow: allow(&["api.example.test"]),
        allow_addresses: loopback_allowed(),
        credentials: vec![CredentialRule {
            domain: "api.example.test".into(),
            header: "X-Api-Key".into(),
            value_template: None,
            secret: SecretRef::Keyring("example-token".into()),
            origin: "test".into(),
        }],
        ca: Some(ca),
        ..EgressConfig::default()
    };
    let builder = EgressProxy::builder("s", config)
        .resolver(Arc::new(resolver(&[("api.example.test", LOOPBACK)])))
        .secrets(Arc::new(token_secrets()));
    let h = Harness::with(builder, Via::Stream).await;
    let mut c = h.client().await;
    let resp = connect(&mut c, &format!("api.example.test:{}", up.port())).await;
    assert_eq!(resp.status, 502);
    assert!(
        resp.body
            .starts_with("cubicle egress: secure connection to api.example.test failed"),
        "{}",
        resp.body
    );
    assert!(!resp.body.contains(SECRET));
    assert!(seen.lock().unwrap().is_empty());
}
