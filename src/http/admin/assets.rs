//! The page's files, embedded in the binary from `web/dist/` (built by
//! esbuild and committed, so building the broker never needs Node).
//! Every answer has an ETag; only files under `assets/`, whose names carry
//! a hash of their content, may be cached for good.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::Embed)]
#[folder = "web/dist/"]
struct Dist;

/// Every name under `assets/` ends in `-<hash>.<ext>` (see web/build.mjs).
const HASHED_DIR: &str = "assets/";

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// The file at `path` (relative to `web/dist/`), or `None`. A request
/// whose `If-None-Match` names the current ETag gets 304.
pub fn serve(path: &str, request: &HeaderMap) -> Option<Response> {
    let file = Dist::get(path)?;
    let hash = file.metadata.sha256_hash();
    let etag = format!(
        "\"{}\"",
        hash[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let cache = if path.starts_with(HASHED_DIR) {
        "public, max-age=31536000, immutable"
    } else {
        // The page itself names the current assets: always revalidated.
        "no-cache"
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, content_type(path))],
            file.data.into_owned(),
        )
            .into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Some(response)
}

/// The names of every embedded file (tests check the build's layout).
pub fn names() -> Vec<String> {
    Dist::iter().map(|n| n.into_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_is_embedded_with_hashed_asset_names() {
        let names = names();
        assert!(names.iter().any(|n| n == "index.html"), "{names:?}");
        for name in names.iter().filter(|n| n.starts_with(HASHED_DIR)) {
            let stem = name.rsplit_once('.').unwrap().0;
            let hash = stem.rsplit_once('-').map(|(_, h)| h).unwrap_or("");
            assert!(hash.len() >= 8, "{name} has no content hash");
        }
        assert!(names.iter().any(|n| n.ends_with(".js")));
        assert!(names.iter().any(|n| n.ends_with(".css")));
    }

    #[test]
    fn etags_and_caching() {
        let page = serve("index.html", &HeaderMap::new()).unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache");
        let etag = page.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(
            serve("index.html", &again).unwrap().status(),
            StatusCode::NOT_MODIFIED
        );
        let js = names().into_iter().find(|n| n.ends_with(".js")).unwrap();
        let asset = serve(&js, &HeaderMap::new()).unwrap();
        assert!(
            asset.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert!(serve("nope.js", &HeaderMap::new()).is_none());
    }
}
