//! JSON-RPC 2.0 on the wire: parsing a text frame into requests (single or batch),
//! validating each against the specification, and the response and error objects.
//!
//! Parsing never fails as a whole: anything that is not a valid request becomes the
//! error response the specification prescribes, so the connection always gets an answer
//! (or, for notifications, none) and stays open.

use serde::ser::SerializeMap as _;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::limits::{nests_deeper_than, Limits};

pub use codebeaker::rpc_codes::*;

/// A JSON-RPC error object: `{"code", "message", "data"?, "kind", "retryAfterMs"?}`;
/// `data` is a human-readable detail of what was wrong with which input, `kind` what a
/// client decides on (see [`KINDS`]).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RpcError {
    /// One of the codes of this module (see `docs/protocol.md`, "Error codes").
    #[schemars(extend("enum" = CODES))]
    pub code: i64,
    /// The short standard message of the code.
    pub message: &'static str,
    /// What exactly went wrong, naming the input, the limit or the setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// What kind of failure this is, finer than the code (`rate_limited` and
    /// `limit_reached` share `-32002`, `timed_out` is one of `-32603`'s): one of [`KINDS`].
    #[schemars(extend("enum" = KINDS))]
    pub kind: &'static str,
    /// With `rate_limited`: how long until a request would be admitted, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Every `kind` an error object may carry (`docs/protocol.md`, "Error codes"). Those of
/// SDK errors are the file routes' `error.code` (one table: `error_codes`).
pub const KINDS: [&str; 15] = [
    "parse_error",
    "invalid_request",
    "method_not_found",
    "invalid_input",
    "unsupported",
    "internal_error",
    "session_not_found",
    "session_closed",
    "limit_reached",
    "rate_limited",
    "backend_unavailable",
    "not_found",
    "already_exists",
    "permission_denied",
    "timed_out",
];

impl RpcError {
    /// An error with `code`, its standard message and kind, and `data`.
    pub fn new(code: i64, data: impl Into<String>) -> Self {
        RpcError {
            code,
            message: standard_message(code),
            data: Some(data.into()),
            kind: standard_kind(code),
            retry_after_ms: None,
        }
    }

    /// This error with another `kind`: one of [`KINDS`] (a name outside them, as a
    /// remote node might send, leaves the code's own kind).
    pub fn with_kind(mut self, kind: &str) -> Self {
        if let Some(known) = KINDS.iter().find(|known| **known == kind) {
            self.kind = known;
        }
        self
    }

    /// `-32700` with a detail.
    pub fn parse_error(data: impl Into<String>) -> Self {
        Self::new(PARSE_ERROR, data)
    }

    /// `-32600` with a detail.
    pub fn invalid_request(data: impl Into<String>) -> Self {
        Self::new(INVALID_REQUEST, data)
    }

    /// `-32602` with a detail.
    pub fn invalid_params(data: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, data)
    }

    /// `-32002` with a detail.
    pub fn limit_reached(data: impl Into<String>) -> Self {
        Self::new(LIMIT_REACHED, data)
    }

    /// `-32002`, kind `rate_limited`: the caller is over its request rate, and may try
    /// again in `retry_after`.
    pub fn rate_limited(data: impl Into<String>, retry_after: std::time::Duration) -> Self {
        let mut error = Self::limit_reached(data).with_kind("rate_limited");
        error.retry_after_ms = Some(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX));
        error
    }
}

/// The kind an error of `code` has unless it says more.
fn standard_kind(code: i64) -> &'static str {
    match code {
        PARSE_ERROR => "parse_error",
        INVALID_REQUEST => "invalid_request",
        METHOD_NOT_FOUND => "method_not_found",
        INVALID_PARAMS => "invalid_input",
        SESSION_NOT_FOUND => "session_not_found",
        LIMIT_REACHED => "limit_reached",
        BACKEND_UNAVAILABLE => "backend_unavailable",
        SESSION_CLOSED => "session_closed",
        _ => "internal_error",
    }
}

