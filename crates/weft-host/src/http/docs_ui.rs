//! Interactive documentation pages: Swagger UI, served by the host itself.
//!
//! The Swagger UI files are vendored from the npm package `swagger-ui-dist`
//! (see `assets/swagger-ui/`, Apache-2.0) and compiled into the binary, so a
//! docs page loads nothing from outside the host and works offline. The
//! page's Content-Security-Policy makes the browser refuse anything else.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use weft_core::Error;

use crate::http::Problem;

/// Where assets are served; the version in the path lets browsers cache
/// them for good, since a new host version changes the URL.
const PREFIX: &str = concat!("/_weft/assets/", env!("CARGO_PKG_VERSION"));

/// Assets by path below [`PREFIX`]: content type and bytes.
const ASSETS: [(&str, &str, &[u8]); 7] = [
    (
        "swagger-ui/swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"),
    ),
    (
        "swagger-ui/swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui.css"),
    ),
    (
        "swagger-ui/LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/LICENSE"),
    ),
    (
        "swagger-ui/NOTICE",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/NOTICE"),
    ),
    (
        "swagger-ui/swagger-ui-bundle.js.LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js.LICENSE.txt"),
    ),
    (
        "weft-docs.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/weft-docs.js"),
    ),
    (
        "weft-docs.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/weft-docs.css"),
    ),
];

/// Only the host's own origin, for scripts, styles, images and requests.
/// Swagger UI sets inline styles, hence `'unsafe-inline'` for styles only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'self'";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A docs page for the OpenAPI document at `spec_url` (same origin).
pub(crate) fn page(title: &str, spec_url: &str) -> Response {
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{PREFIX}/swagger-ui/swagger-ui.css">
<link rel="stylesheet" href="{PREFIX}/weft-docs.css">
</head>
<body>
<form id="weft-auth" hidden>
<p id="weft-auth-message"></p>
<label>Token <input id="weft-token" type="password" autocomplete="off" placeholder="weft_..."></label>
<button type="submit">Use token</button>
</form>
<div id="swagger-ui" data-spec-url="{spec}"></div>
<script src="{PREFIX}/swagger-ui/swagger-ui-bundle.js"></script>
<script src="{PREFIX}/weft-docs.js"></script>
</body>
</html>
"#,
        title = escape(title),
        spec = escape(spec_url),
    );
    let mut response = (StatusCode::OK, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /_weft/assets/{version}/{file}`.
pub(crate) async fn asset(Path(path): Path<String>) -> Response {
    // The version segment only busts caches; any version serves this build.
    let file = path.split_once('/').map_or("", |(_, f)| f);
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => {
            let mut response = (StatusCode::OK, *bytes).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            response
        }
        None => Problem::from(Error::not_found(format!(
            "the host has no asset `{path}`; docs pages are at /services/{{name}}/docs and /docs"
        )))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
