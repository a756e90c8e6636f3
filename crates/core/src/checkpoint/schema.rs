//! The saved state, declared once: each stateful part lists its arrays (name, shape, values)
//! through [`SavedArray`] / [`SavedArrayMut`], and saving, loading with its checks, the
//! ablation's env copy and the benchmarks all walk those lists. A field added to such a list
//! is in every checkpoint, checked on load and copied by the ablation, with no other edit.
//!
//! Only plain little-endian arrays live here; tensors (policy, Adam, offsets) are listed by
//! the training library, by parameter name, in the same spirit.

use std::ops::Range;

use super::format::{Checkpoint, DType, NamedArray};

/// Why a checkpoint's array does not fit the state it is loaded into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The array is not in the file.
    #[error(
        "array {name:?} is missing; the file is not a complete emergence-lab training checkpoint"
    )]
    Missing {
        /// Array name.
        name: String,
    },
    /// The array has another element type.
    #[error("array {name:?} has dtype {found:?}, expected {expected:?}")]
    DType {
        /// Array name.
        name: String,
        /// In the file.
        found: DType,
        /// What the state holds.
        expected: DType,
    },
    /// The array has another shape (same element count is not enough).
    #[error(
        "array {name:?} has shape {found:?}, expected {expected:?} for this config (same element \
         count is not enough: a transposed or reshaped tensor would load as scrambled values; \
         write it with the expected shape)"
    )]
    Shape {
        /// Array name.
        name: String,
        /// In the file.
        found: Vec<usize>,
        /// What the state needs.
        expected: Vec<usize>,
    },
    /// The data length does not match the shape.
    #[error("array {name:?} holds {bytes} bytes, which does not match its shape {shape:?}")]
    Length {
        /// Array name.
        name: String,
        /// Bytes in the file.
        bytes: usize,
        /// Its shape.
        shape: Vec<usize>,
    },
}

/// A plain element type that goes into checkpoint arrays (little-endian).
pub trait Element: Copy + PartialEq + Send + Sync + 'static {
    /// Its dtype in the file.
    const DTYPE: DType;
    /// Appends the little-endian bytes.
    fn put(self, out: &mut Vec<u8>);
    /// Reads one value from exactly `DTYPE.size()` bytes.
    fn take(b: &[u8]) -> Self;
    /// A read view of a slice of this type.
    fn values(s: &[Self]) -> Values<'_>;
    /// A write view of a slice of this type.
    fn values_mut(s: &mut [Self]) -> ValuesMut<'_>;
}

macro_rules! elements {
    ($($t:ty => $d:ident),* $(,)?) => {
        /// A read view of one array's values, whatever its element type.
        #[derive(Debug, Clone, Copy, PartialEq)]
        #[allow(missing_docs)]
        pub enum Values<'a> { $($d(&'a [$t]),)* }

        /// A write view of one array's values, whatever its element type.
        #[derive(Debug, PartialEq)]
        #[allow(missing_docs)]
        pub enum ValuesMut<'a> { $($d(&'a mut [$t]),)* }


        impl Values<'_> {
            /// The element type.
            pub fn dtype(&self) -> DType {
                match self { $(Values::$d(_) => DType::$d,)* }
            }
            /// Number of elements.
            pub fn len(&self) -> usize {
                match self { $(Values::$d(v) => v.len(),)* }
            }
            /// True when there are no elements.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
            /// The little-endian bytes.
            pub fn to_bytes(&self) -> Vec<u8> {
                let mut out = Vec::with_capacity(self.len() * self.dtype().size());
                match self { $(Values::$d(v) => v.iter().for_each(|x| x.put(&mut out)),)* }
                out
            }
        }

        impl ValuesMut<'_> {
            /// The element type.
            pub fn dtype(&self) -> DType {
                match self { $(ValuesMut::$d(_) => DType::$d,)* }
            }
            fn fill_from_bytes(&mut self, bytes: &[u8]) {
                match self {
                    $(ValuesMut::$d(v) => {
                        for (x, b) in v.iter_mut().zip(bytes.chunks_exact(DType::$d.size())) {
                            *x = <$t>::take(b);
                        }
                    })*
                }
            }
            /// Copies `src[from]` into `self[to]` (same element type and length).
            ///
            /// # Panics
            /// If the element types or the range lengths differ (a programming error: both
            /// sides come from the same declaration).
            pub fn copy_range(&mut self, to: Range<usize>, src: &Values<'_>, from: Range<usize>) {
                match (self, src) {
                    $((ValuesMut::$d(d), Values::$d(s)) => d[to].copy_from_slice(&s[from]),)*
                    (d, s) => panic!("copying {:?} values into {:?} values", s.dtype(), d.dtype()),
                }
            }
        }
    };
}

elements!(f32 => F32, i32 => I32, u32 => U32, u64 => U64, i64 => I64, u8 => U8, bool => Bool);

