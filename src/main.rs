//! The `cutover` binary: `run`, `check` and `ctl`. The only place for anyhow.

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
        Command::Ctl(args) => Ok(runtime.block_on(ctl::run(args)).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            ExitCode::from(2)
        })),
    }
}
