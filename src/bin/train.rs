//! `train`: trains the Emergence Lab population (placeholder until the learning issue lands).
fn main() -> anyhow::Result<()> {
    let config = emergence_lab::Config::default();
    println!(
        "obs_dim={} steps_per_iteration={}",
        config.obs_dim(),
        config.steps_per_iteration()
    );
    Ok(())
}
