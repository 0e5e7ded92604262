//! The command line: `kipuka plugins ...` (and, later, `serve`, `check`).

pub mod check;
pub mod plugins;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// kipuka: an EST server whose CA keys stay in HSMs.
#[derive(Debug, Parser)]
#[command(name = "kipuka", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List or inspect HSM vendor plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Load plugins, open the token, log in, find every CA key and match it
    /// to its certificate; report per CA. Non-zero exit on the first problem.
    Check {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// `kipuka plugins ...`
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// One row per loadable plugin; refused files are listed on stderr.
    List {
        /// Folder to scan instead of the defaults (repeatable).
        #[arg(long = "plugin-dir", value_name = "DIR")]
        plugin_dirs: Vec<PathBuf>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Everything one plugin declares.
    Inspect {
        /// A plugin name (searched in the plugin folders) or a path to a plugin file.
        target: String,
        /// Folder to scan instead of the defaults (repeatable).
        #[arg(long = "plugin-dir", value_name = "DIR")]
        plugin_dirs: Vec<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}
