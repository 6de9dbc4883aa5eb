//! Waiting for something to happen, with a bound.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long a test waits for anything (a process to start, a registration,
/// an event to be handled) before it fails. Generous, because CI machines
/// are small and shared; a test that passes waits far less.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How often [`poll`] looks again: often enough that tests do not idle,
/// rarely enough that the looking does not load the machine.
const INTERVAL: Duration = Duration::from_millis(50);

/// What a check passed to [`poll`] returns: ready with a value, or not yet
/// (with, optionally, what it saw, for the failure message).
pub trait Outcome<T> {
    /// `Ok` when ready; otherwise what was seen, if anything is worth saying.
    fn ready(self) -> Result<T, Option<String>>;
}

impl<T> Outcome<T> for Option<T> {
    fn ready(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Debug> Outcome<T> for Result<T, E> {
    fn ready(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(format!("{e:?}")))
    }
}

impl Outcome<()> for bool {
    fn ready(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

/// Runs `check` until it is ready, for at most [`PATIENCE`]; panics naming
/// `what` (and what the last check saw) if it never is.
///
/// For what can only be observed by looking: a listing, a file, a counter
/// in another process. When the event itself can be awaited (a channel, a
/// stream, a process's exit), await it with [`within`] instead.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::atomic::{AtomicU32, Ordering};
/// let tries = AtomicU32::new(0);
/// let n = weft_test_support::poll("the third try", || async {
///     let n = tries.fetch_add(1, Ordering::Relaxed) + 1;
///     (n == 3).then_some(n)
/// })
/// .await;
/// assert_eq!(n, 3);
/// # }
/// ```
pub async fn poll<T, O, F, Fut>(what: &str, check: F) -> T
where
    O: Outcome<T>,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    poll_within(PATIENCE, what, check).await
}

/// [`poll`] with a patience of its own, for what takes longer than usual
/// (thousands of events, a build).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// let ready: Result<u8, String> = Ok(7);
/// let v = weft_test_support::poll_within(Duration::from_secs(1), "seven", || async {
///     ready.clone()
/// })
/// .await;
/// assert_eq!(v, 7);
/// # }
/// ```
pub async fn poll_within<T, O, F, Fut>(patience: Duration, what: &str, mut check: F) -> T
where
    O: Outcome<T>,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let deadline = Instant::now() + patience;
    let mut last = None;
    loop {
        // A check that hangs counts against the same patience.
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(outcome) => match outcome.ready() {
                Ok(v) => return v,
                Err(seen) => last = seen.or(last),
            },
            Err(_) => break,
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(INTERVAL).await;
    }
    match last {
        Some(seen) => panic!("{what}: not seen within {patience:?}; last seen: {seen}"),
        None => panic!("{what}: not seen within {patience:?}"),
    }
}

/// Awaits `future` for at most [`PATIENCE`]; panics naming `what` if it
/// does not finish, so that a bug fails a test instead of hanging it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// tx.send(4).unwrap();
/// assert_eq!(weft_test_support::within("the answer", rx).await, Ok(4));
/// # }
/// ```
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not seen within {PATIENCE:?}"))
}