macro_rules! numeric_elements {
    ($($t:ty => $d:ident),* $(,)?) => {
        $(impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn take(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().expect("one element's bytes"))
            }
            fn values(s: &[Self]) -> Values<'_> {
                Values::$d(s)
            }
            fn values_mut(s: &mut [Self]) -> ValuesMut<'_> {
                ValuesMut::$d(s)
            }
        })*
    };
}

numeric_elements!(f32 => F32, i32 => I32, u32 => U32, u64 => U64, i64 => I64, u8 => U8);

/// `bool` is stored as one byte, 0 or 1.
impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn put(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
    fn take(b: &[u8]) -> Self {
        b[0] != 0
    }
    fn values(s: &[Self]) -> Values<'_> {
        Values::Bool(s)
    }
    fn values_mut(s: &mut [Self]) -> ValuesMut<'_> {
        ValuesMut::Bool(s)
    }
}

/// One array of a stateful part, as saved: its name, its full shape and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedArray<'a> {
    /// Name in the file (`world/energy`, `rng/seed`, ...).
    pub name: &'static str,
    /// Full shape; the first dimension is the env for per-env arrays.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub values: Values<'a>,
}

/// One array of a stateful part, to be filled from a checkpoint (or copied into).
#[derive(Debug)]
pub struct SavedArrayMut<'a> {
    /// Name in the file.
    pub name: &'static str,
    /// Full shape the state needs.
    pub shape: Vec<usize>,
    /// Where the values go.
    pub values: ValuesMut<'a>,
}

impl<'a> SavedArray<'a> {
    /// A saved view of `values` with `shape`.
    pub fn new<T: Element>(name: &'static str, shape: Vec<usize>, values: &'a [T]) -> Self {
        SavedArray {
            name,
            shape,
            values: T::values(values),
        }
    }

    /// The array as written to a checkpoint.
    pub fn to_named(&self) -> NamedArray {
        NamedArray {
            name: self.name.to_string(),
            dtype: self.values.dtype(),
            shape: self.shape.clone(),
            data: self.values.to_bytes(),
        }
    }
}

impl<'a> SavedArrayMut<'a> {
    /// A fillable view of `values`, which must have `shape`'s element count.
    pub fn new<T: Element>(name: &'static str, shape: Vec<usize>, values: &'a mut [T]) -> Self {
        SavedArrayMut {
            name,
            shape,
            values: T::values_mut(values),
        }
    }

    /// Fills the values from the checkpoint's array of the same name, after checking its
    /// dtype, its exact shape and its length.
    pub fn load(&mut self, ck: &Checkpoint) -> Result<(), SchemaError> {
        let a = checked(ck, self.name, self.values.dtype(), &self.shape)?;
        self.values.fill_from_bytes(&a.data);
        Ok(())
    }
}

/// The checkpoint's array `name`, checked to be `dtype` with exactly `shape`.
pub(crate) fn checked<'c>(
    ck: &'c Checkpoint,
    name: &str,
    dtype: DType,
    shape: &[usize],
) -> Result<&'c NamedArray, SchemaError> {
    let a = ck.array(name).ok_or_else(|| SchemaError::Missing {
        name: name.to_string(),
    })?;
    if a.dtype != dtype {
        return Err(SchemaError::DType {
            name: name.to_string(),
            found: a.dtype,
            expected: dtype,
        });
    }
    if a.shape != shape {
        return Err(SchemaError::Shape {
            name: name.to_string(),
            found: a.shape.clone(),
            expected: shape.to_vec(),
        });
    }
    let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if n.and_then(|n| n.checked_mul(dtype.size())) != Some(a.data.len()) {
        return Err(SchemaError::Length {
            name: name.to_string(),
            bytes: a.data.len(),
            shape: shape.to_vec(),
        });
    }
    Ok(a)
}

/// The values of the checkpoint's array `name` as `T`, checked to have exactly `shape`.
pub fn read_values<T: Element>(
    ck: &Checkpoint,
    name: &str,
    shape: &[usize],
) -> Result<Vec<T>, SchemaError> {
    let a = checked(ck, name, T::DTYPE, shape)?;
    Ok(a.data.chunks_exact(T::DTYPE.size()).map(T::take).collect())
}

/// Loads every array of `parts` from `ck` (see [`SavedArrayMut::load`]).
pub fn load_arrays(parts: Vec<SavedArrayMut<'_>>, ck: &Checkpoint) -> Result<(), SchemaError> {
    parts.into_iter().try_for_each(|mut p| p.load(ck))
}

