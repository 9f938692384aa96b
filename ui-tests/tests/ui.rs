//! Runs every ui case: `ui/*/pass/*.rs` must compile, `ui/*/fail/*.rs` must fail with the
//! compiler output in the `.stderr` beside it.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/*/pass/*.rs");
    cases.compile_fail("ui/*/fail/*.rs");
}
