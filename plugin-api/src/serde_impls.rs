//! `Serialize` for the newtypes: known values by name, unknown ones as
//! `Type(0x..)`, so JSON output stays readable and never loses a value.

use serde::{ser::SerializeSeq, Serialize, Serializer};

use crate::ids::{
    Curve, HashAlg, IdleBehaviour, InitializeFlags, MechanismId, MlDsaAccess, MlDsaParameterSet,
    Operations, UserType,
};

macro_rules! serialize_as_display {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}

serialize_as_display!(
    HashAlg,
    Curve,
    MlDsaParameterSet,
    UserType,
    MlDsaAccess,
    IdleBehaviour
);

impl Serialize for MechanismId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

fn names<S: Serializer>(s: S, names: Vec<String>) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(names.len()))?;
    for n in &names {
        seq.serialize_element(n)?;
    }
    seq.end()
}

impl Serialize for Operations {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        names(s, self.names())
    }
}

impl Serialize for InitializeFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        names(s, self.names())
    }
}
