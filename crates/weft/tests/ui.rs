//! Compile-time errors of `#[weft::service]`, with their spans, for what it
//! rejects; what it accepts is compiled as part of the `macros` tests, with
//! the workspace's own build of the dependencies.

#[test]
fn rejected() {
    trybuild::TestCases::new().compile_fail("tests/ui/fail/*.rs");
}
