//! Compiles the CLI's `serve_cmd.rs` and `pair_cmd.rs` against this crate
//! (the CLI wires them in separately) and checks their command-line shape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../cubicle-cli/src/serve_cmd.rs"]
#[allow(dead_code)]
mod serve_cmd;

#[path = "../../cubicle-cli/src/pair_cmd.rs"]
#[allow(dead_code)]
mod pair_cmd;

use clap::Parser;
use cubicle_server::Scope;

#[derive(Debug, Parser)]
struct Serve {
    #[command(flatten)]
    serve: serve_cmd::ServeArgs,
}

#[derive(Debug, Parser)]
struct Pair {
    #[command(flatten)]
    pair: pair_cmd::PairArgs,
}

#[test]
fn serve_takes_port_no_open_and_remote() {
    let cli = Serve::try_parse_from(["cubicle-serve", "--port", "8123", "--no-open"]).unwrap();
    assert_eq!(cli.serve.port, Some(8123));
    assert!(cli.serve.no_open);
    assert_eq!(cli.serve.remote, None);
    let cli = Serve::try_parse_from(["cubicle-serve"]).unwrap();
    assert_eq!(cli.serve.port, None);
    assert!(!cli.serve.no_open);
    let cli = Serve::try_parse_from([
        "cubicle-serve",
        "--remote",
        "0.0.0.0:8443",
        "--advertise",
        "192.168.1.20",
    ])
    .unwrap();
    assert_eq!(cli.serve.remote, Some("0.0.0.0:8443".parse().unwrap()));
    assert_eq!(cli.serve.advertise, Some("192.168.1.20".parse().unwrap()));
    // --advertise means nothing without --remote.
    assert!(Serve::try_parse_from(["cubicle-serve", "--advertise", "10.0.0.1"]).is_err());
}

/// `run` has the signature the CLI's `main.rs` calls (compiled, never run).
#[allow(dead_code)]
async fn serve_signature(
    args: serve_cmd::ServeArgs,
    starter: std::sync::Arc<dyn cubicle_server::SessionStarter>,
    policy: &cubicle_policy::Policy,
    open_audit: serve_cmd::OpenAudit,
    audit_key: Option<Vec<u8>>,
    settings: Option<std::sync::Arc<dyn cubicle_server::SettingsStore>>,
) -> anyhow::Result<std::process::ExitCode> {
    serve_cmd::run(args, starter, policy, open_audit, audit_key, settings).await
}

#[test]
fn the_skills_screen_applies_the_policy_marketplace_lists() {
    let policy = cubicle_policy::Policy::from_sources(&[cubicle_policy::SettingsSource {
        layer: cubicle_policy::Layer::Managed,
        file: Some("/etc/cubicle/managed.toml".into()),
        text: "[marketplaces]\nblock = [\"github:acme/bad\"]\n".into(),
    }])
    .unwrap();
    let gate = serve_cmd::marketplace_gate(&policy);
    assert_eq!(gate("github:acme/tools"), Ok(()));
    let why = gate("github:acme/bad").unwrap_err();
    assert!(why.contains("blocked"), "{why}");
    assert!(why.contains("managed.toml"), "{why}");
}

#[test]
fn pair_takes_a_scope_list_or_revoke() {
    let p = Pair::try_parse_from(["cubicle-pair"]).unwrap().pair;
    assert_eq!(p.scope, Scope::Watch);
    assert!(!p.list && p.revoke.is_none());
    let p = Pair::try_parse_from(["cubicle-pair", "--scope", "control"])
        .unwrap()
        .pair;
    assert_eq!(p.scope, Scope::Control);
    assert!(Pair::try_parse_from(["cubicle-pair", "--scope", "admin"]).is_err());
    assert!(
        Pair::try_parse_from(["cubicle-pair", "--list"])
            .unwrap()
            .pair
            .list
    );
    let p = Pair::try_parse_from(["cubicle-pair", "--revoke", "dev-1"])
        .unwrap()
        .pair;
    assert_eq!(p.revoke.as_deref(), Some("dev-1"));
    assert!(Pair::try_parse_from(["cubicle-pair", "--list", "--revoke", "dev-1"]).is_err());
    let _: fn(pair_cmd::PairArgs, serve_cmd::OpenAudit) -> _ = pair_cmd::run;
}

#[test]
fn remote_control_is_off_unless_policy_turns_it_on() {
    let policy = cubicle_policy::Policy::from_sources(&[]).unwrap();
    let err = serve_cmd::remote_allowed(&policy).unwrap_err();
    assert!(err.contains("server.allow_remote"), "{err}");
    // The policy screen shows every setting with where it came from.
    let report = serve_cmd::policy_report(&policy);
    let backends = report
        .settings
        .iter()
        .find(|s| s.key == "sandbox.allowed_backends")
        .unwrap();
    assert_eq!(backends.origin, "default");
    assert_eq!(report.digest, policy.digest());
}
