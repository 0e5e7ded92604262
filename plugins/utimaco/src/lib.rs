//! Utimaco CryptoServer (LAN, PCIe, Se-Series) through `libcs_pkcs11_R3.so`.

use kipuka_plugin_api::*;

/// The ML-DSA mechanism the compatibility matrix names for `sign_ml_dsa`
/// on firmware that has one (`CKM_IBM_DILITHIUM`). Availability depends on
/// the firmware, so the host confirms it in `C_GetMechanismList` first.
const FIRMWARE_ML_DSA: MechanismId = MechanismId(0x8001_0023);

struct Utimaco;

impl VendorPlugin for Utimaco {
    fn identity() -> PluginIdentity {
        PluginIdentity::new(
            "utimaco",
            "Utimaco",
            "Utimaco CryptoServer LAN, PCIe and Se-Series, PKCS#11 R3",
            env!("CARGO_PKG_VERSION"),
        )
    }

    fn default_library_path() -> LibraryPaths {
        LibraryPaths::from_pairs(&[("linux", "/usr/lib/utimaco/libcs_pkcs11_R3.so")])
    }

    fn provider_config() -> ProviderConfig {
        ProviderConfig::builder()
            .manufacturer_id("Utimaco")
            .env("CS_PKCS11_R3_CFG", Some("/etc/utimaco/cs_pkcs11_R3.cfg"), true,
                "Path of cs_pkcs11_R3.cfg ([Global] logging, [CryptoServer] Device = TCP:host:3001)")
            .max_sessions(128)
            .oaep_hashes(&[HashAlg::SHA256])
            .ml_dsa(MlDsaAccess::VENDOR_MECHANISM, Some(FIRMWARE_ML_DSA), true)
            .fips_140_3_level(3)
            .network_hsm()
            .note("RSA-OAEP with SHA-384 is not supported; /serverkeygen wraps with OAEP SHA-256.")
            .note("At most 128 concurrent PKCS#11 sessions: size the session pool (db.max_connections) below it.")
            .note("ML-DSA depends on the firmware; without it kipuka uses the software fallback.")
            .build()
    }

    fn supported_mechanisms() -> Vec<Mechanism> {
        MechanismTable::matrix_baseline(&[HashAlg::SHA256])
            .ecdsa_hash_and_sign(NIST_CURVES)
            .aes_content_encryption(AES_SIZES, false)
            .ml_dsa(
                FIRMWARE_ML_DSA,
                None,
                &[
                    MlDsaParameterSet::ML_DSA_44,
                    MlDsaParameterSet::ML_DSA_65,
                    MlDsaParameterSet::ML_DSA_87,
                ],
            )
            .named(FIRMWARE_ML_DSA, "CKM_IBM_DILITHIUM (firmware-dependent)")
            .build()
    }
}

export_plugin!(Utimaco);
