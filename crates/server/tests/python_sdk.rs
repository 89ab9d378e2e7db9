//! A second language: the official Python SDK of both client generations drives a real
//! galgo-server through a smoke script (login, stream and topic, send, poll, a consumer group):
//! `apache-iggy` 0.8.0 (classic framing) runs scripts/python/sdk_smoke.py, and `apache-iggy`
//! 0.9.0 (VSR framing, PROTOCOL-0.9.md) runs scripts/python/sdk_smoke_next.py. scripts/test.sh
//! installs each into a virtual environment of its own and names their interpreters in
//! `GALGO_PYTHON` and `GALGO_PYTHON_NEXT`; without them these tests fail rather than pass
//! unchecked.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use support::TestServer;

/// Upper bound for a script (it bounds its own steps too).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `script` (under scripts/python/) with the interpreter named in `variable` against a
/// fresh server, and asserts it succeeded and printed `marker`.
fn run_smoke_script(variable: &str, sdk: &str, script: &str, marker: &str) {
    let python = std::env::var_os(variable).unwrap_or_else(|| {
        panic!(
            "{variable} is not set: run the suite with scripts/test.sh, which installs \
             {sdk} into a virtual environment and sets it"
        )
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/python")
        .join(script);
    let server = TestServer::start(&[]);
    let mut command = Command::new(python);
    command.arg(&script).arg(server.addr.to_string());
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(command.output());
    });
    let output = finished
        .recv_timeout(SCRIPT_TIMEOUT)
        .expect("the Python script finished in time")
        .expect("run the Python interpreter");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the {sdk} script failed ({}):\n{stdout}\n{stderr}\nserver logs:\n{}",
        output.status,
        server.logs()
    );
    assert!(stdout.contains(marker), "{stdout}");
}

#[test]
fn the_python_sdk_logs_in_sends_polls_and_consumes_as_a_group() {
    run_smoke_script(
        "GALGO_PYTHON",
        "apache-iggy 0.8.0",
        "sdk_smoke.py",
        "20 messages consumed by the group",
    );
}

#[test]
fn the_python_sdk_of_the_0_9_generation_does_the_same() {
    run_smoke_script(
        "GALGO_PYTHON_NEXT",
        "apache-iggy 0.9.0",
        "sdk_smoke_next.py",
        "python sdk 0.9: 20 messages consumed by the group",
    );
}
