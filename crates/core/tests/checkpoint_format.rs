//! Format v1: round trips, cross-reading with the `safetensors` crate, and every
//! corruption case giving the right typed error that names the file.
mod checkpoint_support;

use std::path::{Path, PathBuf};

use checkpoint_support::{array, data_start, edit_header, edit_header_unsealed, sample};
use emergence_lab_core::checkpoint::{
    from_bytes, read_checkpoint, read_header, to_bytes, verify_checkpoint, write_checkpoint,
    CheckpointError, CheckpointKind, DType,
};
use proptest::prelude::*;

fn write_bytes(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Loading and verifying both fail with the same check, and the message names the file.
fn assert_rejects(path: &Path, check: &str) -> CheckpointError {
    let e = read_checkpoint(path).expect_err("corrupt file loaded");
    assert_eq!(e.check(), check, "read_checkpoint: {e}");
    assert!(
        e.to_string().contains(&path.display().to_string()),
        "message does not name the file: {e}"
    );
    let v = verify_checkpoint(path).expect_err("corrupt file verified");
    assert_eq!(v.check(), check, "verify_checkpoint: {v}");
    e
}

#[test]
fn round_trip_all_dtypes_through_a_file() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [
        CheckpointKind::Periodic,
        CheckpointKind::Emergency,
        CheckpointKind::Final,
        CheckpointKind::Nonfinite,
    ] {
        let c = sample(12_345, kind);
        let p = dir.path().join("x.safetensors");
        let n = write_checkpoint(&p, &c, true).unwrap();
        assert_eq!(n, std::fs::metadata(&p).unwrap().len());
        let back = read_checkpoint(&p).unwrap();
        assert_eq!(back, c);
        let h = verify_checkpoint(&p).unwrap();
        assert_eq!(h.meta, c.meta);
        assert_eq!(read_header(&p).unwrap().meta.kind, kind);
    }
}

#[test]
fn in_memory_bytes_equal_file_bytes_and_align_to_8() {
    let dir = tempfile::tempdir().unwrap();
    let c = sample(3, CheckpointKind::Periodic);
    let p = dir.path().join("a.safetensors");
    write_checkpoint(&p, &c, false).unwrap();
    let file = std::fs::read(&p).unwrap();
    assert_eq!(to_bytes(&c).unwrap(), file);
    assert_eq!(data_start(&file) % 8, 0, "header padded to 8 bytes");
    assert_eq!(file[8], b'{');
    assert_eq!(from_bytes(Path::new("mem"), &file).unwrap(), c);
}

#[test]
fn safetensors_crate_reads_our_files() {
    let c = sample(77, CheckpointKind::Final);
    let file = to_bytes(&c).unwrap();
    let st =
        safetensors::SafeTensors::deserialize(&file).expect("safetensors crate rejects our file");
    assert_eq!(st.len(), c.arrays.len());
    for a in &c.arrays {
        let t = st.tensor(&a.name).unwrap();
        assert_eq!(t.shape(), a.shape.as_slice());
        assert_eq!(t.data(), a.data.as_slice(), "{}", a.name);
    }
    let (_, md) = safetensors::SafeTensors::read_metadata(&file).unwrap();
    let m = md.metadata().as_ref().unwrap();
    assert_eq!(m["format"], "emergence-lab-checkpoint");
    assert_eq!(m["format_version"], "1");
    assert_eq!(m["step"], "77");
    assert_eq!(m["kind"], "final");
    assert_eq!(
        m["data_crc32c"],
        format!("{:08x}", crc32c::crc32c(&file[data_start(&file)..]))
    );
}

