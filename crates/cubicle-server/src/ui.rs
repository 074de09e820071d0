//! The web UI: `index.html`, `app.js` and `style.css`, embedded in the binary
//! and served as one page (the script and style inlined), so that the page is
//! the only thing a browser loads and it needs the token like everything
//! else. A strict Content-Security-Policy allows exactly the inlined script
//! and style (by hash) and connections back to this origin.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");
const PAIR: &str = include_str!("../assets/pair.html");
const PAIR_JS: &str = include_str!("../assets/pair.js");

struct Page {
    html: String,
    csp: String,
}

fn csp_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn page(template: &str, script: &str) -> Page {
    let html = template
        .replace("/*STYLE*/", STYLE)
        .replace("/*SCRIPT*/", script);
    let csp = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' blob: data:; frame-src blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        csp_hash(script),
        csp_hash(STYLE)
    );
    Page { html, csp }
}

static PAGE: LazyLock<Page> = LazyLock::new(|| page(INDEX, APP_JS));
static PAIR_PAGE: LazyLock<Page> = LazyLock::new(|| page(PAIR, PAIR_JS));

/// `GET /`: the app.
pub(crate) async fn index() -> Response {
    serve(&PAGE)
}

/// `GET /pair`: where a device redeems a pairing code (needs no token).
pub(crate) async fn pair_page() -> Response {
    serve(&PAIR_PAGE)
}

fn serve(page: &'static Page) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, page.csp.as_str()),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page.html.as_str(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_inlines_script_and_style_that_the_policy_allows() {
        assert!(PAGE.html.contains("new WebSocket"));
        assert!(!PAGE.html.contains("/*SCRIPT*/"));
        assert!(!PAGE.html.contains("/*STYLE*/"));
        assert!(PAGE.csp.contains(&csp_hash(APP_JS)));
        // The hashed text must be exactly the element's content.
        assert!(
            PAGE.html
                .contains(&format!("<script type=\"module\">{APP_JS}</script>"))
        );
        assert!(PAGE.html.contains(&format!("<style>{STYLE}</style>")));
        assert!(
            PAIR_PAGE
                .html
                .contains(&format!("<script type=\"module\">{PAIR_JS}</script>"))
        );
        assert!(PAIR_PAGE.csp.contains(&csp_hash(PAIR_JS)));
    }
}
