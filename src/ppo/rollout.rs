//! Rollout collection (model.md section 6.1-6.2): T ticks of all envs, each alive agent
//! acting with its own effective weights, recorded densely `[T, E*A]` for GAE.
//!
//! Dead slots are never fed to the network: each tick gathers the alive rows. Offsets can
//! change mid-rollout (births, respawns, resets), so each sample references an entry of a
//! virtual offset table: rows `0..N` are the slots' offsets after the rollout, row `N` is
//! zeros, rows `N+1..` are archived copies of rows that were overwritten after samples used
//! them (no full snapshot is taken).

use std::time::Instant;

use tch::{Device, Kind, Tensor};

use super::gae::GaeInput;
use super::interrupt::Interrupt;
use crate::act::{ActBuffers, Acting, Actor, Batch, BorrowedActor, Brain, Choice, Lineage};
use crate::policy::native::{cpu_slice, cpu_slice_mut, thread_pool, Layout, Seg, Workspace};
use crate::policy::simd::{stream_copy, stream_fence};
use crate::policy::{Offsets, Policy};
use crate::rng::Rng;
use crate::world::{World, NUM_ACTIONS};

/// Everything recorded in one rollout.
#[derive(Debug)]
pub struct Rollout {
    /// Dense `[T, N]` data for GAE (`reward` is the food reward; bonuses are added later).
    pub gae: GaeInput,
    /// `[T, N]` sampled action.
    pub action: Vec<u8>,
    /// `[T, N]` log-probability of the sampled action.
    pub logp: Vec<f32>,
    /// `[T, N]` entry of the acting agent in the virtual table `[slot offsets; extra]`
    /// (0 when there are no offsets).
    pub entry: Vec<i64>,
    /// Observations `[rows, obs_dim]`; sample `(t, k)`'s is row `obs_row[t * N + k]`. On the
    /// CPU this is the slot-major store `[N * T, obs_dim]` (row `k * T + t`: each slot's ticks
    /// are consecutive rows, so the update reads a chunk's rows in place); elsewhere the alive
    /// samples in tick-major order.
    pub obs: Tensor,
    /// `[T, N]` row of `obs` of each alive sample (-1 for dead slots).
    pub obs_row: Vec<i64>,
    /// Rows `N..` of the virtual table (zero row, then archived rows), one
    /// `[1 + archived, ...shape]` per evolved parameter.
    pub extra: Option<Vec<Tensor>>,
    /// Counters for the metrics.
    pub stats: RolloutStats,
}

/// Counters and timings of one rollout.
#[derive(Debug, Clone, Default)]
pub struct RolloutStats {
    pub births: u64,
    pub deaths: u64,
    pub foods_eaten: u64,
    pub floor_respawns: u64,
    /// Samples (alive agent-ticks).
    pub alive_agent_steps: u64,
    /// Seconds in `World::observe` + `World::step`.
    pub world_s: f64,
    /// Seconds in the network forward passes (incl. host/device copies).
    pub network_s: f64,
    /// Seconds for offsets bookkeeping (mutation, table).
    pub offsets_s: f64,
}

/// Reusable host buffers of the rollout (the acting step's buffers and batch, and on the CPU
/// the `[N*T, d]` slot-major observation store).
#[derive(Debug, Default)]
pub struct RolloutScratch {
    buffers: ActBuffers,
    acting: Acting,
    /// The observation store of the last rollout (its `obs` is a view of it).
    store: Option<Tensor>,
    /// The last rollout's `obs` may still be in use: the next rollout allocates a new store
    /// unless [`RolloutScratch::recycle`] said it is not.
    lent: bool,
}

impl RolloutScratch {
    /// The caller is done with the last rollout's observations (its `Rollout` and the batch
    /// built from it are dropped): the next rollout may write into the same store, saving a
    /// fresh allocation (and its page faults) per iteration.
    pub fn recycle(&mut self) {
        self.lent = false;
    }

    /// A `[rows, d]` f32 store for the observations when the policy runs the native CPU pass
    /// (contiguous f32 CPU parameters): the last one when it is free and of the same shape.
    /// Rows of dead slots are never written and never read: they hold zeros (a new store) or
    /// an earlier rollout's observations (finite values either way).
    fn take_store(&mut self, policy: &Policy, rows: usize, d: usize) -> Option<Tensor> {
        cpu_slice(&policy.flat)?;
        let shape = [rows as i64, d as i64];
        let reusable = !self.lent && self.store.as_ref().is_some_and(|t| t.size() == shape);
        if !reusable {
            self.store = Some(Tensor::zeros(shape, (Kind::Float, policy.device())));
        }
        self.lent = true;
        self.store.as_ref().map(Tensor::shallow_clone)
    }
}

