//! Giving memory back to the system once a burst of connections is over.
//!
//! The allocator keeps the pages that a burst freed (a thousand slow clients, hundreds
//! of uploads at the body limit) for reuse, and glibc's returns them only when asked. So
//! the listener records its peak of open connections, and every [`CHECK`] this task
//! looks: when resident memory is at least [`GROWTH`] above its settled level and the
//! open connections have fallen to half a peak of at least [`BURST`] (a burst is over),
//! it asks the allocator to release its free pages (`malloc_trim`). While the burst's
//! connections keep closing (half again since the last trim), or the last trim gave
//! back much, each look trims again, since more is freed as they go. A trim that gives
//! little back once they have stopped closing shows the memory is in use, and makes
//! that the settled level. Under steady load the connections do not fall, so a busy
//! gateway is not trimmed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::shutdown::Shutdown;

/// How often memory and connections are looked at.
const CHECK: Duration = Duration::from_secs(5);
/// Resident memory above the last settled level that is worth giving back once a burst
/// is over: a few hundred slow connections leave about 7 MiB behind, half the gateway's
/// memory at rest.
const GROWTH: u64 = 4 << 20;
/// What a trim must give back for another look to try again, and how far above the
/// settled level memory must still be for it to.
const WORTH: u64 = 4 << 20;
/// Open connections at the peak that make a burst (the admin listener never has that
/// many).
const BURST: usize = 64;

/// Open connections as the listener's semaphore counts them, and their peak.
pub(super) struct Connections {
    slots: Arc<Semaphore>,
    max: usize,
    peak: AtomicUsize,
}

impl Connections {
    pub(super) fn new(slots: Arc<Semaphore>, max: usize) -> Connections {
        Connections {
            slots,
            max,
            peak: AtomicUsize::new(0),
        }
    }

    fn open(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }

    /// Called after each accept.
    pub(super) fn opened(&self) {
        self.peak.fetch_max(self.open(), Ordering::Relaxed);
    }
}

/// Runs until shutdown, trimming after each burst (see the module docs).
pub(super) async fn run(connections: Arc<Connections>, shutdown: Shutdown) {
    let Some(resident) = resident_bytes() else {
        return;
    };
    let mut policy = Policy::new(resident);
    let mut tick = tokio::time::interval(CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let Some(now) = resident_bytes() else {
            return;
        };
        let open = connections.open();
        let peak = connections.peak.swap(open, Ordering::Relaxed).max(open);
        if !policy.should_trim(now, open, peak) {
            continue;
        }
        let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
        let after = resident_bytes().unwrap_or(now);
        tracing::debug!(
            released,
            before_mib = now >> 20,
            after_mib = after >> 20,
            open_connections = open,
            peak_connections = peak,
            "gave free memory back after a burst of connections"
        );
        policy.trimmed(now, after, open);
    }
}

/// When to trim, from what each look sees (see the module docs).
#[derive(Debug)]
struct Policy {
    /// Resident memory that is in use when no burst is going on.
    settled: u64,
    /// The last trim, while a burst is being given back.
    draining: Option<Drain>,
}

/// What the last trim of a burst saw.
#[derive(Debug, Clone, Copy)]
struct Drain {
    /// Open connections then.
    open: usize,
    /// Whether it gave back enough that another may find more.
    fruitful: bool,
}

impl Policy {
    fn new(resident: u64) -> Policy {
        Policy {
            settled: resident,
            draining: None,
        }
    }

    /// Whether to trim, from `resident` bytes now, `open` connections now and their
    /// `peak` since the last look. A look that does not trim ends any draining and
    /// lowers the settled level to what is resident.
    fn should_trim(&mut self, resident: u64, open: usize, peak: usize) -> bool {
        let burst_over = peak >= BURST && open <= peak / 2 && resident >= self.settled + GROWTH;
        let draining = self.draining.is_some_and(|last| {
            // Fewer than half the connections of the last trim: a burst still closing,
            // not the drift of a steady load.
            2 * open < last.open || (last.fruitful && resident >= self.settled + WORTH)
        });
        if burst_over || draining {
            return true;
        }
        // Quiet, or busy: the next burst is measured from here once it is over.
        self.draining = None;
        self.settled = self.settled.min(resident);
        false
    }

