//! GraphiQL, served from this process: its page at `GET /graphql` and its scripts and
//! styles (GraphiQL, React, ReactDOM; see assets/graphiql/versions.txt) under
//! `/graphql/assets/<version>/`, compiled into the binary. Nothing comes from a CDN,
//! so the IDE works on a machine without internet.

use axum::{
    extract::Path,
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Router,
};

/// Part of every asset's path, so a new version is a new URL and browsers may cache
/// each for good.
const ASSET_VERSION: &str = "graphiql-4.1.2";

const PAGE: &str = include_str!("../assets/graphiql/index.html");

const ASSETS: [(&str, &str, &[u8]); 4] = [
    ("graphiql.min.js", "text/javascript; charset=utf-8", include_bytes!("../assets/graphiql/graphiql.min.js")),
    ("graphiql.min.css", "text/css; charset=utf-8", include_bytes!("../assets/graphiql/graphiql.min.css")),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react-dom.production.min.js"),
    ),
];

/// The asset routes (the page itself is `GET /graphql`, beside the POST).
pub fn asset_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/graphql/assets/{version}/{file}", get(asset))
}

pub async fn page() -> Html<String> {
    Html(PAGE.replace("{{VERSION}}", ASSET_VERSION))
}

async fn asset(Path((version, file)): Path<(String, String)>) -> Response {
    match ASSETS.iter().find(|(name, ..)| *name == file) {
        Some((_, content_type, body)) if version == ASSET_VERSION => (
            [(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")],
            *body,
        )
            .into_response(),
        _ => (StatusCode::NOT_FOUND, "no such GraphiQL asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_assets_this_process_serves() {
        let page = PAGE.replace("{{VERSION}}", ASSET_VERSION);
        assert!(!page.contains("http://") && !page.contains("https://"), "nothing from elsewhere");
        for (name, ..) in ASSETS {
            assert!(page.contains(&format!("/graphql/assets/{ASSET_VERSION}/{name}")), "{name} is loaded");
        }
    }
}
