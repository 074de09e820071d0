//! End-to-end tests of the egress proxy over real loopback sockets, through
//! both TCP `listen` and in-memory `serve_stream`. Every upstream is on
//! 127.0.0.1 and reachable only because the config names it; refusals of
//! other addresses happen before any connection is attempted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use cubicle_egress::{
    AddressRule, CertificateAuthority, CredentialRule, DomainRule, EgressConfig, EgressProxy,
    Limits, MapSecrets, SecretRef, StaticResolver, UpstreamTls,
};
use pretty_assertions::assert_eq;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOTH: [Via; 2] = [Via::Tcp, Via::Stream];

fn config(allow_patterns: &[&str]) -> EgressConfig {
    EgressConfig {
        allow: allow(allow_patterns),
        allow_addresses: loopback_allowed(),
        ..EgressConfig::default()
    }
}

#[tokio::test]
async fn connect_tunnel_carries_bytes_both_ways() {
    let echo = echo_upstream().await;
    for via in BOTH {
        let mut h = Harness::new(
            config(&["allowed.test"]),
            resolver(&[("allowed.test", LOOPBACK)]),
            via,
        )
        .await;
        let mut c = h.client().await;
        let resp = connect(&mut c, &format!("allowed.test:{}", echo.port())).await;
        assert_eq!(resp.status, 200, "{via:?}");
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (mut r, mut w) = tokio::io::split(c);
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        writer.await.unwrap();
        assert!(back == payload, "{via:?}: echoed bytes differ");
        let ev = h.event().await;
        assert_eq!(
            (
                ev.session.as_str(),
                ev.host.as_str(),
                ev.port,
                ev.method.as_str(),
                ev.allowed,
                ev.intercepted
            ),
            (
                "test-session",
                "allowed.test",
                echo.port(),
                "CONNECT",
                true,
                false
            )
        );
        assert_eq!((ev.bytes_up, ev.bytes_down), (200_000, 200_000), "{via:?}");
        assert_eq!(ev.rule.as_deref(), Some("\"allowed.test\" (test: allow)"));
        assert_eq!(ev.address, Some(echo));
    }
}

#[tokio::test]
async fn bytes_sent_with_the_connect_head_go_through_the_tunnel_first() {
    // A client may pipeline its first bytes (a TLS ClientHello, say) right
    // behind the CONNECT head: they must reach the upstream, in order, and
    // be counted.
    let echo = echo_upstream().await;
    for via in BOTH {
        let mut h = Harness::new(
            config(&["allowed.test"]),
            resolver(&[("allowed.test", LOOPBACK)]),
            via,
        )
        .await;
        let mut c = h.client().await;
        let target = format!("allowed.test:{}", echo.port());
        c.write_all(
            format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\nearly|").as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(read_response(&mut c, true).await.status, 200, "{via:?}");
        c.write_all(b"late").await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&back), "early|late", "{via:?}");
        let ev = h.event().await;
        assert_eq!((ev.bytes_up, ev.bytes_down), (10, 10), "{via:?}");
    }
}

#[tokio::test]
async fn a_large_tunnel_transfer_arrives_intact_and_is_counted() {
    const LEN: usize = 8 * 1024 * 1024 + 13;
    let echo = echo_upstream().await;
    // Pseudo-random, so that a dropped, repeated or reordered chunk shows.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let payload: Vec<u8> = (0..LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect();
    let payload = Arc::new(payload);
    for via in BOTH {
        let mut h = Harness::new(
            config(&["allowed.test"]),
            resolver(&[("allowed.test", LOOPBACK)]),
            via,
        )
        .await;
        let mut c = h.client().await;
        let resp = connect(&mut c, &format!("allowed.test:{}", echo.port())).await;
        assert_eq!(resp.status, 200, "{via:?}");
        let (mut r, mut w) = tokio::io::split(c);
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut back = Vec::with_capacity(LEN);
        r.read_to_end(&mut back).await.unwrap();
        writer.await.unwrap();
        assert_eq!(back.len(), LEN, "{via:?}");
        let first_difference = back.iter().zip(payload.iter()).position(|(a, b)| a != b);
        assert_eq!(first_difference, None, "{via:?}: echoed bytes differ");
        let ev = h.event().await;
        assert_eq!(
            (ev.bytes_up, ev.bytes_down),
            (LEN as u64, LEN as u64),
            "{via:?}"
        );
    }
}

