//! The session pool.
//!
//! PKCS#11 calls block, so every one runs on a blocking thread
//! (`spawn_blocking`), never on an async worker. `Session` is `Send` but
//! not `Sync`: each operation borrows one session for itself.
//!
//! The pool holds at most `size` sessions, enforced by a semaphore whose
//! permits are taken *before* a session is taken or opened. Login state
//! belongs to the token and ends when the last session closes, so the pool
//! never closes its idle sessions: they are the anchor that keeps kipuka
//! logged in. A session that fails in a way that breaks it is closed and
//! replaced; when the whole token went away the pool re-initialises the
//! library and logs in again, reading the PIN afresh from its source.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use cryptoki::{
    error::{Error as CkError, RvError},
    session::{Session, SessionState, UserType as CkUserType},
};
use kipuka_plugin_api::UserType;
use tokio::sync::Semaphore;

use super::{
    context::Pkcs11Context,
    error::{FailureClass, HsmError},
    health::{HealthState, HealthThresholds, HealthTracker},
    pin::PinSource,
};

/// How the pool is sized and how long callers wait.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// Configured size; the pool uses the smallest of this, the plugin's
    /// `max_sessions` and the token's `ulMaxSessionCount`.
    pub size: usize,
    /// How long a caller waits for a free session before `Busy`.
    pub acquire_timeout: Duration,
    /// How long a caller waits for its operation before `TimedOut`.
    pub operation_timeout: Duration,
    /// Health thresholds.
    pub thresholds: HealthThresholds,
}

/// Counters, for `kipuka check`, `/readyz` and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Most sessions the pool may hold.
    pub size: usize,
    /// Sessions open now.
    pub open: usize,
    /// Most sessions ever open at once.
    pub high_water: usize,
    /// Sessions replaced after a failure.
    pub replaced: usize,
    /// Times the library was re-initialised.
    pub reinitialized: usize,
}

/// A pool of logged-in sessions on one token.
pub struct SessionPool {
    ctx: Arc<Pkcs11Context>,
    pin: PinSource,
    user_type: UserType,
    size: usize,
    acquire_timeout: Duration,
    operation_timeout: Duration,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Session>>,
    open: AtomicUsize,
    high_water: AtomicUsize,
    replaced: AtomicUsize,
    reinitialized: AtomicUsize,
    health: HealthTracker,
    last_recovery: Mutex<Option<Instant>>,
}

/// The smallest of the configured size, the vendor's maximum and the
/// token's; at least 1.
pub fn effective_size(configured: usize, vendor_max: Option<u32>, token_max: Option<u64>) -> usize {
    let mut size = configured.max(1);
    if let Some(v) = vendor_max {
        size = size.min(v as usize);
    }
    if let Some(t) = token_max {
        size = size.min(usize::try_from(t).unwrap_or(usize::MAX));
    }
    size.max(1)
}

impl SessionPool {
    /// Creates the pool and opens its first session, logging in: a wrong
    /// PIN or an absent token is a start-up error, not a first-request one.
    pub fn start(
        ctx: Arc<Pkcs11Context>,
        pin: PinSource,
        user_type: UserType,
        settings: PoolSettings,
    ) -> Result<Arc<Self>, HsmError> {
        let summary = ctx.summary();
        let size = effective_size(
            settings.size,
            ctx.profile().max_sessions,
            summary.max_sessions,
        );
        let pool = Arc::new(SessionPool {
            pin,
            user_type,
            size,
            acquire_timeout: settings.acquire_timeout,
            operation_timeout: settings.operation_timeout,
            permits: Arc::new(Semaphore::new(size)),
            idle: Mutex::new(Vec::with_capacity(size)),
            open: AtomicUsize::new(0),
            high_water: AtomicUsize::new(0),
            replaced: AtomicUsize::new(0),
            reinitialized: AtomicUsize::new(0),
            health: HealthTracker::new(summary.label, settings.thresholds),
            last_recovery: Mutex::new(None),
            ctx,
        });
        let first = pool.open_logged_in()?;
        pool.checkin(first);
        Ok(pool)
    }

