//! `Debug` that names the type and nothing else, for values that hold
//! secrets, plaintext or ids: they must not reach logs or panic messages.

macro_rules! opaque_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), "(..)"))
            }
        }
    )*};
}

pub(crate) use opaque_debug;
