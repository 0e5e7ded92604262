//! A value that a reload replaces while requests read it: each reader takes
//! the `Arc` current at that moment and keeps it for its whole request or
//! connection, so a reload never changes anything under a request in flight.
//!
//! A `RwLock<Arc<T>>` rather than a lock-free crate (arc-swap): readers hold
//! the lock only to clone an `Arc`, once per connection or request, and the
//! writer comes once per SIGHUP.

use std::sync::{Arc, RwLock};

/// The current `T`.
#[derive(Debug)]
pub struct Current<T>(RwLock<Arc<T>>);

impl<T> Current<T> {
    /// Starts with `value` (a `T` or an `Arc<T>`).
    pub fn new(value: impl Into<Arc<T>>) -> Self {
        Current(RwLock::new(value.into()))
    }

    /// The value now.
    pub fn get(&self) -> Arc<T> {
        // A poisoned lock still holds a whole Arc: the writer only assigns.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the value for every later [`Self::get`].
    pub fn replace(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = value;
    }
}
