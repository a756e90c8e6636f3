//! The checkpoint folder: naming, atomic saves, `latest`, rotation, resume discovery,
//! the background saver and `inspect`.
mod checkpoint_support;

use std::fs;
use std::path::{Path, PathBuf};

use checkpoint_support::sample;
use emergence_lab_core::checkpoint::{
    auto_resume, find_resume, inspect, latest, list_checkpoints, parse_checkpoint_file_name,
    read_checkpoint, AsyncSaver, CheckpointKind, CheckpointStore, LatestMode,
};
use emergence_lab_core::config::Config;

use CheckpointKind::{Emergency, Final, Nonfinite, Periodic};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn latest_target(dir: &Path) -> String {
    fs::read_link(dir.join("latest.safetensors"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn corrupt_data_byte(path: &Path) {
    let mut b = fs::read(path).unwrap();
    let n = b.len();
    b[n - 3] ^= 0xff;
    fs::write(path, b).unwrap();
}

fn config_for(dir: &Path, resume_from: &str, search: &[PathBuf]) -> Config {
    let mut c = Config::default();
    c.log.checkpoint_dir = dir.to_string_lossy().into_owned();
    c.train.resume_from = resume_from.into();
    c.train.resume_search = search
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    c
}

#[test]
fn file_names_follow_the_format() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::new(dir.path(), 5).unwrap();
    for (kind, name) in [
        (Periodic, "step_100.safetensors"),
        (Emergency, "emergency_step_100.safetensors"),
        (Final, "final_step_100.safetensors"),
        (Nonfinite, "nonfinite_step_100.safetensors"),
    ] {
        let p = store.save(&sample(100, kind)).unwrap();
        assert_eq!(p.file_name().unwrap(), name);
        assert_eq!(parse_checkpoint_file_name(name), Some((kind, 100)));
    }
    assert_eq!(parse_checkpoint_file_name("latest.safetensors"), None);
    assert_eq!(parse_checkpoint_file_name("step_x.safetensors"), None);
    assert_eq!(
        parse_checkpoint_file_name(".step_1.safetensors.tmp.safetensors"),
        None
    );
}

#[test]
fn save_is_loadable_and_latest_is_a_relative_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::new(dir.path(), 5).unwrap();
    let c = sample(200, Periodic);
    let p = store.save(&c).unwrap();
    assert_eq!(read_checkpoint(&p).unwrap(), c);
    assert_eq!(
        latest_target(dir.path()),
        "step_200.safetensors",
        "relative link"
    );
    assert_eq!(
        read_checkpoint(&dir.path().join("latest.safetensors")).unwrap(),
        c
    );
    assert_eq!(
        names(dir.path()),
        vec!["latest.safetensors", "step_200.safetensors"],
        "no temporary files left"
    );
    // The folder can be moved: the link is relative.
    let moved = dir.path().with_extension("moved");
    fs::rename(dir.path(), &moved).unwrap();
    assert_eq!(latest(&moved).unwrap().step, 200);
    fs::rename(&moved, dir.path()).unwrap();
}

#[test]
fn latest_copy_mode_writes_a_full_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::new(dir.path(), 1)
        .unwrap()
        .with_latest_mode(LatestMode::Copy);
    store.save(&sample(1, Periodic)).unwrap();
    store.save(&sample(2, Periodic)).unwrap();
    let l = dir.path().join("latest.safetensors");
    assert!(!fs::symlink_metadata(&l).unwrap().file_type().is_symlink());
    assert_eq!(read_checkpoint(&l).unwrap(), sample(2, Periodic));
    assert_eq!(
        names(dir.path()),
        vec!["latest.safetensors", "step_2.safetensors"]
    );
}