#[test]
fn reads_files_written_by_the_safetensors_crate() {
    // Another writer's layout (sorted by dtype, then name) must read as long as our metadata is there.
    let c = sample(5, CheckpointKind::Periodic);
    let ours = to_bytes(&c).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&ours).unwrap();
    let mut meta = md.metadata().clone().unwrap();
    let views: Vec<(String, safetensors::tensor::TensorView)> = c
        .arrays
        .iter()
        .map(|a| {
            let dt = match a.dtype {
                DType::F32 => safetensors::Dtype::F32,
                DType::F64 => safetensors::Dtype::F64,
                DType::I64 => safetensors::Dtype::I64,
                DType::I32 => safetensors::Dtype::I32,
                DType::U64 => safetensors::Dtype::U64,
                DType::U32 => safetensors::Dtype::U32,
                DType::U8 => safetensors::Dtype::U8,
                DType::Bool => safetensors::Dtype::BOOL,
            };
            (
                a.name.clone(),
                safetensors::tensor::TensorView::new(dt, a.shape.clone(), &a.data).unwrap(),
            )
        })
        .collect();
    // The crate orders the data differently, so recompute the CRCs over its bytes, sealing
    // its own header in place (header_crc32c = CRC of the header with its digits zeroed).
    meta.insert("header_crc32c".into(), "00000000".into());
    let probe = safetensors::serialize(views.clone(), &Some(meta.clone())).unwrap();
    meta.insert(
        "data_crc32c".into(),
        format!("{:08x}", crc32c::crc32c(&probe[data_start(&probe)..])),
    );
    let mut theirs = safetensors::serialize(views, &Some(meta)).unwrap();
    let ds = data_start(&theirs);
    let key = b"\"header_crc32c\":\"";
    let at = theirs[..ds]
        .windows(key.len())
        .position(|w| w == key)
        .unwrap()
        + key.len();
    let hex = format!("{:08x}", crc32c::crc32c(&theirs[8..ds]));
    theirs[at..at + 8].copy_from_slice(hex.as_bytes());
    assert_ne!(theirs, ours, "the crate's layout should differ from ours");
    let back = from_bytes(Path::new("theirs"), &theirs).unwrap();
    assert_eq!(back.meta, c.meta);
    for a in &c.arrays {
        assert_eq!(back.array(&a.name), Some(a), "{}", a.name);
    }
}

#[test]
fn truncated_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = to_bytes(&sample(1, CheckpointKind::Periodic)).unwrap();
    let ds = data_start(&file);
    // Inside the data section, at its start, and within the 8-byte prefix.
    for (i, cut) in [file.len() - 1, file.len() / 2 + ds / 2, ds, 5]
        .into_iter()
        .enumerate()
    {
        let p = write_bytes(dir.path(), &format!("t{i}.safetensors"), &file[..cut]);
        assert_rejects(&p, "truncated");
    }
    // Cut inside the JSON header: the length now points past the end.
    let p = write_bytes(dir.path(), "th.safetensors", &file[..ds - 10]);
    assert_rejects(&p, "header_length");
    let p = write_bytes(dir.path(), "empty.safetensors", b"");
    assert_rejects(&p, "truncated");
}

#[test]
fn flipped_data_bytes_fail_the_crc() {
    let dir = tempfile::tempdir().unwrap();
    let file = to_bytes(&sample(2, CheckpointKind::Periodic)).unwrap();
    let ds = data_start(&file);
    for (i, pos) in [ds, ds + 37, file.len() - 1].into_iter().enumerate() {
        let mut bad = file.clone();
        bad[pos] ^= 0x10;
        let p = write_bytes(dir.path(), &format!("f{i}.safetensors"), &bad);
        let e = assert_rejects(&p, "crc");
        assert!(e.to_string().contains("checksum"), "{e}");
    }
}

