//! `GET /`: the dashboard, one HTML page with its script and styles
//! inline (no build step, no external assets). It draws every run from
//! `GET /runs`, then follows `GET /events`; all data goes into the page
//! through `textContent` and attributes, never as markup. The content
//! security policy allows only the page's own inline code and requests to
//! this server.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
}
