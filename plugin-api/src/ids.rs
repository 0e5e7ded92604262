//! Integer newtypes for values that may grow.
//!
//! Every value here crosses the plugin boundary. They are
//! `#[repr(transparent)]` integers, not exhaustive enums, so that a plugin
//! built against a newer API can name a mechanism, hash or curve that this
//! host has never heard of without undefined behaviour: the host sees an
//! unknown number and treats it as such.

use abi_stable::StableAbi;

macro_rules! named_consts {
    ($ty:ident($int:ty) { $($(#[$doc:meta])* $name:ident = $value:expr => $text:literal,)* }) => {
        impl $ty {
            $($(#[$doc])* pub const $name: $ty = $ty($value);)*

            /// Every value this version of the API knows, with its name.
            pub const KNOWN: &'static [($ty, &'static str)] = &[$(($ty($value), $text),)*];

            /// The conventional name of a known value.
            pub fn name(self) -> Option<&'static str> {
                Self::KNOWN.iter().find(|(v, _)| *v == self).map(|(_, n)| *n)
            }

            /// The value whose conventional name is `name` (case-insensitive).
            pub fn from_name(name: &str) -> Option<$ty> {
                Self::KNOWN
                    .iter()
                    .find(|(_, n)| n.eq_ignore_ascii_case(name))
                    .map(|(v, _)| *v)
            }
        }

        impl core::fmt::Display for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({:#x})", stringify!($ty), self.0),
                }
            }
        }
    };
}

/// A PKCS#11 mechanism type (`CK_MECHANISM_TYPE`, a `CK_ULONG`).
///
/// Values ≥ `0x8000_0000` (`CKM_VENDOR_DEFINED`) are vendor mechanisms; a
/// plugin may declare any of them by number.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct MechanismId(pub u64);

named_consts! { MechanismId(u64) {
    /// `CKM_RSA_PKCS_KEY_PAIR_GEN`: RSA key pair generation.
    RSA_PKCS_KEY_PAIR_GEN = 0x0000 => "CKM_RSA_PKCS_KEY_PAIR_GEN",
    /// `CKM_RSA_PKCS`: raw PKCS#1 v1.5; for signing the caller supplies the DigestInfo.
    RSA_PKCS = 0x0001 => "CKM_RSA_PKCS",
    /// `CKM_RSA_PKCS_OAEP`: RSAES-OAEP (encrypt / key wrap) with `CK_RSA_PKCS_OAEP_PARAMS`.
    RSA_PKCS_OAEP = 0x0009 => "CKM_RSA_PKCS_OAEP",
    /// `CKM_RSA_PKCS_PSS`: RSASSA-PSS over a hash the caller computed.
    RSA_PKCS_PSS = 0x000D => "CKM_RSA_PKCS_PSS",
    /// `CKM_SHA256_RSA_PKCS`: hash-and-sign PKCS#1 v1.5 with SHA-256 inside the token.
    SHA256_RSA_PKCS = 0x0040 => "CKM_SHA256_RSA_PKCS",
    /// `CKM_SHA384_RSA_PKCS`.
    SHA384_RSA_PKCS = 0x0041 => "CKM_SHA384_RSA_PKCS",
    /// `CKM_SHA512_RSA_PKCS`.
    SHA512_RSA_PKCS = 0x0042 => "CKM_SHA512_RSA_PKCS",
    /// `CKM_SHA256_RSA_PKCS_PSS`: hash-and-sign PSS inside the token.
    SHA256_RSA_PKCS_PSS = 0x0043 => "CKM_SHA256_RSA_PKCS_PSS",
    /// `CKM_SHA384_RSA_PKCS_PSS`.
    SHA384_RSA_PKCS_PSS = 0x0044 => "CKM_SHA384_RSA_PKCS_PSS",
    /// `CKM_SHA512_RSA_PKCS_PSS`.
    SHA512_RSA_PKCS_PSS = 0x0045 => "CKM_SHA512_RSA_PKCS_PSS",
    /// `CKM_ML_DSA_KEY_PAIR_GEN` (PKCS#11 3.2).
    ML_DSA_KEY_PAIR_GEN = 0x001C => "CKM_ML_DSA_KEY_PAIR_GEN",
    /// `CKM_ML_DSA` (PKCS#11 3.2): pure ML-DSA (FIPS 204) over the whole message.
    ML_DSA = 0x001D => "CKM_ML_DSA",
    /// `CKM_EC_KEY_PAIR_GEN`: EC key pair generation.
    EC_KEY_PAIR_GEN = 0x1040 => "CKM_EC_KEY_PAIR_GEN",
    /// `CKM_ECDSA`: ECDSA over a hash the caller computed; output is raw `r || s`.
    ECDSA = 0x1041 => "CKM_ECDSA",
    /// `CKM_ECDSA_SHA256`: hash-and-sign ECDSA inside the token.
    ECDSA_SHA256 = 0x1044 => "CKM_ECDSA_SHA256",
    /// `CKM_ECDSA_SHA384`.
    ECDSA_SHA384 = 0x1045 => "CKM_ECDSA_SHA384",
    /// `CKM_ECDSA_SHA512`.
    ECDSA_SHA512 = 0x1046 => "CKM_ECDSA_SHA512",
    /// `CKM_ECDH1_DERIVE`: ECDH key agreement with `CK_ECDH1_DERIVE_PARAMS` (KDF, shared data).
    ECDH1_DERIVE = 0x1050 => "CKM_ECDH1_DERIVE",
    /// `CKM_AES_KEY_GEN`: AES secret key generation.
    AES_KEY_GEN = 0x1080 => "CKM_AES_KEY_GEN",
    /// `CKM_AES_CBC_PAD`: AES-CBC with PKCS#7 padding.
    AES_CBC_PAD = 0x1085 => "CKM_AES_CBC_PAD",
    /// `CKM_AES_GCM`: AES-GCM with `CK_GCM_PARAMS`.
    AES_GCM = 0x1087 => "CKM_AES_GCM",
    /// `CKM_AES_KEY_WRAP`: RFC 3394 AES key wrap (no padding).
    AES_KEY_WRAP = 0x2109 => "CKM_AES_KEY_WRAP",
    /// `CKM_AES_KEY_WRAP_PAD`: RFC 5649 AES key wrap with padding (PKCS#11 2.40 name).
    AES_KEY_WRAP_PAD = 0x210A => "CKM_AES_KEY_WRAP_PAD",
    /// `CKM_AES_KEY_WRAP_KWP`: RFC 5649 AES key wrap with padding (PKCS#11 3.0 name).
    AES_KEY_WRAP_KWP = 0x210B => "CKM_AES_KEY_WRAP_KWP",
}}

impl MechanismId {
    /// `CKM_VENDOR_DEFINED`: the first vendor-defined mechanism number.
    pub const VENDOR_DEFINED: u64 = 0x8000_0000;

    /// Whether this is a vendor-defined mechanism.
    pub fn is_vendor_defined(self) -> bool {
        self.0 >= Self::VENDOR_DEFINED
    }
}

/// What a mechanism is used for, as a set of bits (the `CKF_SIGN`,
/// `CKF_WRAP`, ... flags of `CK_MECHANISM_INFO`, renumbered densely).
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct Operations(pub u32);

impl Operations {
    /// `C_Sign`.
    pub const SIGN: Operations = Operations(1 << 0);
    /// `C_Verify`.
    pub const VERIFY: Operations = Operations(1 << 1);
    /// `C_Encrypt`.
    pub const ENCRYPT: Operations = Operations(1 << 2);
    /// `C_Decrypt`.
    pub const DECRYPT: Operations = Operations(1 << 3);
    /// `C_WrapKey`.
    pub const WRAP: Operations = Operations(1 << 4);
    /// `C_UnwrapKey`.
    pub const UNWRAP: Operations = Operations(1 << 5);
    /// `C_DeriveKey`.
    pub const DERIVE: Operations = Operations(1 << 6);
    /// `C_GenerateKeyPair`.
    pub const GENERATE_KEY_PAIR: Operations = Operations(1 << 7);
    /// `C_GenerateKey`.
    pub const GENERATE: Operations = Operations(1 << 8);

    /// Names of the operations, in bit order, as used in JSON output.
    pub const NAMES: &'static [(Operations, &'static str)] = &[
        (Self::SIGN, "sign"),
        (Self::VERIFY, "verify"),
        (Self::ENCRYPT, "encrypt"),
        (Self::DECRYPT, "decrypt"),
        (Self::WRAP, "wrap"),
        (Self::UNWRAP, "unwrap"),
        (Self::DERIVE, "derive"),
        (Self::GENERATE_KEY_PAIR, "generate_key_pair"),
        (Self::GENERATE, "generate"),
    ];

    /// The empty set.
    pub const fn empty() -> Self {
        Operations(0)
    }

    /// The union of two sets.
    pub const fn union(self, other: Operations) -> Self {
        Operations(self.0 | other.0)
    }

    /// Whether every operation of `other` is in `self`.
    pub const fn contains(self, other: Operations) -> bool {
        self.0 & other.0 == other.0
    }

    /// The names of the operations in the set; unknown bits are named `bitN`.
    pub fn names(self) -> Vec<String> {
        (0..32)
            .filter(|bit| self.0 & (1 << bit) != 0)
            .map(|bit| {
                Self::NAMES
                    .iter()
                    .find(|(op, _)| op.0 == 1 << bit)
                    .map(|(_, n)| (*n).to_string())
                    .unwrap_or_else(|| format!("bit{bit}"))
            })
            .collect()
    }
}

