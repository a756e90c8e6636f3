//! Masked generalized advantage estimation per (env, slot) column (model.md section 6.3).
//!
//! A trace ends at a death (no bootstrap), at a time-limit truncation (bootstrap from the
//! value of the episode's last observation) and whenever the slot's agent changes, so no
//! advantage leaks between different agents sharing a slot.

/// Rollout data laid out `[T, N]` (time-major, `N` = E*A columns).
#[derive(Debug, Clone, Default)]
pub struct GaeInput {
    /// Ticks `T`.
    pub num_steps: usize,
    /// Columns `N`.
    pub num_columns: usize,
    /// The slot's agent acted at this tick (alive at tick start).
    pub alive: Vec<bool>,
    /// Id of the acting agent.
    pub agent_id: Vec<u64>,
    /// Reward (already including any specialization bonus).
    pub reward: Vec<f32>,
    /// Value estimate of the observation the agent acted on.
    pub value: Vec<f32>,
    /// The agent died during this tick.
    pub died: Vec<bool>,
    /// The env hit its time limit after this tick (and was reset).
    pub truncated: Vec<bool>,
    /// For truncated ticks: the value of the final (pre-reset) observation.
    pub terminal_value: Vec<f32>,
    /// `[N]` after the last tick: slot alive, its agent id and the value of its observation.
    pub final_alive: Vec<bool>,
    pub final_agent_id: Vec<u64>,
    pub final_value: Vec<f32>,
}

impl GaeInput {
    /// All-dead input of the given size (fill in the fields).
    pub fn new(num_steps: usize, num_columns: usize) -> Self {
        let n = num_steps * num_columns;
        GaeInput {
            num_steps,
            num_columns,
            alive: vec![false; n],
            agent_id: vec![0; n],
            reward: vec![0.0; n],
            value: vec![0.0; n],
            died: vec![false; n],
            truncated: vec![false; n],
            terminal_value: vec![0.0; n],
            final_alive: vec![false; num_columns],
            final_agent_id: vec![0; num_columns],
            final_value: vec![0.0; num_columns],
        }
    }
}

