//! Generates an ML-DSA key pair on a token, in its own process (a module
//! reads its configuration once per process, so tests that need several
//! tokens cannot do this in-process).
//!
//! `mldsa-keygen MODULE TOKEN_LABEL USER_PIN KEY_LABEL SET(1|2|3) OUT.der`
//! with the module's configuration variable (KRYOPTIC_CONF) in the environment.
//! Writes the public key as DER SubjectPublicKeyInfo.

use secrecy::SecretString;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [module, token, pin, label, set, out] = args.as_slice() else {
        eprintln!("usage: mldsa-keygen MODULE TOKEN_LABEL USER_PIN KEY_LABEL SET OUT.der");
        std::process::exit(2);
    };
    use cryptoki::{
        context::{CInitializeArgs, CInitializeFlags, Pkcs11},
        session::UserType,
    };
    let p11 = Pkcs11::new(module).expect("load module");
    p11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    let slot = p11
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find(|s| {
            p11.get_token_info(*s)
                .map(|i| i.label().trim() == token)
                .unwrap_or(false)
        })
        .expect("token");
    let session = p11.open_rw_session(slot).expect("session");
    session
        .login(UserType::User, Some(&SecretString::from(pin.clone())))
        .expect("login");
    let spki =
        kipuka_tests::engine_fixture::generate_ml_dsa(&session, label, set.parse().expect("set"));
    std::fs::write(out, spki).expect("write");
}