#[test]
fn garbage_and_oversized_headers_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = to_bytes(&sample(3, CheckpointKind::Periodic)).unwrap();
    let ds = data_start(&file);
    let mut garbage = file.clone();
    garbage[8..ds]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i * 31 % 251) as u8);
    assert_rejects(
        &write_bytes(dir.path(), "g.safetensors", &garbage),
        "header",
    );
    let mut notjson = file.clone();
    notjson[9] = b'#';
    assert_rejects(
        &write_bytes(dir.path(), "j.safetensors", &notjson),
        "header",
    );
    let mut huge = file.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_rejects(
        &write_bytes(dir.path(), "h.safetensors", &huge),
        "header_length",
    );
    let mut beyond = file.clone();
    beyond[..8].copy_from_slice(&((file.len() as u64) - 7).to_le_bytes());
    assert_rejects(
        &write_bytes(dir.path(), "b.safetensors", &beyond),
        "header_length",
    );
    let random: Vec<u8> = checkpoint_support::bytes(99, 4096);
    let e = read_checkpoint(&write_bytes(dir.path(), "r.safetensors", &random)).unwrap_err();
    assert!(matches!(e.check(), "header_length" | "header"), "{e}");
}

#[test]
fn unknown_format_version_and_foreign_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = to_bytes(&sample(4, CheckpointKind::Periodic)).unwrap();
    let v2 = edit_header(&file, |h| {
        h["__metadata__"]["format_version"] = "2".into();
    });
    let e = assert_rejects(
        &write_bytes(dir.path(), "v2.safetensors", &v2),
        "format_version",
    );
    assert!(e.to_string().contains("\"2\""), "{e}");
    let foreign = edit_header(&file, |h| {
        h["__metadata__"]["format"] = "pytorch".into();
    });
    assert_rejects(
        &write_bytes(dir.path(), "foreign.safetensors", &foreign),
        "format",
    );
    let no_md = edit_header(&file, |h| {
        h.remove("__metadata__");
    });
    assert_rejects(
        &write_bytes(dir.path(), "nomd.safetensors", &no_md),
        "metadata_missing",
    );
}

#[test]
fn every_missing_metadata_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = to_bytes(&sample(4, CheckpointKind::Periodic)).unwrap();
    for key in [
        "format_version",
        "header_crc32c",
        "step",
        "iteration",
        "kind",
        "config",
        "trackers",
        "metrics",
        "created_unix",
        "data_crc32c",
    ] {
        let bad = edit_header(&file, |h| {
            h["__metadata__"].as_object_mut().unwrap().remove(key);
        });
        let p = write_bytes(dir.path(), &format!("m_{key}.safetensors"), &bad);
        let e = assert_rejects(&p, "metadata_missing");
        assert!(e.to_string().contains(&format!("`{key}`")), "{e}");
    }
    for (key, val) in [
        ("step", "-1"),
        ("iteration", "x"),
        ("kind", "weekly"),
        ("data_crc32c", "zz"),
        ("created_unix", ""),
    ] {
        let bad = edit_header(&file, |h| {
            h["__metadata__"][key] = val.into();
        });
        let p = write_bytes(dir.path(), &format!("b_{key}.safetensors"), &bad);
        let e = assert_rejects(&p, "metadata_invalid");
        assert!(e.to_string().contains(&format!("`{key}`")), "{e}");
    }
}

#[test]
fn changed_header_values_fail_the_header_crc() {
    let dir = tempfile::tempdir().unwrap();
    let file = to_bytes(&sample(4, CheckpointKind::Periodic)).unwrap();
    let step = edit_header_unsealed(&file, |h| h["__metadata__"]["step"] = "5".into());
    assert_rejects(
        &write_bytes(dir.path(), "step.safetensors", &step),
        "header_crc",
    );
    let renamed = edit_header_unsealed(&file, |h| {
        let v = h.remove("world/ids").unwrap();
        h.insert("world/idz".into(), v);
    });
    assert_rejects(
        &write_bytes(dir.path(), "name.safetensors", &renamed),
        "header_crc",
    );
    let mut upper = file.clone();
    let ds = data_start(&file);
    let key = b"\"header_crc32c\":\"";
    let at = upper[..ds]
        .windows(key.len())
        .position(|w| w == key)
        .unwrap()
        + key.len();
    upper[at..at + 8].copy_from_slice(b"ABCDEF01");
    assert_rejects(
        &write_bytes(dir.path(), "upper.safetensors", &upper),
        "metadata_invalid",
    );
}

