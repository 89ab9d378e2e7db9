//! `galgo`: the command-line tool of a galgo (or Apache Iggy 0.8) broker.
//!
//! Every subcommand resolves a connection (flags, environment, saved session), makes its
//! calls through galgo-client, and prints a [`output::Report`] as a table or as JSON. Failures
//! go to stderr with an exit code per kind (see [`error`]).

mod args;
mod cli;
mod commands;
mod connection;
mod error;
mod headers;
mod output;
mod permissions;
mod prompt;
mod session;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use galgo_client::Client;

use crate::cli::{Cli, Command};
use crate::commands::{
    groups, login, messages, offsets, partitions, streams, system, tokens, top, topics, users,
};
use crate::connection::Login;
use crate::error::{CliError, CliResult};
use crate::output::{OutputFormat, Report};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.output;
    let runtime = match compio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&CliError::local(format!("start the runtime: {error}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(report) => {
            report.print(format);
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

fn fail(error: &CliError) -> ExitCode {
    eprintln!("error: {error}");
    error.exit_code()
}

async fn run(cli: Cli) -> CliResult<Report> {
    let format = cli.output;
    match cli.command {
        Command::Login(args) => return login::login(&cli.connection, args).await,
        Command::Logout => return login::logout().await,
        Command::Completions { shell } => return Ok(completions(shell)),
        _ => {}
    }
    // Ping needs no login in the protocol, so a fresh server answers it with no credentials.
    let login = match cli.command {
        Command::Ping(_) => Login::Optional,
        _ => Login::Required,
    };
    let target = cli.connection.resolve(login)?;
    let mut client = connection::connect_to(&target).await?;
    dispatch(&mut client, cli.command, format).await
}

async fn dispatch(
    client: &mut Client,
    command: Command,
    format: OutputFormat,
) -> CliResult<Report> {
    match command {
        Command::Ping(args) => system::ping(client, args).await,
        Command::Me => system::me(client).await,
        Command::Stats => system::stats(client).await,
        Command::Cluster => system::cluster(client).await,
        Command::Client(command) => system::client_command(client, command).await,
        Command::Stream(command) => streams::run(client, command).await,
        Command::Topic(command) => topics::run(client, command).await,
        Command::Partition(command) => partitions::run(client, command).await,
        Command::Segment(command) => partitions::run_segment(client, command).await,
        Command::Message(command) => messages::run(client, command, format).await,
        Command::Offset(command) => offsets::run(client, command).await,
        Command::Group(command) => groups::run(client, command).await,
        Command::User(command) => users::run(client, command).await,
        Command::Token(command) => tokens::run(client, command).await,
        Command::Top(args) => top::run(client, args, format)
            .await
            .map(|()| Report::printed()),
        Command::Login(_) | Command::Logout | Command::Completions { .. } => {
            unreachable!("handled before connecting")
        }
    }
}

fn completions(shell: clap_complete::Shell) -> Report {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "galgo", &mut script);
    let script = String::from_utf8_lossy(&script).trim_end().to_owned();
    Report::text(script.clone(), serde_json::Value::String(script))
}
