// The bootstrap of every session runtime. The files of `src/js/` are parts of this one
// module, concatenated in order (prelude, inspect, console, web, fetch, deno, main): one
// module with no import edges, so deno_core links nothing while the runtime starts.
//
// deno_core's internals, still on the global while the bootstrap runs (main removes them).
const core = globalThis.__bootstrap.core;
