//! Evaluating a review on the async worker that received it, when that is cheap and safe, instead of handing it to
//! an evaluation thread.
//!
//! Handing a review to an evaluation thread and its answer back costs two cross-thread wake-ups per request; measured
//! with the load benchmark on the 2-core machine, that was about half of the no-policy server's CPU per request
//! (~50 µs of ~100 µs). A review is therefore first tried right on the worker, under two bounds that keep the
//! evaluation threads' guarantee (a slow review never holds up the workers that serve every other connection):
//!
//! - a short **budget**: the attempt runs with its deadline cut to the budget; if any policy fails (running out of
//!   time, or any other error: a time-out need not be reported as one for this to hold), the attempt's decision is
//!   thrown away and the review goes to an evaluation thread with the request's own deadline, so a worker is held
//!   for at most about the budget (engines check their deadline as they go) and an answer never depends on the cut;
//! - **no blocking reads**: a Kubernetes API GET (the only cluster read that waits for the network) is refused during
//!   an attempt, and a refused read sends the review to an evaluation thread as well.
//!
//! At most one attempt per worker but one runs at once (one worker always stays free for connections and probes),
//! and after an attempt that had to be handed off, the next [`BACKOFF`] reviews skip the attempt, so a stream of
//! expensive reviews wastes at most one budget per [`BACKOFF`] reviews.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Larger request bodies go straight to an evaluation thread: they are the reviews likely to outrun the budget.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Reviews that skip the attempt after one was handed off.
pub const BACKOFF: u32 = 64;

/// What became of a review's attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tried<T> {
    /// Decided on the worker: the result.
    Answered(T),
    /// A policy ran out of the budget, a blocking read was refused or the evaluation panicked: the review goes to an
    /// evaluation thread.
    HandedOff,
    /// Not attempted (attempts off, no free slot, or backing off): the review goes to an evaluation thread.
    NotTried,
}

impl<T> Tried<T> {
    /// The result, when the review was decided on the worker.
    pub fn answered(self) -> Option<T> {
        match self {
            Tried::Answered(value) => Some(value),
            Tried::HandedOff | Tried::NotTried => None,
        }
    }

    /// The metric label: `answered`, `handed_off` or `not_tried`.
    pub fn label(&self) -> &'static str {
        match self {
            Tried::Answered(_) => "answered",
            Tried::HandedOff => "handed_off",
            Tried::NotTried => "not_tried",
        }
    }
}

/// The settings and state of attempts on the async workers (shared by all requests).
#[derive(Debug)]
pub struct Inline {
    /// The budget of one attempt; `None` turns attempts off.
    budget: Option<Duration>,
    /// Attempts running at once.
    slots: Semaphore,
    /// Reviews left to skip the attempt after one was handed off.
    backoff: AtomicU32,
    answered: AtomicU64,
    handed_off: AtomicU64,
}

impl Inline {
    /// No attempts: every review goes to an evaluation thread.
    pub fn off() -> Inline {
        Inline::new(None, 0)
    }

    /// Attempts within `budget`, at most `slots` at once (`budget` `None` or zero, or no slot, turns them off).
    pub fn new(budget: Option<Duration>, slots: usize) -> Inline {
        let budget = budget.filter(|b| !b.is_zero() && slots > 0);
        Inline {
            budget,
            slots: Semaphore::new(slots.min(Semaphore::MAX_PERMITS)),
            backoff: AtomicU32::new(0),
            answered: AtomicU64::new(0),
            handed_off: AtomicU64::new(0),
        }
    }

    /// Attempts for a runtime with `workers` async workers: one fewer slot than workers (at least one), so one worker
    /// stays free while the others evaluate.
    pub fn for_workers(budget: Option<Duration>, workers: usize) -> Inline {
        Inline::new(budget, workers.saturating_sub(1).max(1))
    }

    /// The budget, if attempts are on.
    pub fn budget(&self) -> Option<Duration> {
        self.budget
    }

    /// Reviews decided on a worker so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Attempts handed off to an evaluation thread so far.
    pub fn handed_off(&self) -> u64 {
        self.handed_off.load(Ordering::Relaxed)
    }

    /// Try `evaluate` on this worker with a deadline no later than `deadline` and the budget from now. `evaluate`
    /// gets the attempt's deadline and reports whether its result is in doubt (a policy failed, perhaps for want of
    /// time): such a result stands only when the attempt had the request's own deadline. Blocking cluster reads are
    /// refused while it runs.
    pub fn attempt<T>(
        &self,
        deadline: Instant,
        evaluate: impl FnOnce(Instant) -> (T, bool),
    ) -> Tried<T> {
        let Some(budget) = self.budget else {
            return Tried::NotTried;
        };
        if self
            .backoff
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok()
        {
            return Tried::NotTried;
        }
        let Ok(_slot) = self.slots.try_acquire() else {
            return Tried::NotTried;
        };
        let cut = Instant::now()
            .checked_add(budget)
            .filter(|cut| *cut < deadline);
        let attempt_deadline = cut.unwrap_or(deadline);
        let refused_before = Refusals::enter();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| evaluate(attempt_deadline)));
        let refused = Refusals::leave(refused_before);
        // A failure under the request's own deadline is the request's answer; under the cut budget it may not be.
        let out_of_budget = |in_doubt: bool| in_doubt && cut.is_some();
        match outcome {
            Ok((value, in_doubt)) if !refused && !out_of_budget(in_doubt) => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                Tried::Answered(value)
            }
            // Handed off (a panic too: the evaluation thread contains it and answers under the failure policy).
            _ => {
                self.handed_off.fetch_add(1, Ordering::Relaxed);
                self.backoff.store(BACKOFF, Ordering::Relaxed);
                Tried::HandedOff
            }
        }
    }
}

