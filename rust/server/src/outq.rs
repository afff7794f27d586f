//! A connection's outgoing queue, bounded in bytes.
//!
//! Repository actors and the connection's own task push frames; the
//! connection's writer sends them as the socket drains. Producers check
//! [`OutQueue::room`] before turning backlog into frames, so a reader that
//! stops reading holds at most `limit` bytes (plus one frame) of the
//! server's memory; when the queue drains below half, the repositories
//! that waited for room are told (`drained`). The writer closes a
//! connection whose queue makes no progress for the slow-consumer deadline.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use ibex_core::RepoPath;
use tokio::sync::Notify;

use crate::metrics::Metrics;

#[derive(Debug)]
struct Inner {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    closed: Option<String>,
    /// Repositories waiting for room.
    waiting: BTreeSet<RepoPath>,
    /// Last time the writer took a frame (or the queue was empty).
    progress: Instant,
}

/// See module docs.
#[derive(Debug)]
pub struct OutQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    pub limit: usize,
    metrics: Arc<Metrics>,
}

impl OutQueue {
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Arc<OutQueue> {
        Arc::new(OutQueue { inner: Mutex::new(Inner { frames: VecDeque::new(), bytes: 0, closed: None, waiting: BTreeSet::new(), progress: Instant::now() }), notify: Notify::new(), limit, metrics })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame (whatever the room: callers check it first for
    /// anything large). False if the connection is closing.
    pub fn push(&self, frame: Vec<u8>) -> bool {
        let mut i = self.lock();
        if i.closed.is_some() {
            return false;
        }
        if i.frames.is_empty() {
            i.progress = Instant::now();
        }
        i.bytes += frame.len();
        Metrics::add(&self.metrics.queue_bytes, frame.len() as u64);
        i.frames.push_back(frame);
        drop(i);
        self.notify.notify_one();
        true
    }

    /// Bytes that may still be queued before the limit.
    pub fn room(&self) -> usize {
        let i = self.lock();
        if i.closed.is_some() { 0 } else { self.limit.saturating_sub(i.bytes) }
    }

    pub fn queued(&self) -> usize {
        self.lock().bytes
    }

    /// `repo` wants to hear when there is room again.
    pub fn wait_for_room(&self, repo: &RepoPath) {
        self.lock().waiting.insert(repo.clone());
    }

    /// Closes the queue: nothing more is accepted; the writer sends what
    /// was queued before, then a close frame with `reason`.
    pub fn close(&self, reason: impl Into<String>) {
        let mut i = self.lock();
        if i.closed.is_none() {
            i.closed = Some(reason.into());
        }
        drop(i);
        self.notify.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Seconds since the writer last made progress while frames waited.
    pub fn stalled_for(&self) -> std::time::Duration {
        let i = self.lock();
        if i.frames.is_empty() { std::time::Duration::ZERO } else { i.progress.elapsed() }
    }

    /// The writer's side: the next frame, or the close reason once
    /// everything before it was sent. Also returns the repositories to
    /// tell that there is room again.
    pub async fn next(&self) -> (Option<Result<Vec<u8>, String>>, Vec<RepoPath>) {
        loop {
            {
                let mut i = self.lock();
                if let Some(f) = i.frames.pop_front() {
                    i.bytes -= f.len();
                    i.progress = Instant::now();
                    Metrics::sub(&self.metrics.queue_bytes, f.len() as u64);
                    let drained = if i.bytes <= self.limit / 2 && !i.waiting.is_empty() { std::mem::take(&mut i.waiting).into_iter().collect() } else { Vec::new() };
                    return (Some(Ok(f)), drained);
                }
                if let Some(reason) = &i.closed {
                    return (Some(Err(reason.clone())), Vec::new());
                }
                if !i.waiting.is_empty() {
                    return (None, std::mem::take(&mut i.waiting).into_iter().collect());
                }
            }
            self.notify.notified().await;
        }
    }
}

impl Drop for OutQueue {
    fn drop(&mut self) {
        let bytes = self.lock().bytes;
        Metrics::sub(&self.metrics.queue_bytes, bytes as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_room_and_drain_notices() {
        let q = OutQueue::new(100, Arc::new(Metrics::default()));
        let repo = RepoPath::parse("/data/x").unwrap();
        assert!(q.push(vec![0; 80]));
        assert_eq!(q.room(), 20);
        q.wait_for_room(&repo);
        assert!(q.push(vec![0; 80]));
        assert_eq!(q.room(), 0);
        let (f, drained) = q.next().await;
        assert_eq!(f.unwrap().unwrap().len(), 80);
        assert!(drained.is_empty(), "still above half");
        let (_, drained) = q.next().await;
        assert_eq!(drained, vec![repo]);
        q.close("bye");
        assert!(!q.push(vec![1]));
        assert_eq!(q.next().await.0.unwrap().unwrap_err(), "bye");
    }
}
