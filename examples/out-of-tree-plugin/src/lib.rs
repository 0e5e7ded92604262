//! kipuka plugin for the Nimbus N1, a fictional HSM whose PKCS#11 library
//! happens to be SoftHSM2 — so you can try this adapter on any Debian box.

use kipuka_plugin_api::*;

struct Nimbus;

impl VendorPlugin for Nimbus {
    fn identity() -> PluginIdentity {
        PluginIdentity::new(
            "nimbus",
            "Nimbus Security (fictional)",
            "Nimbus N1 HSM; its PKCS#11 library is SoftHSM2",
            env!("CARGO_PKG_VERSION"),
        )
    }

    fn default_library_path() -> LibraryPaths {
        LibraryPaths::from_pairs(&[("linux", "/usr/lib/softhsm/libsofthsm2.so")])
    }

    fn provider_config() -> ProviderConfig {
        ProviderConfig::builder()
            // What C_GetInfo reports in manufacturerID.
            .manufacturer_id("SoftHSM")
            .env("SOFTHSM2_CONF", Some("/etc/softhsm/softhsm2.conf"), false,
                "SoftHSM2 configuration (directories.tokendir)")
            .max_sessions(32)
            // SoftHSM2 2.6 does RSA-OAEP with SHA-1 only.
            .oaep_hashes(&[HashAlg::SHA1])
            .exportable_by_default()
            .note("Software token: keys are files under directories.tokendir.")
            .build()
    }

    fn supported_mechanisms() -> Vec<Mechanism> {
        // The matrix baseline, less what SoftHSM2 2.6 lacks, plus what it has.
        MechanismTable::matrix_baseline(&[HashAlg::SHA1])
            .aes_content_encryption(AES_SIZES, false)
            .build()
    }
}

export_plugin!(Nimbus);
