//! The `nox` binary: parse, load config, pick the backend, call it, render. Nothing else.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Exit codes: 0 ok, 1 failure, 2 bad input or usage.
const EXIT_FAILURE: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Config(cmd) => commands::config::run(cmd),
        Command::Doctor(flags) => commands::doctor::run(flags.json),
        Command::Completions { shell } => commands::completions::run(shell),
    };
    match result {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

/// Help and version go to stdout with exit 0. Usage errors become one line with exit 2:
/// clap's own message plus its tip, if it has one, without the usage block.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(EXIT_BAD_INPUT)
        } else {
            ExitCode::SUCCESS
        };
    }
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("error: invalid usage");
    let tip = lines.find(|l| l.starts_with("tip:"));
    match tip {
        Some(tip) => eprintln!("{first} ({tip}; see 'nox --help')"),
        None => eprintln!("{first} (see 'nox --help')"),
    }
    ExitCode::from(EXIT_BAD_INPUT)
}

/// One line on stderr: what is wrong, then what to do, and the exit code that fits.
fn report(err: &anyhow::Error) -> ExitCode {
    let core = err.downcast_ref::<nox_core::Error>();
    let message = format!("{err:#}").replace('\n', " ");
    match core.and_then(nox_core::Error::hint) {
        Some(hint) => eprintln!("error: {message} (hint: {hint})"),
        None => eprintln!("error: {message}"),
    }
    if core.is_some_and(nox_core::Error::is_bad_input) {
        ExitCode::from(EXIT_BAD_INPUT)
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}
