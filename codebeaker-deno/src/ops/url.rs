//! `URL` parsing for the JS `URL` class (WHATWG parsing by the `url` crate).

use deno_core::url::{Position, Url};
use deno_error::JsErrorBox;
use serde::Serialize;

/// The parts of a parsed URL, as the JS `URL` class exposes them.
#[derive(Serialize)]
pub(crate) struct UrlParts {
    href: String,
    protocol: String,
    username: String,
    password: String,
    host: String,
    hostname: String,
    port: String,
    pathname: String,
    search: String,
    hash: String,
    origin: String,
}

/// Parses `href` (against `base` unless it is empty); `TypeError: Invalid URL` otherwise.
#[deno_core::op2]
#[serde]
pub(crate) fn op_cb_url_parse(#[string] href: String, #[string] base: String) -> Result<UrlParts, JsErrorBox> {
    let invalid = || JsErrorBox::type_error(format!("Invalid URL: '{href}'"));
    let url = match Some(base).filter(|b| !b.is_empty()) {
        Some(base) => Url::parse(&base).and_then(|base| base.join(&href)).map_err(|_| invalid())?,
        None => Url::parse(&href).map_err(|_| invalid())?,
    };
    let part = |from: Position, to: Position| url[from..to].to_owned();
    Ok(UrlParts {
        protocol: format!("{}:", url.scheme()),
        username: url.username().to_owned(),
        password: url.password().unwrap_or_default().to_owned(),
        host: part(Position::BeforeHost, Position::AfterPort),
        hostname: url.host_str().unwrap_or_default().to_owned(),
        port: url.port().map(|p| p.to_string()).unwrap_or_default(),
        pathname: url.path().to_owned(),
        search: part(Position::AfterPath, Position::AfterQuery).to_owned(),
        hash: part(Position::AfterQuery, Position::AfterFragment),
        origin: url.origin().ascii_serialization(),
        href: url.into(),
    })
}
