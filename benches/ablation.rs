//! Ablation benchmark on the Kaggle-notebook config (untrained checkpoint state, CPU).
//!
//! First one timed full run of the size, 20 episodes x 3 conditions
//! (normal, zeroed, random) x 500 ticks (goal: under 60 s on a 2-core CPU), printed to
//! stdout; then criterion measures a 1/10 slice (50-tick episodes) for regressions.
//! `ABLATION_BENCH_FULL=0` skips the full run, `ABLATION_BENCH_TICKS=N` shortens it.

use std::time::Instant;

use criterion::{criterion_group, Criterion};
use emergence_lab::ablation::{run_state, AblationOptions, Condition};
use emergence_lab::{config::Config, train::TrainState};

fn state(max_steps: u32) -> TrainState {
    let mut c = Config::kaggle_notebook();
    c.env.max_steps = max_steps;
    c.train.device = "cpu".into();
    TrainState::new(c, tch::Device::Cpu).expect("kaggle config")
}

fn options() -> AblationOptions {
    AblationOptions {
        episodes: 20,
        conditions: vec![Condition::Normal, Condition::Zeroed, Condition::Random],
        ..AblationOptions::default()
    }
}

fn full_run() {
    let ticks: u32 = std::env::var("ABLATION_BENCH_TICKS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(500);
    let s = state(ticks);
    let t = Instant::now();
    let r = run_state(&s, &options()).expect("ablation");
    let secs = t.elapsed().as_secs_f64();
    let pop = r.conditions[0].summary_of("mean_population").unwrap().mean;
    println!(
        "ablation full run: 20 episodes x 3 conditions x {ticks} ticks, Config::kaggle_notebook(), \
         {} episode threads, 1 libtorch thread: {secs:.1} s (normal mean population {pop:.1})",
        rayon::current_num_threads()
    );
    print!("{}", r.table());
}

fn bench(c: &mut Criterion) {
    let s = state(50);
    let mut g = c.benchmark_group("ablation");
    g.sample_size(10);
    g.bench_function("kaggle_20ep_3cond_50ticks", |b| {
        b.iter(|| run_state(&s, &options()).expect("ablation"))
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    if std::env::var("ABLATION_BENCH_FULL").as_deref() != Ok("0") {
        full_run();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
