//! Buffers for large frames, kept after their payload is handed out and reused once every
//! piece of that payload has been dropped.
//!
//! Why: payloads of large frames leave the reader as [`Bytes`] without a copy, so each one
//! needs a buffer of its own while it is in flight. Allocating a fresh ~330 KiB buffer per
//! frame made glibc hand the freed ones back to the kernel (heap trimming,
//! `madvise(MADV_DONTNEED)` of 1-4 MiB) and fault new pages in for the next: 40-130 page faults
//! per 1 MiB response on the edge, a quarter of its CPU (docs/performance.md, "2026-12-04
//! evening"). The pool is let go when a session goes quiet ([`BufferPool::release_spare`]), so
//! an idle session keeps no spare memory.

use bytes::{Bytes, BytesMut};

/// Frames from this size on are read into a buffer of their own (taken from the pool).
pub const RECYCLE_FROM: usize = 64 * 1024;
/// Such buffers kept per session (a full batch is ~330 KiB, in a 512 KiB buffer): enough for
/// the batches still in flight to many streams.
const RECYCLE_KEEP: usize = 32;

/// Large-frame buffers of one session's reader.
#[derive(Debug, Default)]
pub struct BufferPool {
    /// Payloads handed out, each with the capacity of the buffer it starts.
    kept: Vec<(Bytes, usize)>,
    /// A large frame arrived since the last [`BufferPool::release_spare`].
    used_since_release: bool,
}

impl BufferPool {
    /// A kept buffer nothing else refers to any more, emptied, with room for `need` bytes;
    /// a new one if none is free.
    pub fn take(&mut self, need: usize) -> BytesMut {
        self.take_kept(need)
            .unwrap_or_else(|| BytesMut::with_capacity(size_class(need)))
    }

    fn take_kept(&mut self, need: usize) -> Option<BytesMut> {
        let at = (self.kept.iter())
            .position(|(b, cap)| *cap >= need && b.is_unique())
            .or_else(|| self.kept.iter().position(|(b, _)| b.is_unique()))?;
        let mut buf = self.kept.swap_remove(at).0.try_into_mut().ok()?;
        buf.clear();
        buf.reserve(size_class(need));
        Some(buf)
    }

    /// Keeps the buffer (of `capacity` bytes) behind a large payload for reuse.
    pub fn keep(&mut self, payload: &Bytes, capacity: usize) {
        self.used_since_release = true;
        if self.kept.len() < RECYCLE_KEEP {
            self.kept.push((payload.clone(), capacity));
        }
    }

    /// Lets go of the kept buffers if no large frame arrived since the last call. Called on
    /// every heartbeat deadline.
    pub fn release_spare(&mut self) {
        if !self.used_since_release {
            self.kept = Vec::new();
        }
        self.used_since_release = false;
    }

    /// Buffers held for reuse.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

/// The capacity given to a buffer for a large frame of `need` bytes: the next power of two,
/// so that buffers kept for reuse fit the frames that follow (batches vary in size).
fn size_class(need: usize) -> usize {
    need.checked_next_power_of_two().unwrap_or(need)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_reused_only_once_its_payload_is_dropped() {
        let mut pool = BufferPool::default();
        let mut buf = pool.take(100_000);
        let capacity = buf.capacity();
        assert_eq!(capacity, 131_072);
        buf.extend_from_slice(&[7; 100_000]);
        let payload = buf.freeze();
        let start = payload.as_ptr() as usize;
        pool.keep(&payload, capacity);
        let other = pool.take(100_000);
        assert_ne!(other.as_ptr() as usize, start, "reused while held");
        drop(payload);
        let again = pool.take(90_000);
        assert_eq!(again.as_ptr() as usize, start, "not reused once free");
        assert!(again.is_empty() && again.capacity() >= 90_000);
    }

    #[test]
    fn spare_buffers_go_after_a_quiet_period() {
        let mut pool = BufferPool::default();
        let payload = pool.take(RECYCLE_FROM).freeze();
        pool.keep(&payload, RECYCLE_FROM);
        pool.release_spare();
        assert_eq!(pool.len(), 1, "released right after a large frame");
        pool.release_spare();
        assert!(pool.is_empty(), "kept after a quiet period");
    }
}
