//! A `galgo-server` child process for one test.
//!
//! The server prints exactly one line `galgo-server ready tcp=127.0.0.1:PORT websocket=127.0.0.1:PORT`
//! on stdout once it serves (a disabled listener is left out; on a first start the listeners
//! accept a little earlier, while the root user is created); its logs go to stderr, which the
//! harness sends to a file beside (not inside) the data dir and prints when the test fails.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

/// How long a server may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a graceful shutdown (flush and fsync of everything) may take.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the kernel may take to reap a SIGKILLed server.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(10);

const READY_PREFIX: &str = "galgo-server ready";

/// The listener addresses of one ready line.
#[derive(Clone, Copy, Debug)]
struct ReadyAddresses {
    tcp: Option<SocketAddr>,
    websocket: Option<SocketAddr>,
    http: Option<SocketAddr>,
}

/// One running (or stopped) server with its own temp dir. Killed with SIGKILL on drop.
pub struct TestServer {
    /// The TCP (or TCP+TLS) address from the ready line of the current run.
    pub addr: SocketAddr,
    /// The WebSocket (or WSS) address from the ready line of the current run.
    pub ws_addr: SocketAddr,
    /// The HTTP endpoint's address (/metrics, /health) from the ready line, if it runs.
    pub http_addr: Option<SocketAddr>,
    /// The data dir, the same for every run of this server.
    pub data_dir: PathBuf,
    /// Holds `data/` and one `server-N.log` per run; removed on drop.
    root: TempDir,
    /// Arguments after the harness's own (`--data-dir`, `--tcp-address`, `--websocket-address`,
    /// `--no-pin`).
    args: Vec<String>,
    /// Environment variables set for every run (the root credentials variables are otherwise
    /// removed, so the caller's environment cannot change a test).
    env: Vec<(String, String)>,
    process: Option<Process>,
    /// The ready line of the current run, until [`TestServer::wait_ready`] takes it.
    ready: Option<mpsc::Receiver<ReadyAddresses>>,
    runs: u32,
    /// RLIMIT_FSIZE of every run, if set: writes past it fail (EFBIG), as on a full disk.
    file_size_max: Option<u64>,
}

struct Process {
    pid: libc::pid_t,
    exit: mpsc::Receiver<ExitStatus>,
    exited: Option<ExitStatus>,
}

impl Process {
    /// The exit status, waiting at most `timeout` for it.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.exit.recv_timeout(timeout).ok();
        }
        self.exited
    }

    fn has_exited(&mut self) -> bool {
        self.wait(Duration::ZERO).is_some()
    }

    fn signal(&mut self, signal: libc::c_int) {
        // Only signal a pid we have not reaped yet: once reaped, the pid may belong to anyone.
        if !self.has_exited() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(self.pid, signal) };
        }
    }
}

impl TestServer {
    /// Starts a server with a fresh temp data dir. `args` are extra flags, for example
    /// `["--set", "storage.fsync=always"]`; `--shards 2` is added unless `args` names `--shards`.
    pub fn start(args: &[&str]) -> TestServer {
        Self::start_with_env(args, &[])
    }