    /// A trim took resident memory from `before` to `after` with `open` connections.
    fn trimmed(&mut self, before: u64, after: u64, open: usize) {
        let fruitful = after + WORTH <= before;
        if !fruitful {
            // Little came back: what is resident is in use, the new level to grow from
            // (while connections are still closing, the next look trims again anyway).
            self.settled = after;
        }
        self.draining = Some(Drain { open, fruitful });
    }
}

/// Resident memory of this process, from `/proc/self/statm`.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

#[cfg(target_os = "linux")]
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

#[cfg(not(target_os = "linux"))]
fn page_size() -> u64 {
    4096
}

/// Asks the allocator to return its free pages; whether it released any.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim only walks glibc's own free lists, under their locks.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn trims_once_a_burst_is_half_gone_and_again_while_it_keeps_closing() {
        let mut p = Policy::new(20 * MIB);
        // 500 uploads in progress: not half gone yet.
        assert!(!p.should_trim(110 * MIB, 500, 500));
        // Half of them done; the rest still hold their bodies, so little comes back.
        assert!(p.should_trim(100 * MIB, 240, 500));
        p.trimmed(100 * MIB, 98 * MIB, 240);
        // The rest have closed since: trimmed again although resident memory is now
        // below what the last trim made the settled level.
        assert!(p.should_trim(90 * MIB, 0, 240));
        p.trimmed(90 * MIB, 22 * MIB, 0);
        // Nothing is closing any more and what is left is near the settled level: no
        // further trim, and the level is what is left.
        assert!(!p.should_trim(22 * MIB, 0, 0));
        assert_eq!(p.settled, 22 * MIB);
        assert!(!p.should_trim(21 * MIB, 0, 0));
        assert!(p.draining.is_none());
    }

    #[test]
    fn a_trim_that_gave_much_back_is_followed_by_another() {
        let mut p = Policy::new(20 * MIB);
        assert!(p.should_trim(80 * MIB, 0, 500));
        p.trimmed(80 * MIB, 50 * MIB, 0);
        // Freed since (the burst's last requests finishing): trimmed again.
        assert!(p.should_trim(50 * MIB, 0, 0));
        p.trimmed(50 * MIB, 49 * MIB, 0);
        // That one found little: 49 MiB are in use, and no more trims.
        assert!(!p.should_trim(49 * MIB, 0, 0));
        assert_eq!(p.settled, 49 * MIB);
    }

    #[test]
    fn memory_in_use_after_a_burst_becomes_the_settled_level() {
        let mut p = Policy::new(20 * MIB);
        assert!(p.should_trim(80 * MIB, 10, 300));
        p.trimmed(80 * MIB, 78 * MIB, 10);
        // The connections stopped falling: the 78 MiB are in use, and the next burst
        // trims only once memory grows past them.
        assert!(!p.should_trim(78 * MIB, 10, 10));
        assert!(!p.should_trim(80 * MIB, 0, 300));
        assert!(p.should_trim(95 * MIB, 0, 300));
    }

    #[test]
    fn connections_drifting_down_after_a_burst_are_not_trimmed_every_look() {
        let mut p = Policy::new(20 * MIB);
        assert!(p.should_trim(80 * MIB, 100, 300));
        p.trimmed(80 * MIB, 79 * MIB, 100);
        assert!(!p.should_trim(79 * MIB, 95, 100));
        assert!(!p.should_trim(79 * MIB, 90, 95));
    }

    #[test]
    fn a_few_hundred_slow_connections_are_given_back() {
        // At rest, then 300 trickling connections cut at the header timeout.
        let mut p = Policy::new(13 * MIB + MIB / 2);
        assert!(!p.should_trim(20 * MIB, 300, 300));
        assert!(p.should_trim(20 * MIB, 0, 300));
        p.trimmed(20 * MIB, 14 * MIB, 0);
        assert!(!p.should_trim(14 * MIB, 0, 0));
    }

    #[test]
    fn steady_or_small_load_is_never_trimmed() {
        let mut p = Policy::new(20 * MIB);
        // Many connections that stay open, however much memory they hold.
        for _ in 0..10 {
            assert!(!p.should_trim(200 * MIB, 1000, 1000));
        }
        // A burst below the size that counts.
        assert!(!p.should_trim(200 * MIB, 0, BURST - 1));
        // A burst that is over, but whose memory grew too little to be worth it.
        let mut p = Policy::new(20 * MIB);
        assert!(!p.should_trim(20 * MIB + GROWTH - 1, 0, 500));
    }
}