impl core::ops::BitOr for Operations {
    type Output = Operations;
    fn bitor(self, rhs: Operations) -> Operations {
        self.union(rhs)
    }
}

/// A hash function, as used in RSA-PSS, RSA-OAEP and MGF1 parameters.
/// The numbers are the PKCS#11 `CKM_SHA*` mechanism values.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct HashAlg(pub u64);

named_consts! { HashAlg(u64) {
    /// `CKM_SHA_1`: only where a token cannot do better (SoftHSM2's OAEP).
    SHA1 = 0x0220 => "SHA-1",
    /// `CKM_SHA256`.
    SHA256 = 0x0250 => "SHA-256",
    /// `CKM_SHA384`.
    SHA384 = 0x0260 => "SHA-384",
    /// `CKM_SHA512`.
    SHA512 = 0x0270 => "SHA-512",
}}

/// An elliptic curve. The numbers are kipuka's own; [`Curve::oid`] gives the
/// curve's object identifier, which is what PKCS#11 `CKA_EC_PARAMS` carries.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Curve(pub u32);

named_consts! { Curve(u32) {
    /// NIST P-256 (secp256r1, prime256v1).
    P256 = 1 => "P-256",
    /// NIST P-384 (secp384r1).
    P384 = 2 => "P-384",
    /// NIST P-521 (secp521r1).
    P521 = 3 => "P-521",
}}

