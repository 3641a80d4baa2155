//! The threads that evaluate reviews: a fixed set, one per evaluation slot (`--max-concurrency`), instead of tokio's
//! blocking pool.
//!
//! The blocking pool wakes its longest-idle thread for each task and grows while tasks overlap, so consecutive
//! reviews ran on a rotating set of threads (four at one connection, eleven at sixteen in the load bench), each with
//! its own malloc arena and cold caches. Here a job goes to the thread that became idle last (the one whose caches
//! are warmest), and there are never more threads than evaluation slots.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A job: runs on an evaluation thread.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why a job gave no result.
#[derive(Debug, thiserror::Error)]
pub enum EvaluatorError {
    /// The job panicked (evaluations are contained; this is the code around them).
    #[error("evaluation task panicked: {0}")]
    Panicked(String),
    /// No evaluation thread could be started, or the evaluator is shutting down.
    #[error("no evaluation thread is available: {0}")]
    Unavailable(String),
}

/// One thread's wake-up signal.
#[derive(Debug, Default)]
struct Wake {
    woken: Mutex<bool>,
    condvar: Condvar,
}

impl Wake {
    fn notify(&self) {
        *lock(&self.woken) = true;
        self.condvar.notify_one();
    }

    fn wait(&self) {
        let mut woken = lock(&self.woken);
        while !*woken {
            woken = match self.condvar.wait(woken) {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
        *woken = false;
    }
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Idle threads, the most recently idle last.
    idle: Vec<Arc<Wake>>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

/// A poisoned lock only means a panic elsewhere while it was held: the queue itself stays consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The evaluation threads. Dropping the last handle lets them finish their jobs and end.
pub struct Evaluator {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator").finish_non_exhaustive()
    }
}

impl Evaluator {
    /// Start `threads` evaluation threads (at least one).
    pub fn new(threads: usize) -> Result<Evaluator, std::io::Error> {
        let shared = Arc::new(Shared::default());
        // Like the blocking pool's threads, these are inside the runtime's context when there is one (code that
        // evaluates may look up `Handle::current()`).
        let runtime = tokio::runtime::Handle::try_current().ok();
        for i in 0..threads.max(1) {
            let shared = shared.clone();
            let runtime = runtime.clone();
            std::thread::Builder::new()
                .name(format!("policyctl-eval-{i}"))
                .spawn(move || {
                    let _context = runtime.as_ref().map(tokio::runtime::Handle::enter);
                    work(&shared)
                })?;
        }
        Ok(Evaluator { shared })
    }

    /// Run `f` on an evaluation thread and wait (asynchronously) for its result.
    pub async fn run<T, F>(&self, f: F) -> Result<T, EvaluatorError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Box::new(move || {
            // The requester may be gone (its connection closed): nothing to answer.
            let _ = tx.send(contained(f));
        }))?;
        received(rx.await)
    }

    /// Run `f(payload)` on an evaluation thread if one takes it up before `deadline`; otherwise take the payload
    /// back ([`Started::NotStarted`]) and leave the job to be discarded. Jobs wait in this queue, in order, while
    /// every thread is busy: a thread that finishes one takes the next without any hand-off through the async side.
    pub async fn run_before<P, T, F>(
        &self,
        payload: P,
        deadline: tokio::time::Instant,
        f: F,
    ) -> Result<Started<P, T>, EvaluatorError>
    where
        P: Send + 'static,
        T: Send + 'static,
        F: FnOnce(P) -> T + Send + 'static,
    {
        // Whoever takes the payload first runs it: the thread that starts the job, or the requester at its deadline.
        let slot = Arc::new(Mutex::new(Some(payload)));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job_slot = slot.clone();
        self.submit(Box::new(move || {
            let taken = lock(&job_slot).take();
            if let Some(payload) = taken {
                let _ = tx.send(contained(move || f(payload)));
            }
        }))?;
        let mut rx = std::pin::pin!(rx);
        tokio::select! {
            biased;
            result = &mut rx => return received(result).map(Started::Done),
            () = tokio::time::sleep_until(deadline) => {}
        }
        let taken = lock(&slot).take();
        match taken {
            Some(payload) => Ok(Started::NotStarted(payload)),
            // A thread started it just in time: its result comes.
            None => received(rx.await).map(Started::Done),
        }
    }

    fn submit(&self, job: Job) -> Result<(), EvaluatorError> {
        let mut state = lock(&self.shared.state);
        if state.closed {
            return Err(EvaluatorError::Unavailable("shutting down".to_string()));
        }
        state.jobs.push_back(job);
        if let Some(wake) = state.idle.pop() {
            wake.notify();
        }
        Ok(())
    }
}

/// What [`Evaluator::run_before`] did with a job.
#[derive(Debug)]
pub enum Started<P, T> {
    /// A thread ran it: its result.
    Done(T),
    /// No thread took it up before the deadline: the payload, back.
    NotStarted(P),
}

/// `f()`, a panic becoming an error.
fn contained<T>(f: impl FnOnce() -> T) -> Result<T, EvaluatorError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        EvaluatorError::Panicked(text)
    })
}

