//! The OpenAPI 3 document of the admin API, kept in the repository
//! (`docs/admin-openapi.json`) and served at `GET /admin/openapi.json`.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, as written in the repository.
pub const DOCUMENT: &str = include_str!("../../../docs/admin-openapi.json");

pub(super) async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route the router serves is in the document with its method, and the document
    /// names no route the router lacks: the two cannot drift apart.
    #[test]
    fn the_document_lists_exactly_the_routes_of_the_router() {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(document["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let mut documented: Vec<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
                    .map(|method| (method.to_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut routed: Vec<(String, String)> = super::super::route_list()
            .into_iter()
            .map(|(method, path)| (method.to_string(), path.to_string()))
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(routed, documented);
    }
}
