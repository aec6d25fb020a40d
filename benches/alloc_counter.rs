//! A counting global allocator for the benchmarks: reports allocations per
//! operation next to criterion's time per operation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `op` `n` times and prints the average number of allocations.
pub fn report(name: &str, n: u64, mut op: impl FnMut()) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..n {
        op();
    }
    let per_op = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64;
    println!("allocations/op {name}: {per_op:.2}");
}
