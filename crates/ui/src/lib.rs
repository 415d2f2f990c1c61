//! Scion's web UI: the browser's files (plain ES modules, CSS and an HTML shell, under
//! `assets/`) compiled into the binary, and the [`router`] that serves them at `/` and
//! `/ui/<version>/<file>` (ADR 0006).
//!
//! The UI talks only to the public REST API from the browser, with the user's
//! `Verification-Token`; this crate links no other workspace crate, so it cannot reach the
//! engine. Its files need no token: they hold no data.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::OnceLock;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its name under `/ui/<version>/`.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes, as in `assets/`.
    pub body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../assets/", $name)),
        }
    };
}

/// Every file the shell and its modules load; the shell (`index.html`) is apart.
pub const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("password.js", JS),
    asset!("graph.js", JS),
    asset!("pages/signin.js", JS),
    asset!("pages/instance.js", JS),
    asset!("pages/clones.js", JS),
    asset!("pages/clone.js", JS),
    asset!("pages/snapshots.js", JS),
    asset!("pages/branches.js", JS),
    asset!("pages/observation.js", JS),
    asset!("pages/config.js", JS),
    asset!("icon.svg", "image/svg+xml"),
];

/// The HTML shell, with `{{BASE}}` where the versioned asset folder goes.
const SHELL: &str = include_str!("../assets/index.html");

/// The policy every answer carries: only this origin's files run, no inline script or style,
/// no frames, no plugins; the API is reached on the same origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// FNV-1a, 64 bits: a stable fingerprint computed while compiling, so a changed file gets a
/// new ETag and a new versioned folder without any build script.
const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

const fn fingerprint_all() -> u64 {
    let mut hash = fnv1a(FNV_OFFSET, SHELL.as_bytes());
    let mut i = 0;
    while i < ASSETS.len() {
        hash = fnv1a(hash, ASSETS[i].name.as_bytes());
        hash = fnv1a(hash, ASSETS[i].body);
        i += 1;
    }
    hash
}

/// The fingerprint of the shell and every asset together: the name of the versioned folder.
const VERSION: u64 = fingerprint_all();

/// The versioned folder the shell loads its files from, e.g. `/ui/3f09a1c2d4e5b6a7`.
pub fn base() -> String {
    format!("/ui/{VERSION:016x}")
}

/// The shell with its asset folder filled in, made once.
fn shell() -> &'static str {
    static SHELL_FILLED: OnceLock<String> = OnceLock::new();
    SHELL_FILLED.get_or_init(|| SHELL.replace("{{BASE}}", &base()))
}

/// The UI's routes: `GET /` (the shell, revalidated on every load with its ETag) and
/// `GET /ui/<version>/<file>` (cached for a year: a new build has a new version). Requests for
/// any other version or file fall through to the caller's fallback, so the API's 404 stays
/// the only one.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(serve_shell)).route("/ui/{version}/{*file}", get(serve_asset))
}

async fn serve_shell(headers: HeaderMap) -> Response {
    let etag = format!("\"{VERSION:016x}\"");
    respond(&headers, &etag, "text/html; charset=utf-8", "no-cache", shell().as_bytes())
}

async fn serve_asset(
    Path((version, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let asset = ASSETS.iter().find(|asset| asset.name == file);
    match asset {
        Some(asset) if version == format!("{VERSION:016x}") => {
            let etag = format!("\"{:016x}\"", fnv1a(FNV_OFFSET, asset.body));
            respond(
                &headers,
                &etag,
                asset.content_type,
                "public, max-age=31536000, immutable",
                asset.body,
            )
        }
        // A file of another build (a page loaded before an upgrade) or none: said in the API's
        // error shape, and not cached, so a later build can serve the name.
        _ => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"code":"NOT_FOUND","message":"No such file in this build of the UI: reload the page."}"#,
        )
            .into_response(),
    }
}

/// An answer with its validators and security headers; a 304 when the browser's copy is current.
fn respond(
    request: &HeaderMap,
    etag: &str,
    content_type: &'static str,
    cache: &'static str,
    body: &'static [u8],
) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}
