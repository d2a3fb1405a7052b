//! The core conformance suite against every Docker language on the real engine: the
//! same file commands, ranges, appends and streamed transfers (through the agent) in
//! python, javascript, go and csharp sessions.

mod common;

use std::sync::Arc;

use codebeaker::conformance::{Programs, Suite};
use codebeaker::{Backend, Language};

fn python() -> Programs {
    Programs {
        hello: "print('hello from codebeaker')".into(),
        fails: "print('partial', flush=True)\nraise ValueError('boom')".into(),
        spins: "while True: pass".into(),
        counts: "import time\nfor i in range(1, 6):\n    print(f'line {i}', flush=True)\n    time.sleep(0.05)".into(),
        define_state: "def answer():\n    return 42".into(),
        use_state: "print(answer())".into(),
        // A trailing value with an HTML representation, as notebooks show tables.
        rich: Some("class Table:\n    def _repr_html_(self):\n        return '<b>42</b>'\nTable()".into()),
    }
}

fn javascript() -> Programs {
    Programs {
        hello: "console.log('hello from codebeaker')".into(),
        fails: "console.log('partial');\nthrow new Error('boom');".into(),
        spins: "while (true) {}".into(),
        counts: "for (let i = 1; i <= 5; i++) { console.log(`line ${i}`); const end = Date.now() + 50; while (Date.now() < end) {} }".into(),
        define_state: "function answer() { return 42; }".into(),
        use_state: "console.log(answer())".into(),
        rich: None,
    }
}

fn go() -> Programs {
    Programs {
        hello: "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hello from codebeaker\") }".into(),
        fails: "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"partial\"); panic(\"boom\") }".into(),
        spins: "package main\nfunc main() { for {} }".into(),
        counts: "package main\nimport (\"fmt\"; \"time\")\nfunc main() { for i := 1; i <= 5; i++ { fmt.Printf(\"line %d\\n\", i); time.Sleep(50 * time.Millisecond) } }".into(),
        define_state: "package main\nfunc answer() int { return 42 }\nfunc main() {}".into(),
        use_state: "package main\nimport \"fmt\"\nfunc main() { fmt.Println(answer()) }".into(),
        rich: None,
    }
}

fn csharp() -> Programs {
    Programs {
        hello: "class P { static void Main() { System.Console.WriteLine(\"hello from codebeaker\"); } }".into(),
        fails: "class P { static void Main() { System.Console.WriteLine(\"partial\"); throw new System.Exception(\"boom\"); } }".into(),
        spins: "class P { static void Main() { while (true) {} } }".into(),
        counts: "class P { static void Main() { for (int i = 1; i <= 5; i++) { System.Console.WriteLine(\"line \" + i); System.Console.Out.Flush(); System.Threading.Thread.Sleep(50); } } }".into(),
        define_state: "class A { public static int Answer() { return 42; } }\nclass P { static void Main() {} }".into(),
        use_state: "class P { static void Main() { System.Console.WriteLine(A.Answer()); } }".into(),
        rich: None,
    }
}

async fn passes(language: Language, programs: Programs) {
    let owner = format!("conformance-{language}");
    let Some(backend) = common::backend(&owner, 1).await else { return };
    let suite = Arc::new(Suite::new(backend.clone() as Arc<dyn Backend>, language, programs));
    // The checks are independent: run them side by side to keep CI fast. `lifecycle` and
    // `one_shot` compare live-sandbox counts, so they run after the others.
    let s = suite.clone();
    tokio::join!(
        s.write_and_read(),
        s.ranges_and_appends(),
        s.file_streams(),
        s.directories_and_copies(),
        s.missing_files_and_escapes(),
        s.execute_code(),
        s.streaming(),
        s.timeouts(),
        s.capabilities_reported(),
        s.shell(),
        s.processes(),
        s.stdin(),
        s.persistent_state(),
        s.rich_outputs(),
        s.isolation(),
        s.pause_and_snapshots(),
    );
    suite.lifecycle().await;
    suite.one_shot().await;
    common::finish(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_passes_the_conformance_suite() {
    passes(Language::Python, python()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn javascript_passes_the_conformance_suite() {
    passes(Language::JavaScript, javascript()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn go_passes_the_conformance_suite() {
    passes(Language::Go, go()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn csharp_passes_the_conformance_suite() {
    passes(Language::CSharp, csharp()).await;
}
