//! A test-only PKCS#11 module that forwards every call to a real module
//! (SoftHSM2, Kryoptic) and emulates what a hardware vendor's library does
//! differently: a session limit, an idle-session timeout, a reduced mechanism
//! list and OAEP hashes, required environment variables, the manufacturer
//! string, latency, and faults (device errors, sessions invalidated, the token
//! gone for a while).
//!
//! Configuration: a JSON file named by `KIPUKA_SHIM_CONFIG` (see [`Config`]).
//! It is read again whenever its modification time or size changes, so a test
//! switches faults on and off while the process using the module runs. Write
//! it atomically (a temporary file renamed over it).
//!
//! Session handles given to the caller are the shim's own, never reused; each
//! stands for one session of the real module. An invalidated or expired
//! session is closed in the real module, and its handle answers
//! `CKR_SESSION_HANDLE_INVALID` from then on, as on a vendor token.
//!
//! Counters (sessions open, high-water mark, refusals, faults injected) go
//! to `stats_file` as JSON, for tests to read.
//!
//! A panic never crosses the FFI boundary: every entry point catches it and
//! answers `CKR_GENERAL_ERROR`.

#![allow(non_snake_case)]

use std::{
    collections::HashMap,
    os::raw::c_void,
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard, OnceLock},
    time::{Duration, Instant, SystemTime},
};

use cryptoki_sys::*;

mod forward;

/// The environment variable naming the configuration file.
pub const CONFIG_VAR: &str = "KIPUKA_SHIM_CONFIG";

/// A variable the emulated vendor library needs before `C_Initialize`.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequiredEnv {
    /// Its name.
    pub name: String,
    /// `"dir"` or `"file"`: it must name an existing directory / file
    /// (as `NFAST_HOME` must hold the installation, `CS_PKCS11_R3_CFG` the
    /// configuration file). Otherwise being set is enough.
    #[serde(default)]
    pub must_exist: Option<String>,
}

/// The emulation. Every field is optional; an empty object forwards as is
/// (apart from handles being the shim's own).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The real module (required; read once, when the module is loaded).
    pub module: Option<PathBuf>,
    /// Vendor name for messages.
    pub vendor: String,
    /// `manufacturerID` in `C_GetInfo` and `C_GetTokenInfo`.
    pub manufacturer: Option<String>,
    /// `libraryDescription` in `C_GetInfo`.
    pub library_description: Option<String>,
    /// `model` in `C_GetTokenInfo`.
    pub model: Option<String>,
    /// Most sessions open at once (`CKR_SESSION_COUNT` beyond), also
    /// reported as `ulMaxSessionCount`.
    pub max_sessions: Option<u64>,
    /// Report `max_sessions` as `ulMaxSessionCount` (default true); false
    /// emulates a vendor whose token says "effectively infinite".
    pub report_max_sessions: Option<bool>,
    /// A session unused for longer is closed (`CKR_SESSION_HANDLE_INVALID`).
    pub idle_timeout_ms: Option<u64>,
    /// The mechanisms the token has (`C_GetMechanismList` is the real list
    /// filtered by it; `CKR_MECHANISM_INVALID` for the others).
    pub mechanisms: Option<Vec<u64>>,
    /// `hashAlg` values (`CKM_SHA256`...) allowed in `CKM_RSA_PKCS_OAEP`
    /// parameters (`CKR_MECHANISM_PARAM_INVALID` for the others).
    pub oaep_hashes: Option<Vec<u64>>,
    /// Variables whose absence makes `C_Initialize` fail.
    pub required_env: Vec<RequiredEnv>,
    /// Delay per `C_Sign` (the call that returns the signature), `[min, max]` ms.
    pub sign_delay_ms: Option<[f64; 2]>,
    /// Delay per `C_WrapKey` (the call that returns the wrapped key).
    pub wrap_delay_ms: Option<[f64; 2]>,
    /// Delay per `C_GenerateKeyPair`.
    pub generate_delay_ms: Option<[f64; 2]>,
    /// Fraction of `C_Sign` calls answered `CKR_DEVICE_ERROR` (the real
    /// module signs, the result is thrown away).
    pub sign_error_rate: f64,
    /// Fraction of operation starts (`C_*Init`, `C_WrapKey`,
    /// `C_GenerateKeyPair`...) whose session is invalidated first.
    pub invalidate_rate: f64,
    /// The token is gone: session calls answer `CKR_DEVICE_REMOVED`, slot
    /// calls `CKR_TOKEN_NOT_PRESENT`, and every session is lost.
    pub token_gone: bool,
    /// Where to write the counters (JSON).
    pub stats_file: Option<PathBuf>,
}

