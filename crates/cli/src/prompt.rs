//! Reading a password: from the terminal with echo turned off, or as one line of a pipe.

use std::io::{BufRead, IsTerminal, Write};

use crate::error::{CliError, CliResult};

/// Prints `prompt` on stderr and reads one line from stdin without echoing it on a terminal.
pub fn read_password(prompt: &str) -> CliResult<String> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
    }
    let echo = terminal.then(EchoOff::new).flatten();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    // With echo off the terminal still echoes the newline (ECHONL), so the prompt ends cleanly.
    drop(echo);
    read.map_err(|error| CliError::local(format!("read the password: {error}")))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(CliError::usage("no password given"));
    }
    Ok(password)
}

/// Turns terminal echo off until dropped.
struct EchoOff {
    saved: libc::termios,
}

impl EchoOff {
    fn new() -> Option<Self> {
        // SAFETY: tcgetattr and tcsetattr only read and write the termios struct we own, on
        // stdin's descriptor, which stays open for the life of the process.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return None;
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            quiet.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) != 0 {
                return None;
            }
            Some(EchoOff { saved })
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: as in `new`.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
        }
    }
}