/// Evaluates the policy for the slots `slots` whose observations are the rows `rows`
/// (`[n * obs_dim]`), with the offsets of `offsets` rows `offset_rows` (any order; runs of
/// consecutive rows are read in place). Returns
/// `(log_softmax [n*6], values [n])` on the host.
///
/// On the CPU this is the native pass of [`crate::policy::native`] (one agent per row,
/// rows split over [`crate::policy::native::threads`] threads; every row is computed the same way
/// whatever the split); elsewhere libtorch, with one host-to-device copy of the rows and
/// one device-to-host copy of the results.
pub fn evaluate(
    policy: &Policy,
    offsets: Option<&Offsets>,
    rows: &[f32],
    offset_rows: &[i64],
    keep_obs: bool,
) -> (Vec<f32>, Vec<f32>, Option<Tensor>) {
    let n = offset_rows.len() as i64;
    if let Some((lp, v)) = evaluate_native(policy, offsets, rows, offset_rows) {
        let obs = keep_obs.then(|| Tensor::from_slice(rows).view([n, policy.obs_dim as i64]));
        return (lp, v, obs);
    }
    let device = policy.device();
    let x = Tensor::from_slice(rows)
        .view([n, 1, policy.obs_dim as i64])
        .to_device(device);
    let (logits, value) = tch::no_grad(|| {
        let d = offsets.map(|o| o.by_slots(offset_rows));
        policy.forward(&x, d.as_ref())
    });
    // One device-to-host copy: `[n, 6 + 1]` log-probabilities and value.
    let out = Tensor::cat(
        &[logits.log_softmax(-1, Kind::Float), value.unsqueeze(-1)],
        -1,
    )
    .view([n, NUM_ACTIONS as i64 + 1])
    .to_device(Device::Cpu);
    let out: Vec<f32> = Vec::try_from(out.flatten(0, -1)).unwrap();
    let mut logp = Vec::with_capacity(n as usize * NUM_ACTIONS);
    let mut vals = Vec::with_capacity(n as usize);
    for r in out.chunks_exact(NUM_ACTIONS + 1) {
        logp.extend_from_slice(&r[..NUM_ACTIONS]);
        vals.push(r[NUM_ACTIONS]);
    }
    let obs = keep_obs.then(|| x.view([n, policy.obs_dim as i64]));
    (logp, vals, obs)
}

/// [`evaluate`] on the CPU without libtorch: `None` unless the parameters and offsets are
/// contiguous f32 CPU tensors.
fn evaluate_native(
    policy: &Policy,
    offsets: Option<&Offsets>,
    rows: &[f32],
    offset_rows: &[i64],
) -> Option<(Vec<f32>, Vec<f32>)> {
    let params = cpu_slice(&policy.flat)?;
    let off = match offsets {
        Some(o) => Some(o.host_rows(None)?),
        None => None,
    };
    let lay = Layout::new(policy.obs_dim, &policy.hidden_dims);
    let (n, d) = (offset_rows.len(), policy.obs_dim);
    let threads = crate::policy::native::threads().min(n.div_ceil(64).max(1));
    let per = n.div_ceil(threads);
    let mut logp = vec![0f32; n * NUM_ACTIONS];
    let mut value = vec![0f32; n];
    let work = |(i, (lp, v)): (usize, (&mut [f32], &mut [f32]))| {
        let r0 = i * per;
        let m = v.len();
        // One workspace per thread, kept across ticks (no buffer allocation per tick).
        thread_local! {
            static WS: std::cell::RefCell<(Workspace, Vec<Seg>)> = Default::default();
        }
        WS.with_borrow_mut(|(ws, segs)| {
            ws.input_mut(&lay, m)
                .copy_from_slice(&rows[r0 * d..(r0 + m) * d]);
            segs.clear();
            segs.extend((0..m).map(|j| Seg {
                entry: offset_rows[r0 + j] as usize,
                start: j,
                len: 1,
            }));
            ws.forward(&lay, params, segs, off.as_ref());
            log_softmax_rows(&ws.logits, lp);
            v.copy_from_slice(&ws.value);
        })
    };
    let parts = logp
        .chunks_mut(per * NUM_ACTIONS)
        .zip(value.chunks_mut(per))
        .enumerate();
    match thread_pool(threads) {
        Some(pool) => pool.install(|| {
            use rayon::prelude::*;
            parts.collect::<Vec<_>>().into_par_iter().for_each(work)
        }),
        None => parts.for_each(work),
    }
    Some((logp, value))
}