/// Counters, written to `stats_file`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// Process id of the writer.
    pub pid: u32,
    /// Sessions open now.
    pub open: u64,
    /// Most sessions open at once.
    pub high_water: u64,
    /// Sessions opened in total.
    pub opened: u64,
    /// `C_OpenSession` refused with `CKR_SESSION_COUNT`.
    pub refused_session_count: u64,
    /// Sessions closed for being idle too long.
    pub idle_expired: u64,
    /// Sessions invalidated at random.
    pub invalidated: u64,
    /// `C_Sign` calls that returned a signature (or a fault).
    pub sign_calls: u64,
    /// `C_Sign` calls answered `CKR_DEVICE_ERROR`.
    pub sign_errors: u64,
    /// Calls refused because the token is gone.
    pub gone_refusals: u64,
    /// Calls refused with `CKR_MECHANISM_INVALID`.
    pub mechanism_refusals: u64,
    /// OAEP parameters refused.
    pub oaep_refusals: u64,
    /// `C_Initialize` refused for a missing environment variable.
    pub initialize_refusals: u64,
    /// `C_Initialize` calls that reached the real module.
    pub initialized: u64,
    /// Times the configuration was (re)read.
    pub config_reads: u64,
}

struct Sess {
    real: CK_SESSION_HANDLE,
    slot: CK_SLOT_ID,
    last_used: Instant,
}

struct Inner {
    config: Config,
    stamp: Option<(SystemTime, u64)>,
    checked: Option<Instant>,
    sessions: HashMap<CK_SESSION_HANDLE, Sess>,
    next_handle: CK_SESSION_HANDLE,
    rng: u64,
    stats: Stats,
    stats_written: Option<Instant>,
}

struct Shim {
    real: CK_FUNCTION_LIST,
    _lib: libloading::Library,
    config_path: PathBuf,
    inner: Mutex<Inner>,
    stats_lock: Mutex<()>,
}

