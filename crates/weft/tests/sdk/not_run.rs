//! A call the callee certainly did not run (it was shutting down) is sent
//! again; any other failure is not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use weft::testing::Mesh;
use weft::{Code, Error};

#[tokio::test]
async fn calls_that_did_not_run_are_sent_again() {
    let mesh = Mesh::new();
    let tries = Arc::new(AtomicU32::new(0));
    let seen = tries.clone();
    mesh.mock("dice").on_result("roll", move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(Error::not_run("the instance is shutting down; retry"))
        } else {
            Ok(4u8)
        }
    });
    let roll: u8 = mesh.call("dice", "roll", ()).await.unwrap();
    assert_eq!(roll, 4);
    assert_eq!(tries.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn other_failures_are_not_sent_again() {
    let mesh = Mesh::new();
    let tries = Arc::new(AtomicU32::new(0));
    let seen = tries.clone();
    mesh.mock("dice").on_result("roll", move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
        Err::<u8, _>(Error::unavailable("the table fell over"))
    });
    let err = mesh.call::<_, u8>("dice", "roll", ()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(!err.is_not_run());
    assert_eq!(tries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_callee_that_keeps_going_away_fails_the_call_in_the_end() {
    let mesh = Mesh::new();
    mesh.mock("dice").on_result("roll", |_| {
        Err::<u8, _>(Error::not_run("the instance is shutting down; retry"))
    });
    let err = mesh.call::<_, u8>("dice", "roll", ()).await.unwrap_err();
    assert!(err.is_not_run(), "{err}");
}
