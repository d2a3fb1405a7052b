//! `execute_code` as agents use it: REPL globals, top-level await, imports of workspace
//! files, Deno-style console formatting, errors, the web globals.

mod common;

use codebeaker::Command;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn globals_persist_across_cells_like_a_repl() {
    let (_root, _backend, manager) = manager();
    let id = session(&manager).await;
    output(&manager, &id, "const base: number = 40;\nlet counter = 0;\nfunction bump() { return ++counter; }\nclass Point { constructor(public x: number) {} }").await;
    assert_eq!(output(&manager, &id, "bump(); console.log(base + bump(), new Point(3).x)").await, "42 3");
    // A cell with top-level await publishes its declarations too.
    output(
        &manager,
        &id,
        "const later = await Promise.resolve('awaited');\nasync function twice(n: number) { return n * 2; }",
    )
    .await;
    assert_eq!(output(&manager, &id, "console.log(later, await twice(21), counter)").await, "awaited 42 2");
    // Running a corrected cell again re-declares its names, as in Deno's REPL.
    assert_eq!(
        output(&manager, &id, "const base = 1; let counter = 10; class Point {}; console.log(base, counter)").await,
        "1 10"
    );
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn workspace_modules_import_each_other() {
    let (_root, _backend, manager) = manager();
    let id = session(&manager).await;
    for (path, content) in [
        ("lib/math.ts", "export const square = (n: number): number => n * n;\nexport default 'math';"),
        ("lib/data.json", "{\"answer\": 42}"),
        (
            "main.ts",
            "import name, { square } from './lib/math.ts';\nexport const result: string = `${name}:${square(7)}`;",
        ),
    ] {
        assert!(command(&manager, &id, Command::write_file(path, content).unwrap()).await.success);
    }
    assert_eq!(output(&manager, &id, "import { result } from './main.ts';\nconsole.log(result)").await, "math:49");
    assert_eq!(
        output(&manager, &id, "const m = await import('/workspace/lib/math.ts'); console.log(m.square(3), m.default)")
            .await,
        "9 math"
    );
    assert_eq!(
        output(&manager, &id, "import data from './lib/data.json' with { type: 'json' };\nconsole.log(data.answer)")
            .await,
        "42"
    );
    let missing = error(&manager, &id, "await import('./nope.ts')").await;
    assert!(missing.contains("nope.ts"), "{missing}");
    let remote = error(&manager, &id, "await import('https://deno.land/std/mod.ts')").await;
    assert!(remote.contains("Unsupported scheme"), "{remote}");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_module_is_imported_afresh() {
    // The agent loop: import a file that throws, fix the file, import it again.
    let (_root, _backend, manager) = manager();
    let id = session(&manager).await;
    let write = |content: &str| command(&manager, &id, Command::write_file("stats.ts", content).unwrap());
    write("const values = [1, 2, 3];\nexport const mean = values.length / value.length;").await;
    let failed = error(&manager, &id, "await import('./stats.ts')").await;
    assert!(failed.contains("value is not defined"), "{failed}");
    write("const values = [1, 2, 3];\nexport const mean = values.reduce((a, b) => a + b) / values.length;").await;
    assert_eq!(output(&manager, &id, "const m = await import('./stats.ts'); console.log(m.mean)").await, "2");
    // Unchanged content is the same module, as ES modules are: its state is shared.
    write("export let hits = 0;\nexport function hit() { return ++hits; }").await;
    output(&manager, &id, "(await import('./stats.ts')).hit()").await;
    assert_eq!(output(&manager, &id, "console.log((await import('./stats.ts')).hit())").await, "2");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn console_formats_values_like_deno() {
    let (_root, _backend, manager) = manager();
    let id = session(&manager).await;
    let cases = [
        ("console.log('text', 1, true, null, undefined)", "text 1 true null undefined"),
        ("console.log({ a: 1, b: 'x', c: [1, 2, 3] })", "{ a: 1, b: \"x\", c: [ 1, 2, 3 ] }"),
        ("console.log([])", "[]"),
        ("console.log({})", "{}"),
        ("console.log(new Map([['k', 1]]), new Set([1, 2]))", "Map(1) { \"k\" => 1 } Set(2) { 1, 2 }"),
        ("console.log(function named() {}, () => 1, class A {})", "[Function: named] [Function (anonymous)] [class A]"),
        ("console.log(10n, Symbol('s'), -0)", "10n Symbol(s) -0"),
        ("console.log({ a: { b: { c: { d: { e: { f: 1 } } } } } })", "{\n  a: {\n    b: { c: { d: { e: [Object] } } }\n  }\n}"),
        ("console.log({ a: { b: { c: { d: { e: 1 } } } } })", "{\n  a: {\n    b: { c: { d: { e: 1 } } }\n  }\n}"),
        (
            "console.log(Array.from({ length: 30 }, (_, i) => i))",
            "[\n   0,  1,  2,  3,  4,  5,  6,  7,  8,\n   9, 10, 11, 12, 13, 14, 15, 16, 17,\n  18, 19, 20, 21, 22, 23, 24, 25, 26,\n  27, 28, 29\n]",
        ),
        ("console.log({ s: \"it's\" })", "{ s: \"it's\" }"),
        (
            "const o: any = { name: 'loop' }; o.self = o; console.log(o)",
            "<ref *1> { name: \"loop\", self: [Circular *1] }",
        ),
        ("console.log('%s is %d years', 'Bob', 42)", "Bob is 42 years"),
        ("console.log(new Uint8Array([1, 2]))", "Uint8Array(2) [ 1, 2 ]"),
        ("console.log(new Date(0))", "1970-01-01T00:00:00.000Z"),
        ("console.log([undefined, , 3])", "[ undefined, <1 empty item>, 3 ]"),
        ("console.log({ 'a-b': 1 })", "{ \"a-b\": 1 }"),
        ("console.log(Promise.resolve(4))", "Promise { 4 }"),
    ];
    for (code, expected) in cases {
        assert_eq!(output(&manager, &id, code).await, expected, "{code}");
    }
    let long = output(
        &manager,
        &id,
        "console.log({ alpha: 'aaaaaaaaaaaaaaaa', beta: 'bbbbbbbbbbbbbbbb', gamma: 'cccccccccccccccc', delta: 1 })",
    )
    .await;
    assert_eq!(long, "{\n  alpha: \"aaaaaaaaaaaaaaaa\",\n  beta: \"bbbbbbbbbbbbbbbb\",\n  gamma: \"cccccccccccccccc\",\n  delta: 1\n}");
    let streams =
        run(&manager, &id, "console.log('out'); console.error('err'); console.warn('warn'); console.info('info')")
            .await;
    let Some(codebeaker::CommandResult::ExecuteCode(result)) = &streams.result else { panic!("{streams:?}") };
    assert_eq!(result.output, "out\nerr\nwarn\ninfo");
    assert_eq!((result.stdout.as_str(), result.stderr.as_str()), ("out\ninfo\n", "err\nwarn\n"));
    let error = output(&manager, &id, "console.log(new TypeError('bad'))").await;
    assert!(error.starts_with("TypeError: bad"), "{error}");
    manager.close(&id).await.unwrap();
}

/// Output of `deno run` (Deno 2.9.8, `NO_COLOR=1`) for the same code, byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn nested_and_long_values_break_lines_as_deno_does() {
    let (_root, _backend, manager) = manager();
    let id = session(&manager).await;
    let code = r#"console.log({ a: { b: { c: { d: { e: { f: 1 } } } } } });
console.log([1,2,3,4,5,6,7]);
console.log(['apple', 'banana', 'cherry', 'date', 'elderberry', 'fig', 'grape', 'honeydew']);
console.log({ users: [{ name: 'Alice', age: 30 }, { name: 'Bob', age: 25 }], total: 2 });
console.log([[1, 2], [3, 4]]);
console.log(new Array(150).fill(0));
console.log({ s: 'a"b' }, ["x'y\"z"]);"#;
    let expected = r#"{
  a: {
    b: { c: { d: { e: [Object] } } }
  }
}
[
  1, 2, 3, 4,
  5, 6, 7
]
[
  "apple",
  "banana",
  "cherry",
  "date",
  "elderberry",
  "fig",
  "grape",
  "honeydew"
]
{
  users: [ { name: "Alice", age: 30 }, { name: "Bob", age: 25 } ],
  total: 2
}
[ [ 1, 2 ], [ 3, 4 ] ]
[
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0,
  ... 50 more items
]
{ s: 'a"b' } [ `x'y"z` ]"#;
    assert_eq!(output(&manager, &id, code).await, expected);
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn thrown_errors_fail_with_name_and_message() {
    let (_root, _backend, manager) = manager();
    let id = session(&manager).await;
    assert_eq!(error(&manager, &id, "console.log('before'); throw new TypeError('boom')").await, "TypeError: boom");
    assert_eq!(error(&manager, &id, "undefinedVariable + 1").await, "ReferenceError: undefinedVariable is not defined");
    assert_eq!(error(&manager, &id, "await Promise.reject(new RangeError('late'))").await, "RangeError: late");
    assert!(error(&manager, &id, "throw 'plain string'").await.contains("plain string"));
    let syntax = error(&manager, &id, "let x = ;").await;
    assert!(syntax.starts_with("SyntaxError"), "{syntax}");
    let in_timer = error(&manager, &id, "setTimeout(() => { throw new Error('in timer') }, 1)").await;
    assert!(in_timer.contains("in timer"), "{in_timer}");
    assert_eq!(output(&manager, &id, "console.log('still fine')").await, "still fine");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn web_globals_agents_expect_are_there() {
    let (_root, _backend, manager) = manager();
    let id = session(&manager).await;
    let code = r#"
const bytes = new TextEncoder().encode('héllo');
console.log(bytes.length, new TextDecoder().decode(bytes));
const url = new URL('/path/x?q=1#frag', 'https://example.com:8443');
console.log(url.href, url.host, url.pathname, url.searchParams.get('q'), url.hash);
url.searchParams.set('q', 'two words');
console.log(url.search);
console.log(JSON.stringify(structuredClone({ a: [1, { b: 2 }] })));
await new Promise((resolve) => setTimeout(resolve, 20));
let ticks = 0;
await new Promise((resolve) => { const t = setInterval(() => { if (++ticks === 3) { clearInterval(t); resolve(null); } }, 1); });
console.log('ticks', ticks, typeof queueMicrotask, Deno.cwd());
"#;
    assert_eq!(
        output(&manager, &id, code).await,
        "6 héllo\nhttps://example.com:8443/path/x?q=1#frag example.com:8443 /path/x 1 #frag\n?q=two+words\n{\"a\":[1,{\"b\":2}]}\nticks 3 function /workspace"
    );
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn output_is_capped_and_streamed() {
    let (_root, _backend, manager) = manager();
    let id = session(&manager).await;
    let flood =
        run(&manager, &id, "const line = 'x'.repeat(1000); for (let i = 0; i < 3000; i++) console.log(line)").await;
    let Some(codebeaker::CommandResult::ExecuteCode(result)) = &flood.result else { panic!("{flood:?}") };
    let limit = manager.config().output_limit;
    assert!(result.truncated && result.stdout.len() == limit, "capped at {limit}: {} bytes", result.stdout.len());
    manager.close(&id).await.unwrap();
}
