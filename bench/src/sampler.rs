//! Samples the memory of a running process tree on a thread of its own.
//!
//! Walking /proc takes from tens of microseconds to milliseconds; done on the thread that reads
//! the workload's output it would land inside the very start-up and exit times being measured.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::procfs::tree_pss_kib;

/// How often a watched process tree is sampled besides the explicit requests. A sample of a
/// small tree costs tens of microseconds (see the `harness` criterion bench) and competes with
/// the workload for a CPU: 20 ms keeps that under 0.5 % while runs of a few tens of
/// milliseconds still get a sample.
pub const PERIOD: Duration = Duration::from_millis(20);

enum Request {
    Watch(u32),
    SampleNow,
    Release,
}

/// A sampler thread that keeps the peak summed PSS of the process tree it watches.
#[derive(Debug)]
pub struct PssSampler {
    requests: Option<Sender<Request>>,
    peaks: Receiver<Option<u64>>,
    thread: Option<JoinHandle<()>>,
}

impl PssSampler {
    pub fn spawn() -> std::io::Result<PssSampler> {
        let (requests, inbox) = mpsc::channel();
        let (outbox, peaks) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("pss-sampler".into())
            .spawn(move || serve(&inbox, &outbox))?;
        Ok(PssSampler {
            requests: Some(requests),
            peaks,
            thread: Some(thread),
        })
    }

    /// Starts watching the tree rooted at `pid`, sampling it every [`PERIOD`].
    pub fn watch(&self, pid: u32) {
        self.send(Request::Watch(pid));
    }

    /// Takes a sample as soon as possible, e.g. when the workload says it is ready.
    pub fn sample_now(&self) {
        self.send(Request::SampleNow);
    }

    /// Stops watching and returns the peak over the samples taken, `None` if no sample found
    /// the root process alive. Call it before reaping the root, while its pid cannot yet be
    /// reused by an unrelated process.
    pub fn release(&self) -> Option<u64> {
        self.send(Request::Release);
        self.peaks.recv().ok().flatten()
    }

    fn send(&self, request: Request) {
        // The thread only ends when this sampler is dropped; if it died anyway, runs simply
        // get no PSS, which `release` reports as `None`.
        if let Some(requests) = &self.requests {
            let _ = requests.send(request);
        }
    }
}

impl Drop for PssSampler {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop.
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(inbox: &Receiver<Request>, outbox: &Sender<Option<u64>>) {
    let mut watched: Option<(u32, Option<u64>)> = None;
    let mut next_sample = Instant::now();
    loop {
        let request = if watched.is_some() {
            match inbox.recv_timeout(next_sample.saturating_duration_since(Instant::now())) {
                Ok(request) => Some(request),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match inbox.recv() {
                Ok(request) => Some(request),
                Err(_) => return,
            }
        };
        match request {
            Some(Request::Watch(pid)) => {
                watched = Some((pid, None));
                next_sample = Instant::now() + PERIOD;
            }
            Some(Request::SampleNow) | None => {
                if let Some((pid, peak)) = &mut watched {
                    *peak = (*peak).max(tree_pss_kib(*pid));
                    next_sample = Instant::now() + PERIOD;
                }
            }
            Some(Request::Release) => {
                if outbox
                    .send(watched.take().and_then(|(_, peak)| peak))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_a_live_process_and_forgets_it_on_release() {
        let sampler = PssSampler::spawn().unwrap();
        sampler.watch(std::process::id());
        sampler.sample_now();
        assert!(sampler.release().unwrap() > 0);
        assert_eq!(sampler.release(), None);
    }

    #[test]
    fn a_vanished_process_has_no_pss() {
        let sampler = PssSampler::spawn().unwrap();
        sampler.watch(u32::MAX);
        sampler.sample_now();
        assert_eq!(sampler.release(), None);
    }
}
