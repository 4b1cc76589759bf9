//! `ui` serves the web UI: the single-page app built from `ui/` (Vite) into
//! `ui/dist` and compiled into the binary, so a fresh install needs no Node at run
//! time. It lives under `/ui/` (`/` redirects there) and is reached only through the
//! router's fallback: it never shadows an API route, and the OpenAPI table stays the
//! one list of the API's routes. The assets are public; the data they show comes
//! from the API with the token the user signed in with.

use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use rust_embed::RustEmbed;

use super::ApiError;

/// Where the UI is served.
pub(super) const PREFIX: &str = "/ui/";

/// `ui/dist` as `npm run build` left it when `medic` was compiled (empty when it was
/// not built: see engine/build.rs).
#[derive(RustEmbed)]
#[folder = "../ui/dist"]
struct Assets;

/// Whether `path` is the UI's: `/`, `/ui` or anything under `/ui/`.
pub(super) fn serves(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with(PREFIX)
}

/// The router's fallback: the UI's paths get the UI, anything else the API's 404.
pub(super) async fn fallback(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if !serves(path) || !matches!(method, Method::GET | Method::HEAD) {
        return ApiError::no_route(path).into_response();
    }
    if path == "/" || path == "/ui" {
        return Redirect::temporary(PREFIX).into_response();
    }
    asset(&path[PREFIX.len()..])
}

/// The file at `rel` (relative to `ui/dist`), or the app's `index.html` for any path
/// that is not a file (the app's own routes: `/ui/runs/ID`), or a page saying the UI
/// was not built.
fn asset(rel: &str) -> Response {
    if !rel.is_empty()
        && let Some(file) = Assets::get(rel)
    {
        let mime = file.metadata.mimetype();
        // Vite names every asset but index.html by its content hash.
        let cache = if rel.starts_with("assets/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        return (
            [
                (header::CONTENT_TYPE, header_value(mime)),
                (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            ],
            file.data,
        )
            .into_response();
    }
    // A missing asset (a stale hashed name, a typo) is a 404, not the app's page.
    if rel.starts_with("assets/") {
        return ApiError::not_found(format!(
            "the web UI has no asset {PREFIX}{rel}; reload the page"
        ))
        .into_response();
    }
    match Assets::get("index.html") {
        Some(index) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            index.data,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            NOT_BUILT,
        )
            .into_response(),
    }
}

fn header_value(mime: &str) -> HeaderValue {
    // Text types say their charset: Vite writes UTF-8.
    let value = if mime.starts_with("text/") || mime == "application/javascript" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

const NOT_BUILT: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>medic: UI not built</title></head>\
<body style=\"font-family:sans-serif;background:#111;color:#eee;padding:2em\">\
<h1>UI not built</h1>\
<p>This <code>medic</code> binary was compiled without the web UI's assets \
(<code>ui/dist</code> was empty). Run <code>make build</code> in the source tree \
(it runs <code>npm ci &amp;&amp; npm run build</code> in <code>ui/</code>, then \
<code>cargo build</code>), then start <code>medic serve</code> again.</p>\
<p>The REST API works without it: see <a href=\"/openapi.json\" style=\"color:#8cf\">/openapi.json</a>.</p>\
</body></html>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ui_owns_its_prefix_and_the_root_and_nothing_of_the_api() {
        for p in ["/", "/ui", "/ui/", "/ui/runs/abc", "/ui/assets/x.js"] {
            assert!(serves(p), "{p}");
        }
        for p in [
            "/v1/runs",
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/uix",
            "/v1/ui/",
        ] {
            assert!(!serves(p), "{p}");
        }
    }

    #[test]
    fn text_assets_say_their_charset() {
        assert_eq!(header_value("text/css"), "text/css; charset=utf-8");
        assert_eq!(
            header_value("application/javascript"),
            "application/javascript; charset=utf-8"
        );
        assert_eq!(header_value("image/png"), "image/png");
    }
}
