//! Entrust nShield (Solo XC, Connect XC, Edge) through `libcknfast.so`.

use kipuka_plugin_api::*;

struct NShield;

impl VendorPlugin for NShield {
    fn identity() -> PluginIdentity {
        PluginIdentity::new(
            "nshield",
            "Entrust",
            "Entrust nShield Solo XC, Connect XC and Edge (Security World), PKCS#11 via libcknfast",
            env!("CARGO_PKG_VERSION"),
        )
    }

    fn default_library_path() -> LibraryPaths {
        LibraryPaths::from_pairs(&[("linux", "/opt/nfast/toolkits/pkcs11/libcknfast.so")])
    }

    fn provider_config() -> ProviderConfig {
        ProviderConfig::builder()
            .manufacturer_id("nCipher")
            .manufacturer_id("Entrust")
            .env("NFAST_HOME", Some("/opt/nfast"), true,
                "nShield installation directory; cknfastrc is read from it")
            .env("NFAST_KMDATA", Some("/opt/nfast/kmdata"), true,
                "Key-management data; the Security World lives in $NFAST_KMDATA/local")
            .env("CKNFAST_LOADSHARING", None, false,
                "1 = one virtual slot per card set across modules (needed for softcards and HA)")
            .env("CKNFAST_FAKE_ACCELERATOR_LOGIN", None, false,
                "1 = let C_Login succeed on the accelerator slot for module-protected keys")
            .max_sessions(256)
            .oaep_hashes(&[HashAlg::SHA1, HashAlg::SHA256, HashAlg::SHA384, HashAlg::SHA512])
            .fips_140_3_level(3)
            .network_hsm()
            .note("The Security World must be initialised and the module operational before kipuka starts.")
            .note("Concurrent sessions depend on model and licence; the Solo XC allows up to 256.")
            .note("ML-DSA is not supported as of firmware 13.x: kipuka signs ML-DSA with the software fallback.")
            .note("RSA-OAEP and PSS require the MGF1 hash to equal the message hash (CKR_MECHANISM_PARAM_INVALID otherwise).")
            .build()
    }

    fn supported_mechanisms() -> Vec<Mechanism> {
        MechanismTable::matrix_baseline(&[
            HashAlg::SHA1,
            HashAlg::SHA256,
            HashAlg::SHA384,
            HashAlg::SHA512,
        ])
        .ecdsa_hash_and_sign(NIST_CURVES)
        .aes_content_encryption(AES_SIZES, false)
        .build()
    }
}

export_plugin!(NShield);
