//! Kryoptic, the software PKCS#11 token (`libkryoptic_pkcs11.so`), built
//! with its `pqc` feature for ML-DSA.

use kipuka_plugin_api::*;

const ML_DSA_SETS: &[MlDsaParameterSet] = &[
    MlDsaParameterSet::ML_DSA_44,
    MlDsaParameterSet::ML_DSA_65,
    MlDsaParameterSet::ML_DSA_87,
];

struct Kryoptic;

impl VendorPlugin for Kryoptic {
    fn identity() -> PluginIdentity {
        PluginIdentity::new(
            "kryoptic",
            "Kryoptic project",
            "Kryoptic software PKCS#11 token (development, CI, non-FIPS deployments)",
            env!("CARGO_PKG_VERSION"),
        )
    }

    fn default_library_path() -> LibraryPaths {
        LibraryPaths::from_pairs(&[
            ("linux", "/usr/lib/kryoptic/libkryoptic_pkcs11.so"),
            ("macos", "/usr/local/lib/libkryoptic_pkcs11.dylib"),
        ])
    }

    fn provider_config() -> ProviderConfig {
        ProviderConfig::builder()
            .manufacturer_id("Kryoptic")
            .pkcs11_version(3, 2)
            .env("KRYOPTIC_CONF", None, false,
                "Path of token.conf ([[slots]] slot, dbtype, dbargs); else $XDG_CONFIG_HOME/kryoptic/token.conf")
            .oaep_hashes(&[HashAlg::SHA1, HashAlg::SHA256, HashAlg::SHA384, HashAlg::SHA512])
            .ml_dsa(MlDsaAccess::PKCS11_3_2, None, false)
            .exportable_by_default()
            .note("A software implementation without FIPS 140-3 validation: not for deployments that require hardware-backed keys.")
            .note("Token state is stored on the filesystem: protect the Kryoptic data directory with file permissions.")
            .note("ML-DSA needs a build with the pqc feature against OpenSSL 3.5 or later.")
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
        .ml_dsa(
            MechanismId::ML_DSA,
            Some(MechanismId::ML_DSA_KEY_PAIR_GEN),
            ML_DSA_SETS,
        )
        .build()
    }
}

export_plugin!(Kryoptic);