#[test]
fn rotation_keeps_newest_by_step_not_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::new(dir.path(), 3).unwrap();
    // Save out of order: mtime order differs from step order.
    for step in [500, 100, 400, 200] {
        store.save(&sample(step, Periodic)).unwrap();
    }
    // latest -> step_200 (the last save) is protected although it is not among the newest 3.
    assert_eq!(latest_target(dir.path()), "step_200.safetensors");
    assert_eq!(
        names(dir.path()),
        vec![
            "latest.safetensors",
            "step_200.safetensors",
            "step_400.safetensors",
            "step_500.safetensors"
        ]
    );
    let r = store.save_with_report(&sample(600, Periodic)).unwrap();
    assert_eq!(r.rotated, vec![dir.path().join("step_200.safetensors")]);
    assert_eq!(
        names(dir.path()),
        vec![
            "latest.safetensors",
            "step_400.safetensors",
            "step_500.safetensors",
            "step_600.safetensors"
        ]
    );
}

#[test]
fn emergency_files_rotate_among_themselves_and_never_remove_periodic_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::new(dir.path(), 2).unwrap();
    store.save(&sample(10, Emergency)).unwrap();
    store.save(&sample(100, Periodic)).unwrap();
    store.save(&sample(200, Periodic)).unwrap();
    store.save(&sample(300, Periodic)).unwrap();
    // Put a third periodic file in by hand: an emergency save must not rotate it away.
    fs::copy(
        dir.path()
            .join("step_100.safetensors")
            .with_file_name("step_300.safetensors"),
        dir.path().join("step_50.safetensors"),
    )
    .unwrap();
    let r = store.save_with_report(&sample(350, Emergency)).unwrap();
    assert!(r.rotated.is_empty());
    assert!(dir.path().join("step_50.safetensors").exists());
    assert_eq!(latest_target(dir.path()), "emergency_step_350.safetensors");
    store.save(&sample(400, Periodic)).unwrap();
    store.save(&sample(500, Final)).unwrap();
    assert_eq!(
        names(dir.path()),
        vec![
            "emergency_step_10.safetensors",
            "emergency_step_350.safetensors",
            "final_step_500.safetensors",
            "latest.safetensors",
            "step_300.safetensors",
            "step_400.safetensors",
        ]
    );
    // A third emergency save (keep = 2) removes the oldest emergency file, and only that.
    let r = store.save_with_report(&sample(600, Emergency)).unwrap();
    assert_eq!(
        r.rotated,
        vec![dir.path().join("emergency_step_10.safetensors")]
    );
    assert_eq!(
        names(dir.path()),
        vec![
            "emergency_step_350.safetensors",
            "emergency_step_600.safetensors",
            "final_step_500.safetensors",
            "latest.safetensors",
            "step_300.safetensors",
            "step_400.safetensors",
        ]
    );
}

#[test]
fn nonfinite_never_becomes_latest() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::new(dir.path(), 5).unwrap();
    store.save(&sample(100, Periodic)).unwrap();
    let r = store.save_with_report(&sample(200, Nonfinite)).unwrap();
    assert!(!r.updated_latest);
    assert_eq!(latest_target(dir.path()), "step_100.safetensors");
    assert!(dir.path().join("nonfinite_step_200.safetensors").exists());
    // auto resume never picks it either, although it is the newest.
    let choice = auto_resume(&[dir.path().to_path_buf()]);
    assert_eq!(choice.checkpoint.unwrap().step, 100);
}

#[test]
fn a_state_with_nan_is_demoted_to_nonfinite_and_never_latest() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::new(dir.path(), 5).unwrap();
    store.save(&sample(100, Periodic)).unwrap();
    for (kind, bad) in [
        (Periodic, f32::NAN.to_le_bytes().to_vec()),
        (Final, f64::INFINITY.to_le_bytes().to_vec()),
    ] {
        let mut c = sample(200, kind);
        let name = if bad.len() == 4 {
            "adam/m/policy/hidden0/weight"
        } else {
            "world/energy"
        };
        let a = c.arrays.iter_mut().find(|a| a.name == name).unwrap();
        a.data[..bad.len()].copy_from_slice(&bad);
        let e = store.save(&c).unwrap_err();
        assert_eq!(e.check(), "nonfinite_state", "{e}");
        assert!(e.to_string().contains(name), "{e}");
        assert_eq!(latest_target(dir.path()), "step_100.safetensors");
        let kept = read_checkpoint(&dir.path().join("nonfinite_step_200.safetensors")).unwrap();
        assert_eq!(kept.meta.kind, Nonfinite);
        assert_eq!(kept.arrays, c.arrays);
    }
    assert!(!dir.path().join("step_200.safetensors").exists());
}

