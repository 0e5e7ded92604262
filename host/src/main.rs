//! The `kipuka` binary.

use std::process::ExitCode;

use clap::Parser;
use kipuka::cli::{self, Cli, Command, PluginsCommand};

fn main() -> ExitCode {
    let args = Cli::parse();
    if let Command::Serve { config } = &args.command {
        // serve sets up logging from its configuration.
        return cli::serve::serve_command(config);
    }
    init_logging();
    match args.command {
        Command::Serve { .. } => unreachable!("handled above"),
        Command::Check { config } => cli::check::check(&config),
        Command::HashPassword => cli::hash_password(),
        Command::Csr {
            key,
            subject,
            decrypt_key_id,
            asymmetric_decrypt_key_id,
        } => {
            use cli::csr::{csr_command, parse_hex, Protection};
            let protection = match (decrypt_key_id, asymmetric_decrypt_key_id) {
                (Some(id), _) => parse_hex(&id).map(Protection::Symmetric),
                (_, Some(id)) => parse_hex(&id).map(Protection::Asymmetric),
                (None, None) => Ok(Protection::None),
            };
            match protection {
                Ok(p) => csr_command(&key, &subject, &p),
                Err(e) => {
                    eprintln!("kipuka csr: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::Ca(cli::CaCommand::Init {
            config,
            ca,
            subject,
            days,
            out,
            force,
        }) => cli::ca::init(&config, &ca, &subject, days, out.as_deref(), force),
        Command::Ca(cli::CaCommand::KeygenSoftware {
            set,
            out,
            passphrase_env,
        }) => cli::ca::keygen_software(&set, &out, &passphrase_env),
        Command::EnrollCodes(cli::EnrollCodesCommand::Create {
            config,
            ca,
            name,
            uses,
            expires,
            json,
        }) => cli::codes::create(
            &config,
            &cli::codes::CreateOptions {
                ca: &ca,
                name: &name,
                uses,
                expires: &expires,
                json,
            },
        ),
        Command::EnrollCodes(cli::EnrollCodesCommand::List { config, json }) => {
            cli::codes::list(&config, json)
        }
        Command::EnrollCodes(cli::EnrollCodesCommand::Revoke { config, user }) => {
            cli::codes::revoke(&config, &user)
        }
        Command::Certs(c) => certs(&c),
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

fn certs(c: &cli::CertsCommand) -> ExitCode {
    use cli::{certs::CertsAction as A, CertsCommand as C};
    let (config, action) = match c {
        C::List {
            config,
            ca,
            status,
            subject,
            json,
        } => (
            config,
            A::List {
                ca: ca.as_deref(),
                status: status.as_deref(),
                subject: subject.as_deref(),
                json: *json,
            },
        ),
        C::Show {
            serial,
            config,
            json,
            pem,
        } => (
            config,
            A::Show {
                serial,
                json: *json,
                pem: *pem,
            },
        ),
        C::Revoke {
            serial,
            config,
            reason,
            at,
            invalidity_date,
        } => (
            config,
            A::Revoke {
                serial,
                reason,
                at: at.as_deref(),
                invalidity_date: invalidity_date.as_deref(),
            },
        ),
        C::Unhold { serial, config } => (config, A::Unhold { serial }),
    };
    cli::certs::certs(config, &action)
}

/// Logs to stderr; `KIPUKA_LOG` (an env-filter) sets the level, warn by default
/// for the tools.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KIPUKA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
        // cryptoki logs every vendor mechanism it has no name for as an error.
        .add_directive("cryptoki::mechanism=off".parse().expect("static directive"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
