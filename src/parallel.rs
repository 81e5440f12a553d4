//! Frame-parallel work for large one-shot messages: frames are independent under one message key
//! (each has its own IV and AAD), so contiguous runs of frames can be sealed or opened on several
//! threads (a rayon pool of this crate's own, feature `parallel`) into disjoint parts of one
//! buffer. The output is byte-identical to the sequential path.

use std::sync::OnceLock;
use std::time::Duration;

/// Below this much plaintext a message is processed on the calling thread.
pub(crate) const MIN_PARALLEL_BYTES: usize = 256 * 1024;
/// Each extra thread gets at least this much work.
const MIN_BYTES_PER_THREAD: usize = 128 * 1024;

/// The machine's parallelism, read once (the query costs system calls); 1 without feature
/// `parallel`.
pub(crate) fn available() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    if cfg!(feature = "parallel") {
        *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    } else {
        1
    }
}

/// How long frame threads stay awake after a parallel message, by default.
pub(crate) const DEFAULT_FRAME_LINGER: Duration = Duration::from_micros(100);

/// Who works on one message's frames: how many threads (the calling one included), and how long
/// the frame pool's threads stay awake afterwards for the next message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Workers {
    pub(crate) threads: usize,
    #[cfg_attr(not(feature = "parallel"), allow(dead_code))]
    pub(crate) linger: Duration,
}

impl Workers {
    /// The calling thread alone.
    pub(crate) const ONE: Self = Self { threads: 1, linger: Duration::ZERO };

    /// Workers for `bytes` of plaintext with at most `max_threads` (0 = the machine's).
    pub(crate) fn for_len(bytes: usize, max_threads: usize, linger: Duration) -> Self {
        if bytes < MIN_PARALLEL_BYTES {
            return Self::ONE;
        }
        let max = if max_threads == 0 { available() } else { max_threads };
        Self { threads: max.min(bytes / MIN_BYTES_PER_THREAD).max(1), linger }
    }
}

/// Splits `0..n` frames into contiguous, non-empty runs for `threads` threads: one run when
/// `threads` is 1, else about eight per thread so that a thread that starts late takes fewer.
pub(crate) fn split(n: usize, threads: usize) -> Vec<std::ops::Range<usize>> {
    let pieces = if threads <= 1 { 1 } else { threads * 8 };
    let per = n.div_ceil(pieces).max(1);
    (0..n).step_by(per).map(|start| start..(start + per).min(n)).collect()
}

/// Runs `work` on each run (on the frame pool with feature `parallel`, which re-raises a
/// helper's panic on the calling thread; else in order on the calling thread) and returns the
/// error of the first run, in order, that failed, so the reported failure is the one a sequential
/// pass would have hit first.
pub(crate) fn run<T: Send, E: Send>(
    runs: Vec<T>,
    workers: Workers,
    work: impl Fn(T) -> Result<(), E> + Sync + Send,
) -> Result<(), E> {
    if runs.len() <= 1 || workers.threads <= 1 {
        return runs.into_iter().try_for_each(work);
    }
    #[cfg(feature = "parallel")]
    if let Some(pool) = pool::get() {
        // Helpers only for cores that no other caller's large message is using (now or in the
        // last few milliseconds): when every core has a caller, a helper shares a core with one,
        // gets preempted holding a run, and the caller waiting for it loses a whole time slice.
        // The sequential path stays counted too.
        let me = pool::Caller::enter();
        // Unit tests run concurrently and must exercise the helpers whatever else is running.
        let free = if cfg!(test) { available() } else { available().saturating_sub(me.callers()) };
        let helpers = (workers.threads - 1).min(free).min(pool.current_num_threads());
        return if helpers > 0 {
            pool::run(pool, runs, helpers, workers.linger, work)
        } else {
            runs.into_iter().try_for_each(work)
        };
    }
    runs.into_iter().try_for_each(work)
}

