//! The RFC 7512 `pkcs11:` URI parser (`kipuka::hsm::Pkcs11Uri: FromStr`) on
//! arbitrary text. What it accepts must print (Display) to a URI that parses
//! back to the same value (query values excepted: Display hides them).
#![no_main]

use kipuka::hsm::Pkcs11Uri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<Pkcs11Uri>() {
        Ok(uri) => {
            let printed = uri.to_string();
            let again: Pkcs11Uri = printed.parse().unwrap_or_else(|e| {
                panic!("{printed:?} (printed from {text:?}) does not parse: {e}")
            });
            // Display never prints query values (`pin-value` may be a
            // PIN): they come back as "...". Everything else is kept.
            let mut expected = uri.clone();
            for (_, value) in &mut expected.query {
                *value = "...".to_string();
            }
            assert_eq!(again, expected, "{text:?} -> {printed:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
