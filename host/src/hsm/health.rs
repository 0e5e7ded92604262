//! The CA's HSM health: healthy → degraded → unavailable, and back.
//!
//! Consecutive HSM failures move the state down at configured thresholds; a
//! success moves it straight back to healthy. A token that went away makes
//! it unavailable at once. Every change is one `CaHealthChange` event.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::SystemTime,
};

/// How usable the HSM is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Operations succeed.
    Healthy,
    /// Operations fail now and then; sessions are being replaced.
    Degraded,
    /// The HSM cannot be used; requests fail fast until it recovers.
    Unavailable,
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Unavailable => "unavailable",
        })
    }
}

/// A `CaHealthChange` event.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HealthChange {
    /// The token (label) the change is about.
    pub token: String,
    /// State before.
    pub from: HealthState,
    /// State after.
    pub to: HealthState,
    /// What caused it (the last error, or "operation succeeded").
    pub reason: String,
    /// When.
    pub at: SystemTime,
}

/// Receives health changes (the audit layer, tests).
pub type HealthListener = Arc<dyn Fn(&HealthChange) + Send + Sync>;

/// Thresholds of consecutive failures.
#[derive(Clone, Copy, Debug)]
pub struct HealthThresholds {
    /// Failures in a row before `Degraded`.
    pub degraded_after: u32,
    /// Failures in a row before `Unavailable`.
    pub unavailable_after: u32,
}

struct Inner {
    state: HealthState,
    consecutive_failures: u32,
}

/// Tracks the health of one token.
pub struct HealthTracker {
    token: String,
    thresholds: HealthThresholds,
    inner: Mutex<Inner>,
    listeners: Mutex<Vec<HealthListener>>,
}

impl HealthTracker {
    /// A tracker for `token`, starting healthy.
    pub fn new(token: String, thresholds: HealthThresholds) -> Self {
        HealthTracker {
            token,
            thresholds,
            inner: Mutex::new(Inner {
                state: HealthState::Healthy,
                consecutive_failures: 0,
            }),
            listeners: Mutex::new(Vec::new()),
        }
    }

    /// Adds a listener for changes.
    pub fn subscribe(&self, listener: HealthListener) {
        self.listeners.lock().expect("health lock").push(listener);
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.inner.lock().expect("health lock").state
    }

    /// An operation succeeded.
    pub fn success(&self) {
        let change = {
            let mut inner = self.inner.lock().expect("health lock");
            inner.consecutive_failures = 0;
            self.transition(
                &mut inner,
                HealthState::Healthy,
                "operation succeeded".into(),
            )
        };
        self.emit(change);
    }

    /// An operation failed; `token_gone` when the whole token went away.
    pub fn failure(&self, reason: &str, token_gone: bool) {
        let change = {
            let mut inner = self.inner.lock().expect("health lock");
            inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
            let n = inner.consecutive_failures;
            let to = if token_gone || n >= self.thresholds.unavailable_after {
                HealthState::Unavailable
            } else if n >= self.thresholds.degraded_after {
                HealthState::Degraded
            } else {
                inner.state
            };
            // Failures never improve the state.
            let to = to.max(inner.state);
            self.transition(&mut inner, to, reason.to_string())
        };
        self.emit(change);
    }

    fn transition(
        &self,
        inner: &mut Inner,
        to: HealthState,
        reason: String,
    ) -> Option<HealthChange> {
        if inner.state == to {
            return None;
        }
        let change = HealthChange {
            token: self.token.clone(),
            from: inner.state,
            to,
            reason,
            at: SystemTime::now(),
        };
        inner.state = to;
        Some(change)
    }

    fn emit(&self, change: Option<HealthChange>) {
        let Some(change) = change else { return };
        match change.to {
            HealthState::Healthy => tracing::info!(
                event = "CaHealthChange", token = %change.token, from = %change.from, to = %change.to,
                reason = %change.reason, "HSM health changed"),
            _ => tracing::warn!(
                event = "CaHealthChange", token = %change.token, from = %change.from, to = %change.to,
                reason = %change.reason, "HSM health changed"),
        }
        let listeners = self.listeners.lock().expect("health lock").clone();
        for l in listeners {
            l(&change);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_move_down_and_success_moves_back() {
        let t = HealthTracker::new(
            "t".into(),
            HealthThresholds {
                degraded_after: 2,
                unavailable_after: 4,
            },
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        t.subscribe(Arc::new(move |c: &HealthChange| {
            s.lock().unwrap().push((c.from, c.to))
        }));
        t.failure("x", false);
        assert_eq!(t.state(), HealthState::Healthy);
        t.failure("x", false);
        assert_eq!(t.state(), HealthState::Degraded);
        t.failure("x", false);
        t.failure("x", false);
        assert_eq!(t.state(), HealthState::Unavailable);
        t.success();
        t.failure("gone", true);
        use HealthState::*;
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (Healthy, Degraded),
                (Degraded, Unavailable),
                (Unavailable, Healthy),
                (Healthy, Unavailable)
            ]
        );
    }
}
