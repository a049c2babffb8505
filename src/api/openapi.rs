//! The OpenAPI document, assembled from the annotated handlers of every router
//! (`utoipa-axum`), served at `/api/openapi.json`, with Swagger UI at `/api/docs` (its
//! assets are vendored into the binary: the page works with no internet).
//!
//! [`finish`] tidies the assembled document: an optional parameter (`Option<T>` in a
//! `#[utoipa::path]`) comes out as `type: [T, "null"]`, which says a header or query value
//! could be JSON `null` (it cannot: optional means absent, `required: false`) and which
//! Swagger UI shows as `stringnull`; it becomes plain `T`.

use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Required};
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

/// Applied to the document once every router's paths are in it (see the module docs).
pub fn finish(doc: &mut utoipa::openapi::OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        let parameters = operations
            .into_iter()
            .flatten()
            .flat_map(|op| op.parameters.iter_mut().flatten())
            .chain(item.parameters.iter_mut().flatten());
        for parameter in parameters {
            if parameter.required == Required::True {
                continue;
            }
            if let Some(RefOr::T(Schema::Object(object))) = &mut parameter.schema
                && let SchemaType::Array(types) = &object.schema_type
                && types.contains(&Type::Null)
            {
                let rest: Vec<Type> = types
                    .iter()
                    .filter(|t| **t != Type::Null)
                    .cloned()
                    .collect();
                object.schema_type = match rest.as_slice() {
                    [only] => SchemaType::Type(only.clone()),
                    _ => SchemaType::Array(rest),
                };
            }
        }
    }
}
