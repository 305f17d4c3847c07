//! The `cutover` binary: `run`, `check`, `ctl` and `user`. The only place for anyhow.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cutover::admin::ctl::{self, CtlArgs};
use cutover::config::{self, Config};
use cutover::telemetry::{self, LogFormat};

/// The configuration used when `run` is given no `--config`: the shipped example.
const EMBEDDED_CONFIG: &str = include_str!("../config/example.yaml");

#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    about = "Wire-level migration proxy for Kafka, RocketMQ and Redis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (on the embedded example config when --config is absent).
    Run {
        /// YAML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Log line format.
        #[arg(long, value_enum, default_value_t)]
        log_format: LogFormat,
    },
    /// Validate a configuration, reporting every error; exit 2 when invalid.
    Check {
        /// YAML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Talk to a running proxy over its admin socket.
    Ctl(CtlArgs),
    /// Manage the Kafka users clients log in to the proxy as.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user, or replace its entry for the mechanism, in a users file
    /// (SCRAM salted keys, never the password; like `kafka-configs
    /// --add-config SCRAM-...`). The password is read from --password-file,
    /// else from the first line of stdin.
    Add {
        /// The users file (`migrations[].kafka.users_file`); created mode 0600.
        #[arg(long)]
        users_file: PathBuf,
        /// SCRAM-SHA-256 or SCRAM-SHA-512 (PLAIN logins are checked against either).
        #[arg(long)]
        mechanism: String,
        /// The user name.
        #[arg(long)]
        name: String,
        /// A file whose first line is the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// PBKDF2 iterations (4096 is Kafka's default and floor).
        #[arg(long, default_value_t = cutover::credentials::kafka_users::DEFAULT_ITERATIONS)]
        iterations: u32,
    },
}

fn user_add(
    users_file: &std::path::Path,
    mechanism: &str,
    name: &str,
    password_file: Option<&std::path::Path>,
    iterations: u32,
) -> Result<(), String> {
    use cutover::credentials::{kafka_users as users, scram::Mechanism};
    let mechanism = Mechanism::parse(mechanism).ok_or_else(|| {
        format!("unknown mechanism \"{mechanism}\": SCRAM-SHA-256 or SCRAM-SHA-512")
    })?;
    let text = match password_file {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
            line
        }
    };
    let password = text.lines().next().unwrap_or_default();
    users::add(users_file, name, mechanism, password, iterations).map_err(|e| e.to_string())
}

fn load(config: Option<&PathBuf>) -> Result<Config, ExitCode> {
    let (source, loaded) = match config {
        Some(path) => (path.display().to_string(), config::load(path)),
        None => (
            "(embedded example config)".to_owned(),
            config::parse(EMBEDDED_CONFIG),
        ),
    };
    loaded.map_err(|errors| {
        eprintln!("{source}: {} error(s):", errors.len());
        for error in errors {
            eprintln!("  {error}");
        }
        ExitCode::from(2)
    })
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Check { config: path } => Ok(match load(Some(&path)) {
            Ok(config) => {
                for warning in config::secret_warnings(&config) {
                    eprintln!("warning: {warning}");
                }
                let topics: usize = config.migrations.iter().map(|m| m.topics.len()).sum();
                println!(
                    "{}: valid ({} clusters, {} migrations, {topics} topic patterns)",
                    path.display(),
                    config.clusters.len(),
                    config.migrations.len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        }),
        Command::Run { config, log_format } => {
            telemetry::init(log_format);
            let config = match load(config.as_ref()) {
                Ok(config) => config,
                Err(code) => return Ok(code),
            };
            runtime.block_on(cutover::app::run(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::User(UserCommand::Add {
            users_file,
            mechanism,
            name,
            password_file,
            iterations,
        }) => Ok(
            match user_add(
                &users_file,
                &mechanism,
                &name,
                password_file.as_deref(),
                iterations,
            ) {
                Ok(()) => {
                    println!("{}: {name} {mechanism} written", users_file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            },
        ),
        Command::Ctl(args) => Ok(runtime.block_on(ctl::run(args)).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            ExitCode::from(2)
        })),
    }
}
