//! Shared helpers of the checkpoint tests: synthetic checkpoints and header surgery.
#![allow(dead_code)]

use emergence_lab_core::checkpoint::{
    Checkpoint, CheckpointKind, CheckpointMeta, DType, NamedArray,
};
use emergence_lab_core::config::Config;

/// Deterministic pseudo-random bytes (splitmix64).
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(n);
    out
}

pub fn array(name: &str, dtype: DType, shape: &[usize], seed: u64) -> NamedArray {
    let n: usize = shape.iter().product::<usize>() * dtype.size();
    let mut data = bytes(seed, n);
    if dtype == DType::Bool {
        data.iter_mut().for_each(|b| *b &= 1);
    }
    if matches!(dtype, DType::F32) {
        // Keep floats finite and exact: small integers.
        for (i, c) in data.chunks_exact_mut(4).enumerate() {
            c.copy_from_slice(&((i as f32 * 0.5) - (seed % 7) as f32).to_le_bytes());
        }
    }
    if matches!(dtype, DType::F64) {
        for (i, c) in data.chunks_exact_mut(8).enumerate() {
            c.copy_from_slice(&((i as f64 * 0.25) + seed as f64).to_le_bytes());
        }
    }
    NamedArray {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        data,
    }
}

/// A small checkpoint holding every dtype (plus a scalar and an empty array).
pub fn sample(step: u64, kind: CheckpointKind) -> Checkpoint {
    let mut config = Config::default();
    config.train.seed = 7;
    let arrays = vec![
        array("policy/hidden0/weight", DType::F32, &[16, 8], step),
        array(
            "adam/m/policy/hidden0/weight",
            DType::F32,
            &[16, 8],
            step + 1,
        ),
        array("adam/step", DType::I64, &[], step),
        array("world/energy", DType::F64, &[2, 3], step),
        array("world/ids", DType::I32, &[2, 3], step),
        array("rng/state", DType::U64, &[5], step),
        array("world/ticks", DType::U32, &[2], step),
        array("world/field_u8", DType::U8, &[3, 3], step),
        array("world/alive", DType::Bool, &[2, 3], step),
        array("world/empty", DType::F32, &[0, 4], step),
    ];
    Checkpoint {
        meta: CheckpointMeta {
            step,
            iteration: step / 100,
            kind,
            config_json: serde_json::to_string(&config).unwrap(),
            trackers_json: r#"{"emergence":{"history":[1.5,2.5]}}"#.into(),
            metrics_json: r#"[{"step":100,"iteration":1,"values":{"a":1.0}}]"#.into(),
            created_unix: 1_700_000_000 + step,
            run_id: Some("test-run".into()),
        },
        arrays,
    }
}

/// A checkpoint of about `mb` MiB (one big f32 array plus a few small ones).
pub fn big(step: u64, kind: CheckpointKind, mb: usize) -> Checkpoint {
    let mut c = sample(step, kind);
    c.arrays
        .push(array("offsets", DType::U8, &[mb << 20], step));
    c
}

/// Rewrites the JSON header of a file's bytes with `f`, fixing the length prefix and
/// re-sealing `header_crc32c` (when `f` left the key there), so only `f`'s change is wrong.
pub fn edit_header(
    file: &[u8],
    f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Vec<u8> {
    edit_header_with(file, f, true)
}

/// Like [`edit_header`] but leaves a stale `header_crc32c` (to test that check).
pub fn edit_header_unsealed(
    file: &[u8],
    f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Vec<u8> {
    edit_header_with(file, f, false)
}

fn edit_header_with(
    file: &[u8],
    f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    seal: bool,
) -> Vec<u8> {
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let mut root: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&file[8..8 + n]).unwrap();
    f(&mut root);
    let sealed = seal
        && root
            .get("__metadata__")
            .and_then(|m| m.get("header_crc32c"))
            .is_some();
    if sealed {
        root["__metadata__"]["header_crc32c"] = "00000000".into();
    }
    let mut h = serde_json::Value::Object(root).to_string().into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    if sealed {
        let key = b"\"header_crc32c\":\"";
        let at = h.windows(key.len()).position(|w| w == key).unwrap() + key.len();
        let hex = format!("{:08x}", crc32c::crc32c(&h));
        h[at..at + 8].copy_from_slice(hex.as_bytes());
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend_from_slice(&file[8 + n..]);
    out
}

/// Offset of the data section in a file's bytes.
pub fn data_start(file: &[u8]) -> usize {
    8 + u64::from_le_bytes(file[..8].try_into().unwrap()) as usize
}
