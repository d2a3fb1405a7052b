//! The CodeBeaker WebSocket JSON-RPC server (being built; see issue 6).