/// The message the specification (or `docs/protocol.md`, for the extension codes) gives a code.
fn standard_message(code: i64) -> &'static str {
    match code {
        PARSE_ERROR => "Parse error",
        INVALID_REQUEST => "Invalid Request",
        METHOD_NOT_FOUND => "Method not found",
        INVALID_PARAMS => "Invalid params",
        SESSION_NOT_FOUND => "Session not found",
        LIMIT_REACHED => "Limit reached",
        BACKEND_UNAVAILABLE => "Backend unavailable",
        SESSION_CLOSED => "Session closed",
        _ => "Internal error",
    }
}

/// Maps an SDK error onto the protocol's codes by its kind
/// ([`wire_codes`](crate::error_codes::wire_codes)); the SDK's message becomes `data`.
impl From<codebeaker::Error> for RpcError {
    fn from(error: codebeaker::Error) -> Self {
        let codes = crate::error_codes::wire_codes(error.kind());
        RpcError::new(codes.rpc, error.to_string()).with_kind(codes.http_code)
    }
}

/// One valid request. `id` is `None` for a notification (no `id` member at all); an
/// explicit `"id": null` is a request answered with `null`, as the specification allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The id to echo back, if a reply is wanted.
    pub id: Option<Value>,
    /// The method name.
    pub method: String,
    /// The params (an object or an array), if given.
    pub params: Option<Value>,
}

/// What one text frame holds.
#[derive(Debug)]
pub enum Incoming {
    /// One request object, or the error response owed for an invalid one.
    Single(Result<Request, Box<Response>>),
    /// A non-empty batch: each element is a request or the error owed for it.
    Batch(Vec<Result<Request, Box<Response>>>),
    /// The frame as a whole is answered with this one error (parse error, empty batch,
    /// batch over the limit).
    Rejected(Response),
}

/// Parses one text frame.
pub fn parse(text: &str, limits: &Limits) -> Incoming {
    if nests_deeper_than(text, limits.max_json_depth) {
        return Incoming::Rejected(Response::error(
            Value::Null,
            RpcError::parse_error(format!("JSON nested deeper than {} levels", limits.max_json_depth)),
        ));
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            return Incoming::Rejected(Response::error(Value::Null, RpcError::parse_error(error.to_string())))
        }
    };
    match value {
        Value::Array(items) if items.is_empty() => Incoming::Rejected(Response::error(
            Value::Null,
            RpcError::invalid_request("an empty batch is not a request"),
        )),
        Value::Array(items) if items.len() > limits.max_batch => Incoming::Rejected(Response::error(
            Value::Null,
            RpcError::limit_reached(format!(
                "a batch of {} requests exceeds the limit of {}; split it",
                items.len(),
                limits.max_batch
            )),
        )),
        Value::Array(items) => Incoming::Batch(items.into_iter().map(request).collect()),
        other => Incoming::Single(request(other)),
    }
}

/// Validates one request object; anything else is the Invalid Request response for it
/// (boxed: the error path is the rare one).
fn request(value: Value) -> Result<Request, Box<Response>> {
    let Value::Object(mut object) = value else {
        return Err(Box::new(Response::error(
            Value::Null,
            RpcError::invalid_request("a request must be a JSON object"),
        )));
    };
    // The id is echoed even on an invalid request when it is itself valid, so a client
    // can tell which of its requests was wrong.
    let id = match object.remove("id") {
        None => None,
        Some(id @ (Value::Null | Value::String(_) | Value::Number(_))) => Some(id),
        Some(_) => {
            let error = RpcError::invalid_request("id must be a string, a number or null");
            return Err(Box::new(Response::error(Value::Null, error)));
        }
    };
    let invalid =
        |detail: &str| Box::new(Response::error(id.clone().unwrap_or(Value::Null), RpcError::invalid_request(detail)));
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("jsonrpc must be exactly \"2.0\""));
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        Some(_) => return Err(invalid("method must be a string")),
        None => return Err(invalid("method is missing")),
    };
    let params = match object.remove("params") {
        None => None,
        Some(params @ (Value::Object(_) | Value::Array(_))) => Some(params),
        Some(_) => return Err(invalid("params must be an object or an array")),
    };
    Ok(Request { id, method, params })
}

/// A response: `{"jsonrpc":"2.0","id":ID,"result":R}` or `{..,"error":E}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request's id (`null` when it could not be read).
    pub id: Value,
    /// The result or the error.
    pub outcome: Result<Value, RpcError>,
}

impl Response {
    /// A success.
    pub fn result(id: Value, result: Value) -> Self {
        Response { id, outcome: Ok(result) }
    }

