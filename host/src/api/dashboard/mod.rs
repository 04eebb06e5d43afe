//! The web dashboard: one page with its script and style embedded in the binary (no build
//! step). It asks for the API token on a login form and then uses the same API as the CLI,
//! with the same validation and errors.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const CONFIG_FORM: &str = include_str!("config_form.js");
const STYLE: &str = include_str!("style.css");

/// The paths the dashboard's assets are served at; they need no token (the data does).
pub const ASSETS: [&str; 4] = ["/", "/app.js", "/config-form.js", "/style.css"];

pub async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

/// The reconfigure form built from the engine's schema.
pub async fn config_form() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        CONFIG_FORM,
    )
        .into_response()
}

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}
