//! The command line: global flags and the subcommand tree.

use clap::{Parser, Subcommand};
use clap_complete::Shell;

use crate::commands::groups::GroupCommand;
use crate::commands::login::LoginArgs;
use crate::commands::messages::MessageCommand;
use crate::commands::offsets::OffsetCommand;
use crate::commands::partitions::{PartitionCommand, SegmentCommand};
use crate::commands::streams::StreamCommand;
use crate::commands::system::{ClientCommand, PingArgs};
use crate::commands::tokens::TokenCommand;
use crate::commands::top::TopArgs;
use crate::commands::topics::TopicCommand;
use crate::commands::users::UserCommand;
use crate::connection::ConnectionArgs;
use crate::output::OutputFormat;

const ROOT_HELP: &str = "\
Examples:
  galgo login -u iggy                      # prompts for the password, saves a token session
  galgo stream create orders
  galgo topic create orders created --partitions 4
  echo '{\"id\":1}' | galgo message send orders created
  galgo message poll orders created --first --count 10
  galgo --url iggy://iggy:iggy@127.0.0.1:8090 stats -o json

Connection: --url, else --address/--transport with --username/--password or --token, else
the session saved by `galgo login` (GALGO_URL, GALGO_ADDRESS, GALGO_TRANSPORT, GALGO_USERNAME,
GALGO_PASSWORD, GALGO_TOKEN; the session lives in $GALGO_CONFIG_DIR, else
$XDG_CONFIG_HOME/galgo, else ~/.config/galgo).

Exit codes: 0 success, 1 local failure (files, terminal), 2 usage error, 3 the server refused
the request or found nothing (stderr names the server's error and code), 4 connection failure.";

const TOP_HELP: &str = "\
Examples:
  galgo top
  galgo top --interval-ms 5000
  galgo top --iterations 3 | tee top.log      # plain blocks when stdout is not a terminal
  galgo top -o json --iterations 1 | jq '.topics[] | {topic, messages_count}'

MESSAGES is a topic's message count; NEW the messages added since the previous refresh and
MSG/S their rate (both \"-\" on the first refresh, or when the count went down). A group's LAG
is the messages of all partitions it has not committed, as in `galgo group list`. Single
consumers are not shown: the protocol cannot list them, only read the offset of a consumer
whose id is known (`galgo offset get --consumer ID`); the server's /metrics has their lag. Each refresh costs one request per stream
and per topic, plus one per group and partition. On a terminal the view uses the alternate
screen and restores the terminal on exit (Ctrl-C; a second Ctrl-C exits at once).";

/// galgo: manage and use a galgo (or Apache Iggy 0.8) broker from a terminal.
#[derive(Parser, Debug)]
#[command(name = "galgo", version, after_help = ROOT_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// table for people, json for scripts.
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        default_value = "table",
        env = "GALGO_OUTPUT"
    )]
    pub output: OutputFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Checks the server answers, with round-trip times; needs no credentials (without any,
    /// it pings without logging in).
    #[command(after_help = "Examples:\n  galgo ping\n  galgo ping --count 5")]
    Ping(PingArgs),
    /// This connection's client record (id, user, address).
    #[command(after_help = "Examples:\n  galgo me\n  galgo me -o json")]
    Me,
    /// Server statistics: version, uptime, resources, counts.
    #[command(after_help = "Examples:\n  galgo stats\n  galgo stats -o json | jq .messages_count")]
    Stats,
    /// The cluster's nodes: addresses, role (the metadata leader) and status, as the node
    /// connected to sees them; a single node lists itself.
    #[command(
        after_help = "Examples:\n  galgo cluster\n  galgo --url iggy://iggy:iggy@10.0.0.2:8090 cluster -o json"
    )]
    Cluster,
    /// Connected clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Streams.
    #[command(subcommand)]
    Stream(StreamCommand),
    /// Topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Partitions of a topic.
    #[command(subcommand)]
    Partition(PartitionCommand),
    /// Segments of a partition.
    #[command(subcommand)]
    Segment(SegmentCommand),
    /// Sends and polls messages.
    #[command(subcommand)]
    Message(MessageCommand),
    /// Stored consumer offsets.
    #[command(subcommand)]
    Offset(OffsetCommand),
    /// Consumer groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Users and their permissions.
    #[command(subcommand)]
    User(UserCommand),
    /// Personal access tokens of the logged-in user.
    #[command(subcommand)]
    Token(TokenCommand),
    /// A live view of the server refreshed every second: messages and rates per topic, the
    /// lag of every consumer group.
    #[command(after_help = TOP_HELP)]
    Top(TopArgs),
    /// Logs in with a username and password and saves a token-based session.
    #[command(
        after_help = "Examples:\n  galgo login --address 10.0.0.5:8090 -u admin\n  \
                            echo \"$PASSWORD\" | galgo login -u admin --expiry 30d"
    )]
    Login(LoginArgs),
    /// Deletes the saved session and its token on the server.
    #[command(after_help = "Examples:\n  galgo logout")]
    Logout,
    /// Prints a shell completion script.
    #[command(
        after_help = "Examples:\n  galgo completions bash > ~/.local/share/bash-completion/completions/galgo\n  \
                            galgo completions zsh > \"${fpath[1]}/_galgo\"\n  \
                            galgo completions fish > ~/.config/fish/completions/galgo.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
}