#[test]
fn stale_temporary_files_are_removed_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::new(dir.path(), 5).unwrap();
    store.save(&sample(100, Periodic)).unwrap();
    fs::write(
        dir.path().join(".step_200.safetensors.tmp.safetensors"),
        b"partial",
    )
    .unwrap();
    let choice = auto_resume(&[dir.path().to_path_buf()]);
    assert_eq!(choice.checkpoint.unwrap().step, 100);
    assert!(
        choice.warnings.is_empty(),
        "temp files are not candidates: {:?}",
        choice.warnings
    );
    CheckpointStore::new(dir.path(), 5).unwrap();
    assert_eq!(
        names(dir.path()),
        vec!["latest.safetensors", "step_100.safetensors"]
    );
}

#[test]
fn auto_falls_back_to_the_previous_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::new(dir.path(), 5).unwrap();
    for step in [100, 200, 300] {
        store.save(&sample(step, Periodic)).unwrap();
    }
    corrupt_data_byte(&dir.path().join("step_300.safetensors"));
    let cfg = config_for(dir.path(), "auto", &[]);
    let choice = find_resume(&cfg).unwrap();
    assert_eq!(choice.checkpoint.as_ref().unwrap().step, 200);
    assert_eq!(choice.warnings.len(), 1, "{:?}", choice.warnings);
    assert!(
        choice.warnings[0].contains("step_300.safetensors")
            && choice.warnings[0].contains("checksum")
    );
    // `latest` names the corrupt file: a clear error, no silent fallback.
    let e = find_resume(&config_for(dir.path(), "latest", &[])).unwrap_err();
    assert_eq!(e.check(), "crc", "{e}");
    // Truncated and garbage files are skipped too.
    let p200 = dir.path().join("step_200.safetensors");
    let b = fs::read(&p200).unwrap();
    fs::write(&p200, &b[..b.len() / 2]).unwrap();
    fs::write(dir.path().join("step_250.safetensors"), b"garbage garbage").unwrap();
    let choice = find_resume(&cfg).unwrap();
    assert_eq!(choice.checkpoint.unwrap().step, 100);
    assert_eq!(choice.warnings.len(), 3, "{:?}", choice.warnings);
}

#[test]
fn missing_latest_target_is_a_clear_error_and_auto_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::new(dir.path(), 5).unwrap();
    store.save(&sample(100, Periodic)).unwrap();
    store.save(&sample(200, Periodic)).unwrap();
    fs::remove_file(dir.path().join("step_200.safetensors")).unwrap();
    let e = latest(dir.path()).unwrap_err();
    assert_eq!(e.check(), "dangling_latest");
    assert!(e.to_string().contains("step_200.safetensors"), "{e}");
    let e = find_resume(&config_for(dir.path(), "latest", &[])).unwrap_err();
    assert_eq!(e.check(), "dangling_latest");
    let choice = find_resume(&config_for(dir.path(), "auto", &[])).unwrap();
    assert_eq!(choice.checkpoint.unwrap().step, 100);
    assert!(
        choice.warnings.iter().any(|w| w.contains("step_200")),
        "{:?}",
        choice.warnings
    );
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(latest(empty.path()).unwrap_err().check(), "no_latest");
}

