//! The configuration loader on arbitrary TOML text: `Config::load_str`, the
//! parse and validation `kipuka serve --config` applies to a file's content
//! (without the environment). An error must be a `ConfigError` whose message
//! renders; never a panic.
#![no_main]

use kipuka::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::load_str(text) {
        Ok(config) => {
            let _ = config.default_ca();
            let _ = config.hsm_pool_size();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
