//! The run's one random generator: seedable, serialisable, bit-exact across save/restore.
//!
//! Every random draw of a run (world resets, food respawn, child placement, mutation,
//! action sampling, minibatch shuffling) comes from one [`Rng`], so saving its state
//! in a checkpoint is enough to continue a run exactly.

use rand::{Rng as _, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The run's generator (ChaCha8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rng(ChaCha8Rng);

/// The raw state of an [`Rng`], as plain integers (for checkpoint tensors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RngState {
    pub seed: [u8; 32],
    pub stream: u64,
    pub word_pos: u128,
}

/// The generator's state as checkpoint arrays: `rng/seed` (32 bytes), `rng/stream` and
/// `rng/word_pos` (the 128-bit position as two little-endian `u64` words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SavedRng {
    seed: [u8; 32],
    stream: [u64; 1],
    word_pos: [u64; 2],
}

impl SavedRng {
    /// The arrays of `state`.
    pub fn from_state(s: RngState) -> Self {
        SavedRng {
            seed: s.seed,
            stream: [s.stream],
            word_pos: [s.word_pos as u64, (s.word_pos >> 64) as u64],
        }
    }

    /// The state these arrays hold.
    pub fn state(&self) -> RngState {
        RngState {
            seed: self.seed,
            stream: self.stream[0],
            word_pos: self.word_pos[0] as u128 | ((self.word_pos[1] as u128) << 64),
        }
    }

    /// Every array, as saved in checkpoints.
    pub fn saved_arrays(&self) -> Vec<crate::checkpoint::SavedArray<'_>> {
        use crate::checkpoint::SavedArray;
        vec![
            SavedArray::new("rng/seed", vec![32], &self.seed),
            SavedArray::new("rng/stream", vec![1], &self.stream),
            SavedArray::new("rng/word_pos", vec![2], &self.word_pos),
        ]
    }

    /// The same arrays, to be filled from a checkpoint.
    pub fn saved_arrays_mut(&mut self) -> Vec<crate::checkpoint::SavedArrayMut<'_>> {
        use crate::checkpoint::SavedArrayMut;
        vec![
            SavedArrayMut::new("rng/seed", vec![32], &mut self.seed),
            SavedArrayMut::new("rng/stream", vec![1], &mut self.stream),
            SavedArrayMut::new("rng/word_pos", vec![2], &mut self.word_pos),
        ]
    }
}

impl Rng {
    /// A generator seeded from a `u64`.
    pub fn seed_from_u64(seed: u64) -> Self {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Exports the full state.
    pub fn state(&self) -> RngState {
        RngState {
            seed: self.0.get_seed(),
            stream: self.0.get_stream(),
            word_pos: self.0.get_word_pos(),
        }
    }

    /// Rebuilds a generator from [`Rng::state`].
    pub fn from_state(s: RngState) -> Self {
        let mut r = ChaCha8Rng::from_seed(s.seed);
        r.set_stream(s.stream);
        r.set_word_pos(s.word_pos);
        Rng(r)
    }

    /// Uniform `f32` in [0, 1).
    #[inline]
    pub fn uniform_f32(&mut self) -> f32 {
        self.0.random::<f32>()
    }

    /// Uniform `f64` in [0, 1).
    #[inline]
    pub fn uniform_f64(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// Uniform integer in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    /// Standard normal sample.
    #[inline]
    pub fn normal_f32(&mut self) -> f32 {
        rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut self.0)
    }

    /// Raw 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip_continues_identically() {
        let mut a = Rng::seed_from_u64(7);
        for _ in 0..13 {
            a.uniform_f32();
        }
        let mut b = Rng::from_state(a.state());
        let xs: Vec<u64> = (0..50).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..50).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
    }

    #[test]
    fn serde_round_trip() {
        let mut a = Rng::seed_from_u64(3);
        a.normal_f32();
        let s = serde_json::to_string(&a).unwrap();
        let mut b: Rng = serde_json::from_str(&s).unwrap();
        assert_eq!(a.next_u64(), b.next_u64());
    }
}
