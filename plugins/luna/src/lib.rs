//! Thales Luna 7 (Network HSM SA 7000, PCIe) through `libCryptoki2_64.so`
//! (provider `ThalesTct`).

use kipuka_plugin_api::*;

struct Luna;

impl VendorPlugin for Luna {
    fn identity() -> PluginIdentity {
        PluginIdentity::new(
            "luna",
            "Thales",
            "Thales Luna 7 Network HSM and PCIe HSM (ThalesTct), PKCS#11 via LunaClient",
            env!("CARGO_PKG_VERSION"),
        )
    }

    fn default_library_path() -> LibraryPaths {
        LibraryPaths::from_pairs(&[
            ("linux", "/usr/safenet/lunaclient/lib/libCryptoki2_64.so"),
            ("macos", "/usr/local/lib/libCryptoki2.dylib"),
        ])
    }

    fn provider_config() -> ProviderConfig {
        ProviderConfig::builder()
            .manufacturer_id("SafeNet")
            .manufacturer_id("Thales")
            .env("ChrystokiConfigurationPath", Some("/etc"), false,
                "Directory holding Chrystoki.conf (client certificate, server list); set it when the client is not installed in the default place")
            .max_sessions(64)
            .idle_sessions_expire(30)
            .oaep_hashes(&[HashAlg::SHA1, HashAlg::SHA256, HashAlg::SHA384, HashAlg::SHA512])
            .fips_140_3_level(3)
            .network_hsm()
            .note("At most 64 concurrent PKCS#11 sessions per partition; use HA groups across partitions for more.")
            .note("ML-DSA is not supported as of firmware 7.x: kipuka signs ML-DSA with the software fallback.")
            .note("The client certificate must be registered with the partition before kipuka can connect.")
            .note("Partitions close idle sessions after 'Idle Sessions Timeout': set it to 0 or above kipuka's health-check interval.")
            .note("kipuka logs in as Crypto Officer (CKU_USER); the Crypto User role is the vendor user type 0x80000001.")
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

export_plugin!(Luna);