    /// The context (library, token, vendor profile).
    pub fn context(&self) -> &Arc<Pkcs11Context> {
        &self.ctx
    }

    /// The health tracker.
    pub fn health(&self) -> &HealthTracker {
        &self.health
    }

    /// Sessions open and idle in the pool now (the rest of
    /// [`PoolStats::open`] are in use). Not in [`Self::stats`], which the
    /// signing path reads and which must not take the pool lock.
    pub fn idle_sessions(&self) -> usize {
        self.idle.lock().expect("pool lock").len()
    }

    /// Counters.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            size: self.size,
            open: self.open.load(Ordering::SeqCst),
            high_water: self.high_water.load(Ordering::SeqCst),
            replaced: self.replaced.load(Ordering::SeqCst),
            reinitialized: self.reinitialized.load(Ordering::SeqCst),
        }
    }

    /// Runs `op` on a session of the pool, on a blocking thread.
    ///
    /// Waits at most the acquire timeout for a free session (`Busy` after
    /// it), then at most the operation timeout for `op` (`TimedOut` after
    /// it: a hung HSM call must not hang the request; the blocking thread
    /// keeps the session and its permit until the call returns, and then
    /// checks the session in as usual). A failure that broke the session or the token is retried once
    /// on a fresh session, after re-initialising the library if the token
    /// went away; while the token stays unreachable callers fail fast with
    /// `Unavailable` instead of queueing behind it.
    pub async fn run<T, F>(self: &Arc<Self>, op: F) -> Result<T, HsmError>
    where
        F: Fn(&Session) -> Result<T, HsmError> + Send + Sync + 'static,
        T: Send + 'static,
    {
        let op = Arc::new(op);
        for attempt in 0..2 {
            if self.health.state() == HealthState::Unavailable && !self.recover().await {
                return Err(HsmError::Unavailable(format!(
                    "token {} is not reachable; retrying in the background",
                    self.ctx.summary().label
                )));
            }
            let started = Instant::now();
            let permit =
                tokio::time::timeout(self.acquire_timeout, self.permits.clone().acquire_owned())
                    .await
                    .map_err(|_| {
                        crate::metrics::hsm_error("busy");
                        HsmError::Busy {
                            pool_size: self.size,
                            waited: started.elapsed(),
                        }
                    })?
                    .map_err(|_| HsmError::Internal("session pool closed".into()))?;
            let pool = self.clone();
            let op = op.clone();
            // The retry must not take another dead session: when the first
            // failure broke its session, the idle ones may be broken the same
            // way (a partition's idle timeout closes them all), so each is
            // checked before use.
            let verify_idle = attempt > 0;
            // The request's span (its request id) follows the call onto the
            // blocking thread, so the HSM's log lines name the request.
            let span = tracing::Span::current();
            let worker = tokio::task::spawn_blocking(move || {
                let _span = span.enter();
                let _permit = permit;
                pool.run_blocking_on(&*op, verify_idle)
            });
            let Ok(joined) = tokio::time::timeout(self.operation_timeout, worker).await else {
                let e = HsmError::TimedOut(self.operation_timeout);
                crate::metrics::hsm_error(&e.metric_code());
                tracing::warn!(token = %self.ctx.summary().label, error = %e, "HSM operation timed out");
                // Counts towards degraded/unavailable; the late answer, if it
                // comes, counts as a success again.
                self.health.failure(&e.to_string(), false);
                return Err(e);
            };
            let result =
                joined.map_err(|e| HsmError::Internal(format!("HSM worker thread failed: {e}")))?;
            match result {
                Err(e) if attempt == 0 && e.class() != FailureClass::Operation => {
                    tracing::debug!(error = %e, "HSM operation failed; retrying on a fresh session");
                    continue;
                }
                other => return other,
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Runs `op` synchronously on the calling thread (start-up work, tools).
    /// Must not be called from an async worker.
    pub fn run_blocking<T>(
        &self,
        op: &dyn Fn(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        self.run_blocking_on(op, false)
    }

    /// [`Self::run_blocking`]; with `verify_idle`, an idle session is
    /// checked (`C_GetSessionInfo`) before use and dropped if it is dead.
    fn run_blocking_on<T>(
        &self,
        op: &dyn Fn(&Session) -> Result<T, HsmError>,
        verify_idle: bool,
    ) -> Result<T, HsmError> {
        let session = match self.checkout(verify_idle) {
            Ok(s) => s,
            Err(e) => {
                crate::metrics::hsm_error(&e.metric_code());
                self.health
                    .failure(&e.to_string(), e.class() == FailureClass::Token);
                return Err(e);
            }
        };
        match op(&session) {
            Ok(v) => {
                self.checkin(session);
                self.health.success();
                Ok(v)
            }
            Err(e) => {
                crate::metrics::hsm_error(&e.metric_code());
                match e.class() {
                    FailureClass::Operation => self.checkin(session),
                    class => {
                        self.discard(session);
                        self.health
                            .failure(&e.to_string(), class == FailureClass::Token);
                    }
                }
                Err(e)
            }
        }
    }

    fn checkout(&self, verify_idle: bool) -> Result<Session, HsmError> {
        loop {
            let Some(s) = self.idle.lock().expect("pool lock").pop() else {
                break;
            };
            if !verify_idle || s.get_session_info().is_ok() {
                return Ok(s);
            }
            self.discard(s);
        }
        self.open_logged_in()
    }

    fn checkin(&self, session: Session) {
        self.idle.lock().expect("pool lock").push(session);
    }

    fn discard(&self, session: Session) {
        // Dropping closes it (C_CloseSession); on a dead handle that fails
        // harmlessly.
        drop(session);
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.replaced.fetch_add(1, Ordering::SeqCst);
    }

    fn open_logged_in(&self) -> Result<Session, HsmError> {
        let session = self.ctx.open_session()?;
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.high_water.fetch_max(open, Ordering::SeqCst);
        let logged_in = match session.get_session_info() {
            Ok(info) => matches!(
                info.session_state(),
                SessionState::RoUser | SessionState::RwUser
            ),
            Err(e) => {
                self.discard(session);
                return Err(HsmError::pkcs11("C_GetSessionInfo")(e));
            }
        };
        if !logged_in {
            if let Err(e) = self.login(&session) {
                self.discard(session);
                return Err(e);
            }
        }
        Ok(session)
    }

    fn login(&self, session: &Session) -> Result<(), HsmError> {
        let Some(pin) = self.pin.read()? else {
            return Ok(());
        };
        let user = match self.user_type {
            UserType::USER => CkUserType::User,
            UserType::SO => CkUserType::So,
            UserType::CONTEXT_SPECIFIC => CkUserType::ContextSpecific,
            UserType(other) => CkUserType::VendorExtension(u32::try_from(other).map_err(|_| {
                HsmError::Pin(format!("user type {other:#x} does not fit CK_USER_TYPE"))
            })?),
        };
        match session.login(user, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => Err(HsmError::pkcs11("C_Login")(e)),
        }
        // `pin` is dropped (and zeroised) here.
    }

    /// Tries to bring an unreachable token back: takes every permit (so no
    /// session is in use), closes all sessions, re-initialises the library,
    /// finds the token and logs in. Attempts are at most one per second;
    /// returns whether the pool is usable.
    pub async fn recover(self: &Arc<Self>) -> bool {
        {
            let mut last = self.last_recovery.lock().expect("pool lock");
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return self.health.state() != HealthState::Unavailable;
            }
            *last = Some(Instant::now());
        }
        let all = u32::try_from(self.size).unwrap_or(u32::MAX);
        let Ok(Ok(permits)) = tokio::time::timeout(
            self.acquire_timeout,
            self.permits.clone().acquire_many_owned(all),
        )
        .await
        else {
            return false;
        };
        let pool = self.clone();
        let recovered = tokio::task::spawn_blocking(move || {
            let _permits = permits;
            pool.recover_blocking()
        })
        .await
        .unwrap_or_else(|e| Err(HsmError::Internal(e.to_string())));
        match recovered {
            Ok(()) => {
                tracing::info!(token = %self.ctx.summary().label, "HSM token reachable again; sessions re-opened");
                self.health.success();
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "HSM token still unreachable");
                self.health.failure(&e.to_string(), true);
                false
            }
        }
    }

    fn recover_blocking(&self) -> Result<(), HsmError> {
        let stale: Vec<Session> = std::mem::take(&mut *self.idle.lock().expect("pool lock"));
        let n = stale.len();
        drop(stale);
        self.open.fetch_sub(n, Ordering::SeqCst);
        self.ctx.reinitialize()?;
        self.reinitialized.fetch_add(1, Ordering::SeqCst);
        let first = self.open_logged_in()?;
        self.checkin(first);
        Ok(())
    }

    /// One health-check round: touches every idle session (`C_GetSessionInfo`,
    /// which also keeps vendor idle timers from closing it), drops broken
    /// ones, checks the token is present, and recovers an unavailable token.
    pub async fn health_check(self: &Arc<Self>) {
        if self.health.state() == HealthState::Unavailable {
            self.recover().await;
            return;
        }
        let idle_now = self.idle.lock().expect("pool lock").len().max(1);
        let Ok(permits) = self
            .permits
            .clone()
            .try_acquire_many_owned(u32::try_from(idle_now).unwrap_or(1))
        else {
            return; // busy: the sessions are being used, which keeps them alive
        };
        let pool = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let _permits = permits;
            // At most one session per permit held, so that callers finding
            // the idle list empty cannot push the pool past its size.
            pool.touch_idle_sessions(idle_now);
        })
        .await;
    }

    fn touch_idle_sessions(&self, at_most: usize) {
        let sessions: Vec<Session> = {
            let mut idle = self.idle.lock().expect("pool lock");
            let keep = idle.len().saturating_sub(at_most);
            idle.split_off(keep)
        };
        let mut healthy = Vec::with_capacity(sessions.len());
        let mut failure = None;
        for s in sessions {
            match s.get_session_info() {
                Ok(_) => healthy.push(s),
                Err(e) => {
                    let e = HsmError::pkcs11("C_GetSessionInfo")(e);
                    self.discard(s);
                    failure = Some(e);
                }
            }
        }
        self.idle.lock().expect("pool lock").extend(healthy);
        if let Err(e) = self.ctx.token_present() {
            failure = Some(e);
        }
        match failure {
            Some(e) => self
                .health
                .failure(&e.to_string(), e.class() == FailureClass::Token),
            None => {
                // Keep the anchor: a pool whose sessions all broke opens one.
                if self.open.load(Ordering::SeqCst) == 0 {
                    match self.open_logged_in() {
                        Ok(s) => {
                            self.checkin(s);
                            self.health.success();
                        }
                        Err(e) => self
                            .health
                            .failure(&e.to_string(), e.class() == FailureClass::Token),
                    }
                }
            }
        }
    }

    /// The interval of the health check: the configured one, or the
    /// vendor's keep-alive if that is shorter.
    pub fn check_interval(&self, configured: Duration) -> Duration {
        match self.ctx.profile().idle_sessions.keepalive_secs {
            Some(k) => configured.min(Duration::from_secs(u64::from(k))),
            None => configured,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::effective_size;

    #[test]
    fn pool_size_is_the_smallest_limit() {
        assert_eq!(effective_size(16, Some(64), None), 16);
        assert_eq!(effective_size(100, Some(64), Some(1000)), 64);
        assert_eq!(effective_size(100, None, Some(8)), 8);
        assert_eq!(effective_size(0, None, None), 1);
    }
}