#[test]
fn resume_modes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none");
    // Fresh start: empty resume_from, or auto with nothing anywhere.
    assert!(find_resume(&config_for(&missing, "", &[]))
        .unwrap()
        .checkpoint
        .is_none());
    let c = find_resume(&config_for(&missing, "auto", &[missing.join("x")])).unwrap();
    assert!(c.checkpoint.is_none() && c.warnings.is_empty());
    assert_eq!(
        find_resume(&config_for(&missing, "latest", &[]))
            .unwrap_err()
            .check(),
        "no_latest"
    );
    // A path.
    let store = CheckpointStore::new(dir.path().join("ck"), 5).unwrap();
    let p = store.save(&sample(100, Periodic)).unwrap();
    let info = find_resume(&config_for(&missing, &p.to_string_lossy(), &[]))
        .unwrap()
        .checkpoint
        .unwrap();
    assert_eq!((info.step, info.iteration, info.kind), (100, 1, Periodic));
    assert_eq!(info.size_bytes, fs::metadata(&p).unwrap().len());
    assert_eq!(info.config_json, sample(100, Periodic).meta.config_json);
    let e = find_resume(&config_for(&missing, &missing.to_string_lossy(), &[])).unwrap_err();
    assert_eq!(e.check(), "resume_path");
    let e = find_resume(&config_for(&missing, &store.dir().to_string_lossy(), &[])).unwrap_err();
    assert!(e.to_string().contains("folder"), "{e}");
}

#[test]
fn auto_searches_extra_folders_recursively_and_picks_the_newest_step() {
    let root = tempfile::tempdir().unwrap();
    let own = root.path().join("checkpoints");
    let input = root.path().join("input");
    CheckpointStore::new(&own, 5)
        .unwrap()
        .save(&sample(300, Periodic))
        .unwrap();
    let deep = input.join("my-run-dataset").join("v3").join("checkpoints");
    CheckpointStore::new(&deep, 5)
        .unwrap()
        .save(&sample(900, Emergency))
        .unwrap();
    // A downloaded copy holding only `latest` as a regular file (symlinks dereferenced).
    let copy = input.join("other").join("checkpoints");
    fs::create_dir_all(&copy).unwrap();
    fs::copy(
        own.join("step_300.safetensors"),
        copy.join("latest.safetensors"),
    )
    .unwrap();
    let choice = find_resume(&config_for(&own, "auto", std::slice::from_ref(&input))).unwrap();
    let info = choice.checkpoint.unwrap();
    assert_eq!((info.step, info.kind), (900, Emergency));
    assert_eq!(info.path, deep.join("emergency_step_900.safetensors"));
    // The latest-only copy is found when it is the newest.
    fs::remove_file(deep.join("emergency_step_900.safetensors")).unwrap();
    fs::remove_file(deep.join("latest.safetensors")).unwrap();
    fs::remove_file(own.join("step_300.safetensors")).unwrap();
    let choice = find_resume(&config_for(&own, "auto", &[input])).unwrap();
    assert_eq!(
        choice.checkpoint.unwrap().path,
        copy.join("latest.safetensors")
    );
}

#[test]
fn list_checkpoints_sorts_by_step_and_reports_unreadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::new(dir.path(), 0).unwrap();
    for (s, k) in [
        (300, Periodic),
        (100, Periodic),
        (300, Emergency),
        (200, Final),
    ] {
        store.save(&sample(s, k)).unwrap();
    }
    fs::write(dir.path().join("notes.safetensors"), b"x").unwrap();
    let l = list_checkpoints(dir.path()).unwrap();
    let got: Vec<(u64, CheckpointKind)> = l.checkpoints.iter().map(|c| (c.step, c.kind)).collect();
    assert_eq!(
        got,
        vec![
            (100, Periodic),
            (200, Final),
            (300, Periodic),
            (300, Emergency)
        ]
    );
    assert_eq!(l.skipped.len(), 1);
    assert_eq!(l.skipped[0].0, dir.path().join("notes.safetensors"));
}

