//! Evidence for the thread isolation's memory growth: it is the engine's, not ours.
//!
//! Creates and drops bare `deno_core::JsRuntime`s (default options, none of CodeBeaker's
//! extensions), each on a fresh thread as the thread isolation does, and prints the bytes
//! the allocator still holds in use after each batch (`mallinfo2().uordblks`, so freed but
//! unreturned memory does not count). Then does the same on one thread, where the engine
//! stops starting after a few hundred runtimes.
//!
//! ```sh
//! cargo run --release -p codebeaker-deno --example engine_leak
//! ```
//!
//! The process isolation (the default) contains both: a session's runtime lives and dies
//! with its worker process.

const BATCH: usize = 100;
const BATCHES: usize = 4;

fn in_use_mib() -> f64 {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks as f64 / (1024.0 * 1024.0)
}

fn new_runtime() -> Result<(), deno_core::error::CoreError> {
    deno_core::JsRuntime::try_new(deno_core::RuntimeOptions::default()).map(drop)
}

fn main() {
    println!("bare deno_core runtimes, each created and dropped on a fresh thread:");
    let start = in_use_mib();
    for batch in 1..=BATCHES {
        for _ in 0..BATCH {
            std::thread::spawn(new_runtime).join().expect("thread").expect("runtime");
        }
        let held = in_use_mib() - start;
        println!(
            "  after {:>4} runtimes: {held:7.1} MiB still in use ({:.0} KiB per runtime)",
            batch * BATCH,
            held * 1024.0 / (batch * BATCH) as f64
        );
    }
    println!("the same on one thread:");
    for made in 0..BATCH * BATCHES {
        if let Err(error) = new_runtime() {
            println!("  runtime {} failed to start: {error}", made + 1);
            return;
        }
    }
    println!("  {} runtimes started", BATCH * BATCHES);
}