#[test]
fn inconsistent_tensor_entries_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = to_bytes(&sample(4, CheckpointKind::Periodic)).unwrap();
    type Edit = Box<dyn Fn(&mut serde_json::Map<String, serde_json::Value>)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "shape",
            Box::new(|h| h["world/energy"]["shape"] = serde_json::json!([2, 4])),
        ),
        (
            "dtype",
            Box::new(|h| h["world/energy"]["dtype"] = "F16".into()),
        ),
        (
            "gap",
            Box::new(|h| {
                let o = h["adam/step"]["data_offsets"].as_array().unwrap().clone();
                let (b, e) = (o[0].as_u64().unwrap(), o[1].as_u64().unwrap());
                h["adam/step"]["data_offsets"] = serde_json::json!([b + 8, e + 8]);
            }),
        ),
        (
            "offsets",
            Box::new(|h| h["rng/state"]["data_offsets"] = serde_json::json!("x")),
        ),
    ];
    for (name, f) in cases {
        let bad = edit_header(&file, f);
        let p = write_bytes(dir.path(), &format!("t_{name}.safetensors"), &bad);
        let e = read_checkpoint(&p).unwrap_err();
        assert!(
            matches!(e.check(), "tensor" | "truncated" | "trailing_data"),
            "{name}: {e}"
        );
    }
    // Extra bytes after the last tensor.
    let mut longer = file.clone();
    longer.extend_from_slice(&[0; 8]);
    assert_rejects(
        &write_bytes(dir.path(), "long.safetensors", &longer),
        "trailing_data",
    );
}

#[test]
fn inconsistent_arrays_are_refused_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.safetensors");
    let mut c = sample(1, CheckpointKind::Periodic);
    c.arrays[0].data.pop();
    assert_eq!(
        write_checkpoint(&p, &c, false).unwrap_err().check(),
        "invalid_array"
    );
    let mut c = sample(1, CheckpointKind::Periodic);
    c.arrays.push(array("world/ids", DType::I32, &[1], 0));
    let e = write_checkpoint(&p, &c, false).unwrap_err();
    assert!(e.to_string().contains("duplicate"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn round_trip_arbitrary_arrays(
        specs in proptest::collection::vec((0usize..8, proptest::collection::vec(0usize..5, 0..4), any::<u64>()), 0..8),
        step in any::<u64>(),
    ) {
        let dtypes = [DType::F32, DType::F64, DType::I64, DType::I32, DType::U64, DType::U32, DType::U8, DType::Bool];
        let mut c = sample(step, CheckpointKind::Emergency);
        c.arrays = specs.iter().enumerate().map(|(i, (d, shape, seed))| {
            array(&format!("a{i}"), dtypes[*d], shape, *seed)
        }).collect();
        let bytes = to_bytes(&c).unwrap();
        prop_assert_eq!(from_bytes(Path::new("p"), &bytes).unwrap(), c);
    }

    #[test]
    fn any_single_byte_flip_or_cut_is_an_error_never_a_panic(pos in any::<usize>(), bit in 0u8..8, cut in any::<bool>()) {
        let file = to_bytes(&sample(9, CheckpointKind::Periodic)).unwrap();
        let pos = pos % file.len();
        let bad = if cut { file[..pos].to_vec() } else {
            let mut b = file.clone();
            b[pos] ^= 1 << bit;
            b
        };
        // Header and data are both checksummed: every single-bit flip and every cut fails.
        let r = from_bytes(Path::new("p"), &bad);
        prop_assert!(r.is_err(), "accepted a file with byte {} {}", pos, if cut { "cut" } else { "flipped" });
    }
}