#[test]
fn async_saver_writes_everything_in_order_and_coalesces_only_periodic() {
    let dir = tempfile::tempdir().unwrap();
    let saver = AsyncSaver::new(CheckpointStore::new(dir.path(), 0).unwrap()).unwrap();
    let burst: Vec<_> = (1..=30u64)
        .map(|s| checkpoint_support::big(s * 10, Periodic, 2))
        .collect();
    for c in burst {
        saver.submit(c).unwrap();
    }
    saver.wait().unwrap();
    // The newest periodic request is never dropped.
    assert!(
        dir.path().join("step_300.safetensors").exists(),
        "{:?}",
        names(dir.path())
    );
    assert!(
        saver.stats().superseded > 0,
        "a burst of 2 MiB saves should coalesce: {:?}",
        saver.stats()
    );
    // A pending periodic request may be replaced by a newer one; these never are.
    saver.submit(sample(1000, Emergency)).unwrap();
    saver.submit(sample(1001, Periodic)).unwrap();
    saver.submit(sample(1002, Final)).unwrap();
    let stats = saver.finish().unwrap();
    assert_eq!(stats.submitted, 33);
    assert_eq!(stats.written + stats.superseded, 33, "{stats:?}");
    assert_eq!(stats.failed, 0);
    for n in [
        "emergency_step_1000.safetensors",
        "final_step_1002.safetensors",
    ] {
        assert!(
            dir.path().join(n).exists(),
            "{n} missing: {:?}",
            names(dir.path())
        );
    }
    assert_eq!(latest_target(dir.path()), "final_step_1002.safetensors");
    // Every written file verifies.
    for c in list_checkpoints(dir.path()).unwrap().checkpoints {
        read_checkpoint(&c.path).unwrap();
    }
}

#[test]
fn async_saver_reports_errors_on_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let ckdir = dir.path().join("ck");
    let saver = AsyncSaver::new(CheckpointStore::new(&ckdir, 5).unwrap()).unwrap();
    let mut bad = sample(1, Periodic);
    bad.arrays[0].data.pop();
    saver.submit(bad).unwrap();
    let e = saver.wait().unwrap_err();
    assert_eq!(e.check(), "invalid_array");
    // Reported once; the saver keeps working.
    saver.submit(sample(2, Periodic)).unwrap();
    saver.wait().unwrap();
    assert!(ckdir.join("step_2.safetensors").exists());
    // The written checkpoint's buffers come back for reuse, once.
    assert_eq!(saver.take_spare(), Some(sample(2, Periodic)));
    assert_eq!(saver.take_spare(), None);
    // The folder disappears: the failure surfaces on the next submit, which is still queued.
    fs::remove_dir_all(&ckdir).unwrap();
    saver.submit(sample(3, Periodic)).unwrap();
    while saver.is_busy() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    fs::create_dir_all(&ckdir).unwrap();
    let e = saver.submit(sample(4, Periodic)).unwrap_err();
    assert_eq!(e.check(), "io", "{e}");
    let stats = saver.finish().unwrap();
    assert_eq!(stats.failed, 2);
    assert!(
        ckdir.join("step_4.safetensors").exists(),
        "the request made with the error was written"
    );
}

#[test]
fn inspect_reports_contents_and_verification() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::new(dir.path(), 5).unwrap();
    let p = store.save(&sample(100, Periodic)).unwrap();
    let r = inspect(&dir.path().join("latest.safetensors")).unwrap();
    assert!(r.verified());
    assert_eq!(
        (r.step, r.iteration, r.kind),
        (Some(100), Some(1), Some(Periodic))
    );
    assert_eq!(r.tensors.len(), sample(100, Periodic).arrays.len());
    assert_eq!(r.metrics_entries, Some(1));
    let text = r.to_string();
    for needle in [
        "step 100",
        "policy/hidden0/weight",
        "[16, 8]",
        "verifies: yes",
        "envs=32",
        "-> step_100.safetensors",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    corrupt_data_byte(&p);
    let r = inspect(&p).unwrap();
    assert!(!r.verified());
    assert_eq!(r.step, Some(100), "header still described");
    assert!(r.to_string().contains("verifies: NO"));
    assert!(inspect(&dir.path().join("nope.safetensors")).is_err());
}