/// The frame pool: `available() - 1` rayon threads of this crate's own (named `esdk-frames-N`),
/// so frame work neither waits behind nor wakes the application's global pool. After a parallel
/// message its threads stay awake for a while ([`DEFAULT_FRAME_LINGER`] unless the client says
/// otherwise) and take the next message's runs at once instead of paying a wake-up (tens of
/// microseconds on a virtual machine: a third of the work of a 1 MiB message).
#[cfg(feature = "parallel")]
mod pool {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};

    pub(super) fn get() -> Option<&'static rayon::ThreadPool> {
        static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
        POOL.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(super::available().saturating_sub(1).max(1))
                .thread_name(|i| format!("esdk-frames-{i}"))
                .build()
                .ok()
        })
        .as_ref()
    }

    fn now_ns() -> u64 {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Pool threads stay awake until this instant (ns since `EPOCH`).
    static AWAKE_UNTIL: AtomicU64 = AtomicU64::new(0);
    /// Pool threads currently lingering.
    static LINGERING: AtomicUsize = AtomicUsize::new(0);

    /// Keeps `want` pool threads awake for `linger` from now. They run whatever reaches the pool
    /// and otherwise yield the CPU to other runnable threads.
    fn keep_awake(pool: &'static rayon::ThreadPool, want: usize, linger: Duration) {
        if linger.is_zero() {
            return;
        }
        let until = now_ns().saturating_add(u64::try_from(linger.as_nanos()).unwrap_or(u64::MAX));
        AWAKE_UNTIL.fetch_max(until, Ordering::Relaxed);
        let mut cur = LINGERING.load(Ordering::Relaxed);
        while cur < want {
            match LINGERING.compare_exchange_weak(cur, cur + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    pool.spawn(stay_awake);
                    cur += 1;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// A pool job that runs whatever reaches the pool until `AWAKE_UNTIL` passes.
    fn stay_awake() {
        loop {
            match rayon::yield_now() {
                Some(rayon::Yield::Executed) => continue,
                Some(rayon::Yield::Idle) => {}
                None => break,
            }
            if now_ns() >= AWAKE_UNTIL.load(Ordering::Relaxed) {
                break;
            }
            std::thread::yield_now();
        }
        LINGERING.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a run as finished even when its work panics.
    struct Finished<'a>(&'a AtomicUsize);
    impl Drop for Finished<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Release);
        }
    }

    /// Callers currently working on a message with more than one run.
    static CALLERS: AtomicUsize = AtomicUsize::new(0);
    /// The most callers seen at once lately, and until when that counts (ns since `EPOCH`).
    static PEAK: AtomicUsize = AtomicUsize::new(0);
    static PEAK_UNTIL: AtomicU64 = AtomicU64::new(0);
    /// How long an overlap of callers is remembered: workers that take turns (one in its
    /// prologue while the other is in its frames) still count as busy together.
    const PEAK_MEMORY: Duration = Duration::from_millis(2);

    /// One caller counted in `CALLERS` while it lives.
    pub(super) struct Caller(usize);

    impl Caller {
        pub(super) fn enter() -> Self {
            let now = CALLERS.fetch_add(1, Ordering::Relaxed) + 1;
            let t = now_ns();
            let recent = if t < PEAK_UNTIL.load(Ordering::Relaxed) { PEAK.load(Ordering::Relaxed) } else { 0 };
            if now >= 2 {
                PEAK.store(now.max(recent), Ordering::Relaxed);
                PEAK_UNTIL.store(t.saturating_add(PEAK_MEMORY.as_nanos() as u64), Ordering::Relaxed);
            }
            Self(now.max(recent))
        }

        /// Callers at work now or lately, this one included.
        pub(super) fn callers(&self) -> usize {
            self.0
        }
    }

    impl Drop for Caller {
        fn drop(&mut self) {
            CALLERS.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Runs `work` on the calling thread and `helpers` pool threads.
    pub(super) fn run<T: Send, E: Send>(
        pool: &'static rayon::ThreadPool,
        runs: Vec<T>,
        helpers: usize,
        linger: Duration,
        work: impl Fn(T) -> Result<(), E> + Sync + Send,
    ) -> Result<(), E> {
        // Dynamic hand-out from both ends: the calling thread starts at once and takes runs from
        // the front while pool threads take them from the back, so a late helper never makes it
        // slower than the sequential path, and from one message to the next each thread keeps
        // writing about the same part of the output (its cache lines stay where they are).
        let n = runs.len();
        let slots: Vec<Mutex<Option<T>>> = runs.into_iter().map(|r| Mutex::new(Some(r))).collect();
        let results: Vec<Mutex<Option<Result<(), E>>>> = slots.iter().map(|_| Mutex::new(None)).collect();
        let unclaimed = Mutex::new(0..n);
        let finished = AtomicUsize::new(0);
        let worker = |from_front: bool| loop {
            let claimed = {
                let mut left = unclaimed.lock().unwrap_or_else(|p| p.into_inner());
                if from_front {
                    left.next()
                } else {
                    left.next_back()
                }
            };
            let Some(i) = claimed else { return };
            let _done = Finished(&finished);
            let Some(item) = slots[i].lock().unwrap_or_else(|p| p.into_inner()).take() else { continue };
            let r = work(item);
            if !from_front {
                // Lets tests (and `-vv` logs) see that helpers did part of the work.
                tracing::trace!(target: "esdk::parallel", run = i, of = n, "frames run on a helper thread");
            }
            *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        };
        let helpers = helpers.min(n - 1);
        pool.in_place_scope(|s| {
            for _ in 0..helpers {
                s.spawn(|_| worker(false));
            }
            worker(true);
            // Wait for runs still in a helper's hands without going to sleep: leaving the scope
            // blocks on a lock, and being woken from it costs more than the last run.
            while finished.load(Ordering::Acquire) < n {
                std::thread::yield_now();
            }
        });
        keep_awake(pool, helpers, linger);
        results.into_iter().try_for_each(|r| r.into_inner().unwrap_or_else(|p| p.into_inner()).unwrap_or(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_everything_in_order() {
        for n in 0..40 {
            for t in 1..6 {
                let runs = split(n, t);
                assert!(runs.len() <= if t == 1 { 1 } else { 8 * t });
                assert_eq!(runs.iter().flat_map(|r| r.clone()).collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
                assert!(runs.iter().all(|r| !r.is_empty()));
            }
        }
    }

    #[test]
    fn first_failing_run_wins() {
        for threads in [1, 2, 3] {
            let workers = Workers { threads, linger: DEFAULT_FRAME_LINGER };
            let r = run(vec![0, 1, 2, 3], workers, |i| if i >= 1 { Err(i) } else { Ok(()) });
            assert_eq!(r, Err(1));
            assert_eq!(run(Vec::<u8>::new(), workers, |_| Err(())), Ok(()));
        }
    }
}
