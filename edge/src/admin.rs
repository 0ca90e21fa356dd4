//! The operators' listener (`--admin-listen`): certificate expiry as JSON (`GET
//! /_warren/certs`) and as Prometheus gauges (`GET /metrics`), plus health. Bind it where
//! visitors cannot reach it.

use crate::body::EdgeBody;
use crate::error::EdgeError;
use crate::limits::ConnectionLimits;
use crate::tls::Tls;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::fmt::Write;

pub const CERTS_PATH: &str = "/_warren/certs";

pub async fn handle(
    tls: Option<&Tls>,
    limits: &ConnectionLimits,
    req: Request<Incoming>,
) -> Result<Response<EdgeBody>, EdgeError> {
    let summaries = tls.map(|t| t.resolver.summaries()).unwrap_or_default();
    match req.uri().path() {
        CERTS_PATH => {
            let body = serde_json::json!({ "certificates": summaries }).to_string();
            Ok(with_type(body, "application/json"))
        }
        "/metrics" => Ok(with_type(
            metrics(&summaries, limits),
            "text/plain; version=0.0.4",
        )),
        "/healthz" => Ok(with_type("ok\n".into(), "text/plain")),
        _ => Err(EdgeError::NotFound),
    }
}

/// `warren_edge_certificate_expiry_seconds{name="…"}`: each served name's `notAfter`.
fn metrics(summaries: &[crate::tls::resolver::CertSummary], limits: &ConnectionLimits) -> String {
    let mut out = String::from(
        "# HELP warren_edge_certificate_expiry_seconds When the certificate served for a name \
         expires (Unix time).\n# TYPE warren_edge_certificate_expiry_seconds gauge\n",
    );
    for cert in summaries {
        for name in &cert.names {
            // Names come from certificates this edge parsed: DNS names, no quotes or newlines.
            let _ = writeln!(
                out,
                "warren_edge_certificate_expiry_seconds{{name=\"{}\"}} {}",
                name.replace(['"', '\\', '\n'], ""),
                cert.not_after
            );
        }
    }
    let refused = &limits.refused;
    out.push_str(
        "# HELP warren_edge_connections_refused_total Connections over a cap: answered 503 \
         (listener full) or 429 (address over its cap), or closed at once.\n\
         # TYPE warren_edge_connections_refused_total counter\n",
    );
    for (reason, counter) in [
        ("listener_full", &refused.full),
        ("per_address", &refused.per_address),
        ("dropped", &refused.dropped),
    ] {
        let _ = writeln!(
            out,
            "warren_edge_connections_refused_total{{reason=\"{reason}\"}} {}",
            counter.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    out
}

fn with_type(body: String, content_type: &'static str) -> Response<EdgeBody> {
    let mut response = Response::new(EdgeBody::full(body));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
