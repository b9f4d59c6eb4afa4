//! The console's stylesheet, script and icon, compiled into the binary (no CDN, works offline).

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::Response;

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");
const ICON: &str = include_str!("../assets/favicon.svg");

/// The asset named `file` and its content type.
pub fn asset(file: &str) -> Option<(&'static str, &'static str)> {
    match file {
        "console.css" => Some(("text/css; charset=utf-8", CSS)),
        "console.js" => Some(("text/javascript; charset=utf-8", JS)),
        "favicon.svg" => Some(("image/svg+xml", ICON)),
        _ => None,
    }
}

pub(crate) async fn handler(Path(file): Path<String>) -> Response {
    match asset(&file) {
        Some((kind, body)) => {
            let mut r = crate::html_response(200, body.to_owned());
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
            r
        }
        None => crate::Failure::new(
            404,
            "Not found",
            format!("the console has no asset named {file:?}"),
            ("/ui/", "back to the overview"),
        )
        .render(None),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_asset_is_served_and_nothing_else() {
        for f in ["console.css", "console.js", "favicon.svg"] {
            assert!(super::asset(f).is_some_and(|(_, b)| !b.is_empty()), "{f}");
        }
        assert!(super::asset("../Cargo.toml").is_none());
    }
}
