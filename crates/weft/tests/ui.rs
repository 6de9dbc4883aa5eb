//! Compile-time behaviour of `#[weft::service]`: what it accepts, and the
//! errors (with their spans) for what it rejects.
//!
//! Two suites, because trybuild checks all compile-fail cases in one cargo
//! invocation (in parallel) only when no pass case is among them; mixed, it
//! builds every case one after the other. The pass cases are one program,
//! so they cost one build and one run.

#[test]
fn accepted() {
    trybuild::TestCases::new().pass("tests/ui/pass/*.rs");
}

#[test]
fn rejected() {
    trybuild::TestCases::new().compile_fail("tests/ui/fail/*.rs");
}
