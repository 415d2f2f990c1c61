//! The UI's router and assets: what the browser is sent, its caching and security headers, and
//! that every file the shell and the modules load is one the binary carries.

#![allow(clippy::unwrap_used, reason = "helpers shared by tests panic on failure, as tests do")]

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use tower::ServiceExt;

async fn fetch(path: &str, if_none_match: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let router: Router = ui::router();
    let mut request = Request::get(path);
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    let response = router.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn asset_text(name: &str) -> &'static str {
    let asset = ui::ASSETS.iter().find(|asset| asset.name == name).expect("an embedded asset");
    std::str::from_utf8(asset.body).expect("a text asset")
}

#[tokio::test]
async fn the_shell_is_revalidated_and_answers_304_to_its_etag() {
    let (status, headers, body) = fetch("/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    assert_eq!(headers[header::CONTENT_SECURITY_POLICY], ui::CONTENT_SECURITY_POLICY);
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(body.contains(&format!("{}/app.js", ui::base())), "{body}");
    assert!(!body.contains("{{BASE}}"), "{body}");
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();

    let (status, headers, body) = fetch("/", Some(&etag)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers[header::ETAG], etag.as_str());
    let (status, _, _) = fetch("/", Some("\"other\"")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn assets_are_cached_for_good_under_their_version_and_unknown_ones_are_404() {
    let (status, headers, body) = fetch(&format!("{}/pages/clone.js", ui::base()), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
    assert_eq!(body, asset_text("pages/clone.js"));
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let (status, _, _) = fetch(&format!("{}/pages/clone.js", ui::base()), Some(&etag)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    for path in [
        "/ui/0000000000000000/app.js".to_owned(),
        format!("{}/missing.js", ui::base()),
        format!("{}/../Cargo.toml", ui::base()),
    ] {
        let (status, headers, body) = fetch(&path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{path}");
        assert!(body.contains("\"code\":\"NOT_FOUND\""), "{path}: {body}");
    }
}

/// The CSP allows no inline script or style: the shell holds neither, and no module sets an
/// inline style attribute or builds HTML from strings.
#[tokio::test]
async fn nothing_needs_an_inline_script_or_style() {
    let (_, _, shell) = fetch("/", None).await;
    for (at, _) in shell.match_indices("<script") {
        let tag = &shell[at..shell[at..].find('>').map_or(shell.len(), |end| at + end)];
        assert!(tag.contains("src="), "an inline script in the shell: {tag}");
    }
    assert!(!shell.contains("<style") && !shell.contains("style="), "inline style in the shell");
    for asset in ui::ASSETS.iter().filter(|asset| asset.name.ends_with(".js")) {
        let text = asset_text(asset.name);
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "setAttribute(\"style\"",
            "new Function(",
        ] {
            assert!(!text.contains(banned), "{} uses {banned}", asset.name);
        }
        // `eval(` as a call of its own, not the end of a name such as `retrieval(`.
        let evals = text.match_indices("eval(").filter(|(at, _)| {
            text[..*at].chars().next_back().is_none_or(|c| !c.is_alphanumeric() && c != '_')
        });
        assert_eq!(evals.count(), 0, "{} calls eval", asset.name);
    }
}

/// Every `import` of every module, and every file the shell names, is an embedded asset, so
/// nothing the page loads can 404 or come from elsewhere.
#[test]
fn every_file_the_page_loads_is_embedded() {
    let embedded: BTreeSet<&str> = ui::ASSETS.iter().map(|asset| asset.name).collect();
    let shell = include_str!("../../assets/index.html");
    let mut wanted = BTreeSet::new();
    for (at, _) in shell.match_indices("{{BASE}}/") {
        let rest = &shell[at + "{{BASE}}/".len()..];
        wanted.insert(rest[..rest.find('"').unwrap()].to_owned());
    }
    for asset in ui::ASSETS.iter().filter(|asset| asset.name.ends_with(".js")) {
        let text = asset_text(asset.name);
        let dir = asset.name.rsplit_once('/').map_or("", |(dir, _)| dir);
        for quote in ["from \"", "import(\""] {
            for (at, _) in text.match_indices(quote) {
                let rest = &text[at + quote.len()..];
                let target = &rest[..rest.find('"').unwrap()];
                assert!(
                    target.starts_with("./") || target.starts_with("../"),
                    "{}: {target}",
                    asset.name
                );
                wanted.insert(resolve(dir, target));
            }
        }
    }
    assert!(wanted.len() >= 10, "found only {wanted:?}");
    let missing: Vec<_> = wanted.iter().filter(|name| !embedded.contains(name.as_str())).collect();
    assert!(missing.is_empty(), "loaded but not embedded: {missing:?}");
    let unused: Vec<_> = embedded.iter().filter(|name| !wanted.contains(**name)).collect();
    assert!(unused.is_empty(), "embedded but never loaded: {unused:?}");
}

fn resolve(dir: &str, target: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|part| !part.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    parts.join("/")
}
