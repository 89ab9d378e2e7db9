//! Runs the `galgo` binary against a [`GalgoServer`] with a private config dir, so no test
//! sees the user's session or another test's.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

use super::galgo_server::GalgoServer;

/// Environment variables of the CLI that must not leak in from the machine running the tests.
const CLI_ENV: [&str; 8] = [
    "GALGO_URL",
    "GALGO_ADDRESS",
    "GALGO_TRANSPORT",
    "GALGO_USERNAME",
    "GALGO_PASSWORD",
    "GALGO_TOKEN",
    "GALGO_OUTPUT",
    "GALGO_NEW_USER_PASSWORD",
];

/// A server and a config dir for `galgo`.
pub struct Galgo {
    /// The server.
    pub server: GalgoServer,
    /// `GALGO_CONFIG_DIR`.
    pub config: TempDir,
}

impl Galgo {
    /// Starts a server.
    pub fn start() -> Self {
        Galgo {
            server: GalgoServer::start(),
            config: tempfile::tempdir().expect("config dir"),
        }
    }

    /// `galgo` pointed at the server, with no credentials.
    pub fn anonymous(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_galgo"));
        for name in CLI_ENV {
            command.env_remove(name);
        }
        command
            .env("GALGO_CONFIG_DIR", self.config.path())
            .env("GALGO_ADDRESS", self.server.addr.to_string())
            .stdin(Stdio::null());
        command
    }

    /// `galgo` logged in as root through the environment.
    pub fn root(&self) -> Command {
        let mut command = self.anonymous();
        command
            .env("GALGO_USERNAME", "iggy")
            .env("GALGO_PASSWORD", "iggy");
        command
    }

    /// Runs `galgo ARGS` as root.
    pub fn run(&self, args: &[&str]) -> Output {
        run(self.root().args(args), None)
    }

    /// Runs `galgo ARGS` as root, asserts success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        ok(self.root().args(args), None)
    }

    /// Runs `galgo --output json ARGS` as root and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let stdout = ok(self.root().arg("--output").arg("json").args(args), None);
        serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{args:?}: {error}: {stdout}"))
    }

    /// Runs `galgo ARGS` as root, asserts exit code `code`, and returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        fails(self.root().args(args), code)
    }
}

/// Runs `command`, feeding `stdin` when given.
pub fn run(command: &mut Command, stdin: Option<&[u8]>) -> Output {
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn galgo");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(bytes).expect("write stdin");
    }
    child.wait_with_output().expect("wait for galgo")
}

/// Runs `command`, asserts success and returns stdout.
pub fn ok(command: &mut Command, stdin: Option<&[u8]>) -> String {
    let output = run(command, stdin);
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 stdout")
}

/// Runs `command`, asserts exit code `code` and an `error:` line on stderr (and nothing on
/// stdout), and returns stderr.
pub fn fails(command: &mut Command, code: i32) -> String {
    let output = run(command, None);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{command:?}: {stderr}");
    assert!(stderr.contains("error"), "{command:?}: {stderr}");
    assert!(output.stdout.is_empty(), "{command:?} printed on stdout");
    stderr
}