/// Row-wise log-softmax of `[rows, 6]` logits into `out`.
fn log_softmax_rows(logits: &[f32], out: &mut [f32]) {
    for (z, o) in logits
        .chunks_exact(NUM_ACTIONS)
        .zip(out.chunks_exact_mut(NUM_ACTIONS))
    {
        let zmax = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let lse = zmax as f64
            + z.iter()
                .map(|&v| ((v - zmax) as f64).exp())
                .sum::<f64>()
                .ln();
        for (o, &v) in o.iter_mut().zip(z) {
            *o = (v as f64 - lse) as f32;
        }
    }
}

/// Where the offsets of one version of a slot's content live after the rollout.
#[derive(Debug, Clone, Copy)]
enum Loc {
    /// Still in the slot's row at the end of the rollout.
    Live(usize),
    /// All zeros.
    Zero,
    /// Copied into the archive before the slot was overwritten.
    Archived(usize),
}

/// Versions of slot contents referenced by samples (see the module docs).
#[derive(Debug)]
struct EntryBook {
    slot_version: Vec<usize>,
    loc: Vec<Loc>,
    used: Vec<bool>,
    archive: Vec<Vec<Tensor>>,
}

impl EntryBook {
    fn new(n: usize) -> Self {
        EntryBook {
            slot_version: (0..n).collect(),
            loc: (0..n).map(Loc::Live).collect(),
            used: vec![false; n],
            archive: Vec::new(),
        }
    }

    /// A sample acts with slot `k`'s current offsets: its version id.
    fn use_slot(&mut self, k: usize) -> i64 {
        self.used[k] = true;
        self.slot_version[k] as i64
    }

    /// Slot `k` is about to be overwritten (with zeros if `zero`): archive its row if a
    /// sample used it, and start a new version.
    fn before_overwrite(&mut self, k: usize, o: &Offsets, zero: bool) {
        let v = self.slot_version[k];
        if self.used[k] {
            if let Loc::Live(_) = self.loc[v] {
                self.archive
                    .push(o.row(k).iter().map(|t| t.copy()).collect());
                self.loc[v] = Loc::Archived(self.archive.len() - 1);
            }
        }
        self.loc.push(if zero { Loc::Zero } else { Loc::Live(k) });
        self.slot_version[k] = self.loc.len() - 1;
        self.used[k] = false;
    }

    /// Version id -> entry of the virtual table `[slots (n); zero; archive]`.
    fn resolve(&self, n: usize) -> Vec<i64> {
        self.loc
            .iter()
            .map(|l| match *l {
                Loc::Live(k) => k as i64,
                Loc::Zero => n as i64,
                Loc::Archived(i) => (n + 1 + i) as i64,
            })
            .collect()
    }
}

/// Runs `num_steps` ticks of every env with the shared acting step ([`crate::act`],
/// [`Choice::Sampled`]). Random draws per tick: one `uniform_f32` per alive slot (slot order)
/// for its action, then the world's draws, then the mutation noise of each birth in order.
pub fn collect(
    world: &mut World,
    rng: &mut Rng,
    policy: &Policy,
    offsets: Option<&mut Offsets>,
    num_steps: usize,
    scratch: &mut RolloutScratch,
) -> Rollout {
    collect_until(
        world,
        rng,
        policy,
        offsets,
        num_steps,
        scratch,
        &Interrupt::never(),
    )
    .expect("a rollout that is never interrupted completes")
}

/// The rollout's side of the acting step: the network (sampled actions), the dense record for
/// GAE, and the offsets bookkeeping of births, respawns and resets.
struct Recorder<'a> {
    policy: &'a Policy,
    offsets: Option<&'a mut Offsets>,
    /// The tick being recorded.
    t: usize,
    n: usize,
    gae: GaeInput,
    action: Vec<u8>,
    logp: Vec<f32>,
    entry: Vec<i64>,
    /// Observations per tick (off the CPU: the rows already on the device).
    obs_ticks: Vec<Tensor>,
    /// On the CPU: every sample's observation, written in place into the slot-major store
    /// (`[N*T, d]`, see [`Rollout::obs`]): no tensor per tick and no concatenation at the end.
    obs_store: Option<Tensor>,
    /// Rows of `obs_ticks` so far (off the CPU).
    filled: usize,
    /// Ticks of the rollout.
    num_steps: usize,
    obs_row: Vec<i64>,
    book: EntryBook,
    stats: RolloutStats,
    /// Log-probabilities and values of the last scored batch.
    scored_logp: Vec<f32>,
    scored_value: Vec<f32>,
}

