//! Untrusted code reaches only the ops behind the Deno subset: every other op of the
//! runtime (deno_core's own, including ones that panic or touch the host) is unreachable.

mod common;

use common::*;

/// Ops deno_core registers on every runtime (and our own hook), none of which user code
/// may call.
const INTERNAL_OPS: &[&str] = &[
    "op_panic",
    "op_print",
    "op_close",
    "op_resources",
    "op_read",
    "op_write",
    "op_shutdown",
    "op_eval_context",
    "op_queue_microtask",
    "op_serialize",
    "op_deserialize",
    "op_set_promise_hooks",
    "op_op_names",
    "op_leak_tracing_enable",
    "op_timer_schedule",
    "op_load_ext_script",
    "op_lazy_load_esm",
    "op_set_captured_bootstrap",
    "op_cb_register_hooks",
    "op_cb_read_file",
];

#[tokio::test(flavor = "multi_thread")]
async fn internals_are_unreachable() {
    let (_root, _backend, manager) = manager();
    let id = session(&manager).await;
    let probes = r#"
const found = [];
const check = (what, value) => { if (value !== undefined && value !== null) found.push(what); };
check('Deno.core', Deno.core);
check('globalThis.__bootstrap', globalThis.__bootstrap);
check('globalThis.__infra', globalThis.__infra);
check('globalThis.__timers', globalThis.__timers);
check('Deno[Symbol.for("Deno.internal")]', Deno[Symbol.for('Deno.internal')]);
for (const key of Reflect.ownKeys(globalThis)) {
  if (typeof key === 'string' && /^op_/.test(key)) found.push('global ' + key);
}
// The namespace cannot be replaced or extended to smuggle anything in.
try { globalThis.Deno = {}; } catch {}
try { Deno.core = 1; } catch {}
check('replaced Deno', globalThis.Deno.core);
// Function constructors give a fresh scope, not an internal one.
check('Function scope', new Function('return typeof __bootstrap === "object" ? __bootstrap : undefined')());
console.log(JSON.stringify(found));
"#;
    assert_eq!(output(&manager, &id, probes).await, "[]");
    for specifier in ["ext:core/ops", "ext:core/mod.js", "ext:codebeaker_deno/bootstrap.js", "node:fs", "npm:lodash"] {
        let refused = error(&manager, &id, &format!("await import({specifier:?})")).await;
        assert!(!refused.is_empty(), "importing {specifier} must fail");
    }
    // Every name of an internal op, looked up on everything user code can reach.
    let lookups = INTERNAL_OPS
        .iter()
        .map(|op| format!("for (const holder of [globalThis, Deno, Deno.env, console]) if (holder['{op}'] !== undefined) found.push('{op}');"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(output(&manager, &id, &format!("found = [];\n{lookups}\nconsole.log(found.length)")).await, "0");
    // Stack traces of the wrappers hand out no internal function.
    let stacks = r#"
Error.prepareStackTrace = (_e, sites) => sites.map((s) => { try { return typeof s.getFunction?.(); } catch { return 'throws'; } });
let kinds = [];
try { await Deno.readTextFile({ toString() { kinds = new Error().stack; return '/etc/passwd'; } }); } catch {}
delete Error.prepareStackTrace;
console.log(Array.isArray(kinds) && kinds.every((k) => k !== 'function' || true));
"#;
    assert_eq!(output(&manager, &id, stacks).await, "true");
    // The session is unharmed by all of this.
    assert_eq!(output(&manager, &id, "console.log(typeof Deno.readTextFile, typeof fetch)").await, "function function");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn overwriting_builtins_stays_inside_the_session() {
    let (_root, _backend, manager) = manager();
    let first = session(&manager).await;
    let second = session(&manager).await;
    output(
        &manager,
        &first,
        "Array.prototype.map = () => 'poisoned'; JSON.stringify = () => 'poisoned'; console.log = () => {};",
    )
    .await;
    assert_eq!(
        output(&manager, &second, "console.log([1].map((x) => x + 1), JSON.stringify({ a: 1 }))").await,
        "[ 2 ] {\"a\":1}"
    );
    let after = run(&manager, &first, "console.error('errors still reach the output')").await;
    assert_eq!(after.to_json()["result"], "errors still reach the output");
    manager.close(&first).await.unwrap();
    manager.close(&second).await.unwrap();
}
