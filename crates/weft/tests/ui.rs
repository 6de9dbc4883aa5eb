//! Compile-time behaviour of `#[weft::service]`: what it accepts, and the
//! errors (with their spans) for what it rejects.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
