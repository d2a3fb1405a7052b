//! `fetch`: a real HTTP request, only to hosts `allowNet` permits (redirects included).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use deno_core::{JsBuffer, OpState, ToJsBuffer};
use deno_error::JsErrorBox;
use serde::Serialize;

use super::{session, session_mut};
use crate::permissions::Permissions;

/// Largest response body `fetch` buffers (the body is handed to JS in one piece).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Most redirects followed, as browsers and Deno do.
const MAX_REDIRECTS: usize = 20;

/// What the JS `Response` is built from.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FetchResponse {
    status: u16,
    status_text: String,
    url: String,
    headers: Vec<(String, String)>,
    body: ToJsBuffer,
}

fn net_check(permissions: &Permissions, url: &reqwest::Url) -> Result<(), JsErrorBox> {
    match url.scheme() {
        "http" | "https" => {}
        scheme => return Err(JsErrorBox::type_error(format!("scheme '{scheme}' is not supported by fetch"))),
    }
    let host = url.host_str().ok_or_else(|| JsErrorBox::type_error(format!("Invalid URL: '{url}'")))?;
    Ok(permissions.check_net(host.trim_start_matches('[').trim_end_matches(']'), url.port())?)
}

/// The session's HTTP client, built on first use with a redirect policy that applies the
/// same net permission to every hop.
fn client(state: &Rc<RefCell<OpState>>) -> Result<reqwest::Client, JsErrorBox> {
    let mut state = state.borrow_mut();
    let session = session_mut(&mut state)?;
    if let Some(client) = &session.http {
        return Ok(client.clone());
    }
    let permissions = Arc::new((*session.permissions).clone());
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        match net_check(&permissions, attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(e.to_string()),
        }
    });
    let client = reqwest::Client::builder()
        .redirect(policy)
        .user_agent(concat!("codebeaker-deno/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| JsErrorBox::generic(format!("cannot start an HTTP client: {e}")))?;
    session.http = Some(client.clone());
    Ok(client)
}

/// Performs `fetch(url, {method, headers, body})` after the net permission check.
#[deno_core::op2]
#[serde]
pub(crate) async fn op_cb_fetch(
    state: Rc<RefCell<OpState>>,
    #[string] url: String,
    #[string] method: String,
    #[serde] headers: Vec<(String, String)>,
    #[buffer] body: JsBuffer,
    has_body: bool,
) -> Result<FetchResponse, JsErrorBox> {
    let url = reqwest::Url::parse(&url).map_err(|_| JsErrorBox::type_error(format!("Invalid URL: '{url}'")))?;
    net_check(&session(&state.borrow())?.permissions, &url)?;
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| JsErrorBox::type_error(format!("'{method}' is not a valid HTTP method")))?;
    let mut request = client(&state)?.request(method, url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if has_body {
        request = request.body(body.to_vec());
    }
    let mut response =
        request.send().await.map_err(|e| JsErrorBox::type_error(format!("error sending request: {e}")))?;
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let url = response.url().to_string();
    let mut bytes = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|e| JsErrorBox::type_error(format!("error reading body: {e}")))?
    {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(JsErrorBox::range_error(format!("response body of {url} exceeds {MAX_BODY_BYTES} bytes")));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(FetchResponse {
        status: status.as_u16(),
        status_text: status.canonical_reason().unwrap_or_default().to_owned(),
        url,
        headers,
        body: bytes.into(),
    })
}
