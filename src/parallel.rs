//! Frame-parallel work for large one-shot messages: frames are independent under one message key
//! (each has its own IV and AAD), so contiguous runs of frames can be sealed or opened on several
//! threads (rayon's pool, feature `parallel`) into disjoint parts of one buffer. The output is
//! byte-identical to the sequential path.

use std::sync::OnceLock;

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

/// Threads to use for `bytes` of plaintext with at most `max_threads` (0 = the machine's).
pub(crate) fn threads_for(bytes: usize, max_threads: usize) -> usize {
    if bytes < MIN_PARALLEL_BYTES {
        return 1;
    }
    let max = if max_threads == 0 { available() } else { max_threads };
    max.min(bytes / MIN_BYTES_PER_THREAD).max(1)
}

/// Splits `0..n` frames into contiguous, non-empty runs for `threads` threads: one run when
/// `threads` is 1, else about eight per thread so that a thread that starts late takes fewer.
pub(crate) fn split(n: usize, threads: usize) -> Vec<std::ops::Range<usize>> {
    let pieces = if threads <= 1 { 1 } else { threads * 8 };
    let per = n.div_ceil(pieces).max(1);
    (0..n).step_by(per).map(|start| start..(start + per).min(n)).collect()
}

/// Runs `work` on each run (on rayon's pool with feature `parallel`, which re-raises a helper's
/// panic on the calling thread; else in order on the calling thread) and returns the error of the first run, in order, that failed, so the reported
/// failure is the one a sequential pass would have hit first.
pub(crate) fn run<T: Send, E: Send>(
    runs: Vec<T>,
    threads: usize,
    work: impl Fn(T) -> Result<(), E> + Sync + Send,
) -> Result<(), E> {
    if runs.len() <= 1 || threads <= 1 {
        return runs.into_iter().try_for_each(work);
    }
    #[cfg(feature = "parallel")]
    {
        // Dynamic hand-out: the calling thread starts at once and takes runs in order while the
        // pool's threads wake up and take the rest, so a late helper never makes it slower than
        // the sequential path.
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Mutex;
        let slots: Vec<Mutex<Option<T>>> = runs.into_iter().map(|r| Mutex::new(Some(r))).collect();
        let results: Vec<Mutex<Option<Result<(), E>>>> = slots.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let worker = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(i) else { return };
            let Some(item) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() else { continue };
            let r = work(item);
            *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        };
        let helpers = threads.min(slots.len()).saturating_sub(1);
        rayon::in_place_scope(|s| {
            for _ in 0..helpers {
                s.spawn(|_| worker());
            }
            worker();
        });
        results.into_iter().try_for_each(|r| r.into_inner().unwrap_or_else(|p| p.into_inner()).unwrap_or(Ok(())))
    }
    #[cfg(not(feature = "parallel"))]
    {
        runs.into_iter().try_for_each(work)
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
            let r = run(vec![0, 1, 2, 3], threads, |i| if i >= 1 { Err(i) } else { Ok(()) });
            assert_eq!(r, Err(1));
            assert_eq!(run(Vec::<u8>::new(), threads, |_| Err(())), Ok(()));
        }
    }
}
