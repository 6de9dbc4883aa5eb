//! When a caller sends a failed call again: [`Resend`] decides after each
//! attempt, and a [`RetryBudget`] bounds how many calls a caller sends
//! twice. The SDK's calls and the gateway's use both.
//!
//! ```
//! use weft_core::Error;
//! use weft_core::retry::{Next, Resend, RetryBudget};
//!
//! let budget = RetryBudget::new(0.2, 10);
//! budget.deposit(); // a call is made
//! let lost = Error::unavailable("the connection was lost; the call may or may not have run");
//! // Idempotent: sent again after a pause.
//! let mut resend = Resend::new();
//! assert!(matches!(resend.next(&lost, || true, || budget.withdraw()), Next::After(_)));
//! // Not idempotent: the error stands.
//! assert_eq!(Resend::new().next(&lost, || false, || budget.withdraw()), Next::Fail);
//! ```
//!
//! The budget is written here rather than taken from tower's `TpsBudget`,
//! which takes a lock and reads the clock on every call it counts:
//! measured at 64 calls in flight on two threads, that added about 0.3 µs
//! of client CPU per call. Here counting a call is one relaxed atomic add,
//! and the window moves when its owner calls [`RetryBudget::tick`] once a
//! second.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crate::backoff::Backoff;
use crate::{Code, Error};

/// How often a call the callee certainly did not run (it was going away)
/// is sent again.
const MAX_NOT_RUN: u32 = 5;

/// How often an idempotent call is sent again after its connection was
/// lost or its instance could not be reached.
const MAX_IDEMPOTENT: u32 = 3;

/// The pause before an idempotent call's first resend; each next one
/// doubles, up to [`IDEMPOTENT_MAX_DELAY`], half of it drawn at random.
const IDEMPOTENT_FIRST_DELAY: Duration = Duration::from_millis(10);

/// The longest pause between two sends of an idempotent call.
const IDEMPOTENT_MAX_DELAY: Duration = Duration::from_millis(200);

/// What to do after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send it again after this pause (if the deadline allows).
    After(Duration),
    /// It may be sent again, but the caller's retries are over their
    /// budget: fail, saying so.
    OverBudget,
    /// Fail with the error.
    Fail,
}

/// The error for a call [`Next::OverBudget`] keeps from being sent again:
/// `error`'s message, and whose budget (`"this caller's"`) ran out.
pub fn over_budget(error: &Error, whose: &str) -> Error {
    Error::unavailable(format!(
        "{}; not sent again: {whose} retries are over their budget (a fifth of its calls)",
        error.message()
    ))
}

/// The resends of one call.
#[derive(Debug)]
pub struct Resend {
    not_run: u32,
    idempotent: u32,
    backoff: Backoff,
}

impl Default for Resend {
    fn default() -> Self {
        Self::new()
    }
}

impl Resend {
    /// A call not sent again yet.
    pub fn new() -> Resend {
        Resend {
            not_run: 0,
            idempotent: 0,
            backoff: Backoff::new(IDEMPOTENT_FIRST_DELAY, IDEMPOTENT_MAX_DELAY).with_jitter(0.5),
        }
    }

    /// After an attempt failed with `error`: a call that certainly did not
    /// run goes again (after 20 ms, 40 ms, ..., so that the registry can
    /// drop the instance that was going away), whatever it is; one refused
    /// as overloaded goes again if `withdraw()` takes a retry from the
    /// caller's budget; one that was lost or found no reachable instance
    /// goes again only if `idempotent()` says it is, within the budget too.
    pub fn next(
        &mut self,
        error: &Error,
        idempotent: impl FnOnce() -> bool,
        withdraw: impl FnOnce() -> bool,
    ) -> Next {
        if error.is_not_run() {
            if self.not_run + 1 >= MAX_NOT_RUN {
                return Next::Fail;
            }
            self.not_run += 1;
            return Next::After(Duration::from_millis(20 * u64::from(self.not_run)));
        }
        // Refused as overloaded, the call did not run: any call may go to
        // another instance, but only within the budget, so that resends
        // do not feed the overload.
        let may_resend = if error.is_overloaded() {
            true
        } else {
            error.code() == Code::Unavailable && idempotent()
        };
        if !may_resend || self.idempotent >= MAX_IDEMPOTENT {
            return Next::Fail;
        }
        if !withdraw() {
            return Next::OverBudget;
        }
        self.idempotent += 1;
        Next::After(self.backoff.next_delay())
    }
}

/// Seconds the budget looks back over.
const WINDOW: usize = 10;

