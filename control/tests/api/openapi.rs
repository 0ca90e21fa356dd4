//! The checked-in spec is what the code generates.

use std::path::PathBuf;

const REGENERATE: &str = "cargo run -p warren-control -- openapi > openapi/warren-control.json";

#[test]
fn checked_in_openapi_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi/warren-control.json");
    let generated = warren_control::openapi_json();
    if std::env::var_os("WARREN_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write spec");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; generate it with `{REGENERATE}`",
            path.display()
        )
    });
    assert!(
        checked_in == generated,
        "openapi/warren-control.json is out of date with the code; regenerate it with `{REGENERATE}` \
         (or WARREN_UPDATE_OPENAPI=1 cargo test -p warren-control --test api openapi) and commit it"
    );
}

#[test]
fn every_operation_documents_problem_errors_and_security() {
    let spec: serde_json::Value =
        serde_json::from_str(&warren_control::openapi_json()).expect("json");
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    let paths = spec["paths"].as_object().expect("paths");
    for route in [
        "/v1/me",
        "/v1/tokens",
        "/v1/tokens/{id}",
        "/v1/subdomains",
        "/v1/subdomains/{name}",
        "/v1/domains",
        "/v1/domains/{id}",
        "/v1/domains/{id}/verify",
        "/v1/tunnels",
        "/v1/tunnels/{id}",
        "/v1/tunnels/{id}/grant",
        "/v1/tunnels/history",
        "/v1/regions",
        "/v1/accounts",
        "/.well-known/jwks.json",
        "/internal/v1/reports",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(route), "{route} missing from the spec");
    }
    for (route, item) in paths {
        for (method, op) in item.as_object().expect("item") {
            let responses = op["responses"].as_object().expect("responses");
            assert!(responses.contains_key("500"), "{method} {route}");
            for (status, resp) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        resp["content"]["application/problem+json"].is_object(),
                        "{method} {route} {status}"
                    );
                }
            }
        }
    }
}