impl Curve {
    /// The curve's object identifier in dotted form.
    pub fn oid(self) -> Option<&'static str> {
        match self {
            Curve::P256 => Some("1.2.840.10045.3.1.7"),
            Curve::P384 => Some("1.3.132.0.34"),
            Curve::P521 => Some("1.3.132.0.35"),
            _ => None,
        }
    }
}

/// An ML-DSA parameter set (FIPS 204). The numbers are the PKCS#11 3.2
/// `CKP_ML_DSA_*` values carried in `CKA_PARAMETER_SET`.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct MlDsaParameterSet(pub u64);

named_consts! { MlDsaParameterSet(u64) {
    /// `CKP_ML_DSA_44`.
    ML_DSA_44 = 1 => "ML-DSA-44",
    /// `CKP_ML_DSA_65`.
    ML_DSA_65 = 2 => "ML-DSA-65",
    /// `CKP_ML_DSA_87`.
    ML_DSA_87 = 3 => "ML-DSA-87",
}}

/// The PKCS#11 user type passed to `C_Login` (`CK_USER_TYPE`).
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct UserType(pub u64);

named_consts! { UserType(u64) {
    /// `CKU_SO`: the security officer; kipuka never logs in as SO.
    SO = 0 => "CKU_SO",
    /// `CKU_USER`: the normal user (Luna's Crypto Officer).
    USER = 1 => "CKU_USER",
    /// `CKU_CONTEXT_SPECIFIC`: re-authentication for `CKA_ALWAYS_AUTHENTICATE` keys.
    CONTEXT_SPECIFIC = 2 => "CKU_CONTEXT_SPECIFIC",
    /// Luna's `CKU_CRYPTO_USER` (`CKU_VENDOR_DEFINED | 1`): may use keys, not create them.
    LUNA_CRYPTO_USER = 0x8000_0001 => "CKU_CRYPTO_USER",
}}