static SHIM: OnceLock<Result<Shim, String>> = OnceLock::new();
static LIST: OnceLock<CK_FUNCTION_LIST> = OnceLock::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f`, turning a panic into `CKR_GENERAL_ERROR`.
fn guard(f: impl FnOnce() -> CK_RV) -> CK_RV {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(CKR_GENERAL_ERROR)
}

fn read_config(path: &Path) -> Result<(Config, (SystemTime, u64)), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config: Config =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let stamp = (
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.len(),
    );
    Ok((config, stamp))
}

fn load() -> Result<Shim, String> {
    let config_path = std::env::var_os(CONFIG_VAR)
        .map(PathBuf::from)
        .ok_or_else(|| format!("{CONFIG_VAR} is not set"))?;
    let (config, stamp) = read_config(&config_path)?;
    let module = config
        .module
        .clone()
        .ok_or_else(|| format!("{}: \"module\" is not set", config_path.display()))?;
    // SAFETY: loading a PKCS#11 module runs its initialisers; the module
    // is a real PKCS#11 library named by the test's configuration.
    let lib = unsafe { libloading::Library::new(&module) }
        .map_err(|e| format!("{}: {e}", module.display()))?;
    let real = {
        // SAFETY: `C_GetFunctionList` has this signature in every PKCS#11 module.
        let get: libloading::Symbol<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
            unsafe { lib.get(b"C_GetFunctionList\0") }
                .map_err(|e| format!("{}: {e}", module.display()))?;
        let mut ptr: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        // SAFETY: `ptr` is a valid out-pointer; the module fills it with a
        // pointer to its own function list, valid while the library is loaded.
        let rv = unsafe { get(&mut ptr) };
        if rv != CKR_OK || ptr.is_null() {
            return Err(format!("{}: C_GetFunctionList: {rv:#x}", module.display()));
        }
        // SAFETY: non-null and filled by the module; copied by value.
        unsafe { *ptr }
    };
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(std::process::id()).rotate_left(32);
    Ok(Shim {
        real,
        _lib: lib,
        config_path,
        inner: Mutex::new(Inner {
            config,
            stamp: Some(stamp),
            checked: Some(Instant::now()),
            sessions: HashMap::new(),
            next_handle: 0x5000,
            rng: seed | 1,
            stats: Stats {
                pid: std::process::id(),
                config_reads: 1,
                ..Stats::default()
            },
            stats_written: None,
        }),
        stats_lock: Mutex::new(()),
    })
}

fn shim() -> Result<&'static Shim, CK_RV> {
    match SHIM
        .get_or_init(|| load().inspect_err(|e| eprintln!("kipuka-pkcs11-shim: cannot load: {e}")))
    {
        Ok(s) => Ok(s),
        Err(_) => Err(CKR_GENERAL_ERROR),
    }
}

impl Inner {
    fn random(&mut self) -> f64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.random() < rate
    }

    fn delay(&mut self, range: Option<[f64; 2]>) -> Duration {
        match range {
            Some([lo, hi]) if hi > 0.0 => {
                let ms = lo + (hi - lo).max(0.0) * self.random();
                Duration::from_secs_f64(ms.max(0.0) / 1000.0)
            }
            _ => Duration::ZERO,
        }
    }

    /// Re-reads the configuration if the file changed (checked at most every
    /// 20 ms). Sessions lost because the token went away are put in `lost`.
    fn refresh(&mut self, path: &Path, force: bool, lost: &mut Vec<CK_SESSION_HANDLE>) {
        if !force
            && self
                .checked
                .is_some_and(|t| t.elapsed() < Duration::from_millis(20))
        {
            return;
        }
        self.checked = Some(Instant::now());
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        if self.stamp == Some(stamp) {
            return;
        }
        match read_config(path) {
            Ok((config, stamp)) => {
                let was_gone = self.config.token_gone;
                let module = self.config.module.clone();
                self.config = Config { module, ..config };
                self.stamp = Some(stamp);
                self.stats.config_reads += 1;
                if self.config.token_gone && !was_gone {
                    lost.extend(self.sessions.drain().map(|(_, s)| s.real));
                    self.stats.open = 0;
                }
            }
            // Half-written: keep the old one and look again next time.
            Err(e) => eprintln!("kipuka-pkcs11-shim: {e}"),
        }
    }

    fn mechanism_allowed(&self, mechanism: CK_MECHANISM_TYPE) -> bool {
        self.config
            .mechanisms
            .as_ref()
            .is_none_or(|m| m.contains(&mechanism))
    }

    /// `CKR_OK`, or why the mechanism is refused.
    ///
    /// # Safety
    /// `mechanism` is null or points to a valid `CK_MECHANISM` whose
    /// parameter, if any, is `ulParameterLen` readable bytes.
    unsafe fn check_mechanism(&mut self, mechanism: *const CK_MECHANISM) -> CK_RV {
        if mechanism.is_null() {
            return CKR_OK; // the real module answers CKR_ARGUMENTS_BAD
        }
        // SAFETY: non-null, valid per this function's contract.
        let m = unsafe { &*mechanism };
        if !self.mechanism_allowed(m.mechanism) {
            self.stats.mechanism_refusals += 1;
            return CKR_MECHANISM_INVALID;
        }
        if m.mechanism == CKM_RSA_PKCS_OAEP {
            if let Some(hashes) = &self.config.oaep_hashes {
                if !m.pParameter.is_null()
                    && m.ulParameterLen as usize >= std::mem::size_of::<CK_RSA_PKCS_OAEP_PARAMS>()
                {
                    // SAFETY: the caller passed at least this many bytes of
                    // OAEP parameters; read unaligned to be safe.
                    let p = unsafe {
                        std::ptr::read_unaligned(m.pParameter as *const CK_RSA_PKCS_OAEP_PARAMS)
                    };
                    if !hashes.contains(&p.hashAlg) {
                        self.stats.oaep_refusals += 1;
                        return CKR_MECHANISM_PARAM_INVALID;
                    }
                }
            }
        }
        CKR_OK
    }
}

impl Shim {
    fn close_real(&self, lost: Vec<CK_SESSION_HANDLE>) {
        if let Some(close) = self.real.C_CloseSession {
            for h in lost {
                // SAFETY: a session of the real module that the shim owns
                // and no caller can reach any more.
                let _ = unsafe { close(h) };
            }
        }
    }

    fn write_stats(&self, force: bool) {
        let (path, stats) = {
            let mut inner = lock(&self.inner);
            let Some(path) = inner.config.stats_file.clone() else {
                return;
            };
            if !force
                && inner
                    .stats_written
                    .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
            {
                return;
            }
            inner.stats_written = Some(Instant::now());
            (path, inner.stats.clone())
        };
        let _serial = lock(&self.stats_lock);
        let Ok(json) = serde_json::to_vec_pretty(&stats) else {
            return;
        };
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, json).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}

/// What a session call does besides forwarding.
pub(crate) enum Hook {
    /// Nothing.
    Plain,
    /// `C_CloseSession`.
    Close,
    /// A call starting an operation with a mechanism (`C_SignInit`...).
    Mechanism(*mut CK_MECHANISM),
    /// `C_Sign`; `output` when it returns the signature (not a length query).
    Sign { output: bool },
    /// `C_WrapKey`.
    Wrap {
        mechanism: *mut CK_MECHANISM,
        output: bool,
    },
    /// `C_GenerateKeyPair`.
    Generate { mechanism: *mut CK_MECHANISM },
}

/// The common path of every session call: map the handle, apply idle
/// timeout, random invalidation, token loss, mechanism limits, latency and
/// faults, then call `f` with the real module and the real handle.
pub(crate) fn session_call(
    handle: CK_SESSION_HANDLE,
    hook: Hook,
    f: impl FnOnce(&CK_FUNCTION_LIST, CK_SESSION_HANDLE) -> CK_RV,
) -> CK_RV {
    guard(move || {
        let shim = match shim() {
            Ok(s) => s,
            Err(rv) => return rv,
        };
        let mut lost = Vec::new();
        let mut write = false;
        let decided = {
            let mut inner = lock(&shim.inner);
            inner.refresh(&shim.config_path, false, &mut lost);
            decide(&mut inner, handle, &hook, &mut lost, &mut write)
        };
        if !lost.is_empty() {
            shim.close_real(lost);
        }
        shim.write_stats(write);
        let (real, delay, fault) = match decided {
            Ok(v) => v,
            Err(rv) => return rv,
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let rv = f(&shim.real, real);
        if fault && rv == CKR_OK {
            lock(&shim.inner).stats.sign_errors += 1;
            return CKR_DEVICE_ERROR;
        }
        rv
    })
}

type Decision = Result<(CK_SESSION_HANDLE, Duration, bool), CK_RV>;

fn decide(
    inner: &mut Inner,
    handle: CK_SESSION_HANDLE,
    hook: &Hook,
    lost: &mut Vec<CK_SESSION_HANDLE>,
    write: &mut bool,
) -> Decision {
    if inner.config.token_gone {
        inner.stats.gone_refusals += 1;
        return Err(CKR_DEVICE_REMOVED);
    }
    let now = Instant::now();
    let timeout = inner.config.idle_timeout_ms.map(Duration::from_millis);
    let starts_operation = matches!(
        hook,
        Hook::Mechanism(_) | Hook::Wrap { .. } | Hook::Generate { .. }
    );
    let invalidate = starts_operation && {
        let rate = inner.config.invalidate_rate;
        inner.chance(rate)
    };
    let Some(sess) = inner.sessions.get_mut(&handle) else {
        return Err(CKR_SESSION_HANDLE_INVALID);
    };
    let expired = timeout.is_some_and(|t| now.duration_since(sess.last_used) > t);
    if expired || invalidate || matches!(hook, Hook::Close) {
        let sess = inner.sessions.remove(&handle).expect("present");
        inner.stats.open = inner.sessions.len() as u64;
        *write = true;
        if matches!(hook, Hook::Close) && !expired {
            // The real close is the forwarded call itself.
            return Ok((sess.real, Duration::ZERO, false));
        }
        lost.push(sess.real);
        if expired {
            inner.stats.idle_expired += 1;
        } else {
            inner.stats.invalidated += 1;
        }
        return Err(CKR_SESSION_HANDLE_INVALID);
    }
    sess.last_used = now;
    let real = sess.real;
    let mechanism = match hook {
        Hook::Mechanism(m) | Hook::Wrap { mechanism: m, .. } | Hook::Generate { mechanism: m } => {
            *m as *const CK_MECHANISM
        }
        _ => std::ptr::null(),
    };
    // SAFETY: the pointer is the caller's `pMechanism`, null or valid per
    // the PKCS#11 contract of the function being called.
    let rv = unsafe { inner.check_mechanism(mechanism) };
    if rv != CKR_OK {
        *write = true;
        return Err(rv);
    }
    let (delay, fault) = match hook {
        Hook::Sign { output: true } => {
            inner.stats.sign_calls += 1;
            let d = inner.config.sign_delay_ms;
            let rate = inner.config.sign_error_rate;
            (inner.delay(d), inner.chance(rate))
        }
        Hook::Wrap { output: true, .. } => {
            let d = inner.config.wrap_delay_ms;
            (inner.delay(d), false)
        }
        Hook::Generate { .. } => {
            let d = inner.config.generate_delay_ms;
            (inner.delay(d), false)
        }
        _ => (Duration::ZERO, false),
    };
    Ok((real, delay, fault))
}

fn pad(dst: &mut [u8], s: &str) {
    dst.fill(b' ');
    let n = s.len().min(dst.len());
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// Checks the emulated vendor's environment; the message names what is missing.
fn check_env(config: &Config) -> Result<(), String> {
    for req in &config.required_env {
        let Some(value) = std::env::var_os(&req.name).filter(|v| !v.is_empty()) else {
            return Err(format!("{} is not set", req.name));
        };
        let path = Path::new(&value);
        let ok = match req.must_exist.as_deref() {
            Some("dir") => path.is_dir(),
            Some("file") => path.is_file(),
            _ => true,
        };
        if !ok {
            return Err(format!(
                "{}={} does not name an existing {}",
                req.name,
                path.display(),
                req.must_exist.as_deref().unwrap_or("path")
            ));
        }
    }
    Ok(())
}

// ---- The entry points that do not take a session. ----

/// `C_GetFunctionList`: this module's list (PKCS#11 2.40).
///
/// # Safety
/// `list` is null or a valid pointer to write to.
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    guard(|| {
        if list.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        if let Err(rv) = shim() {
            return rv;
        }
        let ours = LIST.get_or_init(|| {
            // SAFETY: an all-zero CK_FUNCTION_LIST is a version 0.0 list of
            // `None`s (every entry is an `Option<fn>`).
            let mut l: CK_FUNCTION_LIST = unsafe { std::mem::zeroed() };
            l.version = CK_VERSION {
                major: 2,
                minor: 40,
            };
            l.C_Initialize = Some(C_Initialize);
            l.C_Finalize = Some(C_Finalize);
            l.C_GetInfo = Some(C_GetInfo);
            l.C_GetFunctionList = Some(C_GetFunctionList);
            l.C_GetSlotList = Some(C_GetSlotList);
            l.C_GetSlotInfo = Some(C_GetSlotInfo);
            l.C_GetTokenInfo = Some(C_GetTokenInfo);
            l.C_GetMechanismList = Some(C_GetMechanismList);
            l.C_GetMechanismInfo = Some(C_GetMechanismInfo);
            l.C_InitToken = Some(C_InitToken);
            l.C_OpenSession = Some(C_OpenSession);
            l.C_CloseAllSessions = Some(C_CloseAllSessions);
            l.C_WaitForSlotEvent = Some(C_WaitForSlotEvent);
            forward::fill(&mut l);
            l
        });
        // SAFETY: `list` is non-null and writable per the caller's contract.
        // The list is never written through this pointer (PKCS#11 callers
        // treat it as read-only).
        unsafe { *list = ours as *const CK_FUNCTION_LIST as *mut CK_FUNCTION_LIST };
        CKR_OK
    })
}

/// `C_Initialize`: checks the emulated vendor's environment, then forwards.
///
/// # Safety
/// As `C_Initialize`.
#[no_mangle]
pub unsafe extern "C" fn C_Initialize(args: *mut c_void) -> CK_RV {
    guard(|| {
        let shim = match shim() {
            Ok(s) => s,
            Err(rv) => return rv,
        };
        let mut lost = Vec::new();
        let refused = {
            let mut inner = lock(&shim.inner);
            inner.refresh(&shim.config_path, true, &mut lost);
            match check_env(&inner.config) {
                Ok(()) => None,
                Err(why) => {
                    inner.stats.initialize_refusals += 1;
                    Some(format!(
                        "kipuka-pkcs11-shim ({}): C_Initialize refused: {why}",
                        inner.config.vendor
                    ))
                }
            }
        };
        shim.close_real(lost);
        if let Some(msg) = refused {
            // What a vendor library prints when its environment is wrong.
            eprintln!("{msg}");
            shim.write_stats(true);
            return CKR_GENERAL_ERROR;
        }
        let rv = match shim.real.C_Initialize {
            // SAFETY: forwarded with the caller's arguments.
            Some(f) => unsafe { f(args) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        };
        if rv == CKR_OK {
            let mut inner = lock(&shim.inner);
            inner.sessions.clear();
            inner.stats.open = 0;
            inner.stats.initialized += 1;
        }
        shim.write_stats(true);
        rv
    })
}

/// `C_Finalize`: forwards; every session is gone.
///
/// # Safety
/// As `C_Finalize`.
#[no_mangle]
pub unsafe extern "C" fn C_Finalize(reserved: *mut c_void) -> CK_RV {
    guard(|| {
        let shim = match shim() {
            Ok(s) => s,
            Err(rv) => return rv,
        };
        let rv = match shim.real.C_Finalize {
            // SAFETY: forwarded with the caller's argument.
            Some(f) => unsafe { f(reserved) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        };
        {
            let mut inner = lock(&shim.inner);
            inner.sessions.clear();
            inner.stats.open = 0;
        }
        shim.write_stats(true);
        rv
    })
}

/// `C_GetInfo`: the vendor's manufacturer and description.
///
/// # Safety
/// As `C_GetInfo`.
#[no_mangle]
pub unsafe extern "C" fn C_GetInfo(info: *mut CK_INFO) -> CK_RV {
    guard(|| {
        let shim = match shim() {
            Ok(s) => s,
            Err(rv) => return rv,
        };
        let rv = match shim.real.C_GetInfo {
            // SAFETY: forwarded with the caller's out-pointer.
            Some(f) => unsafe { f(info) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        };
        if rv == CKR_OK && !info.is_null() {
            let inner = lock(&shim.inner);
            // SAFETY: non-null and just filled by the real module.
            let info = unsafe { &mut *info };
            if let Some(m) = &inner.config.manufacturer {
                pad(&mut info.manufacturerID, m);
            }
            if let Some(d) = &inner.config.library_description {
                pad(&mut info.libraryDescription, d);
            }
        }
        rv
    })
}

fn slot_call(f: impl FnOnce(&Shim, &mut Inner) -> CK_RV) -> CK_RV {
    guard(|| {
        let shim = match shim() {
            Ok(s) => s,
            Err(rv) => return rv,
        };
        let mut lost = Vec::new();
        let rv = {
            let mut inner = lock(&shim.inner);
            inner.refresh(&shim.config_path, false, &mut lost);
            f(shim, &mut inner)
        };
        shim.close_real(lost);
        shim.write_stats(false);
        rv
    })
}

/// `C_GetSlotList`: no slot with a token while the token is gone.
///
/// # Safety
/// As `C_GetSlotList`.
#[no_mangle]
pub unsafe extern "C" fn C_GetSlotList(
    token_present: CK_BBOOL,
    list: *mut CK_SLOT_ID,
    count: *mut CK_ULONG,
) -> CK_RV {
    slot_call(|shim, inner| {
        if inner.config.token_gone && token_present == CK_TRUE {
            if count.is_null() {
                return CKR_ARGUMENTS_BAD;
            }
            // SAFETY: non-null out-pointer of the caller.
            unsafe { *count = 0 };
            return CKR_OK;
        }
        match shim.real.C_GetSlotList {
            // SAFETY: forwarded with the caller's arguments.
            Some(f) => unsafe { f(token_present, list, count) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_GetSlotInfo`: no `CKF_TOKEN_PRESENT` while the token is gone.