fn received<T>(
    result: Result<Result<T, EvaluatorError>, tokio::sync::oneshot::error::RecvError>,
) -> Result<T, EvaluatorError> {
    match result {
        Ok(result) => result,
        // The job was dropped without answering: the evaluator shut down under it.
        Err(_) => Err(EvaluatorError::Unavailable(
            "the evaluation thread ended".to_string(),
        )),
    }
}

impl Drop for Evaluator {
    fn drop(&mut self) {
        let idle = {
            let mut state = lock(&self.shared.state);
            state.closed = true;
            std::mem::take(&mut state.idle)
        };
        for wake in idle {
            wake.notify();
        }
    }
}

/// An evaluation thread: run queued jobs; when there are none, wait to be woken; end once closed and drained.
fn work(shared: &Shared) {
    let wake = Arc::new(Wake::default());
    loop {
        let job = {
            let mut state = lock(&shared.state);
            match state.jobs.pop_front() {
                Some(job) => Some(job),
                None if state.closed => return,
                None => {
                    state.idle.push(wake.clone());
                    None
                }
            }
        };
        match job {
            // Jobs catch their own panics.
            Some(job) => job(),
            None => wake.wait(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn runs_jobs_on_its_threads_and_returns_their_results() {
        let evaluator = Evaluator::new(2).expect("threads");
        let (name, in_runtime) = evaluator
            .run(|| {
                (
                    std::thread::current().name().map(str::to_string),
                    tokio::runtime::Handle::try_current().is_ok(),
                )
            })
            .await
            .expect("result");
        assert!(
            name.as_deref()
                .is_some_and(|n| n.starts_with("policyctl-eval-")),
            "{name:?}"
        );
        assert!(
            in_runtime,
            "evaluation threads see the runtime, like the blocking pool's"
        );
        assert_eq!(evaluator.run(|| 6 * 7).await.expect("result"), 42);
    }

    /// One job after the other runs on the thread that was idle last: the same thread every time.
    #[tokio::test]
    async fn sequential_jobs_stay_on_one_thread() {
        let evaluator = Evaluator::new(4).expect("threads");
        // Let every thread reach the idle stack.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut threads = HashSet::new();
        for _ in 0..20 {
            let id = evaluator
                .run(|| format!("{:?}", std::thread::current().id()))
                .await
                .expect("result");
            threads.insert(id);
            // The thread goes back to the idle stack after it answered.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(threads.len(), 1, "{threads:?}");
    }

    /// More jobs than threads queue and all complete, never more at once than threads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queues_jobs_beyond_its_threads() {
        let evaluator = Arc::new(Evaluator::new(2).expect("threads"));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (evaluator, running, most) = (evaluator.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                evaluator
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        running.fetch_sub(1, Ordering::SeqCst);
                        i
                    })
                    .await
            }));
        }
        let mut done = Vec::new();
        for task in tasks {
            done.push(task.await.expect("task").expect("result"));
        }
        done.sort_unstable();
        assert_eq!(done, (0..16).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 2);
    }

    /// A job that no thread takes up before its deadline gives its payload back and never runs; one that started
    /// runs to its end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_not_started_by_its_deadline_comes_back() {
        let evaluator = Arc::new(Evaluator::new(1).expect("threads"));
        let ran = Arc::new(AtomicUsize::new(0));
        // Occupy the only thread.
        let busy = {
            let evaluator = evaluator.clone();
            tokio::spawn(async move {
                let far = tokio::time::Instant::now() + Duration::from_secs(10);
                evaluator
                    .run_before((), far, |()| {
                        std::thread::sleep(Duration::from_millis(2000))
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let counted = ran.clone();
        let soon = tokio::time::Instant::now() + Duration::from_millis(50);
        let started = std::time::Instant::now();
        let queued = evaluator
            .run_before("payload", soon, move |p| {
                counted.fetch_add(1, Ordering::SeqCst);
                p.len()
            })
            .await
            .expect("evaluator");
        assert!(
            matches!(queued, Started::NotStarted("payload")),
            "{queued:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "answered at its deadline"
        );
        assert!(matches!(busy.await.expect("task"), Ok(Started::Done(()))));
        // The discarded job never runs, and the thread goes on.
        let next = evaluator
            .run_before(
                2,
                tokio::time::Instant::now() + Duration::from_secs(10),
                |n| n * 21,
            )
            .await
            .expect("evaluator");
        assert!(matches!(next, Started::Done(42)), "{next:?}");
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_thread_goes_on() {
        let evaluator = Evaluator::new(1).expect("threads");
        let err = evaluator
            .run(|| -> u8 { panic!("boom") })
            .await
            .expect_err("panicked");
        assert!(err.to_string().contains("boom"), "{err}");
        assert_eq!(evaluator.run(|| 1).await.expect("still running"), 1);
    }

    /// Dropping the evaluator ends its threads.
    #[test]
    fn threads_end_when_dropped() {
        let evaluator = Evaluator::new(3).expect("threads");
        let shared = Arc::downgrade(&evaluator.shared);
        drop(evaluator);
        for _ in 0..200 {
            if shared.strong_count() == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("evaluation threads still running");
    }
}
