//! `cargo xtask`: developer and CI tasks for kipuka.
//!
//! * `cargo xtask deps` — installs the Debian packages the tests need, builds OpenSSL 3.5 and
//!   Kryoptic into a cache, installs cargo-fuzz into it, prints `export NAME=value` lines (stdout) and writes them to
//!   `target/kipuka-test-env.sh`. Progress goes to stderr, so `eval "$(cargo xtask deps)"` works.
//! * `cargo xtask test` — `deps`, then fmt, clippy, build and test (release profile).
//! * `cargo xtask deb` — `target/debian/kipuka_<version>_<arch>.deb` (see `deb.rs`).
//! * `cargo xtask demo [--port N]` — kipuka on a SoftHSM2 token in `target/kipuka-demo/`
//!   (kept between runs), then `kipuka serve` in the foreground.

mod cargo_fuzz;
mod deb;
mod demo;
mod deps;
mod kryoptic;
mod openssl;
mod packages;
mod test;
mod util;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  deps    install Debian packages, build OpenSSL 3.5 and Kryoptic, install cargo-fuzz (cached),
          print the test env
  test    deps, then cargo fmt --check, clippy -D warnings, build and test (all --release)
  {DEMO}
  {DEB}
  help    print this message

environment:
  KIPUKA_CACHE   cache directory for the OpenSSL and Kryoptic builds and cargo-fuzz (default ~/.cache/kipuka)";

fn usage() -> String {
    USAGE
        .replace("{DEMO}", demo::USAGE)
        .replace("{DEB}", deb::USAGE)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["deps"] => deps::run().map(|env| print!("{}", env.to_shell())),
        ["test"] => test::run(),
        ["deb"] => deb::run().map(|_| ()),
        // Returns only on error: it execs `kipuka serve`.
        ["demo", rest @ ..] => demo::run(rest),
        ["help" | "-h" | "--help"] => {
            println!("{}", usage());
            Ok(())
        }
        [] => {
            eprintln!("error: no command given\n\n{}", usage());
            return ExitCode::from(2);
        }
        other => {
            eprintln!(
                "error: unknown command `{}`\n\n{}",
                other.join(" "),
                usage()
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
