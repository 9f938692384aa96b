//! Compile-pass and compile-fail cases (trybuild) for every redisx attribute.
//!
//! The cases live in `ui/<attribute>/{pass,fail}/<what>.rs`, each failing case with the
//! expected compiler output beside it (`<what>.stderr`); `tests/ui.rs` runs them all. After a
//! deliberate change to a message, regenerate the expected output with
//! `TRYBUILD=overwrite cargo test -p redisx-ui-tests` and read every changed `.stderr`.