    /// Like [`TestServer::start`], with environment variables for the server.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut server = Self::launch_with_env(args, env);
        server.wait_ready();
        server
    }

    /// Starts a server like [`TestServer::start`] but returns at once, before its ready line:
    /// for tests of what the server does while it starts. Call [`TestServer::wait_ready`] (or
    /// [`TestServer::wait_listening`]) next.
    pub fn launch(args: &[&str]) -> TestServer {
        Self::launch_with_env(args, &[])
    }

    /// Like [`TestServer::launch`], with the server's files limited to `bytes` each
    /// (RLIMIT_FSIZE): a write past it fails as on a full disk. Its log file is limited too.
    pub fn launch_with_file_size_max(args: &[&str], bytes: u64) -> TestServer {
        let mut server = Self::build(args, &[]);
        server.file_size_max = Some(bytes);
        server.spawn();
        server
    }

    fn launch_with_env(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut server = Self::build(args, env);
        server.spawn();
        server
    }

    fn build(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let root = tempfile::Builder::new()
            .prefix("galgo-test-")
            .tempdir()
            .expect("create temp dir");
        let data_dir = root.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let args = with_default_shards(args);
        TestServer {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ws_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: None,
            data_dir,
            root,
            args,
            env: env
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            process: None,
            ready: None,
            runs: 0,
            file_size_max: None,
        }
    }

    /// The TCP address the current run logged when its listeners bound, which on a first
    /// start comes before the ready line (the root user is created after). Waits for that log
    /// line, at most [`READY_TIMEOUT`].
    pub fn wait_listening(&mut self) -> SocketAddr {
        const LISTENING: &str = "TCP listening on every shard address=";
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            let log = std::fs::read_to_string(self.log_path(self.runs)).unwrap_or_default();
            if let Some((_, rest)) = log.split_once(LISTENING) {
                let address = rest.split_whitespace().next().unwrap_or_default();
                return address
                    .parse()
                    .unwrap_or_else(|error| panic!("bad listening address {address:?}: {error}"));
            }
            assert!(
                self.is_running() && std::time::Instant::now() < deadline,
                "galgo-server logged no TCP listener; logs:\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Starts a new run on the same data dir with the same flags. A running server is stopped
    /// gracefully first. The new run listens on a new port: read `addr` again.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.stop();
        }
        self.spawn();
        self.wait_ready();
    }

    /// Like [`TestServer::restart`], with `args` in place of the flags given so far (the same
    /// rules as [`TestServer::start`]: `--shards 2` unless `args` names `--shards`).
    pub fn restart_with_args(&mut self, args: &[&str]) {
        if self.is_running() {
            self.stop();
        }
        self.args = with_default_shards(args);
        self.spawn();
        self.wait_ready();
    }

    /// Starts a new run on the same data dir that is expected to refuse to start, and returns
    /// its exit status, waiting at most [`READY_TIMEOUT`] for it. A running server is stopped
    /// gracefully first.
    pub fn restart_expecting_exit(&mut self) -> ExitStatus {
        if self.is_running() {
            self.stop();
        }
        self.spawn();
        self.ready = None;
        let process = self.process.as_mut().expect("just spawned");
        let status = process.wait(READY_TIMEOUT);
        status.unwrap_or_else(|| {
            panic!(
                "galgo-server still runs {READY_TIMEOUT:?} after a start it should refuse; logs:\n{}",
                self.logs()
            )
        })
    }

    /// [`TestServer::restart_expecting_exit`] with other flags.
    pub fn restart_expecting_exit_with_args(&mut self, args: &[&str]) -> ExitStatus {
        self.args = with_default_shards(args);
        self.restart_expecting_exit()
    }

    /// Waits for a run that should end by itself (a start it refuses), at most
    /// [`READY_TIMEOUT`], and returns its exit status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let process = self.process.as_mut().expect("server was started");
        process.wait(READY_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "galgo-server still runs {READY_TIMEOUT:?} after a start it should refuse; logs:\n{}",
                self.logs()
            )
        })
    }

    /// SIGTERM, then waits for the exit and asserts it was a clean exit with code 0.
    pub fn stop(&mut self) {
        self.signal_terminate();
        self.wait_stopped();
    }

    /// SIGTERM: a graceful shutdown begins; [`TestServer::wait_stopped`] waits for its end.
    pub fn signal_terminate(&mut self) {
        let process = self.process.as_mut().expect("server was started");
        process.signal(libc::SIGTERM);
    }

    /// Waits for the exit after [`TestServer::signal_terminate`] and asserts it was a clean
    /// exit with code 0.
    pub fn wait_stopped(&mut self) {
        let process = self.process.as_mut().expect("server was started");
        match process.wait(STOP_TIMEOUT) {
            Some(status) => assert!(
                status.success(),
                "galgo-server exited with {status} after SIGTERM, expected exit code 0"
            ),
            None => panic!("galgo-server did not exit within {STOP_TIMEOUT:?} of SIGTERM"),
        }
    }

    /// SIGKILL: a crash. Waits until the process is gone.
    pub fn kill(&mut self) {
        let process = self.process.as_mut().expect("server was started");
        process.signal(libc::SIGKILL);
        assert!(
            process.wait(KILL_TIMEOUT).is_some(),
            "galgo-server was not reaped within {KILL_TIMEOUT:?} of SIGKILL"
        );
    }

    /// Resident set size of the current run, from /proc (VmRSS).
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.process.as_ref().expect("server was started").pid;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    /// Whether the current run is still alive.
    pub fn is_running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|process| !process.has_exited())
    }

    /// The path of a partition's directory (PROTOCOL.md §9.1).
    pub fn partition_dir(&self, stream_id: u32, topic_id: u32, partition_id: u32) -> PathBuf {
        self.data_dir
            .join("streams")
            .join(stream_id.to_string())
            .join("topics")
            .join(topic_id.to_string())
            .join("partitions")
            .join(partition_id.to_string())
    }

    /// Lifts the running server's RLIMIT_FSIZE: its writes succeed again, as when room is
    /// made on a full disk.
    pub fn lift_file_size_max(&self) {
        let pid = self.process.as_ref().expect("server was started").pid;
        let unlimited = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: prlimit reads the new limit from a valid rlimit and writes no old one.
        let done =
            unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &unlimited, std::ptr::null_mut()) };
        assert_eq!(done, 0, "prlimit: {}", std::io::Error::last_os_error());
    }

    /// Everything the server wrote to stderr, over all runs so far.
    pub fn logs(&self) -> String {
        let mut logs = String::new();
        for run in 1..=self.runs {
            let path = self.log_path(run);
            let text = std::fs::read(&path).unwrap_or_default();
            logs.push_str(&format!("----- {} -----\n", path.display()));
            logs.push_str(&String::from_utf8_lossy(&text));
        }
        logs
    }

    fn log_path(&self, run: u32) -> PathBuf {
        self.root.path().join(format!("server-{run}.log"))
    }

    fn spawn(&mut self) {
        self.runs += 1;
        let log_path = self.log_path(self.runs);
        let log = File::create(&log_path).expect("create server log file");
        let mut command = Command::new(server_binary());
        if let Some(bytes) = self.file_size_max {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe setrlimit runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    // Only the soft limit: the test may lift it while the server runs
                    // (`lift_file_size_max`), as room made on a full disk.
                    let limit = libc::rlimit {
                        rlim_cur: bytes,
                        rlim_max: libc::RLIM_INFINITY,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--tcp-address", "127.0.0.1:0", "--no-pin"])
            .args(["--websocket-address", "127.0.0.1:0"])
            // Every test server has its own HTTP endpoint on a free port.
            .args(["--set", "http.address=\"127.0.0.1:0\""])
            // Small rings: io_uring charges ring memory to the user's RLIMIT_MEMLOCK, and the
            // suite runs several servers at once.
            .args(["--set", "shards.ring_entries=256"])
            .args(&self.args)
            .env_remove("IGGY_ROOT_USERNAME")
            .env_remove("IGGY_ROOT_PASSWORD")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn galgo-server");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        let stdout = child.stdout.take().expect("piped stdout");

        let (exit_tx, exit) = mpsc::channel();
        thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        self.process = Some(Process {
            pid,
            exit,
            exited: None,
        });

        let (ready_tx, ready_rx) = mpsc::channel();
        thread::spawn(move || read_stdout(stdout, ready_tx));
        self.ready = Some(ready_rx);
    }

    /// Waits for the current run's ready line and takes its addresses into `addr` and
    /// `ws_addr`; panics after [`READY_TIMEOUT`].
    pub fn wait_ready(&mut self) {
        let ready = self
            .ready
            .take()
            .expect("a run that has not printed its ready line");
        match ready.recv_timeout(READY_TIMEOUT) {
            Ok(ready) => {
                let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
                self.addr = ready.tcp.unwrap_or(unbound);
                self.ws_addr = ready.websocket.unwrap_or(unbound);
                self.http_addr = ready.http;
            }
            Err(error) => {
                let status = self.process.as_mut().and_then(|p| p.wait(Duration::ZERO));
                panic!(
                    "galgo-server gave no ready line ({error}); exit status {status:?}; args {:?}; data dir {}",
                    self.args,
                    self.data_dir.display()
                );
            }
        }
    }
}

fn with_default_shards(args: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    if !args.iter().any(|arg| arg == "--shards") {
        args.extend(["--shards".to_string(), "2".to_string()]);
    }
    args
}

/// The binary under test: `GALGO_SERVER_BIN` if set (to run the suite against another build),
/// otherwise the `galgo-server` that cargo built for this test.
pub fn server_binary() -> PathBuf {
    std::env::var_os("GALGO_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_galgo-server")))
}

