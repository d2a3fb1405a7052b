//! The machine-readable form of `docs/protocol.md`: a JSON Schema (draft 2020-12) of every
//! method's params and result, of every notification's params and of the error object,
//! generated from the wire types themselves ([`crate::protocol`] and the core crate's),
//! so the schema says what serde does.
//!
//! The files are committed under `docs/schema/`, one self-contained schema per file
//! (its subschemas under `$defs`) plus `index.json` naming the file of each method.
//! Params are described as the server reads them (aliases, defaults, refused unknown
//! fields), results and notifications as it writes them. The test `schema` of this crate
//! fails when the committed files differ from [`files`]; it rewrites them when run with
//! `CODEBEAKER_BLESS=1`:
//!
//! ```text
//! CODEBEAKER_BLESS=1 cargo test -p codebeaker-server --test schema
//! ```

use codebeaker::{CommandOutcome, ProcessExit, SessionConfig};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};
use serde_json::{json, Map, Value};

use crate::protocol::{
    CloseParams, ExecuteParams, ListParams, OutputNotification, ProcessAttachParams, ProcessAttached, ProcessDone,
    ProcessExitNotification, ProcessList, ProcessListParams, ProcessOutputNotification, ProcessParams,
    ProcessResizeParams, ProcessSignalParams, ProcessStartParams, ProcessStarted, ProcessWaitParams,
    ProcessWriteParams, RunParams, SessionClosed, SessionCreated, SessionForked, SessionList, SessionParams,
    SessionPaused, SnapshotDeleteParams, SnapshotDeleted, SnapshotList, SnapshotListParams, SnapshotTaken,
};
use crate::rpc::RpcError;

/// Where the files live, relative to the repository root.
pub const DIRECTORY: &str = "docs/schema";

/// The command that rewrites the files.
pub const REGENERATE: &str = "CODEBEAKER_BLESS=1 cargo test -p codebeaker-server --test schema";

/// What a schema file describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// A method's `params`.
    Params,
    /// A method's `result`.
    Result,
    /// A notification's `params`.
    Notification,
}

/// One shape on the wire: a part of a method and the schema generating it.
struct Shape {
    method: &'static str,
    part: Part,
    schema: fn() -> Schema,
}

const fn shape(method: &'static str, part: Part, schema: fn() -> Schema) -> Shape {
    Shape { method, part, schema }
}

/// Every shape on the wire.
const SHAPES: &[Shape] = &[
    shape("session.create", Part::Params, read::<SessionConfig>),
    shape("session.create", Part::Result, written::<SessionCreated>),
    shape("session.execute", Part::Params, read::<ExecuteParams>),
    shape("session.execute", Part::Result, written::<CommandOutcome>),
    shape("session.list", Part::Params, read::<ListParams>),
    shape("session.list", Part::Result, written::<SessionList>),
    shape("session.close", Part::Params, read::<CloseParams>),
    shape("session.close", Part::Result, written::<SessionClosed>),
    shape("execution.run", Part::Params, read::<RunParams>),
    shape("execution.run", Part::Result, written::<CommandOutcome>),
    shape("session.output", Part::Notification, written::<OutputNotification>),
    shape("process.start", Part::Params, read::<ProcessStartParams>),
    shape("process.start", Part::Result, written::<ProcessStarted>),
    shape("process.list", Part::Params, read::<ProcessListParams>),
    shape("process.list", Part::Result, written::<ProcessList>),
    shape("process.attach", Part::Params, read::<ProcessAttachParams>),
    shape("process.attach", Part::Result, written::<ProcessAttached>),
    shape("process.write", Part::Params, read::<ProcessWriteParams>),
    shape("process.write", Part::Result, written::<ProcessDone>),
    shape("process.closeStdin", Part::Params, read::<ProcessParams>),
    shape("process.closeStdin", Part::Result, written::<ProcessDone>),
    shape("process.resize", Part::Params, read::<ProcessResizeParams>),
    shape("process.resize", Part::Result, written::<ProcessDone>),
    shape("process.signal", Part::Params, read::<ProcessSignalParams>),
    shape("process.signal", Part::Result, written::<ProcessDone>),
    shape("process.wait", Part::Params, read::<ProcessWaitParams>),
    shape("process.wait", Part::Result, written::<ProcessExit>),
    shape("session.pause", Part::Params, read::<SessionParams>),
    shape("session.pause", Part::Result, written::<SessionPaused>),
    shape("session.resume", Part::Params, read::<SessionParams>),
    shape("session.resume", Part::Result, written::<SessionPaused>),
    shape("session.snapshot", Part::Params, read::<SessionParams>),
    shape("session.snapshot", Part::Result, written::<SnapshotTaken>),
    shape("session.fork", Part::Params, read::<SessionParams>),
    shape("session.fork", Part::Result, written::<SessionForked>),
    shape("snapshot.list", Part::Params, read::<SnapshotListParams>),
    shape("snapshot.list", Part::Result, written::<SnapshotList>),
    shape("snapshot.delete", Part::Params, read::<SnapshotDeleteParams>),
    shape("snapshot.delete", Part::Result, written::<SnapshotDeleted>),
    shape("process.output", Part::Notification, written::<ProcessOutputNotification>),
    shape("process.exit", Part::Notification, written::<ProcessExitNotification>),
];

/// The file of the error object (`error` of every error response).
const ERROR_FILE: &str = "error.json";

/// Every file of `docs/schema/`: `(file name, content)`, the content as it is committed
/// (pretty JSON, ending in a newline).
pub fn files() -> Vec<(String, String)> {
    let mut files = Vec::with_capacity(SHAPES.len() + 2);
    let mut methods = Map::new();
    let mut notifications = Map::new();
    for Shape { method, part, schema } in SHAPES {
        let (index, key) = match part {
            Part::Params => (&mut methods, "params"),
            Part::Result => (&mut methods, "result"),
            Part::Notification => (&mut notifications, "params"),
        };
        let file = format!("{method}.{key}.json");
        let entry = index.entry(*method).or_insert_with(|| json!({}));
        entry[key] = Value::String(file.clone());
        files.push((file, text(&schema().to_value())));
    }
    files.push((ERROR_FILE.to_owned(), text(&written::<RpcError>().to_value())));
    let index = json!({
        "$comment": format!("Generated from the Rust types; regenerate with `{REGENERATE}`."),
        "description": "The JSON Schema (draft 2020-12) files of the CodeBeaker JSON-RPC protocol \
                        (docs/protocol.md): each method's params and result, each notification's \
                        params, and the error object of every error response.",
        "methods": methods,
        "notifications": notifications,
        "error": ERROR_FILE,
    });
    files.push(("index.json".to_owned(), text(&index)));
    files
}

/// The schema of `T` as the server reads it (params).
fn read<T: JsonSchema>() -> Schema {
    root::<T>(SchemaSettings::draft2020_12().for_deserialize())
}

/// The schema of `T` as the server writes it (results, notifications, errors).
fn written<T: JsonSchema>() -> Schema {
    root::<T>(SchemaSettings::draft2020_12().for_serialize())
}

fn root<T: JsonSchema>(settings: SchemaSettings) -> Schema {
    let mut schema = settings.into_generator().into_root_schema_for::<T>();
    schema.insert("$comment".into(), format!("Generated from the Rust types; regenerate with `{REGENERATE}`.").into());
    schema
}

/// Pretty JSON with every object's keys sorted, so the files do not depend on whether
/// serde_json preserves insertion order in this build (a feature other crates may turn on).
fn text(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted(value)).unwrap_or_default();
    text.push('\n');
    text
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|key| (key.clone(), sorted(&object[key]))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}