/// Retries allowed: at most `share` of the calls of the last ten
/// seconds, and `floor` a second whatever the calls, so that a caller
/// making few calls may still retry a few.
#[derive(Debug)]
pub struct RetryBudget {
    /// Calls and retries by second, a ring; `current` is the second now.
    slots: [Slot; WINDOW],
    current: AtomicUsize,
    /// Retries allowed per call, in thousandths.
    share_permille: u64,
    /// Retries allowed per second of the window whatever the calls.
    floor: u64,
}

#[derive(Debug, Default)]
struct Slot {
    calls: AtomicU64,
    retries: AtomicU64,
}

impl RetryBudget {
    /// A budget of `share` of the calls (0.2: a fifth) plus `floor`
    /// retries a second.
    pub fn new(share: f64, floor: u64) -> RetryBudget {
        RetryBudget {
            slots: Default::default(),
            current: AtomicUsize::new(0),
            share_permille: (share * 1000.0).round() as u64,
            floor,
        }
    }

    fn slot(&self) -> &Slot {
        &self.slots[self.current.load(Relaxed) % WINDOW]
    }

    /// Counts a call.
    pub fn deposit(&self) {
        self.slot().calls.fetch_add(1, Relaxed);
    }

    /// Takes one retry, if the window has one left. Concurrent callers
    /// may overshoot by a retry or two: the budget is a bound on storms,
    /// not an exact count.
    pub fn withdraw(&self) -> bool {
        let (calls, retries) = self.slots.iter().fold((0u64, 0u64), |(c, r), s| {
            (c + s.calls.load(Relaxed), r + s.retries.load(Relaxed))
        });
        let allowed = self.floor * WINDOW as u64 + calls * self.share_permille / 1000;
        if retries >= allowed {
            return false;
        }
        self.slot().retries.fetch_add(1, Relaxed);
        true
    }

    /// Moves the window on by a second, forgetting its oldest second.
    pub fn tick(&self) {
        let next = (self.current.load(Relaxed) + 1) % WINDOW;
        let slot = &self.slots[next];
        slot.calls.store(0, Relaxed);
        slot.retries.store(0, Relaxed);
        self.current.store(next, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> Error {
        Error::unavailable("the connection was lost")
    }

    #[test]
    fn what_did_not_run_goes_again_whatever_it_is() {
        let mut resend = Resend::new();
        let gone = Error::not_run("going away");
        let delays: Vec<Next> = (0..5)
            .map(|_| resend.next(&gone, || false, || false))
            .collect();
        let ms = |n| Next::After(Duration::from_millis(n));
        assert_eq!(delays, [ms(20), ms(40), ms(60), ms(80), Next::Fail]);
    }

    #[test]
    fn what_may_have_run_goes_again_only_if_idempotent_and_budgeted() {
        assert_eq!(Resend::new().next(&lost(), || false, || true), Next::Fail);
        assert_eq!(
            Resend::new().next(&lost(), || true, || false),
            Next::OverBudget
        );
        let mut resend = Resend::new();
        for _ in 0..MAX_IDEMPOTENT {
            match resend.next(&lost(), || true, || true) {
                Next::After(d) => assert!(d <= IDEMPOTENT_MAX_DELAY, "{d:?}"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(resend.next(&lost(), || true, || true), Next::Fail);
        // Refused as overloaded, it did not run: again, within the budget.
        let busy = Error::overloaded("at its limit");
        assert!(matches!(
            Resend::new().next(&busy, || false, || true),
            Next::After(_)
        ));
        assert_eq!(
            Resend::new().next(&busy, || false, || false),
            Next::OverBudget
        );
        // Other errors are answers: never sent again.
        let answer = Error::invalid_argument("n", "too big");
        assert_eq!(Resend::new().next(&answer, || true, || true), Next::Fail);
    }

    #[test]
    fn a_fifth_of_the_calls_and_a_floor() {
        let budget = RetryBudget::new(0.2, 0);
        assert!(!budget.withdraw(), "no calls, no floor: no retry");
        for _ in 0..50 {
            budget.deposit();
        }
        let retries = (0..100).take_while(|_| budget.withdraw()).count();
        assert_eq!(retries, 10);

        let budget = RetryBudget::new(0.2, 1);
        let retries = (0..100).take_while(|_| budget.withdraw()).count();
        assert_eq!(retries, WINDOW, "one a second over the window");
    }

    #[test]
    fn calls_and_retries_leave_the_window_after_it() {
        let budget = RetryBudget::new(0.5, 0);
        for _ in 0..10 {
            budget.deposit();
        }
        assert_eq!((0..100).take_while(|_| budget.withdraw()).count(), 5);
        for _ in 0..WINDOW - 1 {
            budget.tick();
            assert!(!budget.withdraw(), "the retries still count");
        }
        // The second of those calls and retries is forgotten.
        budget.tick();
        assert!(!budget.withdraw());
        budget.deposit();
        budget.deposit();
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }
}
