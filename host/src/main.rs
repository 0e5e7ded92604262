//! The `kipuka` binary.

use std::process::ExitCode;

use clap::Parser;
use kipuka::cli::{self, Cli, Command, PluginsCommand};

fn main() -> ExitCode {
    let args = Cli::parse();
    match args.command {
        Command::Plugins(PluginsCommand::List { plugin_dirs, json }) => {
            cli::plugins::list(&plugin_dirs, json)
        }
        Command::Plugins(PluginsCommand::Inspect {
            target,
            plugin_dirs,
            json,
        }) => cli::plugins::inspect(&target, &plugin_dirs, json),
    }
}