thread_local! {
    /// Whether an attempt runs on this thread, and whether it had a blocking read refused.
    static ATTEMPT: Cell<(bool, bool)> = const { Cell::new((false, false)) };
}

/// The per-thread record of refused blocking reads.
struct Refusals;

impl Refusals {
    /// Mark this thread as attempting; returns the previous state (attempts do not nest, but stay correct if they do).
    fn enter() -> (bool, bool) {
        ATTEMPT.with(|a| a.replace((true, false)))
    }

    /// Unmark this thread; whether a read was refused during the attempt.
    fn leave(previous: (bool, bool)) -> bool {
        ATTEMPT.with(|a| a.replace(previous)).1
    }
}

/// Called by a cluster read that would wait for the network: `true` when an attempt runs on this thread, in which case
/// the read must not happen (the attempt is then handed off to an evaluation thread, where it may).
pub fn refuse_blocking_read() -> bool {
    ATTEMPT.with(|a| {
        let (attempting, _) = a.get();
        if attempting {
            a.set((true, true));
        }
        attempting
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn off_never_attempts() {
        let inline = Inline::off();
        assert_eq!(inline.attempt(far(), |_| (1, false)), Tried::NotTried);
        assert_eq!(Inline::new(Some(Duration::ZERO), 1).budget(), None);
        assert_eq!(
            Inline::new(Some(Duration::from_millis(1)), 0).budget(),
            None
        );
    }

    #[test]
    fn a_quick_evaluation_is_answered_with_its_deadline_cut_to_the_budget() {
        let inline = Inline::new(Some(Duration::from_millis(2)), 1);
        let deadline = far();
        let mut seen = None;
        let answer = inline.attempt(deadline, |cut| {
            seen = Some(cut);
            ("decided", false)
        });
        assert_eq!(answer, Tried::Answered("decided"));
        let cut = seen.expect("evaluated");
        assert!(cut < deadline, "the attempt's deadline is the budget's");
        assert_eq!((inline.answered(), inline.handed_off()), (1, 0));
    }

    #[test]
    fn a_result_in_doubt_under_the_budget_is_handed_off_and_later_reviews_back_off() {
        let inline = Inline::new(Some(Duration::from_millis(2)), 1);
        assert_eq!(
            inline.attempt(far(), |_| ("timed out", true)),
            Tried::HandedOff
        );
        assert_eq!(inline.handed_off(), 1);
        let mut ran = 0;
        for _ in 0..BACKOFF {
            assert_eq!(
                inline.attempt(far(), |_| {
                    ran += 1;
                    ((), false)
                }),
                Tried::NotTried
            );
        }
        assert_eq!(ran, 0, "backing off: no attempt");
        assert_eq!(
            inline.attempt(far(), |_| ("again", false)),
            Tried::Answered("again")
        );
    }

    #[test]
    fn a_failure_under_the_requests_own_deadline_is_the_answer() {
        // The deadline is nearer than the budget: the attempt has the request's own deadline, so its timeout stands.
        let inline = Inline::new(Some(Duration::from_secs(60)), 1);
        let deadline = Instant::now() + Duration::from_millis(1);
        let mut seen = None;
        let answer = inline.attempt(deadline, |cut| {
            seen = Some(cut);
            ("timed out", true)
        });
        assert_eq!(answer, Tried::Answered("timed out"));
        assert_eq!(seen, Some(deadline));
    }

    #[test]
    fn a_refused_blocking_read_hands_off_and_reads_are_allowed_outside_attempts() {
        let inline = Inline::new(Some(Duration::from_millis(50)), 1);
        assert!(!refuse_blocking_read(), "no attempt on this thread");
        let answer = inline.attempt(far(), |_| (refuse_blocking_read(), false));
        assert_eq!(answer, Tried::HandedOff);
        assert_eq!(inline.handed_off(), 1);
        assert!(!refuse_blocking_read(), "the attempt is over");
    }

    #[test]
    fn a_panic_is_handed_off_not_propagated() {
        let inline = Inline::new(Some(Duration::from_millis(50)), 1);
        let answer: Tried<()> = inline.attempt(far(), |_| panic!("engine bug"));
        assert_eq!(answer, Tried::HandedOff);
        assert_eq!(inline.handed_off(), 1);
    }

    #[test]
    fn no_more_attempts_at_once_than_slots() {
        let inline = Inline::new(Some(Duration::from_millis(50)), 1);
        let nested = inline.attempt(far(), |_| (inline.attempt(far(), |_| (1, false)), false));
        assert_eq!(
            nested,
            Tried::Answered(Tried::NotTried),
            "the only slot is taken by the outer attempt"
        );
        assert_eq!(
            Inline::for_workers(Some(Duration::from_millis(1)), 4)
                .slots
                .available_permits(),
            3
        );
        assert_eq!(
            Inline::for_workers(Some(Duration::from_millis(1)), 1)
                .slots
                .available_permits(),
            1
        );
    }
}
