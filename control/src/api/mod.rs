//! The HTTP API: routes, the OpenAPI document generated from them, and the problem+json
//! answers for everything no route handles (404, 405, oversized bodies).

pub mod domains;
mod extract;
pub mod me;
pub mod names;
pub mod regions;
pub mod reports;
pub mod subdomains;
pub mod tokens;
pub mod tunnels;
pub mod view;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{ApiError, PROBLEM_JSON, Problem};
use crate::state::AppState;

pub use extract::MAX_BODY_BYTES;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Warren control",
        description = "Accounts, API tokens, subdomain claims, custom domains, tunnel grants and history of a \
                       Warren tunnel relay. Authenticate with `Authorization: Bearer wrn_...`. \
                       Errors are `application/problem+json` (RFC 9457).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(Problem)),
    tags(
        (name = "accounts", description = "The caller's account; admin: all accounts"),
        (name = "tokens", description = "API tokens (shown once, stored hashed)"),
        (name = "subdomains", description = "Subdomain claims, unique system-wide"),
        (name = "domains", description = "Custom domains: add, prove ownership through DNS, tunnel to"),
        (name = "tunnels", description = "Grants, live tunnels, history"),
        (name = "regions", description = "Where tunnels can run"),
        (name = "grants", description = "Public keys that verify grants"),
        (name = "health", description = "Liveness and readiness"),
        (name = "internal", description = "Edge → control: reports, names held"),
    )
)]
struct ApiDoc;

/// Adds the security schemes and the error answers every operation can give.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token: `wrn_<id>_<secret>`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "edge_secret",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The edge secret shared by control and its edges"))
                    .build(),
            ),
        );
        for item in api.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let mut add = vec![("500", "Internal error (details are logged, not sent)")];
                if op.security.is_some() {
                    add.push(("401", "Missing, invalid, expired or revoked credentials"));
                    add.push((
                        "429",
                        "Too many failed authentications from this address; see Retry-After",
                    ));
                }
                if op.request_body.is_some() {
                    add.push(("400", "Malformed JSON"));
                    add.push(("413", "Body larger than 64 KiB"));
                    add.push(("415", "Body is not application/json"));
                    add.push(("422", "JSON of the wrong shape or invalid values"));
                }
                if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    add.push(("400", "Malformed query or path parameter"));
                }
                for (status, description) in add {
                    if op.responses.responses.contains_key(status) {
                        continue;
                    }
                    let response = ResponseBuilder::new()
                        .description(description)
                        .content(
                            PROBLEM_JSON,
                            Content::new(Some(Ref::from_schema_name("Problem"))),
                        )
                        .build();
                    op.responses
                        .responses
                        .insert(status.to_string(), response.into());
                }
            }
        }
    }
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(me::me))
        .routes(routes!(me::create_account, me::list_accounts))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(
            subdomains::create_subdomain,
            subdomains::list_subdomains
        ))
        .routes(routes!(subdomains::delete_subdomain))
        .routes(routes!(domains::create_domain, domains::list_domains))
        .routes(routes!(domains::domain, domains::delete_domain))
        .routes(routes!(domains::verify_domain))
        .routes(routes!(tunnels::create_tunnel, tunnels::live_tunnels))
        .routes(routes!(tunnels::close_tunnel))
        .routes(routes!(tunnels::renew_grant))
        .routes(routes!(view::history))
        .routes(routes!(regions::regions))
        .routes(routes!(regions::jwks))
        .routes(routes!(regions::healthz))
        .routes(routes!(regions::readyz))
        .routes(routes!(reports::report))
        .routes(routes!(names::held_names))
}

/// The OpenAPI document of the API (what `/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    split().1
}

/// The routes and their document, with the common error answers added to every operation
/// (after the routes are in: `#[openapi(modifiers)]` runs before them).
fn split() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut api) = api_router().split_for_parts();
    utoipa::Modify::modify(&Security, &mut api);
    (router, api)
}

/// The OpenAPI document as pretty JSON with a trailing newline (the checked-in form).
pub fn openapi_json() -> String {
    let mut json = openapi().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    let (router, api) = split();
    router
        .merge(SwaggerUi::new("/docs").url("/openapi.json", api))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn unknown_route(uri: Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no such endpoint: {}; see /docs for the API",
        uri.path()
    ))
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}; see /docs for the methods it accepts",
        uri.path()
    ))
}