#[tokio::test]
async fn websocket_upgrade_through_connect_is_long_lived_and_bidirectional() {
    let (up, seen) = http_upstream().await;
    let mut h = Harness::new(
        config(&["ws.test"]),
        resolver(&[("ws.test", LOOPBACK)]),
        Via::Stream,
    )
    .await;
    let mut c = h.client().await;
    assert_eq!(
        connect(&mut c, &format!("ws.test:{}", up.port()))
            .await
            .status,
        200
    );
    let resp = raw(
        &mut c,
        "GET /ws HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("upgrade"), Some("websocket"));
    for i in 0..100 {
        let msg = format!("message {i}");
        c.write_all(msg.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), msg);
        if i == 50 {
            // Quiet for a moment: a tunnel is not a request with a deadline.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    drop(c);
    let ev = h.event().await;
    assert!(
        ev.allowed && ev.bytes_up > 1000 && ev.bytes_down > 1000,
        "{ev:?}"
    );
    assert_eq!(seen.lock().unwrap()[0].header("upgrade"), vec!["websocket"]);
}

#[tokio::test]
async fn absolute_form_get_is_forwarded_without_hop_by_hop_headers() {
    let (up, seen) = http_upstream().await;
    for via in BOTH {
        let mut h = Harness::new(
            config(&["allowed.test"]),
            resolver(&[("allowed.test", LOOPBACK)]),
            via,
        )
        .await;
        let mut c = h.client().await;
        let port = up.port();
        let resp = raw(
            &mut c,
            &format!(
                "GET http://allowed.test:{port}/some/path?q=1 HTTP/1.1\r\nHost: wrong.test\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nX-End-To-End: kept\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(
            (resp.status, resp.body.as_str()),
            (200, "hello from upstream"),
            "{via:?}"
        );
        assert_eq!(resp.header("x-upstream"), Some("yes"));
        assert_eq!(
            resp.header("keep-alive"),
            None,
            "hop-by-hop response header forwarded"
        );
        let s = seen.lock().unwrap().pop().unwrap();
        assert_eq!(
            (s.method.as_str(), s.uri.as_str()),
            ("GET", "/some/path?q=1")
        );
        let mut names: Vec<&str> = s.headers.iter().map(|(k, _)| k.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["host", "x-end-to-end"], "{via:?}");
        assert_eq!(s.header("host"), vec![format!("allowed.test:{port}")]);
        let ev = h.event().await;
        assert_eq!(
            (ev.method.as_str(), ev.allowed, ev.status, ev.bytes_down),
            ("GET", true, Some(200), 19)
        );
    }
}

#[tokio::test]
async fn absolute_form_post_streams_the_body() {
    let (up, _) = http_upstream().await;
    let mut h = Harness::new(
        config(&["allowed.test"]),
        resolver(&[("allowed.test", LOOPBACK)]),
        Via::Tcp,
    )
    .await;
    let mut c = h.client().await;
    let body = "x".repeat(100_000);
    let resp = raw(
        &mut c,
        &format!(
            "POST http://allowed.test:{}/echo HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            up.port(),
            body.len()
        ),
    )
    .await;
    assert_eq!((resp.status, resp.body.len()), (200, body.len()));
    let ev = h.event().await;
    assert_eq!((ev.bytes_up, ev.bytes_down), (100_000, 100_000));
}

#[tokio::test]
async fn a_domain_not_listed_gets_403_asking_to_allow_it() {
    for via in BOTH {
        let mut h = Harness::new(
            config(&["allowed.test"]),
            resolver(&[("example.org", LOOPBACK)]),
            via,
        )
        .await;
        let mut c = h.client().await;
        let resp = connect(&mut c, "example.org:443").await;
        assert_eq!(resp.status, 403);
        assert_eq!(
            resp.body,
            "cubicle egress: example.org is not on the allowed list — ask the person to allow it (cubicle policy allow-domain example.org)\n"
        );
        let ev = h.event().await;
        assert_eq!(
            (ev.host.as_str(), ev.allowed, ev.status, ev.rule),
            ("example.org", false, Some(403), None)
        );
        assert_eq!(ev.reason, resp.body.trim_end());
    }
}

#[tokio::test]
async fn nothing_is_reachable_with_an_empty_config() {
    let mut h = Harness::new(
        EgressConfig::default(),
        resolver(&[("allowed.test", LOOPBACK)]),
        Via::Stream,
    )
    .await;
    let mut c = h.client().await;
    assert_eq!(connect(&mut c, "allowed.test:443").await.status, 403);
    assert!(!h.event().await.allowed);
}

#[tokio::test]
async fn a_denied_domain_gets_403_naming_the_rule() {
    let mut cfg = config(&["*"]);
    cfg.deny = vec![DomainRule::new(
        "*.pastebin.test",
        "user: ~/.config/cubicle/settings.toml:3",
    )];
    let mut h = Harness::new(cfg, resolver(&[("x.pastebin.test", LOOPBACK)]), Via::Tcp).await;
    let mut c = h.client().await;
    let resp = connect(&mut c, "x.pastebin.test:443").await;
    assert_eq!(resp.status, 403);
    assert_eq!(
        resp.body,
        "cubicle egress: x.pastebin.test is denied by rule \"*.pastebin.test\" (user: ~/.config/cubicle/settings.toml:3) — this cannot be allowed from inside the session\n"
    );
    let ev = h.event().await;
    assert_eq!(
        ev.rule.as_deref(),
        Some("\"*.pastebin.test\" (user: ~/.config/cubicle/settings.toml:3)")
    );
}

#[tokio::test]
async fn deny_wins_over_allow() {
    let mut cfg = config(&["api.example.test", "*.example.test"]);
    cfg.deny = vec![DomainRule::new(
        "api.example.test",
        "managed: /etc/cubicle/managed.toml:4",
    )];
    let (up, _) = http_upstream().await;
    let h = Harness::new(
        cfg,
        resolver(&[("api.example.test", LOOPBACK)]),
        Via::Stream,
    )
    .await;
    let mut c = h.client().await;
    let resp = connect(&mut c, &format!("api.example.test:{}", up.port())).await;
    assert_eq!(resp.status, 403);
    assert!(
        resp.body
            .contains("denied by rule \"api.example.test\" (managed: /etc/cubicle/managed.toml:4)"),
        "{}",
        resp.body
    );
}

#[tokio::test]
async fn wildcard_allows_subdomains_not_the_apex_nor_lookalikes() {
    let echo = echo_upstream().await;
    let names = [
        ("a.example.test", LOOPBACK),
        ("example.test", LOOPBACK),
        ("evilexample.test", LOOPBACK),
    ];
    let h = Harness::new(config(&["*.example.test"]), resolver(&names), Via::Tcp).await;
    for (host, want) in [
        ("a.example.test", 200),
        ("example.test", 403),
        ("evilexample.test", 403),
    ] {
        let mut c = h.client().await;
        assert_eq!(
            connect(&mut c, &format!("{host}:{}", echo.port()))
                .await
                .status,
            want,
            "{host}"
        );
    }
}

#[tokio::test]
async fn names_resolving_to_blocked_addresses_are_refused_even_when_allowed() {
    let resolver = StaticResolver::new()
        .with("evil.test", ["10.0.0.5".parse().unwrap()])
        .with("meta.test", ["169.254.169.254".parse().unwrap()])
        .with("meta6.test", ["fd00:ec2::254".parse().unwrap()])
        .with("mapped.test", ["::ffff:192.168.1.1".parse().unwrap()])
        .with(
            "mixed.test",
            ["127.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap()],
        )
        .with("loop.test", ["127.0.0.1".parse().unwrap()]);
    // The allow list admits everything; only the address checks stand in the way.
    let cfg = EgressConfig {
        allow: allow(&["*"]),
        ..EgressConfig::default()
    };
    let mut h = Harness::new(cfg, resolver, Via::Stream).await;
    let cases = [
        (
            "evil.test",
            "cubicle egress: evil.test resolves to 10.0.0.5, a private address, which is blocked",
        ),
        (
            "meta.test",
            "cubicle egress: meta.test resolves to 169.254.169.254, a cloud metadata address, which is blocked",
        ),
        (
            "meta6.test",
            "cubicle egress: meta6.test resolves to fd00:ec2::254, a cloud metadata address, which is blocked",
        ),
        (
            "mapped.test",
            "cubicle egress: mapped.test resolves to 192.168.1.1, a private address, which is blocked",
        ),
        (
            "mixed.test",
            "cubicle egress: mixed.test resolves to 127.0.0.1, a loopback address (this computer), which is blocked",
        ),
        (
            "loop.test",
            "cubicle egress: loop.test resolves to 127.0.0.1, a loopback address (this computer), which is blocked",
        ),
    ];
    for (host, want) in cases {
        let mut c = h.client().await;
        let resp = connect(&mut c, &format!("{host}:443")).await;
        assert_eq!(resp.status, 403, "{host}");
        assert!(resp.body.starts_with(want), "{host}: {}", resp.body);
        let ev = h.event().await;
        assert_eq!(
            (ev.allowed, ev.address),
            (false, None),
            "{host}: no connection may be made"
        );
    }
}

#[tokio::test]
async fn a_mixed_answer_is_refused_even_when_one_address_is_allowed() {
    let resolver = StaticResolver::new().with(
        "mixed.test",
        ["127.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap()],
    );
    let h = Harness::new(config(&["mixed.test"]), resolver, Via::Stream).await;
    let mut c = h.client().await;
    let resp = connect(&mut c, "mixed.test:443").await;
    assert_eq!(resp.status, 403);
    assert!(
        resp.body
            .contains("resolves to 10.0.0.5, a private address"),
        "{}",
        resp.body
    );
}

#[tokio::test]
async fn ip_literals_are_checked_like_resolved_addresses() {
    let echo = echo_upstream().await;
    let cfg = EgressConfig {
        allow: allow(&["*"]),
        ..EgressConfig::default()
    };
    let h = Harness::new(cfg, StaticResolver::new(), Via::Tcp).await;
    let cases = [
        (
            format!("127.0.0.1:{}", echo.port()),
            "cubicle egress: 127.0.0.1 is a loopback address (this computer), which is blocked",
        ),
        (
            "[::1]:443".to_owned(),
            "cubicle egress: ::1 is a loopback address (this computer), which is blocked",
        ),
        (
            "[::ffff:169.254.169.254]:80".to_owned(),
            "cubicle egress: 169.254.169.254 is a cloud metadata address, which is blocked",
        ),
        (
            "10.0.0.5:443".to_owned(),
            "cubicle egress: 10.0.0.5 is a private address, which is blocked",
        ),
        // A public literal is refused before any connection: `*` does not name it.
        (
            "93.184.216.34:443".to_owned(),
            "cubicle egress: 93.184.216.34 is an IP address that no rule names",
        ),
    ];
    for (target, want) in cases {
        let mut c = h.client().await;
        let resp = connect(&mut c, &target).await;
        assert_eq!(resp.status, 403, "{target}");
        assert!(resp.body.starts_with(want), "{target}: {}", resp.body);
    }
    // Naming the address allows the literal.
    let h = Harness::new(config(&[]), StaticResolver::new(), Via::Tcp).await;
    let mut c = h.client().await;
    assert_eq!(
        connect(&mut c, &format!("127.0.0.1:{}", echo.port()))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn numeric_hosts_in_other_spellings_are_bad_requests() {
    let h = Harness::new(config(&["*"]), StaticResolver::new(), Via::Stream).await;
    for target in ["2130706433:80", "0x7f.1:80"] {
        let mut c = h.client().await;
        let resp = connect(&mut c, target).await;
        assert_eq!(resp.status, 400, "{target}");
    }
}

#[tokio::test]
async fn upstream_failures_are_502_and_504() {
    // A port with nothing listening: bind, note it, close.
    let port = {
        let l = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let mut h = Harness::new(
        config(&["down.test", "nowhere.test"]),
        resolver(&[("down.test", LOOPBACK)]),
        Via::Stream,
    )
    .await;
    let mut c = h.client().await;
    let resp = connect(&mut c, &format!("down.test:{port}")).await;
    assert_eq!(resp.status, 502);
    assert!(
        resp.body.starts_with(&format!(
            "cubicle egress: cannot connect to down.test port {port}"
        )),
        "{}",
        resp.body
    );
    let _ = h.event().await;
    let mut c = h.client().await;
    let resp = connect(&mut c, "nowhere.test:443").await;
    assert_eq!(resp.status, 502);
    assert!(
        resp.body
            .starts_with("cubicle egress: cannot resolve nowhere.test"),
        "{}",
        resp.body
    );

    struct Hang;
    #[async_trait::async_trait]
    impl cubicle_egress::Resolver for Hang {
        async fn resolve(&self, _: &str) -> std::io::Result<Vec<std::net::IpAddr>> {
            std::future::pending().await
        }
    }
    let cfg = EgressConfig {
        limits: Limits {
            connect_timeout: Duration::from_millis(200),
            ..Limits::default()
        },
        ..config(&["slow.test"])
    };
    let h = Harness::with(
        EgressProxy::builder("s", cfg).resolver(Arc::new(Hang)),
        Via::Stream,
    )
    .await;
    let mut c = h.client().await;
    let resp = connect(&mut c, "slow.test:443").await;
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (
            504,
            "cubicle egress: connecting to slow.test port 443 timed out\n"
        )
    );
}

#[tokio::test]
async fn garbage_and_origin_form_get_400_with_a_body() {
    for via in BOTH {
        let mut h = Harness::new(config(&["*"]), StaticResolver::new(), via).await;
        let mut c = h.client().await;
        let resp = raw(&mut c, "\x16\x03\x01\x00\x05hello\r\n\r\n").await;
        assert_eq!(resp.status, 400, "{via:?}");
        assert!(
            resp.body.starts_with(
                "cubicle egress: this is an HTTP proxy and the request is not HTTP/1.1"
            ),
            "{}",
            resp.body
        );
        assert!(!h.event().await.allowed);
        let mut c = h.client().await;
        let resp = raw(&mut c, "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n").await;
        assert_eq!(resp.status, 400);
        assert!(
            resp.body
                .contains("absolute-form requests (GET http://host/path) or CONNECT host:port"),
            "{}",
            resp.body
        );
        let mut c = h.client().await;
        let resp = raw(
            &mut c,
            "GET https://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n",
        )
        .await;
        assert_eq!(resp.status, 400);
        assert!(resp.body.contains("send CONNECT host:443"), "{}", resp.body);
    }
}

#[tokio::test]
async fn oversized_request_heads_get_431() {
    let cfg = EgressConfig {
        limits: Limits {
            max_request_header_bytes: 1024,
            ..Limits::default()
        },
        ..config(&["*"])
    };
    for via in BOTH {
        let mut h = Harness::new(cfg.clone(), StaticResolver::new(), via).await;
        let mut c = h.client().await;
        let resp = raw(
            &mut c,
            &format!(
                "GET http://a.test/ HTTP/1.1\r\nX-Big: {}\r\n\r\n",
                "a".repeat(2000)
            ),
        )
        .await;
        assert_eq!(resp.status, 431, "{via:?}");
        assert_eq!(
            resp.body,
            "cubicle egress: the request headers are larger than the 1024-byte limit; send fewer or smaller headers\n"
        );
        assert_eq!(h.event().await.status, Some(431));
    }
}

#[tokio::test]
async fn oversized_declared_bodies_get_413() {
    let cfg = EgressConfig {
        limits: Limits {
            max_request_body_bytes: Some(10),
            ..Limits::default()
        },
        ..config(&["allowed.test"])
    };
    let h = Harness::new(cfg, resolver(&[("allowed.test", LOOPBACK)]), Via::Stream).await;
    let mut c = h.client().await;
    let resp = raw(&mut c, "POST http://allowed.test/echo HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 11\r\n\r\nhello world").await;
    assert_eq!(resp.status, 413);
}

#[tokio::test]
async fn connections_over_the_limit_get_503_at_once() {
    let echo = echo_upstream().await;
    let cfg = EgressConfig {
        limits: Limits {
            max_connections: 2,
            ..Limits::default()
        },
        ..config(&["allowed.test"])
    };
    for via in BOTH {
        let h = Harness::new(cfg.clone(), resolver(&[("allowed.test", LOOPBACK)]), via).await;
        let target = format!("allowed.test:{}", echo.port());
        let mut first = h.client().await;
        assert_eq!(connect(&mut first, &target).await.status, 200);
        let mut second = h.client().await;
        assert_eq!(connect(&mut second, &target).await.status, 200);
        assert_eq!(h.proxy.active_connections(), 2);
        let mut third = h.client().await;
        let resp = tokio::time::timeout(Duration::from_secs(2), connect(&mut third, &target))
            .await
            .unwrap();
        assert_eq!(resp.status, 503, "{via:?}");
        assert_eq!(resp.header("retry-after"), Some("1"));
        assert!(
            resp.body
                .starts_with("cubicle egress: too many connections are open (the limit is 2)"),
            "{}",
            resp.body
        );
        // Closing a tunnel frees its slot.
        drop(first);
        let mut ok = false;
        for _ in 0..50 {
            if h.proxy.active_connections() < 2 {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "the closed tunnel's slot was not released");
        let mut fourth = h.client().await;
        assert_eq!(connect(&mut fourth, &target).await.status, 200);
    }
}

#[tokio::test]
async fn idle_tunnels_are_closed() {
    let echo = echo_upstream().await;
    let cfg = EgressConfig {
        limits: Limits {
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        ..config(&["allowed.test"])
    };
    for via in BOTH {
        let mut h = Harness::new(cfg.clone(), resolver(&[("allowed.test", LOOPBACK)]), via).await;
        let mut c = h.client().await;
        assert_eq!(
            connect(&mut c, &format!("allowed.test:{}", echo.port()))
                .await
                .status,
            200
        );
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "{via:?}");
        assert!(h.event().await.allowed, "{via:?}");
    }
}

#[tokio::test]
async fn shutdown_closes_tunnels_and_the_listener() {
    let echo = echo_upstream().await;
    let h = Harness::new(
        config(&["allowed.test"]),
        resolver(&[("allowed.test", LOOPBACK)]),
        Via::Tcp,
    )
    .await;
    let mut c = h.client().await;
    assert_eq!(
        connect(&mut c, &format!("allowed.test:{}", echo.port()))
            .await
            .status,
        200
    );
    tokio::time::timeout(Duration::from_secs(5), h.proxy.shutdown())
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(c.read(&mut buf).await.unwrap_or(0), 0);
    assert!(tokio::net::TcpStream::connect(h.addr).await.is_err());
}

/// The loopback listener carries the session's policy and credentials:
/// another user of the machine gets a closed connection, not a tunnel.
#[tokio::test]
async fn another_users_connection_is_closed_unserved() {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching to another user needs root");
        return;
    }
    let echo = echo_upstream().await;
    let h = Harness::new(
        config(&["allowed.test"]),
        resolver(&[("allowed.test", LOOPBACK)]),
        Via::Tcp,
    )
    .await;
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('127.0.0.1', {}))\n\
         s.sendall(b'CONNECT allowed.test:{} HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n')\n\
         s.settimeout(10)\n\
         try:\n    got = s.recv(100)\n\
         except ConnectionResetError:\n    got = b''\n\
         print('closed' if got == b'' else repr(got))\n",
        h.addr.port(),
        echo.port()
    );
    let nobody = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", &script])
            .uid(65534)
            .gid(65534)
            .output()
    });
    let Ok(nobody) = nobody.await.unwrap() else {
        eprintln!("skipped: python3 is not installed");
        return;
    };
    let out = String::from_utf8_lossy(&nobody.stdout);
    assert_eq!(
        out.trim(),
        "closed",
        "another user was served: {out}{}",
        String::from_utf8_lossy(&nobody.stderr)
    );
    // The proxy's own user is served as before.
    let mut c = h.client().await;
    assert_eq!(
        connect(&mut c, &format!("allowed.test:{}", echo.port()))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn listen_refuses_non_loopback_addresses() {
    let proxy = EgressProxy::builder("s", EgressConfig::default())
        .build()
        .unwrap();
    assert!(proxy.listen("0.0.0.0:0".parse().unwrap()).await.is_err());
}

#[test]
fn bad_configs_are_errors() {
    let bad = EgressConfig {
        allow: vec![DomainRule::new("*foo.com", "x")],
        ..EgressConfig::default()
    };
    assert!(EgressProxy::builder("s", bad).build().is_err());
    let bad = EgressConfig {
        allow_addresses: vec![AddressRule::new("localhost", "x")],
        ..EgressConfig::default()
    };
    assert!(EgressProxy::builder("s", bad).build().is_err());
    let no_ca = EgressConfig {
        credentials: vec![CredentialRule {
            domain: "api.example.test".into(),
            header: "Authorization".into(),
            value_template: None,
            secret: SecretRef::Env("X".into()),
            origin: "x".into(),
        }],
        ..EgressConfig::default()
    };
    let err = EgressProxy::builder("s", no_ca).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "credential rules need a certificate authority (EgressConfig::ca) to intercept TLS"
    );
    let zero = EgressConfig {
        limits: Limits {
            max_connections: 0,
            ..Limits::default()
        },
        ..EgressConfig::default()
    };
    assert!(EgressProxy::builder("s", zero).build().is_err());
    let ca = Arc::new(CertificateAuthority::generate().unwrap());
    let bad_root = EgressConfig {
        ca: Some(ca),
        upstream_tls: UpstreamTls {
            web_roots: true,
            extra_roots_pem: vec!["not pem".into()],
        },
        ..EgressConfig::default()
    };
    assert!(EgressProxy::builder("s", bad_root).build().is_err());
    let _ = MapSecrets::new();
}
