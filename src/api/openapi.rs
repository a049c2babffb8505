//! The OpenAPI document, assembled from the annotated handlers of every router
//! (`utoipa-axum`), served at `/api/openapi.json`, with Swagger UI at `/api/docs` (its
//! assets are vendored into the binary: the page works with no internet).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Auto-Order Edge API",
        description = "Products, purchases (orders), re-order predictions. Reads are served \
                       from the nearest edge's replica; writes go to the primary and return an \
                       `X-Sync-Token` for read-your-writes. Every route is also served under \
                       `/api/{API_VERSION}`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An Auth0 access token (RS256)"))
                    .build(),
            ),
        );
    }
}
