//! Serves the UI with a starter that refuses every session, for looking at
//! the page by hand: prints the URL, serves for 60 s.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;

struct Refuse;

#[async_trait::async_trait]
impl cubicle_server::SessionStarter for Refuse {
    async fn start(
        &self,
        _req: cubicle_server::StartRequest,
    ) -> Result<cubicle_server::StartedSession, String> {
        Err("this preview server starts no sessions".into())
    }
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join("cubicle-ui-smoke");
    let store = cubicle_agent::Store::at(dir);
    let server =
        cubicle_server::Server::bind("127.0.0.1:0".parse().unwrap(), Arc::new(Refuse), store)
            .await
            .unwrap();
    println!("{}", server.url());
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    server.shutdown().await;
}
