//! Results and session infos of a real manager (on the temp-dir test backend) read back
//! from their JSON into the same types, as a client of the server reads them.

use codebeaker::testing::TempDirBackend;
use codebeaker::{
    Command, CommandOutcome, CommandResult, Error, ExecOptions, Language, ManagerConfig, SessionConfig, SessionInfo,
    SessionManager,
};

/// The outcome's JSON, as a client asking for `errorKinds` gets it, reads back into an
/// outcome whose JSON is the same.
fn read_back(outcome: &CommandOutcome) -> CommandOutcome {
    let json = serde_json::to_string(&outcome.with_kinds()).unwrap();
    let back: CommandOutcome = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), outcome.to_json(), "{json}");
    back
}

#[tokio::test]
async fn real_outcomes_and_session_infos_read_back_typed() {
    let manager = SessionManager::new(vec![TempDirBackend::new(&[Language::Python])], ManagerConfig::default());
    let id = manager.create(SessionConfig::new(Language::Python)).await.unwrap().session_id;
    let run = |command: Command| manager.execute(&id, command, ExecOptions::default());

    let printed = read_back(&run(Command::code("print 6\nwarn 7")).await.unwrap());
    assert_eq!(printed.output(), Some("6\n7"));
    assert!(printed.is_success());

    let thrown = read_back(&run(Command::code("print before\nthrow boom")).await.unwrap());
    assert_eq!(thrown.error(), Some(&Error::program_failed("Error: boom")));
    assert_eq!(thrown.output(), Some("before"));

    let written = read_back(&run(Command::write_file("a.txt", "abc").unwrap()).await.unwrap());
    assert_eq!(written.result().and_then(CommandResult::as_write_file).map(|w| w.bytes), Some(3));

    let read = read_back(&run(Command::read_file("a.txt").unwrap()).await.unwrap()).into_result().unwrap();
    assert_eq!(read.into_read_file().map(|r| r.content), Some("abc".to_owned()));

    let listed = read_back(&run(Command::list_directory(".").unwrap()).await.unwrap()).into_result().unwrap();
    let names: Vec<String> = listed.into_list_directory().unwrap().entries.into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["a.txt"]);

    let missing = read_back(&run(Command::read_file("missing.txt").unwrap()).await.unwrap());
    assert_eq!(missing.into_result(), Err(Error::not_found("/workspace/missing.txt")));

    let unsupported = read_back(&run(Command::shell("ls", Vec::<String>::new())).await.unwrap());
    assert_eq!(unsupported.error().map(Error::kind), Some(codebeaker::ErrorKind::Unsupported), "{unsupported:?}");

    let infos = manager.list();
    let json = serde_json::to_value(&infos).unwrap();
    let back: Vec<SessionInfo> = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), json);
    assert_eq!(back[0].session_id, id);
    assert_eq!(back[0].execution_count, infos[0].execution_count);
    assert_eq!(back[0].capabilities, infos[0].capabilities);
    manager.close(&id).await.unwrap();
}
