//! One instance of a client per thread, made on first use there.
//!
//! actix-web runs every worker on its own single-threaded runtime, and a tonic `Channel` or a
//! reqwest `Client` drives its connections from background tasks on the runtime that created
//! them. Shared across workers, each call from one worker wakes a task on another thread and
//! is woken back: two cross-thread wake-ups per call, which on a small virtual machine cost more
//! than the call itself. Made per thread, a client's tasks run on the worker that calls it.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOTS: RefCell<HashMap<usize, Box<dyn Any>>> = RefCell::new(HashMap::new());
}

/// A `T` per thread, made by `make` on a thread's first [`PerThread::get`] (inside that
/// thread's runtime, so whatever `make` spawns runs there). Cloning shares the slots.
pub struct PerThread<T> {
    id: usize,
    make: Arc<dyn Fn() -> T + Send + Sync>,
}

impl<T> Clone for PerThread<T> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            make: self.make.clone(),
        }
    }
}

impl<T: Clone + 'static> PerThread<T> {
    pub fn new(make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            make: Arc::new(make),
        }
    }

    /// This thread's instance.
    pub fn get(&self) -> T {
        SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            let slot = slots
                .entry(self.id)
                .or_insert_with(|| Box::new((self.make)()));
            slot.downcast_ref::<T>()
                .expect("a PerThread slot holds its own type")
                .clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn one_instance_per_thread_made_once() {
        let made = Arc::new(AtomicUsize::new(0));
        let m = made.clone();
        let p = PerThread::new(move || Arc::new(m.fetch_add(1, Ordering::SeqCst)));
        let here = p.get();
        assert!(
            Arc::ptr_eq(&here, &p.get()),
            "the same instance on one thread"
        );
        let other = {
            let p = p.clone();
            std::thread::spawn(move || *p.get()).join().unwrap()
        };
        assert_ne!(*here, other, "another thread gets its own");
        assert_eq!(made.load(Ordering::SeqCst), 2);
        // A second PerThread has its own slots.
        let q = PerThread::new(|| 7usize);
        assert_eq!(q.get(), 7);
        assert!(Arc::ptr_eq(&here, &p.get()));
    }
}
