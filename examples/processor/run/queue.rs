//! A priority queue of pending work: priority 1 comes out first; equal
//! priorities come out in the order they were pushed.
//!
//! It is async so that a future front end (an HTTP endpoint) can keep
//! pushing while workers wait in [`PriorityQueue::pop`]; the CLI pushes
//! everything up front and closes it.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

pub struct PriorityQueue<T> {
    state: Mutex<State<T>>,
    pushed: Notify,
}

struct State<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
    closed: bool,
}

struct Entry<T> {
    priority: u32,
    seq: u64,
    item: T,
}

impl<T> Entry<T> {
    fn key(&self) -> (std::cmp::Reverse<u32>, std::cmp::Reverse<u64>) {
        (
            std::cmp::Reverse(self.priority),
            std::cmp::Reverse(self.seq),
        )
    }
}

// `BinaryHeap` is a max-heap: the "greatest" entry is the lowest priority
// number, then the earliest pushed.
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PriorityQueue<T> {
    pub fn new() -> Self {
        PriorityQueue {
            state: Mutex::new(State {
                heap: BinaryHeap::new(),
                next_seq: 0,
                closed: false,
            }),
            pushed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics under this lock; a poisoned state is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn push(&self, priority: u32, item: T) {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.heap.push(Entry {
            priority,
            seq,
            item,
        });
        drop(state);
        self.pushed.notify_one();
    }

    /// No more pushes: `pop` returns `None` once the queue is empty.
    pub fn close(&self) {
        self.lock().closed = true;
        self.pushed.notify_waiters();
    }

    /// The most urgent item; waits for one while the queue is open and
    /// empty. `Err` once `ctx` is done (the item stays queued).
    pub async fn pop(&self, ctx: &goctx::Ctx) -> Result<Option<T>, goctx::Error> {
        loop {
            let pushed = self.pushed.notified();
            tokio::pin!(pushed);
            // Register before looking, so a push in between is not missed.
            pushed.as_mut().enable();
            if let Some(err) = ctx.err() {
                return Err(err);
            }
            {
                let mut state = self.lock();
                if let Some(entry) = state.heap.pop() {
                    return Ok(Some(entry.item));
                }
                if state.closed {
                    return Ok(None);
                }
            }
            ctx.run(pushed).await?;
        }
    }

    /// Takes everything still queued, most urgent first.
    pub fn drain(&self) -> Vec<T> {
        let mut state = self.lock();
        let mut items = Vec::with_capacity(state.heap.len());
        while let Some(entry) = state.heap.pop() {
            items.push(entry.item);
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn most_urgent_first_then_fifo() {
        let queue = PriorityQueue::new();
        for (p, name) in [(3, "c"), (1, "a1"), (2, "b"), (1, "a2")] {
            queue.push(p, name);
        }
        queue.close();
        let ctx = goctx::background();
        let mut order = Vec::new();
        while let Ok(Some(item)) = queue.pop(&ctx).await {
            order.push(item);
        }
        assert_eq!(order, ["a1", "a2", "b", "c"]);
    }
}
