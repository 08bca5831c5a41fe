//! Worker pools on std threads, and the progress bar.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::stats::Stats;

/// Runs `f` over `tasks` on `concurrency` threads that pull the next task from a shared counter; workers stop
/// taking tasks once `deadline` has passed. Returns each task's result (`None` for tasks not run) in task order,
/// and the merged statistics of all workers.
pub fn run_tasks<T, R, F>(concurrency: usize, tasks: &[T], deadline: Option<Instant>, f: F) -> (Vec<Option<R>>, Stats)
where
    T: Sync,
    R: Send,
    F: Fn(&T, &mut Stats) -> R + Sync,
{
    let next = AtomicUsize::new(0);
    let workers = concurrency.max(1).min(tasks.len());
    let mut results: Vec<Option<R>> = Vec::with_capacity(tasks.len());
    results.resize_with(tasks.len(), || None);
    let mut stats = Stats::new();
    thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut local = Stats::new();
                    let mut out = Vec::new();
                    loop {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(task) = tasks.get(i) else { break };
                        out.push((i, f(task, &mut local)));
                    }
                    (out, local)
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok((out, local)) => {
                    stats.merge(local);
                    for (i, r) in out {
                        results[i] = Some(r);
                    }
                }
                Err(p) => std::panic::resume_unwind(p),
            }
        }
    });
    (results, stats)
}

/// Runs `f` on every item on its own thread (one thread per account) and waits for all.
pub fn parallel<T: Send, F: Fn(&mut T) + Sync>(items: &mut [T], f: F) {
    thread::scope(|s| {
        let handles: Vec<_> = items
            .iter_mut()
            .map(|item| {
                let f = &f;
                s.spawn(move || f(item))
            })
            .collect();
        for h in handles {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
    });
}

/// A progress bar on stderr fed by a request counter; a ticker thread refreshes it a few times per second.
pub struct Progress {
    /// Requests sent so far (incremented by the clients).
    pub counter: Arc<AtomicU64>,
    phase: Arc<Mutex<String>>,
    bar: Option<ProgressBar>,
    stop: Arc<AtomicBool>,
    ticker: Option<thread::JoinHandle<()>>,
}

impl Progress {
    /// A progress bar expecting about `total` requests; hidden when `enabled` is false or stderr is not a
    /// terminal.
    pub fn new(total: u64, enabled: bool) -> Self {
        let counter = Arc::new(AtomicU64::new(0));
        let phase = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        if !enabled {
            return Progress { counter, phase, bar: None, stop, ticker: None };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} req ({rate}, eta {eta}) {msg}",
        ) {
            let style = style.with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} req/s", s.per_sec());
            });
            bar.set_style(style.progress_chars("=> "));
        }
        let ticker = {
            let (bar, counter, phase, stop) = (bar.clone(), counter.clone(), phase.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    bar.set_position(counter.load(Ordering::Relaxed));
                    if let Ok(p) = phase.lock() {
                        bar.set_message(p.clone());
                    }
                    thread::sleep(Duration::from_millis(250));
                }
            })
        };
        Progress { counter, phase, bar: Some(bar), stop, ticker: Some(ticker) }
    }

    /// Shows the current phase next to the bar.
    pub fn set_phase(&self, name: &str) {
        if let Ok(mut p) = self.phase.lock() {
            name.clone_into(&mut p);
        }
    }

    /// Raises the expected number of requests by `n`.
    pub fn add_total(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc_length(n);
        }
    }

    /// Stops the ticker and removes the bar.
    pub fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Kind;

    #[test]
    fn every_task_runs_once_and_results_keep_order() {
        let tasks: Vec<u32> = (0..100).collect();
        let (results, stats) = run_tasks(7, &tasks, None, |t, s| {
            s.ok(Kind::UserCreate, *t);
            t * 2
        });
        assert_eq!(results, (0..100).map(|t| Some(t * 2)).collect::<Vec<_>>());
        assert_eq!(stats.count(Kind::UserCreate), 100);
        let (none, _) = run_tasks(4, &tasks, Some(Instant::now()), |t, _| *t);
        assert!(none.iter().all(Option::is_none));
        let (empty, _) = run_tasks(4, &Vec::<u32>::new(), None, |t, _| *t);
        assert!(empty.is_empty());
    }
}
