//! No non-test code of any crate decides anything by an error's message text: control
//! flow goes by [`codebeaker::ErrorKind`] (or a lower error's typed variant), and messages
//! are only for people. This scans the `src/` of every workspace crate, with test modules
//! (`#[cfg(test)]` items) and comments left out, for string matching on what reads like an
//! error's text.

use std::path::{Path, PathBuf};

/// Crates whose `src/` is scanned (the root package holds no library code).
const CRATES: [&str; 5] =
    ["codebeaker", "codebeaker-agent", "codebeaker-docker", "codebeaker-deno", "codebeaker-server"];

/// Sources that are tests in all but location; nothing else is exempt.
const ALLOWED: [(&str, &str); 2] = [
    ("codebeaker/src/conformance/", "the conformance suite: assertions other crates' tests run"),
    ("codebeaker/src/testing.rs", "the temp-dir test backend"),
];

/// Known single offences, each with the file and the text of the match. Keep this empty
/// or shrinking.
const KNOWN: [(&str, &str, &str); 1] = [(
    "codebeaker-server/src/backends.rs",
    "reason.find(",
    "`fix` of /health is read out of a backend's reason: backends should declare their fix",
)];

/// String methods that decide on text.
const MATCHERS: [&str; 9] = [
    ".contains(",
    ".starts_with(",
    ".ends_with(",
    ".find(",
    ".rfind(",
    ".strip_prefix(",
    ".strip_suffix(",
    ".matches(",
    " == \"",
];

/// Receivers that read like an error or its message.
const TEXTS: [&str; 11] = [
    "to_string()",
    "message()",
    "message",
    "msg",
    "reason",
    "err",
    "error",
    "e",
    "exception_message",
    "detail",
    "details",
];

/// `source` without comments, string literals blanked (kept as `""`, so `== "…"` stays
/// visible) and char literals blanked.
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &source[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |end| end + 2);
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].bytes().take_while(|b| *b == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            i += body + rest[body..].find(&close).map_or(rest.len() - body, |end| end + close.len());
            out.push_str("\"\"");
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() && rest.as_bytes()[j] != b'"' {
                j += if rest.as_bytes()[j] == b'\\' { 2 } else { 1 };
            }
            i += j + 1;
            out.push_str("\"\"");
        } else if let Some(len) = char_literal(rest) {
            i += len;
            out.push_str("' '");
        } else {
            let c = rest.chars().next().expect("not at the end");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The length of the char literal `rest` starts with (`'{'`, `'\n'`, `'\u{7f}'`), if it does.
fn char_literal(rest: &str) -> Option<usize> {
    let bytes = rest.as_bytes();
    if bytes.first() != Some(&b'\'') {
        return None;
    }
    if bytes.get(1) == Some(&b'\\') {
        return rest[2..].find('\'').map(|end| end + 3);
    }
    let c = rest[1..].chars().next()?;
    (rest[1 + c.len_utf8()..].starts_with('\'')).then_some(2 + c.len_utf8())
}

/// `code` without the items marked `#[cfg(test)]` (a test module, a test-only function).
fn without_tests(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let brace = item.find('{');
        let semicolon = item.find(';');
        let end = match (brace, semicolon) {
            (Some(open), Some(semi)) if semi < open => semi + 1,
            (Some(open), _) => {
                let mut depth = 0usize;
                let mut end = item.len();
                for (offset, c) in item[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = open + offset + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, Some(semi)) => semi + 1,
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Every place in `code` where a text-like receiver meets a string matcher.
fn text_matches(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for matcher in MATCHERS {
        for (at, _) in code.match_indices(matcher) {
            let before = &code[..at];
            let receiver = TEXTS.iter().find(|text| {
                before.ends_with(*text)
                    && !before[..before.len() - text.len()]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            if let Some(receiver) = receiver {
                let line = code[..at].lines().count();
                let shown = code[at..].lines().next().unwrap_or_default();
                found.push(format!("line ~{line}: {receiver}{shown}"));
            }
        }
    }
    found
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

#[test]
fn no_code_branches_on_error_text() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let mut files = Vec::new();
    for krate in CRATES {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    assert!(files.len() > 50, "the scan found the sources ({} files)", files.len());
    let mut offences = Vec::new();
    for file in files {
        let relative = file.strip_prefix(root).expect("under the root").to_string_lossy().into_owned();
        if ALLOWED.iter().any(|(prefix, _)| relative.starts_with(prefix)) {
            continue;
        }
        let source = std::fs::read_to_string(&file).expect("a UTF-8 source file");
        for offence in text_matches(&without_tests(&code_only(&source))) {
            if !KNOWN.iter().any(|(path, text, _)| relative == *path && offence.contains(text)) {
                offences.push(format!("{relative}: {offence}"));
            }
        }
    }
    assert!(offences.is_empty(), "code decides on error text; decide on ErrorKind instead:\n{}", offences.join("\n"));
}

#[test]
fn the_scan_sees_what_it_forbids_and_skips_tests_and_comments() {
    let bad = "fn f(e: Error) -> bool { e.to_string().contains(\"busy\") }";
    assert_eq!(text_matches(&without_tests(&code_only(bad))).len(), 1, "{bad}");
    let message = "if message.starts_with(\"InternalError\") {}";
    assert_eq!(text_matches(&code_only(message)).len(), 1);
    let equal = "err.to_string() == \"x\"";
    assert_eq!(text_matches(&code_only(equal)).len(), 1);
    let by_kind = "fn f(e: &Error) -> bool { e.kind() == ErrorKind::NotFound || name.ends_with(\"Error\") }";
    assert!(text_matches(&code_only(by_kind)).is_empty());
    let tested =
        "fn f() {}\n#[cfg(test)]\nmod tests { fn t(e: E) { assert!(e.to_string().contains('{')); } }\nfn g() {}";
    let kept = without_tests(&code_only(tested));
    assert!(text_matches(&kept).is_empty() && kept.contains("fn g()"), "{kept}");
    let commented = "// e.to_string().contains(\"x\")\n/* message.ends_with(\"y\") */";
    assert!(text_matches(&code_only(commented)).is_empty());
}
