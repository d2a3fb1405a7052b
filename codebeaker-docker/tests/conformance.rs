//! The core conformance suite against python sessions on the real engine.

mod common;

use std::sync::Arc;

use codebeaker::conformance::{Programs, Suite};
use codebeaker::{Backend, Language};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_passes_the_conformance_suite() {
    let Some(backend) = common::backend("conformance", 1).await else { return };
    let programs = Programs {
        hello: "print('hello from codebeaker')".into(),
        fails: "print('partial', flush=True)\nraise ValueError('boom')".into(),
        spins: "while True: pass".into(),
        counts: "import time\nfor i in range(1, 6):\n    print(f'line {i}', flush=True)\n    time.sleep(0.05)".into(),
        define_state: "def answer():\n    return 42".into(),
        use_state: "print(answer())".into(),
        // A trailing value with an HTML representation, as notebooks show tables.
        rich: Some("class Table:\n    def _repr_html_(self):\n        return '<b>42</b>'\nTable()".into()),
    };
    let suite = Arc::new(Suite::new(backend.clone() as Arc<dyn Backend>, Language::Python, programs));
    // The checks are independent: run them side by side to keep CI fast. `lifecycle` and
    // `one_shot` compare live-sandbox counts, so they run after the others.
    let s = suite.clone();
    tokio::join!(
        s.write_and_read(),
        s.directories_and_copies(),
        s.missing_files_and_escapes(),
        s.execute_code(),
        s.streaming(),
        s.timeouts(),
        s.capabilities_reported(),
        s.shell(),
        s.stdin(),
        s.persistent_state(),
        s.rich_outputs(),
        s.isolation(),
    );
    suite.lifecycle().await;
    suite.one_shot().await;
    common::finish(backend).await;
}