/// Flags for `CK_C_INITIALIZE_ARGS.flags`.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct InitializeFlags(pub u64);

impl InitializeFlags {
    /// No flags: the library may not create threads and gets no locking
    /// callbacks, i.e. `pInitArgs = NULL` semantics for a single-threaded caller.
    pub const NONE: InitializeFlags = InitializeFlags(0);
    /// `CKF_LIBRARY_CANT_CREATE_OS_THREADS`.
    pub const LIBRARY_CANT_CREATE_OS_THREADS: InitializeFlags = InitializeFlags(0x0000_0001);
    /// `CKF_OS_LOCKING_OK`: the library may use the OS's locking primitives.
    /// kipuka calls a module from many threads, so every shipped plugin sets it.
    pub const OS_LOCKING_OK: InitializeFlags = InitializeFlags(0x0000_0002);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: InitializeFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The names of the set flags.
    pub fn names(self) -> Vec<String> {
        let mut out = Vec::new();
        if self.contains(Self::LIBRARY_CANT_CREATE_OS_THREADS) && self.0 != 0 {
            out.push("CKF_LIBRARY_CANT_CREATE_OS_THREADS".to_string());
        }
        if self.contains(Self::OS_LOCKING_OK) && self.0 != 0 {
            out.push("CKF_OS_LOCKING_OK".to_string());
        }
        let rest = self.0 & !0x3;
        if rest != 0 {
            out.push(format!("{rest:#x}"));
        }
        out
    }
}

/// How a vendor reaches ML-DSA (FIPS 204) natively.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct MlDsaAccess(pub u32);

named_consts! { MlDsaAccess(u32) {
    /// The token cannot sign with ML-DSA.
    NONE = 0 => "none",
    /// The standard PKCS#11 3.2 `CKM_ML_DSA` mechanism.
    PKCS11_3_2 = 1 => "pkcs11-3.2",
    /// A vendor-defined mechanism, named in [`crate::MlDsaSupport::vendor_mechanism`].
    VENDOR_MECHANISM = 2 => "vendor-mechanism",
}}

/// What the vendor library does with a session that stays idle.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct IdleBehaviour(pub u32);

named_consts! { IdleBehaviour(u32) {
    /// Idle sessions stay open for as long as the library is loaded.
    KEPT = 0 => "kept",
    /// The HSM closes sessions that stay idle longer than a timeout the
    /// administrator configures; the host must keep them busy or reopen them.
    CLOSED_AFTER_CONFIGURED_TIMEOUT = 1 => "closed-after-configured-timeout",
}}

/// Why a plugin call failed.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct PluginErrorKind(pub u32);

named_consts! { PluginErrorKind(u32) {
    /// The plugin's code panicked; the panic was caught at the boundary.
    PANICKED = 1 => "panicked",
    /// The plugin cannot describe itself on this platform.
    UNSUPPORTED_PLATFORM = 2 => "unsupported-platform",
    /// Anything else; the message says what.
    OTHER = 3 => "other",
}}
