//! The three clients agree on names (the issue: "Typed Rust client and these two SDKs
//! agree on every name"): the Python SDK's exported names and methods are read from its
//! source and looked for in this crate's and, in camelCase, in the TypeScript SDK's, by
//! text, so renaming any side fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_owned()
}

fn read(path: impl AsRef<Path>) -> String {
    let path = repo().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The Rust sources of the `sandbox` module, all files.
fn sandbox_sources() -> String {
    let dir = repo().join("codebeaker-client/src/sandbox");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("src/sandbox").map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect::<Vec<_>>().join("\n")
}

/// The quoted names of `__all__` in the Python package's `__init__.py`.
fn python_all() -> Vec<String> {
    let init = read("clients/python/codebeaker/__init__.py");
    let start = init.find("__all__ = [").expect("__all__ in __init__.py");
    let end = start + init[start..].find(']').expect("the end of __all__");
    init[start..end].split('"').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The classes `errors.py` defines (the SDK's exceptions).
fn python_error_classes() -> BTreeSet<String> {
    let errors = read("clients/python/codebeaker/errors.py");
    errors
        .lines()
        .filter_map(|line| line.strip_prefix("class "))
        .map(|rest| rest.split(['(', ':']).next().unwrap().trim().to_owned())
        .collect()
}

/// The names the crate root re-exports from the `sandbox` module.
fn root_reexports() -> BTreeSet<String> {
    let lib = read("codebeaker-client/src/lib.rs");
    let start = lib.find("pub use crate::sandbox::{").expect("the sandbox re-export in lib.rs");
    let end = start + lib[start..].find("};").expect("the end of the re-export");
    lib[start + "pub use crate::sandbox::{".len()..end]
        .split(',')
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Python-only names: the asyncio flavours of classes that are async here anyway.
const PYTHON_ONLY: [&str; 2] = ["AsyncSandbox", "AsyncCommandHandle"];

/// Each Python exception and what stands for it in `error.rs`.
const ERRORS: [(&str, &str); 6] = [
    ("CodeBeakerError", "pub enum ClientError"),
    ("TimeoutError", "pub fn is_timeout("),
    ("SessionNotFoundError", "pub fn is_session_not_found("),
    ("AuthenticationError", "    Authentication,"),
    ("RateLimitedError", "pub fn is_rate_limited("),
    ("CommandExitError", "    CommandExit {"),
];

#[test]
fn every_exported_python_type_is_a_public_type_of_this_crate() {
    let all = python_all();
    assert!(all.len() >= 10, "__all__ read as {all:?}");
    let errors = python_error_classes();
    let sources = sandbox_sources();
    let reexported = root_reexports();
    let types: Vec<_> =
        all.iter().filter(|n| !PYTHON_ONLY.contains(&n.as_str()) && !errors.contains(n.as_str())).collect();
    assert!(types.iter().any(|n| *n == "ExecutionError"), "a model, not an exception: {types:?}");
    for name in types {
        assert!(sources.contains(&format!("pub struct {name} ")), "no `pub struct {name}` in src/sandbox/");
        // `Result` would shadow the crate's result alias: it stays `sandbox::Result`.
        if name != "Result" {
            assert!(reexported.contains(name.as_str()), "{name} is not re-exported at the crate root: {reexported:?}");
        }
    }
    for name in PYTHON_ONLY {
        assert!(all.iter().any(|n| n == name), "{name} left __all__: update PYTHON_ONLY");
    }
}

#[test]
fn every_python_exception_maps_to_a_client_error() {
    let errors = python_error_classes();
    let mapped: BTreeSet<String> = ERRORS.iter().map(|(python, _)| python.to_string()).collect();
    assert_eq!(errors, mapped, "errors.py's classes and this test's table differ");
    let all = python_all();
    let rust = read("codebeaker-client/src/error.rs");
    for (python, here) in ERRORS {
        assert!(all.iter().any(|n| n == python), "{python} is not exported by the Python SDK");
        assert!(rust.contains(here), "{python}: no `{here}` in error.rs");
        // The crate docs name the mapping.
        assert!(rust.contains(&format!("`{python}`")), "error.rs's docs do not map {python}");
    }
}

/// Methods and attributes of the Python SDK, and the Rust functions of the same name.
/// (Python name first: where Rust splits one Python call, e.g. `run(background=True)`
/// into `run_background`, both are listed.)
const METHODS: [(&str, &str); 25] = [
    ("create", "create"),
    ("connect", "connect"),
    ("session_id", "session_id"),
    ("run_code", "run_code"),
    ("commands", "commands"),
    ("files", "files"),
    ("pty", "pty"),
    ("is_running", "is_running"),
    ("close", "close"),
    ("run", "run"),
    ("run", "run_background"),
    ("list", "list"),
    ("kill", "kill"),
    ("wait", "wait"),
    ("send_stdin", "send_stdin"),
    ("close_stdin", "close_stdin"),
    ("resize", "resize"),
    ("disconnect", "disconnect"),
    ("write", "write"),
    ("read", "read"),
    ("remove", "remove"),
    ("make_dir", "make_dir"),
    ("exists", "exists"),
    ("upload", "upload"),
    ("download", "download"),
];

#[test]
fn the_python_methods_have_rust_functions_of_the_same_name() {
    let python = read("clients/python/codebeaker/_async.py");
    let rust = sandbox_sources();
    for (py, rs) in METHODS {
        let defined = python.contains(&format!("def {py}("))
            || python.contains(&format!("self.{py}:"))
            || python.contains(&format!("self.{py} ="));
        assert!(defined, "the Python SDK has no method or attribute `{py}`");
        let found = rust.contains(&format!("pub fn {rs}("))
            || rust.contains(&format!("pub async fn {rs}("))
            || rust.contains(&format!("pub fn {rs}<"))
            || rust.contains(&format!("pub async fn {rs}<"));
        assert!(found, "src/sandbox/ has no `pub fn {rs}` or `pub async fn {rs}` (Python: `{py}`)");
    }
}

/// `snake_case` as the TypeScript SDK spells it.
fn camel(name: &str) -> String {
    let mut parts = name.split('_');
    let first = parts.next().unwrap_or_default().to_owned();
    parts.fold(first, |mut out, part| {
        let mut chars = part.chars();
        if let Some(c) = chars.next() {
            out.extend(c.to_uppercase());
            out.push_str(chars.as_str());
        }
        out
    })
}

#[test]
fn the_typescript_sdk_has_the_python_names_in_camel_case() {
    let typescript = read("clients/typescript/src/index.ts");
    for (py, _) in METHODS {
        let name = camel(py);
        let found = [format!(" {name}("), format!("readonly {name}:"), format!(" {name}<")]
            .iter()
            .any(|form| typescript.contains(form.as_str()));
        assert!(found, "the TypeScript SDK has no `{name}` (Python: `{py}`)");
    }
    let errors = python_error_classes();
    for class in &errors {
        assert!(typescript.contains(&format!("export class {class} ")), "the TypeScript SDK has no class {class}");
    }
    for name in python_all().iter().filter(|n| !PYTHON_ONLY.contains(&n.as_str()) && !errors.contains(n.as_str())) {
        let exported = typescript.contains(&format!("export interface {name} "))
            || typescript.contains(&format!("export class {name} "));
        assert!(exported, "the TypeScript SDK exports no `{name}`");
    }
}
