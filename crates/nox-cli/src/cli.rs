#[derive(clap::Parser)]
pub struct Cli {}
