//! Compiles the CLI's `serve_cmd.rs` against this crate (the CLI wires it in
//! separately) and checks its command-line shape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../cubicle-cli/src/serve_cmd.rs"]
#[allow(dead_code)]
mod serve_cmd;

use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    serve: serve_cmd::ServeArgs,
}

#[test]
fn serve_takes_port_and_no_open() {
    let cli = Cli::try_parse_from(["cubicle-serve", "--port", "8123", "--no-open"]).unwrap();
    assert_eq!(cli.serve.port, Some(8123));
    assert!(cli.serve.no_open);
    let cli = Cli::try_parse_from(["cubicle-serve"]).unwrap();
    assert_eq!(cli.serve.port, None);
    assert!(!cli.serve.no_open);
    // `run` has the signature the CLI expects.
    let _: fn(serve_cmd::ServeArgs, std::sync::Arc<dyn cubicle_server::SessionStarter>) -> _ =
        serve_cmd::run;
}