/// Sends the addresses of the ready line, then keeps draining stdout so the server never blocks
/// on a full pipe. Anything else the server prints on stdout is echoed to our stderr.
fn read_stdout(stdout: std::process::ChildStdout, ready: mpsc::Sender<ReadyAddresses>) {
    let mut ready = Some(ready);
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        match line.strip_prefix(READY_PREFIX) {
            Some(fields) if ready.is_some() => {
                let addresses = parse_ready(fields)
                    .unwrap_or_else(|error| panic!("bad ready line {line:?}: {error}"));
                let _ = ready.take().expect("checked").send(addresses);
            }
            _ => eprintln!("galgo-server stdout: {line}"),
        }
    }
}

/// ` tcp=ADDR websocket=ADDR`; unknown keys are skipped (later listeners are appended).
fn parse_ready(fields: &str) -> Result<ReadyAddresses, String> {
    let mut addresses = ReadyAddresses {
        tcp: None,
        websocket: None,
        http: None,
    };
    for field in fields.split_whitespace() {
        let (key, value) = field.split_once('=').ok_or("a field without '='")?;
        let address = || value.parse().map_err(|error| format!("{key}: {error}"));
        match key {
            "tcp" => addresses.tcp = Some(address()?),
            "http" => addresses.http = Some(address()?),
            "websocket" => addresses.websocket = Some(address()?),
            _ => {}
        }
    }
    Ok(addresses)
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(process) = self.process.as_mut() {
            process.signal(libc::SIGKILL);
            let _ = process.wait(KILL_TIMEOUT);
        }
        if thread::panicking() {
            eprintln!("===== galgo-server logs =====\n{}", self.logs());
        }
    }
}

/// Reads a whole file, panicking with its path on error.
pub fn read_file(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}
