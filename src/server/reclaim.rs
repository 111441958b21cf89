//! Giving memory back to the system once a burst of connections is over.
//!
//! The allocator keeps the pages that a burst freed (a thousand slow clients, hundreds
//! of uploads at the body limit) for reuse, and glibc's returns them only when asked. So
//! the listener records its peak of open connections, and every [`CHECK`] this task
//! looks: when resident memory is at least [`GROWTH`] above its settled level and the open
//! connections have fallen to half a peak of at least [`BURST`] (a burst is over), it asks the
//! allocator to release its free pages (`malloc_trim`). A trim that gives little back
//! shows the memory is in use, and makes that the settled level. Under steady load the
//! connections do not fall, so a busy gateway is not trimmed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::shutdown::Shutdown;

/// How often memory and connections are looked at.
const CHECK: Duration = Duration::from_secs(5);
/// Resident memory above the last settled level that is worth giving back.
const GROWTH: u64 = 16 << 20;
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
    let Some(mut settled) = resident_bytes() else {
        return;
    };
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
        if now < settled + GROWTH || peak < BURST || open > peak / 2 {
            // Still busy, or nothing to give back: the next burst is measured from here
            // once it is over.
            settled = settled.min(now);
            continue;
        }
        let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
        let after = resident_bytes().unwrap_or(now);
        tracing::debug!(
            released,
            before_mib = now >> 20,
            after_mib = after >> 20,
            peak_connections = peak,
            "gave free memory back after a burst of connections"
        );
        if after + GROWTH / 4 > now {
            // Little came back: what is resident is in use, the new level to grow from.
            // Otherwise the level stays, and the next look trims again if the burst's
            // last connections have freed more since.
            settled = after;
        }
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
