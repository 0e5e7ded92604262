//! Thales ProtectServer / CipherTrust (SafeNet ProtectToolkit-C, provider
//! `ThalesCsp`, legacy) through `libcryptoki.so`.

use kipuka_plugin_api::*;

/// ProtectToolkit's own AES key wrap (`CKM_AES_KW`, predates the standard number).
const PTK_AES_KW: MechanismId = MechanismId(0x8000_0170);
/// ProtectToolkit's own AES key wrap with padding (`CKM_AES_KWP`).
const PTK_AES_KWP: MechanismId = MechanismId(0x8000_0171);

struct ThalesCsp;

impl VendorPlugin for ThalesCsp {
    fn identity() -> PluginIdentity {
        PluginIdentity::new(
            "thales-csp",
            "Thales",
            "Thales ProtectServer 3 / CipherTrust and SafeNet ProtectToolkit-C (ThalesCsp, legacy)",
            env!("CARGO_PKG_VERSION"),
        )
    }

    fn default_library_path() -> LibraryPaths {
        LibraryPaths::from_pairs(&[(
            "linux",
            "/opt/safenet/protecttoolkit5/ptk/lib/libcryptoki.so",
        )])
    }

    fn provider_config() -> ProviderConfig {
        ProviderConfig::builder()
            .manufacturer_id("SafeNet")
            .manufacturer_id("Thales")
            .manufacturer_id("ERACOM")
            .env("ET_PTKC_GENERAL_LIBRARY_MODE", Some("NORMAL"), false,
                "NORMAL, WLD (work-load distribution) or HA; anything else means NORMAL")
            .env("ET_HSM_NETCLIENT_SERVERLIST", None, true,
                "Space-separated host names of the ProtectServer network HSMs (unless set in the PTK configuration file)")
            .env("ET_PTKC_SW_DATAPATH", None, false,
                "Token directory of the software emulator (libctsw.so) only")
            .fips_140_3_level(3)
            .network_hsm()
            .note("libcryptoki.so is a link to libcthsm.so (HSM) or libctsw.so (emulator): check which one before going live.")
            .note("Session limits are per slot (vendor attribute CKA_MAX_SESSIONS); no fixed number is documented.")
            .note("ML-DSA is not supported: kipuka signs ML-DSA with the software fallback.")
            .build()
    }

    fn supported_mechanisms() -> Vec<Mechanism> {
        MechanismTable::matrix_baseline(&[HashAlg::SHA256])
            .aes_content_encryption(AES_SIZES, false)
            .with(ptk_wrap(PTK_AES_KW, "CKM_AES_KW (ProtectToolkit)"))
            .with(ptk_wrap(PTK_AES_KWP, "CKM_AES_KWP (ProtectToolkit)"))
            .build()
    }
}

fn ptk_wrap(id: MechanismId, name: &str) -> Mechanism {
    Mechanism {
        id,
        name: name.into(),
        operations: Operations::WRAP | Operations::UNWRAP,
        key_sizes: AES_SIZES.iter().copied().collect(),
        curves: Default::default(),
        hashes: Default::default(),
        parameter_sets: Default::default(),
    }
}

export_plugin!(ThalesCsp);
