//! The RFC 7512 `pkcs11:` URI parser (`kipuka::hsm::Pkcs11Uri: FromStr`) on
//! arbitrary text. What it accepts must print (Display) to a URI that parses
//! back to the same value.
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
            assert_eq!(again, uri, "{text:?} -> {printed:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