/// Advantages and returns `[T, N]` (0 where not alive). Computed in f64, stored as f32.
pub fn compute_gae(inp: &GaeInput, gamma: f64, lambda: f64) -> (Vec<f32>, Vec<f32>) {
    let (t_n, n) = (inp.num_steps, inp.num_columns);
    let mut adv = vec![0f32; t_n * n];
    let mut ret = vec![0f32; t_n * n];
    for c in 0..n {
        // State of the step after t: alive/agent/value and its advantage.
        let mut next_alive = inp.final_alive[c];
        let mut next_id = inp.final_agent_id[c];
        let mut next_value = inp.final_value[c] as f64;
        let mut next_adv = 0f64;
        let mut next_is_final = true;
        for t in (0..t_n).rev() {
            let k = t * n + c;
            if !inp.alive[k] {
                next_alive = false;
                next_adv = 0.0;
                next_is_final = false;
                continue;
            }
            let v = inp.value[k] as f64;
            let (bootstrap, continues) = if inp.died[k] {
                (0.0, false)
            } else if inp.truncated[k] {
                (inp.terminal_value[k] as f64, false)
            } else if next_alive && next_id == inp.agent_id[k] {
                (next_value, !next_is_final)
            } else {
                // Cannot happen with the world's rules (a living agent keeps its slot);
                // treat it as a terminal rather than leak across agents.
                (0.0, false)
            };
            let delta = inp.reward[k] as f64 + gamma * bootstrap - v;
            let a = if continues {
                delta + gamma * lambda * next_adv
            } else {
                delta
            };
            adv[k] = a as f32;
            ret[k] = (a + v) as f32;
            next_alive = true;
            next_id = inp.agent_id[k];
            next_value = v;
            next_adv = a;
            next_is_final = false;
        }
    }
    (adv, ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: f64 = 0.9;
    const L: f64 = 0.5;

    fn close(a: f32, b: f64) {
        assert!((a as f64 - b).abs() < 1e-5, "{a} != {b}");
    }

    /// One column from (alive, id, reward, value, died, truncated, terminal value).
    fn column(steps: &[(bool, u64, f32, f32, bool, bool, f32)], fin: (bool, u64, f32)) -> GaeInput {
        let mut g = GaeInput::new(steps.len(), 1);
        for (t, s) in steps.iter().enumerate() {
            g.alive[t] = s.0;
            g.agent_id[t] = s.1;
            g.reward[t] = s.2;
            g.value[t] = s.3;
            g.died[t] = s.4;
            g.truncated[t] = s.5;
            g.terminal_value[t] = s.6;
        }
        g.final_alive[0] = fin.0;
        g.final_agent_id[0] = fin.1;
        g.final_value[0] = fin.2;
        g
    }

    #[test]
    fn plain_sequence_bootstraps_from_final_value() {
        let g = column(
            &[
                (true, 1, 1.0, 0.5, false, false, 0.0),
                (true, 1, 0.0, 0.2, false, false, 0.0),
            ],
            (true, 1, 2.0),
        );
        let (adv, ret) = compute_gae(&g, G, L);
        let d1 = 0.0 + G * 2.0 - 0.2;
        let d0 = 1.0 + G * 0.2 - 0.5;
        close(adv[1], d1);
        close(adv[0], d0 + G * L * d1);
        close(ret[0], d0 + G * L * d1 + 0.5);
    }

    #[test]
    fn death_terminates_and_slot_reuse_starts_new_trace() {
        // Agent 1 dies at t=1; slot dead at t=2; child 7 born into the slot acts at t=3..4.
        let g = column(
            &[
                (true, 1, 0.0, 0.3, false, false, 0.0),
                (true, 1, 1.0, 0.4, true, false, 0.0),
                (false, 1, 0.0, 0.0, false, false, 0.0),
                (true, 7, 2.0, 0.6, false, false, 0.0),
                (true, 7, 0.0, 0.1, false, false, 0.0),
            ],
            (true, 7, 1.5),
        );
        let (adv, _) = compute_gae(&g, G, L);
        let d1 = 1.0 - 0.4; // death: no bootstrap
        close(adv[1], d1);
        close(adv[0], (0.0 + G * 0.4 - 0.3) + G * L * d1);
        close(adv[2], 0.0);
        let d4 = G * 1.5 - 0.1;
        close(adv[4], d4);
        close(adv[3], (2.0 + G * 0.1 - 0.6) + G * L * d4);
    }

    #[test]
    fn slot_reuse_without_gap_does_not_leak() {
        // Agent 1 dies at t=0 and (hypothetically) agent 2 acts in the slot at t=1.
        let g = column(
            &[
                (true, 1, 0.0, 0.3, true, false, 0.0),
                (true, 2, 5.0, 0.0, false, false, 0.0),
            ],
            (true, 2, 100.0),
        );
        let (adv, _) = compute_gae(&g, G, L);
        close(adv[0], -0.3);
        close(adv[1], 5.0 + G * 100.0);
        // Even if `died` were missing, a changed id cuts the trace.
        let g = column(
            &[
                (true, 1, 0.0, 0.3, false, false, 0.0),
                (true, 2, 5.0, 0.0, false, false, 0.0),
            ],
            (true, 2, 100.0),
        );
        let (adv, _) = compute_gae(&g, G, L);
        close(adv[0], -0.3);
    }

    #[test]
    fn truncation_bootstraps_from_terminal_value_and_cuts_trace() {
        // Truncated after t=1 (terminal obs value 3.0); a fresh agent 9 acts at t=2.
        let g = column(
            &[
                (true, 4, 1.0, 0.5, false, false, 0.0),
                (true, 4, 0.0, 0.7, false, true, 3.0),
                (true, 9, 0.0, 0.2, false, false, 0.0),
            ],
            (true, 9, 0.4),
        );
        let (adv, ret) = compute_gae(&g, G, L);
        let d2 = G * 0.4 - 0.2;
        close(adv[2], d2);
        let d1 = 0.0 + G * 3.0 - 0.7;
        close(adv[1], d1);
        close(adv[0], (1.0 + G * 0.7 - 0.5) + G * L * d1);
        close(ret[1], d1 + 0.7);
    }

    #[test]
    fn dead_samples_are_zero_and_columns_independent() {
        let mut g = GaeInput::new(2, 2);
        g.alive = vec![true, false, true, false];
        g.agent_id = vec![1, 0, 1, 0];
        g.reward = vec![1.0, 9.0, 1.0, 9.0];
        g.value = vec![0.0, 9.0, 0.0, 9.0];
        g.final_alive = vec![true, false];
        g.final_agent_id = vec![1, 0];
        let (adv, ret) = compute_gae(&g, G, L);
        assert_eq!(adv[1], 0.0);
        assert_eq!(ret[3], 0.0);
        close(adv[2], 1.0);
        close(adv[0], 1.0 + G * L * 1.0);
    }
}
