//! Opening files when the process is out of descriptors (EMFILE, ENFILE):
//! wait and try again rather than fail the store. A store that fails stops
//! for good (fail-stop), so running out of descriptors because of the
//! network must be back-pressure here, never a failure. After
//! [`FD_WAIT`] the error is returned as it is.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What a process that keeps descriptors in reserve does when an open finds
/// none: free them (see [`set_shortage_hook`]).
static SHORTAGE_HOOK: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();

/// Registers the function called, once per wait, when an open finds no
/// descriptor, before it waits: the server frees its storage reserve there,
/// so storage pays nothing for the reserve until a shortage. The first
/// registration in a process wins; returns whether this one did.
pub fn set_shortage_hook(hook: impl Fn() + Send + Sync + 'static) -> bool {
    SHORTAGE_HOOK.set(Box::new(hook)).is_ok()
}

/// How long an open waits for a descriptor before giving up.
pub const FD_WAIT: Duration = Duration::from_secs(30);

/// Whether `e` says the process or the system has no descriptor left.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(24 /* EMFILE */) | Some(23 /* ENFILE */)
    )
}

/// Runs `open` until it succeeds, fails otherwise than for want of a
/// descriptor, or [`FD_WAIT`] passes; logs once per wait.
pub fn retry<T>(path: &Path, mut open: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match open() {
            Err(e) if out_of_descriptors(&e) && start.elapsed() < FD_WAIT => {
                if pause == Duration::from_millis(1) {
                    tracing::warn!(path = %path.display(), "out of file descriptors: waiting up to {FD_WAIT:?} to open ({e})");
                    if let Some(hook) = SHORTAGE_HOOK.get() {
                        hook();
                        pause = Duration::from_millis(2);
                        continue;
                    }
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// `opts.open(path)`, waiting for a descriptor.
pub fn open(opts: &OpenOptions, path: &Path) -> io::Result<File> {
    retry(path, || opts.open(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_out_a_shortage_then_opens() {
        use std::sync::atomic::{AtomicU32, Ordering};
        static CALLS: AtomicU32 = AtomicU32::new(0);
        assert!(set_shortage_hook(|| {
            CALLS.fetch_add(1, Ordering::SeqCst);
        }));
        let mut left = 3;
        let r = retry(Path::new("x"), || {
            if left > 0 {
                left -= 1;
                Err(io::Error::from_raw_os_error(24))
            } else {
                Ok(7)
            }
        });
        assert_eq!(r.unwrap(), 7);
        assert_eq!(
            CALLS.load(Ordering::SeqCst),
            1,
            "the reserve is freed once per wait"
        );
        // Other errors are not retried.
        let mut calls = 0;
        let r: io::Result<()> = retry(Path::new("x"), || {
            calls += 1;
            Err(io::Error::from_raw_os_error(2))
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
