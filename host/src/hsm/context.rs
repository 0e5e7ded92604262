//! `Pkcs11Context`: one vendor library, initialised with the plugin's
//! quirks, and the token kipuka uses in it.

use std::{
    collections::{btree_map::Entry, BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock},
};

use cryptoki::{
    context::{CInitializeArgs, CInitializeFlags, Pkcs11},
    error::{Error as CkError, RvError},
    session::Session,
    slot::{Limit, Slot},
};
use kipuka_plugin_api::{MechanismId, Operations};

use crate::plugins::VendorProfile;

use super::{
    env::{apply_vendor_env, EnvAction},
    error::HsmError,
};

/// Which token to use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSelector {
    /// `CK_TOKEN_INFO.label` (`[hsm] token_label`, or `token=` of a key URI).
    pub label: Option<String>,
    /// `CK_SLOT_ID` (`[hsm] slot`, or `slot-id=` of a key URI).
    pub slot: Option<u64>,
    /// `CK_TOKEN_INFO.serialNumber` (`serial=` of a key URI).
    pub serial: Option<String>,
}

impl std::fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(l) = &self.label {
            parts.push(format!("label {l:?}"));
        }
        if let Some(s) = self.slot {
            parts.push(format!("slot {s}"));
        }
        if let Some(s) = &self.serial {
            parts.push(format!("serial {s:?}"));
        }
        if parts.is_empty() {
            f.write_str("(first token with a key)")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// What `C_GetInfo` / `C_GetTokenInfo` said, for logs and `kipuka check`.
#[derive(Clone, Debug)]
pub struct TokenSummary {
    /// `CK_INFO.manufacturerID` of the library.
    pub library_manufacturer: String,
    /// `CK_INFO.libraryDescription`.
    pub library_description: String,
    /// `CK_INFO.cryptokiVersion`.
    pub cryptoki_version: String,
    /// The slot in use.
    pub slot: u64,
    /// Token label.
    pub label: String,
    /// Token manufacturer.
    pub manufacturer: String,
    /// Token model.
    pub model: String,
    /// Token serial number.
    pub serial: String,
    /// `ulMaxSessionCount`, when the token states a finite one.
    pub max_sessions: Option<u64>,
}

struct Live {
    slot: Slot,
    mechanisms: HashSet<MechanismId>,
    summary: TokenSummary,
}

/// One vendor library and one token in it.
pub struct Pkcs11Context {
    pkcs11: Pkcs11,
    library: PathBuf,
    profile: Arc<VendorProfile>,
    selector: TokenSelector,
    env_actions: Vec<EnvAction>,
    live: RwLock<Live>,
}

impl std::fmt::Debug for Pkcs11Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Context")
            .field("library", &self.library)
            .field("provider", &self.profile.name)
            .field("selector", &self.selector)
            .finish()
    }
}

fn init_args(profile: &VendorProfile) -> CInitializeArgs {
    // `CInitializeFlags` has no raw constructor; build it from the two
    // standard flags the plugin may ask for.
    let raw = profile.initialize_flags;
    let mut flags = CInitializeFlags::empty();
    if raw.contains(kipuka_plugin_api::InitializeFlags::OS_LOCKING_OK) && raw.0 != 0 {
        flags |= CInitializeFlags::OS_LOCKING_OK;
    }
    if raw.contains(kipuka_plugin_api::InitializeFlags::LIBRARY_CANT_CREATE_OS_THREADS)
        && raw.0 != 0
    {
        flags |= CInitializeFlags::LIBRARY_CANT_CREATE_OS_THREADS;
    }
    CInitializeArgs::new(flags)
}

/// The PKCS#11 libraries this process has loaded: one handle per file, kept
/// until the process exits. Its lock is held around every `C_Initialize` and
/// `C_Finalize`.
///
/// A library's state (initialised or not, sessions, login) belongs to the
/// process, and `dlopen` maps a file once however often it is opened. When
/// each context loaded its own handle:
/// - dropping the last context `dlclose`d the library, and SoftHSM2 and
///   Kryoptic are then unloaded, without `C_Finalize`: sessions and login
///   gone, and any thread a vendor library runs left in unmapped code;
/// - the contexts opened next, at the same time, each called `C_Initialize`
///   on the fresh copy, and SoftHSM2 2.6's is not thread-safe: a crash in its
///   mechanism table, or two object stores, one without the token
///   ("no token label"), or sessions that vanish (`CKR_SESSION_HANDLE_INVALID`).
static LIBRARIES: Mutex<BTreeMap<PathBuf, Pkcs11>> = Mutex::new(BTreeMap::new());

fn libraries() -> MutexGuard<'static, BTreeMap<PathBuf, Pkcs11>> {
    LIBRARIES.lock().unwrap_or_else(PoisonError::into_inner)
}

