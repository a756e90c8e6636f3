//! The world's saved state, declared once: [`World::saved_arrays`] and
//! [`World::saved_arrays_mut`] come from the one list below, so every array in it is saved,
//! loaded with its checks, compared by the round-trip test and copied by the ablation.

use super::World;
use crate::checkpoint::{SavedArray, SavedArrayMut};

/// The one list: `(field, name, shape)` with `e` envs, `a` slots, `f` foods, `g` grid size and
/// `c` field channels. Adding a world field that must survive a resume means adding a line.
macro_rules! world_arrays {
    ($w:expr, $array:ident, $($borrow:tt)+) => {{
        let p = &$w.params;
        let (e, a, f, g, c) = (p.num_envs, p.num_slots, p.num_food, p.grid_size, p.num_channels);
        vec![
            $array::new("world/row", vec![e, a], $($borrow)+ $w.row),
            $array::new("world/col", vec![e, a], $($borrow)+ $w.col),
            $array::new("world/energy", vec![e, a], $($borrow)+ $w.energy),
            $array::new("world/alive", vec![e, a], $($borrow)+ $w.alive),
            $array::new("world/agent_id", vec![e, a], $($borrow)+ $w.agent_id),
            $array::new("world/parent_id", vec![e, a], $($borrow)+ $w.parent_id),
            $array::new("world/birth_tick", vec![e, a], $($borrow)+ $w.birth_tick),
            $array::new("world/food_row", vec![e, f], $($borrow)+ $w.food_row),
            $array::new("world/food_col", vec![e, f], $($borrow)+ $w.food_col),
            $array::new("world/food_collected", vec![e, f], $($borrow)+ $w.food_collected),
            $array::new("world/field", vec![e, g, g, c], $($borrow)+ $w.field),
            $array::new("world/tick", vec![e], $($borrow)+ $w.tick),
            $array::new("world/next_id", vec![e], $($borrow)+ $w.next_id),
        ]
    }};
}

impl World {
    /// Every array of the world's state, as saved in checkpoints (first dimension: the env).
    pub fn saved_arrays(&self) -> Vec<SavedArray<'_>> {
        world_arrays!(self, SavedArray, &)
    }

    /// The same arrays, to be filled from a checkpoint or copied into.
    pub fn saved_arrays_mut(&mut self) -> Vec<SavedArrayMut<'_>> {
        world_arrays!(self, SavedArrayMut, &mut)
    }

    /// Checks the value ranges of a restored world (positions on the grid, energies and the
    /// field finite, ticks below the episode length, ids consistent), so that a checkpoint
    /// whose checksums pass but whose values are impossible is an error, not a panic later.
    pub fn check_restored(&self) -> Result<(), String> {
        let p = &self.params;
        let g = p.grid_size as i32;
        let on_grid = |v: &[i32]| v.iter().all(|&x| (0..g).contains(&x));
        if !on_grid(&self.row) || !on_grid(&self.col) {
            return Err(format!(
                "world/row or world/col holds a position outside the {g}x{g} grid"
            ));
        }
        if !on_grid(&self.food_row) || !on_grid(&self.food_col) {
            return Err(format!(
                "world/food_row or world/food_col holds a position outside the {g}x{g} grid"
            ));
        }
        if self.energy.iter().any(|e| !e.is_finite() || *e < 0.0) {
            return Err("world/energy holds a negative or non-finite energy".into());
        }
        if self.field.iter().any(|v| !v.is_finite()) {
            return Err("world/field holds a non-finite value".into());
        }
        if self.tick.iter().any(|&t| t >= p.max_steps) {
            return Err(format!(
                "world/tick holds a tick >= env.max_steps ({})",
                p.max_steps
            ));
        }
        let a = p.num_slots;
        for (e, &next) in self.next_id.iter().enumerate() {
            if self.agent_id[e * a..(e + 1) * a]
                .iter()
                .any(|&id| id >= next)
            {
                return Err(format!(
                    "world/agent_id of env {e} holds an id >= world/next_id ({next})"
                ));
            }
        }
        Ok(())
    }
}
