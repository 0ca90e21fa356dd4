//! The one place where a failed visitor request becomes a response: an HTML page for
//! browsers, JSON for everything else, always with a `Warren-Error` header naming the failure.

use crate::body::EdgeBody;
use crate::error::EdgeError;
use http::{HeaderValue, Response, header};

/// The header naming an error the edge produced itself (absent on proxied responses).
pub const ERROR_HEADER: &str = "warren-error";
/// The header carrying the request id on every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Renders `error` for a visitor. `html` is whether the visitor prefers HTML (a browser).
pub fn render(error: &EdgeError, html: bool, request_id: &str) -> Response<EdgeBody> {
    let status = error.status();
    let (content_type, body) = content(error, html, request_id);
    let mut response = Response::new(EdgeBody::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(ERROR_HEADER, HeaderValue::from_static(error.code()));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, id);
    }
    response
}

/// The page's content type and text: HTML for browsers, JSON for everything else.
pub fn content(error: &EdgeError, html: bool, request_id: &str) -> (&'static str, String) {
    if html {
        ("text/html; charset=utf-8", html_page(error, request_id))
    } else {
        ("application/json", json_body(error, request_id))
    }
}

/// The whole HTTP/1.1 response for `error`, as the proxy core writes it (the same fields as
/// [`render`], framed by length).
pub fn http1_bytes(error: &EdgeError, html: bool, request_id: &str, close: bool) -> Vec<u8> {
    let status = error.status();
    let (content_type, body) = content(error, html, request_id);
    let mut out = Vec::with_capacity(body.len() + 256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\ncache-control: no-store\r\nwarren-error: ");
    out.extend_from_slice(error.code().as_bytes());
    if http::HeaderValue::from_str(request_id).is_ok() {
        out.extend_from_slice(b"\r\nx-request-id: ");
        out.extend_from_slice(request_id.as_bytes());
    }
    out.extend_from_slice(b"\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    if close {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// Whether the request's `Accept` header prefers HTML.
pub fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn json_body(error: &EdgeError, request_id: &str) -> String {
    serde_json::json!({
        "error": error.code(),
        "status": error.status().as_u16(),
        "message": error.to_string(),
        "hint": error.hint(),
        "request_id": request_id,
    })
    .to_string()
}

fn html_page(error: &EdgeError, request_id: &str) -> String {
    let status = error.status();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{code} {reason} · Warren</title>\
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}}\
h1{{font-size:1.6rem}}code,small{{color:#666}}</style></head>\
<body><h1>{code} {reason}</h1><p>{message}.</p><p>{hint}</p>\
<p><small>Error <code>{name}</code> · request <code>{request_id}</code> · served by Warren</small></p>\
</body></html>\n",
        code = status.as_u16(),
        reason = status.canonical_reason().unwrap_or(""),
        message = escape(&capitalise(&error.to_string())),
        hint = escape(error.hint()),
        name = error.code(),
        request_id = escape(request_id),
    )
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_and_json_carry_status_and_error_header() {
        let err = EdgeError::UnknownTunnel {
            host: "<x>.localhost".into(),
        };
        let page = render(&err, true, "r1");
        assert_eq!(page.status(), 404);
        assert_eq!(page.headers()[ERROR_HEADER], "tunnel-not-found");
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let json = render(&EdgeError::LocalTimeout(60), false, "r2");
        assert_eq!(json.status(), 504);
        assert_eq!(json.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn hostnames_are_escaped_in_html() {
        let page = html_page(
            &EdgeError::UnknownTunnel {
                host: "<script>".into(),
            },
            "r",
        );
        assert!(!page.contains("<script>"));
    }
}
