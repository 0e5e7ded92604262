//! The session pool under load and under failure, on both real tokens.
//!
//! One test function, run alone in its own process: it counts the token's
//! sessions and finalises the library behind the engine's back, which would
//! disturb any other test sharing the process.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use kipuka::hsm::{
    sign::SignatureScheme, HealthChange, HealthState, HealthThresholds, HsmKeySigner,
};
use kipuka_plugin_api::HashAlg;
use kipuka_tests::{
    engine_fixture::{engine_token, EngineToken, RELAXED},
    tokens::TokenKind,
};
use p256::{
    ecdsa::{signature::Verifier, DerSignature, VerifyingKey},
    pkcs8::DecodePublicKey,
};

fn verifying_key(t: &EngineToken) -> VerifyingKey {
    VerifyingKey::from_public_key_der(&std::fs::read(t.keys_dir.join("ec-p256.pub.der")).unwrap())
        .unwrap()
}

async fn sixty_four_tasks_share_eight_sessions(t: &'static EngineToken) {
    let kind = t.token.kind;
    let pool = t.pool(8, RELAXED);
    let (_, signer) = HsmKeySigner::open(
        &pool,
        &t.uri("ec-p256"),
        SignatureScheme::Ecdsa(HashAlg::SHA256),
    )
    .unwrap();
    let signer = Arc::new(signer.unwrap());
    let vk = verifying_key(t);
    let token_max = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (ctx, max, on) = (pool.context().clone(), token_max.clone(), sampling.clone());
        std::thread::spawn(move || {
            let mut reported = false;
            while on.load(Ordering::SeqCst) {
                // Kryoptic answers 0 while sessions are open: treat that as "not reported".
                if let Some(n) = ctx.session_count().filter(|n| *n > 0) {
                    reported = true;
                    max.fetch_max(n, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            reported
        })
    };
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for task in 0..64u32 {
        let signer = signer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200u32 {
                let data: Vec<u8> = format!("task {task} message {i}").into_bytes();
                let sig = signer.sign(data.clone().into()).await.unwrap();
                let sig = DerSignature::try_from(sig.as_slice()).unwrap();
                vk.verify(&data, &sig)
                    .expect("p256 verifies kipuka's signature");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    sampling.store(false, Ordering::SeqCst);
    let token_reports = sampler.join().unwrap();
    let stats = pool.stats();
    let on_token = token_max.load(Ordering::SeqCst);
    eprintln!(
        "{kind}: 12,800 signatures in {:?}; pool high-water {}; token-reported sessions max {}",
        started.elapsed(),
        stats.high_water,
        if token_reports {
            on_token.to_string()
        } else {
            "not reported".into()
        }
    );
    assert_eq!(stats.size, 8);
    assert!(
        stats.high_water <= 8,
        "{kind}: the pool opened {} sessions",
        stats.high_water
    );
    if token_reports {
        assert!(on_token <= 8, "{kind}: the token saw {on_token} sessions");
    }
}

/// Calls the module's own `C_CloseAllSessions` on `slot`, as another part
/// of the process (or a misbehaving library) would.
fn close_all_sessions_behind_the_engines_back(module: &std::path::Path, slot: u64) {
    unsafe {
        let lib = libloading::Library::new(module).unwrap();
        let get: libloading::Symbol<
            unsafe extern "C" fn(*mut *mut cryptoki_sys::CK_FUNCTION_LIST) -> cryptoki_sys::CK_RV,
        > = lib.get(b"C_GetFunctionList").unwrap();
        let mut list = std::ptr::null_mut();
        assert_eq!(get(&mut list), cryptoki_sys::CKR_OK);
        let close_all = (*list).C_CloseAllSessions.unwrap();
        assert_eq!(
            close_all(slot as cryptoki_sys::CK_SLOT_ID),
            cryptoki_sys::CKR_OK
        );
        // The library stays loaded: the engine still uses it.
        std::mem::forget(lib);
    }
}

async fn recovers_from_closed_sessions_and_a_finalised_library(t: &'static EngineToken) {
    let kind = t.token.kind;
    let pool = t.pool(
        4,
        HealthThresholds {
            degraded_after: 1,
            unavailable_after: 5,
        },
    );
    let events: Arc<Mutex<Vec<(HealthState, HealthState)>>> = Arc::default();
    let sink = events.clone();
    pool.health().subscribe(Arc::new(move |c: &HealthChange| {
        sink.lock().unwrap().push((c.from, c.to))
    }));
    let (_, signer) = HsmKeySigner::open(
        &pool,
        &t.uri("ec-p256"),
        SignatureScheme::Ecdsa(HashAlg::SHA256),
    )
    .unwrap();
    let signer = signer.unwrap();
    let vk = verifying_key(t);
    let sign_and_check = |n: u32| {
        let signer = &signer;
        async move {
            for i in 0..n {
                let data: Vec<u8> = format!("after failure {i}").into_bytes();
                let sig = signer
                    .sign(data.clone().into())
                    .await
                    .unwrap_or_else(|e| panic!("{kind}: signature {i} failed: {e}"));
                vk.verify(&data, &DerSignature::try_from(sig.as_slice()).unwrap())
                    .unwrap();
            }
        }
    };
    sign_and_check(4).await;

    // 1. Every session closed (and so logged out) behind the engine's back.
    close_all_sessions_behind_the_engines_back(&t.token.module, pool.context().summary().slot);
    sign_and_check(10).await;
    let stats = pool.stats();
    assert!(
        stats.replaced >= 1,
        "{kind}: broken sessions were replaced ({stats:?})"
    );
    assert_eq!(pool.health().state(), HealthState::Healthy);

    // 2. The library finalised behind the engine's back: every handle is
    //    gone; the engine re-initialises, finds the token and logs in again.
    let other = cryptoki::context::Pkcs11::new(&t.token.module).unwrap();
    other.finalize().unwrap();
    sign_and_check(10).await;
    let stats = pool.stats();
    assert!(
        stats.reinitialized >= 1,
        "{kind}: the library was re-initialised ({stats:?})"
    );
    assert_eq!(pool.health().state(), HealthState::Healthy);

    let seen = events.lock().unwrap().clone();
    eprintln!("{kind}: CaHealthChange events {seen:?}");
    assert!(
        seen.contains(&(HealthState::Healthy, HealthState::Degraded)),
        "{kind}: {seen:?}"
    );
    assert!(
        seen.iter().any(|(_, to)| *to == HealthState::Unavailable),
        "{kind}: {seen:?}"
    );
    assert_eq!(
        seen.last().map(|e| e.1),
        Some(HealthState::Healthy),
        "{kind}: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_bounds_sessions_under_load_and_recovers_from_failures() {
    for kind in TokenKind::ALL {
        let t = engine_token(kind);
        sixty_four_tasks_share_eight_sessions(t).await;
        recovers_from_closed_sessions_and_a_finalised_library(t).await;
    }
}