///
/// # Safety
/// As `C_GetSlotInfo`.
#[no_mangle]
pub unsafe extern "C" fn C_GetSlotInfo(slot: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> CK_RV {
    slot_call(|shim, inner| {
        let rv = match shim.real.C_GetSlotInfo {
            // SAFETY: forwarded with the caller's arguments.
            Some(f) => unsafe { f(slot, info) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        };
        if rv == CKR_OK && !info.is_null() {
            // SAFETY: non-null and just filled by the real module.
            let info = unsafe { &mut *info };
            if inner.config.token_gone {
                info.flags &= !CKF_TOKEN_PRESENT;
            }
            if let Some(m) = &inner.config.manufacturer {
                pad(&mut info.manufacturerID, m);
            }
        }
        rv
    })
}

/// `C_GetTokenInfo`: the vendor's manufacturer, model and session limit,
/// and the sessions the shim counts (Kryoptic reports none).
///
/// # Safety
/// As `C_GetTokenInfo`.
#[no_mangle]
pub unsafe extern "C" fn C_GetTokenInfo(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    slot_call(|shim, inner| {
        if inner.config.token_gone {
            inner.stats.gone_refusals += 1;
            return CKR_TOKEN_NOT_PRESENT;
        }
        let rv = match shim.real.C_GetTokenInfo {
            // SAFETY: forwarded with the caller's arguments.
            Some(f) => unsafe { f(slot, info) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        };
        if rv == CKR_OK && !info.is_null() {
            // SAFETY: non-null and just filled by the real module.
            let info = unsafe { &mut *info };
            if let Some(m) = &inner.config.manufacturer {
                pad(&mut info.manufacturerID, m);
            }
            if let Some(m) = &inner.config.model {
                pad(&mut info.model, m);
            }
            if let Some(max) = inner.config.max_sessions {
                if inner.config.report_max_sessions.unwrap_or(true) {
                    info.ulMaxSessionCount = max as CK_ULONG;
                    info.ulMaxRwSessionCount = max as CK_ULONG;
                }
            }
            let n = inner.sessions.values().filter(|s| s.slot == slot).count();
            info.ulSessionCount = n as CK_ULONG;
        }
        rv
    })
}

/// `C_GetMechanismList`: the real list, filtered.
///
/// # Safety
/// As `C_GetMechanismList`.
#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    count: *mut CK_ULONG,
) -> CK_RV {
    slot_call(|shim, inner| {
        if inner.config.token_gone {
            inner.stats.gone_refusals += 1;
            return CKR_TOKEN_NOT_PRESENT;
        }
        if count.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        let Some(f) = shim.real.C_GetMechanismList else {
            return CKR_FUNCTION_NOT_SUPPORTED;
        };
        let mut n: CK_ULONG = 0;
        // SAFETY: a length query with a valid out-pointer.
        let rv = unsafe { f(slot, std::ptr::null_mut(), &mut n) };
        if rv != CKR_OK {
            return rv;
        }
        let mut all = vec![0 as CK_MECHANISM_TYPE; n as usize];
        // SAFETY: `all` has room for `n` entries.
        let rv = unsafe { f(slot, all.as_mut_ptr(), &mut n) };
        if rv != CKR_OK {
            return rv;
        }
        all.truncate(n as usize);
        all.retain(|m| inner.mechanism_allowed(*m));
        // SAFETY: `count` is non-null (checked) and the caller's.
        let room = unsafe { *count } as usize;
        // SAFETY: as above.
        unsafe { *count = all.len() as CK_ULONG };
        if list.is_null() {
            return CKR_OK;
        }
        if room < all.len() {
            return CKR_BUFFER_TOO_SMALL;
        }
        // SAFETY: the caller's buffer holds `room` >= all.len() entries.
        unsafe { std::ptr::copy_nonoverlapping(all.as_ptr(), list, all.len()) };
        CKR_OK
    })
}

/// `C_GetMechanismInfo`: `CKR_MECHANISM_INVALID` for filtered mechanisms.
///
/// # Safety
/// As `C_GetMechanismInfo`.
#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    mechanism: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    slot_call(|shim, inner| {
        if inner.config.token_gone {
            inner.stats.gone_refusals += 1;
            return CKR_TOKEN_NOT_PRESENT;
        }
        if !inner.mechanism_allowed(mechanism) {
            inner.stats.mechanism_refusals += 1;
            return CKR_MECHANISM_INVALID;
        }
        match shim.real.C_GetMechanismInfo {
            // SAFETY: forwarded with the caller's arguments.
            Some(f) => unsafe { f(slot, mechanism, info) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_InitToken`, forwarded.
///
/// # Safety
/// As `C_InitToken`.
#[no_mangle]
pub unsafe extern "C" fn C_InitToken(
    slot: CK_SLOT_ID,
    pin: *mut CK_UTF8CHAR,
    pin_len: CK_ULONG,
    label: *mut CK_UTF8CHAR,
) -> CK_RV {
    slot_call(|shim, _| match shim.real.C_InitToken {
        // SAFETY: forwarded with the caller's arguments.
        Some(f) => unsafe { f(slot, pin, pin_len, label) },
        None => CKR_FUNCTION_NOT_SUPPORTED,
    })
}

/// `C_OpenSession`: `CKR_SESSION_COUNT` at the emulated limit; the handle
/// returned is the shim's own.
///
/// # Safety
/// As `C_OpenSession`.
#[no_mangle]
pub unsafe extern "C" fn C_OpenSession(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    application: *mut c_void,
    notify: CK_NOTIFY,
    session: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    let rv = slot_call(|shim, inner| {
        if inner.config.token_gone {
            inner.stats.gone_refusals += 1;
            return CKR_TOKEN_NOT_PRESENT;
        }
        if session.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        if let Some(max) = inner.config.max_sessions {
            if inner.sessions.len() as u64 >= max {
                inner.stats.refused_session_count += 1;
                return CKR_SESSION_COUNT;
            }
        }
        let Some(f) = shim.real.C_OpenSession else {
            return CKR_FUNCTION_NOT_SUPPORTED;
        };
        let mut real: CK_SESSION_HANDLE = 0;
        // SAFETY: forwarded with the caller's arguments and a local out-pointer.
        let rv = unsafe { f(slot, flags, application, notify, &mut real) };
        if rv != CKR_OK {
            return rv;
        }
        inner.next_handle += 1;
        let ours = inner.next_handle;
        inner.sessions.insert(
            ours,
            Sess {
                real,
                slot,
                last_used: Instant::now(),
            },
        );
        let open = inner.sessions.len() as u64;
        inner.stats.open = open;
        inner.stats.opened += 1;
        inner.stats.high_water = inner.stats.high_water.max(open);
        // SAFETY: non-null (checked) out-pointer of the caller.
        unsafe { *session = ours };
        CKR_OK
    });
    if let Ok(shim) = shim() {
        shim.write_stats(true);
    }
    rv
}

/// `C_CloseAllSessions`: forwards and forgets the slot's sessions.
///
/// # Safety
/// As `C_CloseAllSessions`.
#[no_mangle]
pub unsafe extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV {
    slot_call(|shim, inner| {
        if inner.config.token_gone {
            inner.stats.gone_refusals += 1;
            return CKR_TOKEN_NOT_PRESENT;
        }
        inner.sessions.retain(|_, s| s.slot != slot);
        inner.stats.open = inner.sessions.len() as u64;
        match shim.real.C_CloseAllSessions {
            // SAFETY: forwarded with the caller's argument.
            Some(f) => unsafe { f(slot) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_WaitForSlotEvent`, forwarded.
///
/// # Safety
/// As `C_WaitForSlotEvent`.
#[no_mangle]
pub unsafe extern "C" fn C_WaitForSlotEvent(
    flags: CK_FLAGS,
    slot: *mut CK_SLOT_ID,
    reserved: *mut c_void,
) -> CK_RV {
    guard(|| {
        let shim = match shim() {
            Ok(s) => s,
            Err(rv) => return rv,
        };
        match shim.real.C_WaitForSlotEvent {
            // SAFETY: forwarded with the caller's arguments.
            Some(f) => unsafe { f(flags, slot, reserved) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}
