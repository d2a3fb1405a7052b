//! The error codes of CodeBeaker's JSON-RPC API (`docs/protocol.md`, "Error codes"):
//! JSON-RPC 2.0's own and the protocol's extensions. One list for the server that
//! answers with them and the clients that decide on them.

/// `-32700`: the message is not valid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// `-32600`: the JSON is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// `-32601`: no such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// `-32602`: the params are missing, of the wrong type, or out of range.
pub const INVALID_PARAMS: i64 = -32602;
/// `-32603`: something failed inside the server.
pub const INTERNAL_ERROR: i64 = -32603;
/// `-32001` (extension): no open session has this id.
pub const SESSION_NOT_FOUND: i64 = -32001;
/// `-32002` (extension): a limit was reached (sessions, connections, message size…).
pub const LIMIT_REACHED: i64 = -32002;
/// `-32003` (extension): the backend that would serve the request is unavailable.
pub const BACKEND_UNAVAILABLE: i64 = -32003;
/// `-32004` (extension): the session closed while the request waited for its turn.
pub const SESSION_CLOSED: i64 = -32004;

/// Every code the server answers with.
pub const CODES: [i64; 9] = [
    PARSE_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    INVALID_PARAMS,
    INTERNAL_ERROR,
    SESSION_NOT_FOUND,
    LIMIT_REACHED,
    BACKEND_UNAVAILABLE,
    SESSION_CLOSED,
];