fn library_key(library: &Path) -> PathBuf {
    std::fs::canonicalize(library).unwrap_or_else(|_| library.to_path_buf())
}

/// The process's handle on `library`, loaded on first use.
fn load(
    libraries: &mut BTreeMap<PathBuf, Pkcs11>,
    library: &Path,
) -> Result<Pkcs11, cryptoki::error::Error> {
    Ok(match libraries.entry(library_key(library)) {
        Entry::Occupied(e) => e.get().clone(),
        Entry::Vacant(e) => e.insert(Pkcs11::new(library)?).clone(),
    })
}

fn initialize(pkcs11: &Pkcs11, profile: &VendorProfile) -> Result<(), HsmError> {
    match pkcs11.initialize(init_args(profile)) {
        // Another part of this process (a second context on the same
        // library) initialised it already: that is fine.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
        Err(e) => Err(HsmError::pkcs11("C_Initialize")(e)),
    }
}

impl Pkcs11Context {
    /// Loads `library` (or the plugin's default), applies the vendor's
    /// environment, initialises it with the plugin's flags and finds the token.
    pub fn open(
        library: Option<&Path>,
        profile: Arc<VendorProfile>,
        extra_env: &BTreeMap<String, String>,
        selector: TokenSelector,
    ) -> Result<Self, HsmError> {
        let library = match library {
            Some(l) => l.to_path_buf(),
            None => PathBuf::from(profile.default_library_path.clone().ok_or_else(|| {
                HsmError::Library {
                    library: "(none)".into(),
                    reason: format!(
                        "[hsm] library is not set and plugin {} names no library for {}",
                        profile.name,
                        std::env::consts::OS
                    ),
                }
            })?),
        };
        let env_actions = apply_vendor_env(&profile, extra_env)?;
        let pkcs11 = {
            let mut libraries = libraries();
            let pkcs11 = load(&mut libraries, &library).map_err(|e| HsmError::Library {
                library: library.display().to_string(),
                reason: e.to_string(),
            })?;
            initialize(&pkcs11, &profile)
                .map_err(|e| env_hint(e, &library, &profile, &env_actions))?;
            pkcs11
        };
        let live = find_token(&pkcs11, &library, &selector)?;
        Ok(Pkcs11Context {
            pkcs11,
            library,
            profile,
            selector,
            env_actions,
            live: RwLock::new(live),
        })
    }

    /// `CK_INFO.manufacturerID` of `library`, for choosing a provider when
    /// the configuration names none. Initialises and finalises the library,
    /// unless a context of this process has it initialised already.
    pub fn manufacturer_of(library: &Path) -> Result<String, String> {
        let mut libraries = libraries();
        let pkcs11 = load(&mut libraries, library).map_err(|e| e.to_string())?;
        let ours = match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => true,
            // In use by a context of this process: finalising would end it.
            Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => false,
            Err(e) => return Err(format!("C_Initialize: {}", super::error::ckr_name(&e))),
        };
        let info = pkcs11
            .get_library_info()
            .map_err(|e| format!("C_GetInfo: {}", super::error::ckr_name(&e)));
        if ours {
            // No context had it initialised: once finalised cleanly it may
            // be unloaded (if no context holds it), and the context opened
            // next loads it afresh.
            let _ = pkcs11.finalize();
            libraries.remove(&library_key(library));
        }
        Ok(info?.manufacturer_id().trim().to_string())
    }

    /// The vendor profile in force.
    pub fn profile(&self) -> &VendorProfile {
        &self.profile
    }

    /// The library path.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// What was done to the environment before `C_Initialize`.
    pub fn env_actions(&self) -> &[EnvAction] {
        &self.env_actions
    }

    /// The token in use.
    pub fn summary(&self) -> TokenSummary {
        self.live.read().expect("context lock").summary.clone()
    }

    fn slot(&self) -> Slot {
        self.live.read().expect("context lock").slot
    }

    /// Whether the token lists `mechanism` in `C_GetMechanismList`.
    pub fn token_has(&self, mechanism: MechanismId) -> bool {
        self.live
            .read()
            .expect("context lock")
            .mechanisms
            .contains(&mechanism)
    }

    /// Whether both the plugin (for `operations`) and the token support `mechanism`.
    pub fn usable(&self, mechanism: MechanismId, operations: Operations) -> bool {
        self.profile.supports(mechanism, operations) && self.token_has(mechanism)
    }

    /// Opens a read-only session on the token.
    pub fn open_session(&self) -> Result<Session, HsmError> {
        self.pkcs11
            .open_ro_session(self.slot())
            .map_err(HsmError::pkcs11("C_OpenSession"))
    }

    /// Opens a read-write session (for session objects: generated and
    /// imported keys live in R/W sessions on some vendors).
    pub fn open_rw_session(&self) -> Result<Session, HsmError> {
        self.pkcs11
            .open_rw_session(self.slot())
            .map_err(HsmError::pkcs11("C_OpenSession"))
    }

    /// The number of sessions this process has open on the token, when the
    /// token reports it.
    pub fn session_count(&self) -> Option<u64> {
        self.pkcs11
            .get_token_info(self.slot())
            .ok()
            .and_then(|i| i.session_count())
    }

    /// Finalises and re-initialises the library and finds the token again:
    /// what a restarted network HSM or a re-inserted token needs. Every
    /// session of this process is gone afterwards.
    pub fn reinitialize(&self) -> Result<(), HsmError> {
        let mut live = self.live.write().expect("context lock");
        {
            let _libraries = libraries();
            let _ = self.pkcs11.clone().finalize();
            initialize(&self.pkcs11, &self.profile)?;
        }
        *live = find_token(&self.pkcs11, &self.library, &self.selector)?;
        Ok(())
    }

    /// Whether the token can still be reached (`C_GetTokenInfo`).
    pub fn token_present(&self) -> Result<(), HsmError> {
        self.pkcs11
            .get_token_info(self.slot())
            .map(|_| ())
            .map_err(HsmError::pkcs11("C_GetTokenInfo"))
    }
}

