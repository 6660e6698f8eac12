//! The admin subcommands of the `shardlog` binary (`shardlog topics ...`, `shardlog groups
//! ...`, `shardlog cluster info`): small, scriptable stand-ins for `kafka-topics`,
//! `kafka-configs`, `kafka-consumer-groups` and `kafka-cluster` that talk to a running broker
//! over the Kafka protocol with [`crate::client`], so an operator needs no JVM tools to inspect
//! or change a broker; and `shardlog tune` ([`crate::tune`]), which checks the host instead.
//! Without a subcommand the binary runs the broker.
//!
//! Each command negotiates versions with ApiVersions, prints results on stdout and errors on
//! stderr, and exits 1 when anything failed. The pure parts (turning decoded responses into
//! lines and rows) are separate functions, tested without a broker.

pub mod cluster;
pub mod groups;
pub mod reset;
pub mod table;
pub mod topics;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kafka_protocol::ResponseError;

use crate::client::{Client, ClientError, Options};

/// The `shardlog` command line: an admin subcommand, or (none) the broker with its flags.
#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "shardlog",
    version,
    args_conflicts_with_subcommands = true,
    about = "A Kafka-compatible, thread-per-core event-streaming broker"
)]
pub struct Cli {
    /// An admin subcommand; none runs the broker
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The broker's settings, read when no subcommand is given.
    #[command(flatten)]
    pub broker: crate::config::Flags,
}

/// The subcommands; `None` in [`Cli`] means "run the broker".
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Create, list, describe, delete and reconfigure topics on a running broker
    Topics(TopicsArgs),
    /// List, describe, reset and delete consumer groups on a running broker
    Groups(GroupsArgs),
    /// Show the cluster: its id, controller, brokers and the API versions served
    Cluster(ClusterArgs),
    /// Check (and with --apply, change) the host settings that matter to the broker
    Tune(crate::tune::TuneArgs),
}

/// `shardlog cluster`: where the broker is, and what to do.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// The broker to talk to.
    #[command(flatten)]
    pub conn: Conn,
    /// The cluster action to run.
    #[command(subcommand)]
    pub action: cluster::Action,
}

/// `shardlog topics`: where the broker is, and what to do.
#[derive(Args, Debug, Clone)]
pub struct TopicsArgs {
    /// The broker to talk to.
    #[command(flatten)]
    pub conn: Conn,
    /// The topics action to run.
    #[command(subcommand)]
    pub action: topics::Action,
}

/// `shardlog groups`: where the broker is, and what to do.
#[derive(Args, Debug, Clone)]
pub struct GroupsArgs {
    /// The broker to talk to (the bootstrap server; `describe` also reaches each coordinator).
    #[command(flatten)]
    pub conn: Conn,
    /// The groups action to run.
    #[command(subcommand)]
    pub action: groups::Action,
}

/// How to reach the broker.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Broker to talk to
    #[arg(
        long,
        env = "SHARDLOG_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT",
        global = true
    )]
    pub bootstrap_server: String,
    /// Connect and response timeout, milliseconds
    #[arg(long, default_value_t = 30_000, value_name = "MS", global = true)]
    pub timeout_ms: u64,
}

impl Conn {
    /// Opens a connection to `addr` with this command's timeouts.
    pub fn connect_to(&self, addr: &str) -> Result<Client, CliError> {
        let timeout = Duration::from_millis(self.timeout_ms.max(1));
        let opts = Options {
            client_id: "shardlog-cli".to_string(),
            connect_timeout: timeout,
            read_timeout: timeout,
        };
        Ok(Client::connect(addr, &opts)?)
    }

    /// Opens a connection to the bootstrap server (`--bootstrap-server`).
    pub fn connect(&self) -> Result<Client, CliError> {
        self.connect_to(&self.bootstrap_server)
    }
}