/// Copies env `from_env` of every per-env array of `src` into env `to_env` of the matching
/// array of `dst` (both lists from the same declaration, for worlds of any env count).
///
/// # Panics
/// If the two lists do not match name for name (a programming error).
pub fn copy_env_arrays(
    dst: Vec<SavedArrayMut<'_>>,
    to_env: usize,
    src: &[SavedArray<'_>],
    from_env: usize,
) {
    assert_eq!(dst.len(), src.len(), "the same declaration on both sides");
    for (mut d, s) in dst.into_iter().zip(src) {
        assert_eq!(d.name, s.name, "the same declaration on both sides");
        let row = |shape: &[usize]| shape[1..].iter().product::<usize>();
        let (rd, rs) = (row(&d.shape), row(&s.shape));
        assert_eq!(rd, rs, "{}: per-env sizes differ", d.name);
        d.values.copy_range(
            to_env * rd..(to_env + 1) * rd,
            &s.values,
            from_env * rs..(from_env + 1) * rs,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::format::{CheckpointKind, CheckpointMeta};

    fn ck(arrays: Vec<NamedArray>) -> Checkpoint {
        Checkpoint {
            meta: CheckpointMeta {
                step: 0,
                iteration: 0,
                kind: CheckpointKind::Periodic,
                config_json: "{}".into(),
                trackers_json: String::new(),
                metrics_json: "[]".into(),
                created_unix: 0,
                run_id: None,
            },
            arrays,
        }
    }

    #[test]
    fn every_element_type_round_trips_through_bytes() {
        let (f, i, u, w, l, b, z) = (
            [1.5f32, -0.0, f32::MIN_POSITIVE],
            [-7i32, 0, i32::MAX],
            [3u32, u32::MAX, 0],
            [u64::MAX, 1, 2],
            [i64::MIN, -1, 5],
            [0u8, 255, 7],
            [true, false, true],
        );
        let saved = [
            SavedArray::new("f", vec![3], &f),
            SavedArray::new("i", vec![3], &i),
            SavedArray::new("u", vec![3], &u),
            SavedArray::new("w", vec![3], &w),
            SavedArray::new("l", vec![3], &l),
            SavedArray::new("b", vec![3], &b),
            SavedArray::new("z", vec![1, 3], &z),
        ];
        let file = ck(saved.iter().map(SavedArray::to_named).collect());
        let (mut f2, mut i2, mut u2, mut w2, mut l2, mut b2, mut z2) = (
            [0f32; 3], [0i32; 3], [0u32; 3], [0u64; 3], [0i64; 3], [0u8; 3], [false; 3],
        );
        load_arrays(
            vec![
                SavedArrayMut::new("f", vec![3], &mut f2),
                SavedArrayMut::new("i", vec![3], &mut i2),
                SavedArrayMut::new("u", vec![3], &mut u2),
                SavedArrayMut::new("w", vec![3], &mut w2),
                SavedArrayMut::new("l", vec![3], &mut l2),
                SavedArrayMut::new("b", vec![3], &mut b2),
                SavedArrayMut::new("z", vec![1, 3], &mut z2),
            ],
            &file,
        )
        .unwrap();
        assert_eq!(f2.map(f32::to_bits), f.map(f32::to_bits));
        assert_eq!((i2, u2, w2, l2, b2, z2), (i, u, w, l, b, z));
    }

    #[test]
    fn loading_checks_presence_dtype_shape_and_length() {
        let v = [1.0f32, 2.0, 3.0, 4.0];
        let good = SavedArray::new("x", vec![2, 2], &v).to_named();
        let mut dst = [0f32; 4];
        let mut load = |arrays: Vec<NamedArray>| {
            SavedArrayMut::new("x", vec![2, 2], &mut dst).load(&ck(arrays))
        };
        assert!(matches!(load(vec![]), Err(SchemaError::Missing { .. })));
        let transposed = NamedArray {
            shape: vec![4, 1],
            ..good.clone()
        };
        let e = load(vec![transposed]).unwrap_err();
        assert!(e.to_string().contains("scrambled"), "{e}");
        let ints = NamedArray {
            dtype: DType::I32,
            ..good.clone()
        };
        assert!(matches!(load(vec![ints]), Err(SchemaError::DType { .. })));
        let short = NamedArray {
            data: good.data[..12].to_vec(),
            ..good.clone()
        };
        assert!(matches!(load(vec![short]), Err(SchemaError::Length { .. })));
        load(vec![good]).unwrap();
        assert_eq!(dst, v);
    }

    #[test]
    fn copy_env_moves_one_env_row_of_every_array() {
        let a = [1i32, 2, 3, 4, 5, 6];
        let b = [10.0f32, 20.0, 30.0];
        let src = [
            SavedArray::new("a", vec![3, 2], &a),
            SavedArray::new("b", vec![3], &b),
        ];
        let (mut a2, mut b2) = ([0i32; 2], [0f32; 1]);
        copy_env_arrays(
            vec![
                SavedArrayMut::new("a", vec![1, 2], &mut a2),
                SavedArrayMut::new("b", vec![1], &mut b2),
            ],
            0,
            &src,
            2,
        );
        assert_eq!((a2, b2), ([5, 6], [30.0]));
    }
}
