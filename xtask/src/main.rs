//! nox's project automation: host setup, CI, man pages. Run as `cargo xtask <task>`.
//!
//! Everything CI does is here, as Rust, so `.ci/run` is one line and a developer can run any
//! single step by hand.

mod bench;
mod build_cache;
mod ci;
mod compat;
mod fuzz;
mod incus;
mod man;
mod setup;
mod test_image;
#[cfg(test)]
mod tidy;
mod util;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <task>

tasks:
  setup      install nox's host dependencies (Debian 12) and start libvirtd, virtlogd, lxc-net
  ci         setup, then cargo fmt --check, clippy -D warnings, and every test (live ones included)
  it [ARGS]  setup, then the live integration tests (ARGS go to the test binary: a name filter)
  fuzz [SECONDS]
             run every cargo-fuzz target of nox-core for SECONDS each (default 15; stable
             toolchain, no sanitizer; needs cargo-fuzz, which setup installs)
  test-image build (or reuse) the Debian 12 test image; prints its nox.toml path last
  bench vm   benchmark the VM backend (medians; see docs/benchmarks.md)
  bench lxc  benchmark the container backend
  compat     create one instance of each kind, run `nox check` in each, write docs/compatibility.md
  bench backup  benchmark VM backups: full vs qemu-img convert -c, incremental, restore
  bench incus   nox create/list on the Incus test cluster vs incus launch; list over 30 instances
  bench image [--runs N]  nox image build debian-12 vs plain debootstrap + conversion
  man [DIR]  write nox's man pages (default: target/man)
  incus up   start (or check) a three-member Incus 6.0 cluster on this machine, for the
             nox-incus tests; prints its nox.toml path last (state: /var/lib/nox-incus-cluster)
  incus down stop it and remove everything it made
  incus status | stop-member N | start-member N
             is it up; stop or start one member's incusd (for failure tests)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::run(),
        Some("ci") => ci::run(),
        Some("it") => ci::live_tests(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("test-image") => test_image::run(),
        Some("compat") => compat::run(),
        Some("incus") => incus::run(&args[1..]),
        Some("man") => man::run(args.get(1).map(String::as_str)),
        Some("-h" | "--help" | "help") | None => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("xtask: unknown task `{other}`\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