impl<'w> Brain<BorrowedActor<'w>> for Recorder<'_> {
    fn scores(&mut self, batch: &Batch) -> &[f32] {
        let tn = Instant::now();
        let (lp, val, x) = evaluate(
            self.policy,
            self.offsets.as_deref(),
            &batch.rows,
            &batch.table_row,
            self.obs_store.is_none(),
        );
        self.obs_ticks.extend(x);
        let (t, n, d) = (self.t, self.n, batch.obs_dim);
        match &self.obs_store {
            Some(store) => {
                // SAFETY: the store is a contiguous f32 CPU tensor owned by this recorder alone.
                let dst = unsafe { cpu_slice_mut(store) }
                    .expect("the observation store is a contiguous f32 CPU tensor");
                // Written once here, read in the update: past the cache.
                for (j, &k) in batch.slot.iter().enumerate() {
                    let row = k * self.num_steps + t;
                    let src = &batch.rows[j * d..(j + 1) * d];
                    stream_copy(&mut dst[row * d..(row + 1) * d], src);
                    self.obs_row[t * n + k] = row as i64;
                }
                stream_fence();
            }
            None => {
                for (j, &k) in batch.slot.iter().enumerate() {
                    self.obs_row[t * n + k] = (self.filled + j) as i64;
                }
                self.filled += batch.len();
            }
        }
        self.scored_logp = lp;
        self.scored_value = val;
        self.stats.network_s += tn.elapsed().as_secs_f64();
        &self.scored_logp
    }

    fn chosen(&mut self, actors: &[BorrowedActor<'w>], batch: &Batch, actions: &[u8]) {
        let world = actors[0].world();
        for (j, (&k, &act)) in batch.slot.iter().zip(actions).enumerate() {
            let i = self.t * self.n + k;
            self.gae.alive[i] = true;
            self.gae.agent_id[i] = world.agent_id[k];
            self.gae.value[i] = self.scored_value[j];
            self.action[i] = act;
            self.logp[i] = self.scored_logp[j * NUM_ACTIONS + act as usize];
            self.entry[i] = self.book.use_slot(k);
        }
        self.stats.alive_agent_steps += batch.len() as u64;
    }

    fn ticked(&mut self, _index: usize, actor: &BorrowedActor<'w>) {
        let (t, n) = (self.t, self.n);
        let a_n = actor.world().num_slots();
        let d = actor.world().obs_dim();
        let info = &actor.buffers().info;
        let gae = &mut self.gae;
        for k in 0..n {
            let i = t * n + k;
            gae.reward[i] = info.rewards[k];
            gae.died[i] = info.died[k];
            gae.truncated[i] = gae.alive[i] && info.truncated[k / a_n];
        }
        let stats = &mut self.stats;
        stats.deaths += info.deaths.iter().map(|&x| x as u64).sum::<u64>();
        stats.foods_eaten += info.foods_eaten.iter().map(|&x| x as u64).sum::<u64>();
        stats.births += info.births.len() as u64;
        stats.floor_respawns += info.floor_respawns.len() as u64;

        // Time-limit truncation: value of the final pre-reset observation of each agent
        // that acted this tick and survived it, with its own (pre-reset) offsets.
        if !info.truncated.iter().any(|&x| x) {
            return;
        }
        let mut rows = Vec::new();
        let mut which = Vec::new();
        for k in 0..n {
            let i = t * n + k;
            if gae.truncated[i] && !gae.died[i] {
                rows.extend_from_slice(&info.terminal_obs[k * d..(k + 1) * d]);
                which.push(k as i64);
            }
        }
        if !which.is_empty() {
            let tn = Instant::now();
            let (_, tv, _) = evaluate(self.policy, self.offsets.as_deref(), &rows, &which, false);
            for (j, &k) in which.iter().enumerate() {
                gae.terminal_value[t * n + k as usize] = tv[j];
            }
            stats.network_s += tn.elapsed().as_secs_f64();
        }
    }

    fn lineage(&mut self, _index: usize, event: Lineage<'_>) {
        let Some(o) = self.offsets.as_deref_mut() else {
            return;
        };
        let to = Instant::now();
        let (rows, zero) = event.overwrites();
        for k in rows {
            self.book.before_overwrite(k, o, zero);
        }
        o.apply(0, &event);
        self.stats.offsets_s += to.elapsed().as_secs_f64();
    }
}

