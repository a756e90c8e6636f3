//! The saved state is declared once: a checkpoint holds exactly the arrays the parts list
//! (policy and Adam by parameter name, offsets, the world's and the generator's own lists),
//! and a save -> load round trip restores every one of them and the whole world bit for bit,
//! so a world field missing from its list fails here.

use emergence_lab::checkpoint::CheckpointKind;
use emergence_lab::rng::SavedRng;
use emergence_lab::{config::Config, train::TrainState};
use tch::Device;

fn trained_state() -> TrainState {
    tch::set_num_threads(1);
    let mut c = Config::tiny();
    c.evolution.evolved = emergence_lab::config::Evolved::All;
    c.specialization.diversity_bonus = 0.1;
    c.log.metrics_path = String::new();
    c.log.tensorboard_dir = String::new();
    let mut s = TrainState::new(c, Device::Cpu).unwrap();
    s.iterate().unwrap();
    s.iterate().unwrap();
    s
}

#[test]
fn a_checkpoint_holds_exactly_the_declared_arrays() {
    let s = trained_state();
    let ck = s.to_checkpoint(CheckpointKind::Periodic);
    let mut declared: Vec<String> = Vec::new();
    for prefix in ["", "adam/m/", "adam/v/"] {
        declared.extend(s.policy.names.iter().map(|n| format!("{prefix}{n}")));
    }
    declared.push("adam/step".into());
    let offsets = s.offsets.as_ref().expect("evolved = all has offsets");
    declared.extend(offsets.names.iter().map(|n| format!("offsets/{n}")));
    declared.extend(s.world.saved_arrays().iter().map(|a| a.name.to_string()));
    let rng = SavedRng::from_state(s.rng.state());
    declared.extend(rng.saved_arrays().iter().map(|a| a.name.to_string()));
    let mut saved: Vec<String> = ck.arrays.iter().map(|a| a.name.clone()).collect();
    declared.sort();
    saved.sort();
    assert_eq!(saved, declared);
}

#[test]
fn a_round_trip_restores_every_declared_array_and_the_whole_world() {
    let s = trained_state();
    let ck = s.to_checkpoint(CheckpointKind::Periodic);
    let back = TrainState::from_checkpoint(&ck, Device::Cpu).unwrap();
    // Every array the world lists, by name, values and shape.
    assert_eq!(back.world.saved_arrays(), s.world.saved_arrays());
    // The whole world: a field that is state but missing from the list differs here.
    assert_eq!(
        back.world, s.world,
        "a world field is not in World::saved_arrays"
    );
    assert_eq!(back.rng, s.rng);
    assert_eq!((back.step, back.iteration), (s.step, s.iteration));
    // Saving the restored state writes the same arrays, byte for byte.
    let again = back.to_checkpoint(CheckpointKind::Periodic);
    assert_eq!(again.arrays.len(), ck.arrays.len());
    for a in &ck.arrays {
        assert_eq!(
            again.array(&a.name),
            Some(a),
            "{} changed in the round trip",
            a.name
        );
    }
    assert_eq!(again.meta.trackers_json, ck.meta.trackers_json);
    assert_eq!(again.meta.metrics_json, ck.meta.metrics_json);
}