/// A vendor library whose environment is wrong fails `C_Initialize` with a
/// bare return value: name the variables it reads and where their values
/// came from, which is what the operator has to check.
fn env_hint(
    e: HsmError,
    library: &Path,
    profile: &VendorProfile,
    actions: &[EnvAction],
) -> HsmError {
    if actions.is_empty() {
        return e;
    }
    let vars: Vec<String> = actions
        .iter()
        .map(|a| {
            let (name, origin) = match a {
                EnvAction::KeptOperatorValue(n) => (n, "from the environment"),
                EnvAction::SetFromConfig(n) => (n, "from [hsm.env]"),
                EnvAction::SetDefault(n) => (n, "the plugin's default"),
                EnvAction::LeftUnset(n) => (n, "unset"),
            };
            match std::env::var_os(name) {
                Some(v) => format!("{name}={} ({origin})", v.to_string_lossy()),
                None => format!("{name} ({origin})"),
            }
        })
        .collect();
    HsmError::Library {
        library: library.display().to_string(),
        reason: format!(
            "{e}; the {} library reads {}: check that they point at a working installation",
            profile.name,
            vars.join(", ")
        ),
    }
}

fn find_token(pkcs11: &Pkcs11, library: &Path, selector: &TokenSelector) -> Result<Live, HsmError> {
    let info = pkcs11
        .get_library_info()
        .map_err(HsmError::pkcs11("C_GetInfo"))?;
    let slots = pkcs11
        .get_slots_with_token()
        .map_err(HsmError::pkcs11("C_GetSlotList"))?;
    let mut present = Vec::new();
    let mut chosen = None;
    for slot in slots {
        let token = match pkcs11.get_token_info(slot) {
            Ok(t) => t,
            Err(_) => continue,
        };
        let label = token.label().trim().to_string();
        let serial = token.serial_number().trim().to_string();
        present.push(format!("slot {} {label:?}", slot.id()));
        let matches = selector.label.as_ref().is_none_or(|l| *l == label)
            && selector.slot.is_none_or(|s| s == slot.id())
            && selector.serial.as_ref().is_none_or(|s| *s == serial);
        if matches && chosen.is_none() {
            chosen = Some((slot, token));
        }
    }
    let Some((slot, token)) = chosen else {
        return Err(HsmError::TokenNotFound {
            wanted: selector.to_string(),
            library: library.display().to_string(),
            present: if present.is_empty() {
                "none".into()
            } else {
                present.join(", ")
            },
        });
    };
    let mechanisms = pkcs11
        .get_mechanism_list(slot)
        .map_err(HsmError::pkcs11("C_GetMechanismList"))?
        .into_iter()
        .map(|m| MechanismId(*m))
        .collect();
    let v = info.cryptoki_version();
    Ok(Live {
        slot,
        mechanisms,
        summary: TokenSummary {
            library_manufacturer: info.manufacturer_id().trim().to_string(),
            library_description: info.library_description().trim().to_string(),
            cryptoki_version: format!("{}.{}", v.major(), v.minor()),
            slot: slot.id(),
            label: token.label().trim().to_string(),
            manufacturer: token.manufacturer_id().trim().to_string(),
            model: token.model().trim().to_string(),
            serial: token.serial_number().trim().to_string(),
            max_sessions: match token.max_session_count() {
                Limit::Max(n) => Some(n),
                Limit::Unavailable | Limit::Infinite => None,
            },
        },
    })
}