/// Why an admin command failed; [`run`] prints it on stderr (except [`CliError::Partial`], whose
/// failures were printed as they happened) and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Connecting, a request's round trip, or decoding its response failed.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// A request failed as a whole (top-level error code).
    #[error("{what}: {}", kafka_error(*.code, .message.as_deref()))]
    Broker {
        /// What was being done, e.g. `creating topic 'x'`.
        what: String,
        /// The Kafka error code the broker answered with (non-zero).
        code: i16,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
    /// `groups describe` named a group the broker does not know (state Dead, or
    /// GROUP_ID_NOT_FOUND); carries the group id.
    #[error("Consumer group '{0}' does not exist.")]
    NoSuchGroup(String),
    #[error("group '{group}': member {member} has an undecodable assignment: {reason}")]
    /// A member of a "consumer" group holds assignment bytes that are not a
    /// ConsumerProtocolAssignment.
    Assignment {
        /// The group id.
        group: String,
        /// The member id whose assignment failed to decode.
        member: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// `groups reset-offsets` of a group with active members (Kafka's refusal, word for word).
    #[error(
        "Assignments can only be reset if the group '{group}' is inactive, but the current \
         state is {state}."
    )]
    GroupActive {
        /// The group id.
        group: String,
        /// Its state (Stable, PreparingRebalance, ...).
        state: String,
    },
    /// A command cannot do what was asked (an unknown topic or partition, a shift without a
    /// committed offset, a config flag that names nothing); carries the message.
    #[error("{0}")]
    Invalid(String),
    /// Writing to stdout failed; a broken pipe (`| head`) exits 1 without a message.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// Some items failed; each was already reported on stderr.
    #[error("{0} of the requested operations failed")]
    Partial(usize),
}

/// Runs one subcommand; the exit code is 0 on success, 1 on any failure.
pub fn run(cmd: Command) -> ExitCode {
    let result = match cmd {
        Command::Topics(a) => topics::run(&a.conn, a.action),
        Command::Groups(a) => groups::run(&a.conn, a.action),
        Command::Cluster(a) => cluster::run(&a.conn, a.action),
        Command::Tune(a) => return crate::tune::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Broken pipe (`shardlog topics list | head`): nobody is listening any more.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
        Err(CliError::Partial(_)) => ExitCode::FAILURE,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "Error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Kafka's name for an error code, e.g. 36 → `TOPIC_ALREADY_EXISTS`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
        Some(e) => screaming_snake(&e.to_string()),
    }
}

/// `NAME` or `NAME: message`, for error lines.
pub fn kafka_error(code: i16, message: Option<&str>) -> String {
    match message.filter(|m| !m.is_empty()) {
        Some(m) => format!("{}: {m}", error_name(code)),
        None => error_name(code),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Fails with [`CliError::Broker`] when `code` is an error.
pub fn check(
    what: impl FnOnce() -> String,
    code: i16,
    message: Option<&str>,
) -> Result<(), CliError> {
    if code == 0 {
        return Ok(());
    }
    Err(CliError::Broker {
        what: what(),
        code,
        message: message.map(str::to_string),
    })
}

/// Writes `text` to stdout as is.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Writes one line to stderr (errors and notices; failures to write are ignored).
pub fn eprint_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_follow_kafka() {
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(17), "INVALID_TOPIC_EXCEPTION");
        assert_eq!(error_name(69), "GROUP_ID_NOT_FOUND");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE_9999");
    }

    #[test]
    fn error_lines_carry_the_broker_message() {
        assert_eq!(
            kafka_error(36, Some("topic x exists")),
            "TOPIC_ALREADY_EXISTS: topic x exists"
        );
        assert_eq!(kafka_error(36, Some("")), "TOPIC_ALREADY_EXISTS");
        assert_eq!(kafka_error(36, None), "TOPIC_ALREADY_EXISTS");
        let e = check(|| "creating topic 'x'".into(), 36, None).unwrap_err();
        assert_eq!(e.to_string(), "creating topic 'x': TOPIC_ALREADY_EXISTS");
        assert!(check(|| unreachable!(), 0, None).is_ok());
    }
}