/// [`collect`], polling `stop` before each tick: `None` when it was interrupted (the world,
/// generator and offsets are then part-way through the rollout; throw them away).
pub fn collect_until(
    world: &mut World,
    rng: &mut Rng,
    policy: &Policy,
    mut offsets: Option<&mut Offsets>,
    num_steps: usize,
    scratch: &mut RolloutScratch,
    stop: &Interrupt,
) -> Option<Rollout> {
    let n = world.num_envs() * world.num_slots();
    let d = world.obs_dim();
    // The f16 copy of `evolution.rollout_offsets = "f16"`, from the tables as they are now.
    let copy_s = offsets.as_deref_mut().map_or(0.0, |o| {
        let to = Instant::now();
        o.refresh_rollout_copy();
        to.elapsed().as_secs_f64()
    });
    let mutation = offsets.as_deref().map(Offsets::mutation_spec);
    let mut rec = Recorder {
        policy,
        offsets,
        t: 0,
        n,
        gae: GaeInput::new(num_steps, n),
        action: vec![0u8; num_steps * n],
        logp: vec![0f32; num_steps * n],
        entry: vec![0i64; num_steps * n],
        obs_ticks: Vec::with_capacity(num_steps),
        // The native CPU pass's condition (contiguous f32 CPU parameters): store rows in place.
        obs_store: scratch.take_store(policy, n * num_steps, d),
        filled: 0,
        num_steps,
        obs_row: vec![-1i64; num_steps * n],
        book: EntryBook::new(n),
        stats: RolloutStats {
            offsets_s: copy_s,
            ..RolloutStats::default()
        },
        scored_logp: Vec::new(),
        scored_value: Vec::new(),
    };
    let RolloutScratch {
        buffers,
        acting,
        lent,
        ..
    } = scratch;
    let mut actors = [BorrowedActor {
        world,
        rng,
        buffers,
    }];
    for t in 0..num_steps {
        if stop.requested() {
            // Nothing of this rollout is handed out: its store is free again.
            *lent = false;
            return None;
        }
        rec.t = t;
        rec.stats.world_s += acting.step(
            &mut actors,
            Choice::Sampled,
            mutation.as_ref(),
            &mut rec,
            None,
        );
    }

    // Bootstrap values of the final observation.
    rec.stats.world_s += acting.observe(&mut actors, None);
    let world = actors[0].world();
    rec.gae.final_alive.copy_from_slice(&world.alive);
    rec.gae.final_agent_id.copy_from_slice(&world.agent_id);
    let batch = acting.batch();
    if !batch.is_empty() {
        let tn = Instant::now();
        let (_, fv, _) = evaluate(
            policy,
            rec.offsets.as_deref(),
            &batch.rows,
            &batch.table_row,
            false,
        );
        for (&k, v) in batch.slot.iter().zip(fv) {
            rec.gae.final_value[k] = v;
        }
        rec.stats.network_s += tn.elapsed().as_secs_f64();
    }

    let Recorder {
        offsets,
        gae,
        action,
        logp,
        mut entry,
        obs_ticks,
        obs_store,
        obs_row,
        book,
        mut stats,
        ..
    } = rec;
    let to = Instant::now();
    let extra = offsets.as_deref().map(|o| {
        let resolved = book.resolve(n);
        for e in entry.iter_mut() {
            *e = resolved[*e as usize];
        }
        o.tensors
            .iter()
            .enumerate()
            .map(|(p, t)| {
                let mut parts = vec![t.get(0).zeros_like().unsqueeze(0)];
                parts.extend(book.archive.iter().map(|r| r[p].unsqueeze(0)));
                Tensor::cat(&parts, 0)
            })
            .collect()
    });
    stats.offsets_s += to.elapsed().as_secs_f64();
    let obs = if let Some(store) = obs_store {
        store
    } else if obs_ticks.is_empty() {
        Tensor::zeros([0, d as i64], (Kind::Float, policy.device()))
    } else {
        Tensor::cat(&obs_ticks, 0)
    };
    Some(Rollout {
        gae,
        action,
        logp,
        entry,
        obs,
        obs_row,
        extra,
        stats,
    })
}