    /// An error.
    pub fn error(id: Value, error: RpcError) -> Self {
        Response { id, outcome: Err(error) }
    }

    /// The response as a text frame's content.
    pub fn to_text(&self) -> String {
        to_text(self)
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("jsonrpc", "2.0")?;
        map.serialize_entry("id", &self.id)?;
        match &self.outcome {
            Ok(result) => map.serialize_entry("result", result)?,
            Err(error) => map.serialize_entry("error", error)?,
        }
        map.end()
    }
}

/// A notification from the server: `{"jsonrpc":"2.0","method":M,"params":P}`.
pub fn notification(method: &str, params: &impl Serialize) -> String {
    #[derive(Serialize)]
    struct Notification<'a, P> {
        jsonrpc: &'static str,
        method: &'a str,
        params: P,
    }
    to_text(&Notification { jsonrpc: "2.0", method, params })
}

/// Serializes something the server built itself (maps of strings and numbers).
pub fn to_text<T: Serialize + ?Sized>(value: &T) -> String {
    // Serializing values with string keys cannot fail; keep a valid frame regardless.
    serde_json::to_string(value).unwrap_or_else(|error| {
        format!(r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":{INTERNAL_ERROR},"message":"Internal error","data":"cannot serialize the response: {error}"}}}}"#)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn single(text: &str) -> Result<Request, Box<Response>> {
        match parse(text, &Limits::default()) {
            Incoming::Single(request) => request,
            other => panic!("expected a single request, got {other:?}"),
        }
    }

    fn code(response: &Response) -> i64 {
        response.outcome.as_ref().err().map(|e| e.code).unwrap_or(0)
    }

    #[test]
    fn requests_and_notifications_are_told_apart() {
        let request = single(r#"{"jsonrpc":"2.0","id":7,"method":"session.list"}"#).unwrap();
        assert_eq!(request.id, Some(json!(7)));
        let notification = single(r#"{"jsonrpc":"2.0","method":"session.list","params":{}}"#).unwrap();
        assert_eq!(notification.id, None);
        assert_eq!(notification.params, Some(json!({})));
        let null_id = single(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#).unwrap();
        assert_eq!(null_id.id, Some(Value::Null));
    }

    #[test]
    fn invalid_requests_echo_a_valid_id() {
        let response = single(r#"{"jsonrpc":"1.0","id":"a","method":"x"}"#).unwrap_err();
        assert_eq!((code(&response), response.id), (INVALID_REQUEST, json!("a")));
        let response = single(r#"{"jsonrpc":"2.0","method":1,"params":"bar"}"#).unwrap_err();
        assert_eq!((code(&response), response.id), (INVALID_REQUEST, Value::Null));
        let response = single(r#"{"jsonrpc":"2.0","id":{"x":1},"method":"x"}"#).unwrap_err();
        assert_eq!((code(&response), response.id), (INVALID_REQUEST, Value::Null));
        let response = single(r#"{"jsonrpc":"2.0","id":3,"method":"x","params":5}"#).unwrap_err();
        assert_eq!((code(&response), response.id), (INVALID_REQUEST, json!(3)));
    }

    #[test]
    fn frames_rejected_as_a_whole() {
        let limits = Limits { max_batch: 2, ..Limits::default() };
        for (text, expected) in [
            (r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#, PARSE_ERROR),
            ("[]", INVALID_REQUEST),
            ("[1,2,3]", LIMIT_REACHED),
            (&"[".repeat(10_000), PARSE_ERROR),
        ] {
            match parse(text, &limits) {
                Incoming::Rejected(response) => assert_eq!(code(&response), expected, "{text:.40}"),
                other => panic!("{text:.40}: expected a rejection, got {other:?}"),
            }
        }
    }

    #[test]
    fn responses_serialize_in_wire_shape() {
        let ok = Response::result(json!(1), json!({"count": 0}));
        assert_eq!(ok.to_text(), r#"{"jsonrpc":"2.0","id":1,"result":{"count":0}}"#);
        let err = Response::error(Value::Null, RpcError::invalid_request("x"));
        assert_eq!(
            serde_json::from_str::<Value>(&err.to_text()).unwrap(),
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request","data":"x","kind":"invalid_request"}})
        );
        let limited = RpcError::rate_limited("slow down", std::time::Duration::from_millis(180));
        assert_eq!(
            serde_json::to_value(&limited).unwrap(),
            json!({"code":-32002,"message":"Limit reached","data":"slow down","kind":"rate_limited","retryAfterMs":180})
        );
    }

    #[test]
    fn every_error_kind_is_one_of_the_documented_kinds() {
        for kind in codebeaker::ErrorKind::ALL {
            let wire = RpcError::from(codebeaker::Error::new(kind, "x"));
            assert!(KINDS.contains(&wire.kind), "{kind}: {}", wire.kind);
        }
        assert_eq!(RpcError::from(codebeaker::Error::timed_out(std::time::Duration::from_secs(1))).kind, "timed_out");
        assert_eq!(RpcError::new(INTERNAL_ERROR, "x").with_kind("made_up").kind, "internal_error");
        for code in CODES {
            assert!(KINDS.contains(&RpcError::new(code, "x").kind), "{code}");
        }
    }

    #[test]
    fn sdk_errors_map_to_protocol_codes() {
        use codebeaker::Error;
        assert_eq!(RpcError::from(Error::session_not_found("s")).code, SESSION_NOT_FOUND);
        assert_eq!(RpcError::from(Error::limit_reached("n")).code, LIMIT_REACHED);
        let down = Error::backend_unavailable("docker", "down");
        assert_eq!(RpcError::from(down).code, BACKEND_UNAVAILABLE);
        assert_eq!(RpcError::from(Error::session_closed("s")).code, SESSION_CLOSED);
        let invalid = RpcError::from(Error::invalid_input("bad"));
        assert_eq!((invalid.code, invalid.data.as_deref()), (INVALID_PARAMS, Some("Invalid input: bad")));
        assert_eq!(RpcError::from(Error::internal("x")).code, INTERNAL_ERROR);
    }

    /// Every response the parser produces is a valid JSON-RPC 2.0 error response.
    fn assert_valid_error(response: &Response) {
        let value: Value = serde_json::from_str(&response.to_text()).expect("responses are JSON");
        let object = value.as_object().expect("responses are objects");
        assert_eq!(object["jsonrpc"], "2.0");
        assert!(matches!(object["id"], Value::Null | Value::String(_) | Value::Number(_)), "{value}");
        assert!(!object.contains_key("result"), "{value}");
        let error = object["error"].as_object().expect("an error object");
        let code = error["code"].as_i64().expect("an integer code");
        assert!([PARSE_ERROR, INVALID_REQUEST, LIMIT_REACHED].contains(&code), "{value}");
        assert!(error["message"].is_string(), "{value}");
    }

    fn assert_valid(text: &str) {
        match parse(text, &Limits { max_batch: 8, max_json_depth: 16, ..Limits::default() }) {
            Incoming::Rejected(response) => assert_valid_error(&response),
            Incoming::Single(item) => assert_item(item),
            Incoming::Batch(items) => {
                assert!(!items.is_empty() && items.len() <= 8);
                items.into_iter().for_each(assert_item);
            }
        }
    }

    fn assert_item(item: Result<Request, Box<Response>>) {
        match item {
            Ok(request) => {
                assert!(matches!(request.id, None | Some(Value::Null | Value::String(_) | Value::Number(_))));
                assert!(matches!(request.params, None | Some(Value::Object(_) | Value::Array(_))));
            }
            Err(response) => assert_valid_error(&response),
        }
    }

    /// Arbitrary JSON values, nested a few levels.
    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            "[a-z.0-9\\\\\"]{0,12}".prop_map(Value::String),
            Just(json!("2.0")),
            Just(json!("session.list")),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec(
                    (
                        prop_oneof![
                            Just("jsonrpc".to_owned()),
                            Just("id".into()),
                            Just("method".into()),
                            Just("params".into()),
                            "[a-z]{1,6}"
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            assert_valid(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn json_like_text_never_panics(text in "[\\[\\]{}\",:0-9a-z.\\\\ eE+-]{0,300}") {
            assert_valid(&text);
        }

        #[test]
        fn arbitrary_json_gets_a_request_or_a_valid_error(value in json_value()) {
            assert_valid(&value.to_string());
        }
    }
}
