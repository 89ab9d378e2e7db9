//! A second language: the official Python SDK (`apache-iggy` 0.8.0 from PyPI) drives a real
//! galgo-server through scripts/python/sdk_smoke.py (login, stream and topic, send, poll, a
//! consumer group). scripts/test.sh installs the SDK into its own virtual environment and
//! names its interpreter in `GALGO_PYTHON`; without it this test fails rather than pass
//! unchecked.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use support::TestServer;

/// Upper bound for the script (it bounds its own steps too).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn the_python_sdk_logs_in_sends_polls_and_consumes_as_a_group() {
    let python = std::env::var_os("GALGO_PYTHON").unwrap_or_else(|| {
        panic!(
            "GALGO_PYTHON is not set: run the suite with scripts/test.sh, which installs \
             apache-iggy 0.8.0 into a virtual environment and sets it"
        )
    });
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/python/sdk_smoke.py");
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
        "the Python SDK script failed ({}):\n{stdout}\n{stderr}\nserver logs:\n{}",
        output.status,
        server.logs()
    );
    assert!(
        stdout.contains("20 messages consumed by the group"),
        "{stdout}"
    );
}
