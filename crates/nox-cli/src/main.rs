//! The `nox` binary: parse, load config, build the backends, call one nox-ops workflow per
//! verb, render. Nothing else.
//!
//! - `cli.rs`: the command line as clap types (also compiled by xtask for man pages);
//! - `commands/`: one file per verb, each a short function over nox-ops;
//! - `backends.rs`: the one place that names backend crates, per cargo feature;
//! - `ui.rs` and `progress.rs`: questions, notes, spinners and bars on the terminal.

mod backends;
mod cli;
mod commands;
mod progress;
mod ui;

use std::io::IsTerminal;
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
    install_interrupt_handler();
    use commands::*;
    let result = match cli.command {
        Command::Create(a) => create::run(*a),
        Command::List(j) => list::list(j.json),
        Command::Status { name, json } => list::status(&name, json.json),
        Command::Start { names, wait } => lifecycle::start(&names, wait),
        Command::Stop(a) => lifecycle::stop(&a),
        Command::Restart { stop, wait } => lifecycle::restart(&stop, wait),
        Command::Delete { names, force } => lifecycle::delete(&names, force),
        Command::Exec { name, command } => access::exec(&name, &command),
        Command::Ssh { name, command } => access::ssh(&name, &command),
        Command::Console { name } => access::console(&name),
        Command::Passwd { name, user } => access::passwd(&name, user.as_deref()),
        Command::Run { name, scripts } => scripts::run(&name, &scripts),
        Command::Check { name, json } => check::run(&name, json.json),
        Command::Resize(a) => resize::run(&a),
        Command::Image(cmd) => image::run(cmd),
        Command::Remote(cmd) => remote::run(cmd),
        Command::Backup(a) => backup::backup(&a),
        Command::Backups(j) => backup::list(j.json),
        Command::Restore(a) => backup::restore(&a),
        Command::Config(cmd) => config::run(cmd),
        Command::Doctor(flags) => doctor::run(flags.json),
        Command::Completions { shell } => completions::run(shell),
        Command::Cp {
            src,
            dst,
            recursive,
        } => copy::run(&src, &dst, recursive),
        Command::Mount(cmd) => mounts::run(cmd),
        Command::Snapshot(a) => snapshot::run(a),
        Command::Snapshots { name, json } => snapshot::list(&name, json.json),
        Command::Forward(cmd) => forward::run(cmd),
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
    for (depth, cause) in err.chain().enumerate().skip(1) {
        tracing::debug!("cause {depth}: {cause:?}");
    }
    let message = one_line(err);
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

/// The error and its causes on one line. A nox error already says its cause's words, so the
/// walk stops there (anyhow's `{:#}` would print an I/O error twice); a layer that does not
/// (an anyhow context, a foreign error) gets its cause appended, unless those words are
/// already on the line.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        if cause.is::<nox_core::Error>() {
            break;
        }
    }
    line.replace('\n', " ")
}

/// Ctrl-C sets a flag that long operations check, so they unwind through their rollback
/// instead of dying with half an instance made. A second Ctrl-C is the default again.
fn install_interrupt_handler() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    extern "C" fn on_sigint(_: nix::libc::c_int) {
        nox_core::interrupt::request();
    }
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    // SAFETY: the handler only performs an atomic store, which is async-signal-safe.
    unsafe {
        let _ = sigaction(Signal::SIGINT, &action);
    }
}

fn init_tracing(verbose: u8) {
    // `-v` and `-vv` raise nox's own crates only: hyper, rustls and the rest log every frame at
    // debug, which would bury what nox did. `NOX_LOG` takes full EnvFilter syntax for those.
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let default = [
        "nox",
        "nox_cli",
        "nox_core",
        "nox_ops",
        "nox_libvirt",
        "nox_lxc",
        "nox_incus",
        "nox_s3",
    ]
    .iter()
    .fold(String::from("warn"), |acc, krate| {
        format!("{acc},{krate}={level}")
    });
    let filter = tracing_subscriber::EnvFilter::try_from_env("NOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_nox_error_prints_its_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let err = anyhow::Error::from(nox_core::Error::ConfigRead {
            file: "/x.toml".into(),
            source: io,
        });
        assert_eq!(
            one_line(&err),
            "cannot read config file /x.toml: No such file"
        );
    }

    /// libvirt's own Display adds `[code=.., domain=..]`; the user reads the message nox's
    /// error already quotes, and nothing below it.
    #[test]
    fn a_backend_errors_causes_are_not_appended() {
        use std::fmt;
        #[derive(Debug)]
        struct Verbose;
        impl fmt::Display for Verbose {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("error: Domain not found [code=42 (42), domain=10 (10)]")
            }
        }
        impl std::error::Error for Verbose {}
        #[derive(Debug)]
        struct Step(Verbose);
        impl fmt::Display for Step {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("starting web: Domain not found")
            }
        }
        impl std::error::Error for Step {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = anyhow::Error::from(nox_core::Error::backend(Step(Verbose)));
        assert_eq!(err.chain().count(), 3);
        assert_eq!(one_line(&err), "starting web: Domain not found");
    }

    #[test]
    fn a_context_gets_its_cause_appended_on_the_same_line() {
        let io = std::io::Error::other("disk\nfull");
        let err = anyhow::Error::from(io).context("writing the table");
        assert_eq!(one_line(&err), "writing the table: disk full");
    }
}
