//! The per-tick hot path (`step` + `observe`) allocates nothing once its buffers are sized.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use emergence_lab_core::world::{TickInfo, World, WorldParams, NUM_ACTIONS};
use emergence_lab_core::{config::Config, rng::Rng};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn step_and_observe_do_not_allocate_after_the_first_tick() {
    let mut c = Config::kaggle_notebook();
    c.train.num_envs = 4;
    c.env.max_steps = 40; // include episode resets and terminal observations
    let params = WorldParams::from_config(&c);
    let mut rng = Rng::seed_from_u64(1);
    let mut w = World::new(params, &mut rng);
    let n = w.num_envs() * w.num_slots();
    let actions: Vec<Vec<u8>> = (0..16)
        .map(|_| (0..n).map(|_| rng.below(NUM_ACTIONS) as u8).collect())
        .collect();
    let mut info = TickInfo::default();
    let mut obs = vec![0.0; n * w.obs_dim()];
    w.step(&actions[0], &mut rng, &mut info);
    w.observe(&mut obs);
    COUNTING.with(|c| c.set(true));
    let mut births = 0;
    for t in 0..300 {
        w.step(&actions[t % 16], &mut rng, &mut info);
        w.observe(&mut obs);
        w.observe_masked(&mut obs, true);
        births += info.births.len();
    }
    COUNTING.with(|c| c.set(false));
    assert!(births > 0);
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed),
        0,
        "allocations in the hot path"
    );
}
