//! Where a product's operand rows are: one row-major slice, or rows borrowed from anywhere
//! through a table of row pointers (the samples of an update minibatch read in place from
//! the rollout's observation store, with no copy). The kernels read both the same way, so
//! a product's bits do not depend on where its rows are.

use std::borrow::Cow;
use std::marker::PhantomData;

/// How the kernels find row `i` of an operand.
pub(super) trait RowAt: Copy {
    /// Pointer to the first value of row `i`.
    ///
    /// # Safety
    /// `i` must be a row of the operand.
    unsafe fn at(self, i: usize) -> *const f32;
}

/// Row `i` at `ptr + i * stride`.
#[derive(Clone, Copy)]
pub(super) struct Strided {
    pub ptr: *const f32,
    pub stride: usize,
}

impl Strided {
    /// The rows of `data` at `stride` values apart, as an operand (the caller checks that
    /// the rows it reads are inside `data`).
    pub fn of(data: &[f32], stride: usize) -> Operand {
        Operand::Strided(Strided {
            ptr: data.as_ptr(),
            stride,
        })
    }
}

impl RowAt for Strided {
    #[inline(always)]
    unsafe fn at(self, i: usize) -> *const f32 {
        self.ptr.add(i * self.stride)
    }
}

/// Row `i` at `table[i]`.
#[derive(Clone, Copy)]
pub(super) struct Table(pub *const *const f32);

impl RowAt for Table {
    #[inline(always)]
    unsafe fn at(self, i: usize) -> *const f32 {
        *self.0.add(i)
    }
}

/// A tile's first row of `A` and `C`, first value of `k`, and first column of `B` and `C`.
#[derive(Clone, Copy)]
pub(super) struct Corner {
    pub r0: usize,
    pub k0: usize,
    pub j0: usize,
}

/// Rows of one width borrowed from anywhere, for [`Rows`] views: a reusable table of row
/// pointers (like a `Vec<&'a [f32]>` whose rows all have `width` values).
#[derive(Debug)]
pub struct RowTable<'a> {
    ptrs: Vec<*const f32>,
    width: usize,
    _rows: PhantomData<&'a [f32]>,
}

// SAFETY: the table only holds shared borrows of `f32` rows for `'a` (as `Vec<&'a [f32]>`).
unsafe impl Send for RowTable<'_> {}
// SAFETY: as above; nothing is written through the pointers.
unsafe impl Sync for RowTable<'_> {}

impl<'a> RowTable<'a> {
    /// An empty table of rows with `width` values.
    pub fn new(width: usize) -> Self {
        RowTable {
            ptrs: Vec::new(),
            width,
            _rows: PhantomData,
        }
    }

    /// Empties the table and sets the row width (the allocation is kept).
    pub fn reset(&mut self, width: usize) {
        self.ptrs.clear();
        self.width = width;
    }

    /// Appends `row` (its length must be the width).
    ///
    /// # Panics
    /// If `row.len()` is not the table's width.
    #[inline]
    pub fn push(&mut self, row: &'a [f32]) {
        assert_eq!(row.len(), self.width, "a row of the wrong width");
        self.ptrs.push(row.as_ptr());
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ptrs.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.ptrs.is_empty()
    }

    /// All rows, as an operand.
    pub fn rows(&self) -> Rows<'_> {
        Rows {
            kind: Kind::Table(&self.ptrs),
            width: self.width,
            len: self.ptrs.len(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind<'a> {
    /// Row `i` is `data[i * width..(i + 1) * width]`.
    Dense(&'a [f32]),
    /// Row `i` starts at `ptrs[i]` (pointers of a [`RowTable`], valid for `'a`).
    Table(&'a [*const f32]),
}

/// `len` rows of `width` values: a row-major slice, or the rows of a [`RowTable`].
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    kind: Kind<'a>,
    width: usize,
    len: usize,
}

// SAFETY: a view of shared `f32` rows (see `RowTable`).
unsafe impl Send for Rows<'_> {}
// SAFETY: as above.
unsafe impl Sync for Rows<'_> {}

impl<'a> Rows<'a> {
    /// The rows of the row-major `[data.len() / width, width]` matrix `data` (no rows when
    /// `width` is 0: callers handle empty products before making rows).
    ///
    /// # Panics
    /// If `width` is 0 and `data` is not empty.
    pub fn dense(data: &'a [f32], width: usize) -> Self {
        assert!(width > 0 || data.is_empty(), "rows of width 0");
        Rows {
            kind: Kind::Dense(data),
            width,
            len: data.len().checked_div(width).unwrap_or(0),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Row `i`.
    ///
    /// # Panics
    /// If `i >= len`.
    #[inline]
    pub fn row(&self, i: usize) -> &'a [f32] {
        assert!(i < self.len, "row {i} of {}", self.len);
        match self.kind {
            Kind::Dense(d) => &d[i * self.width..(i + 1) * self.width],
            // SAFETY: a table's pointers are rows of `width` values borrowed for `'a`.
            Kind::Table(p) => unsafe { std::slice::from_raw_parts(p[i], self.width) },
        }
    }

    /// Rows `start..start + len`.
    ///
    /// # Panics
    /// If they are not all rows of `self`.
    pub fn range(&self, start: usize, len: usize) -> Rows<'a> {
        assert!(
            start + len <= self.len,
            "rows {start}..{} of {}",
            start + len,
            self.len
        );
        let kind = match self.kind {
            Kind::Dense(d) => Kind::Dense(&d[start * self.width..(start + len) * self.width]),
            Kind::Table(p) => Kind::Table(&p[start..start + len]),
        };
        Rows { kind, len, ..*self }
    }

    /// The rows as one row-major slice: borrowed when they are one, else copied.
    pub fn contiguous(&self) -> Cow<'a, [f32]> {
        match self.kind {
            Kind::Dense(d) => Cow::Borrowed(&d[..self.len * self.width]),
            Kind::Table(_) => {
                Cow::Owned((0..self.len).flat_map(|i| self.row(i)).copied().collect())
            }
        }
    }

    /// The kernels' view of these rows: valid for rows `0..len`, `width` values each, while
    /// `self` is borrowed.
    pub(super) fn operand(&self) -> Operand {
        match self.kind {
            Kind::Dense(d) => Operand::Strided(Strided {
                ptr: d.as_ptr(),
                stride: self.width,
            }),
            Kind::Table(p) => Operand::Table(Table(p.as_ptr())),
        }
    }
}

/// The kernels' view of [`Rows`].
#[derive(Clone, Copy)]
pub(super) enum Operand {
    Strided(Strided),
    Table(Table),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_and_dense_rows_read_the_same_values() {
        let data: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let dense = Rows::dense(&data, 4);
        assert_eq!((dense.len(), dense.width()), (6, 4));
        let mut t = RowTable::new(4);
        for i in [5, 0, 3] {
            t.push(&data[i * 4..(i + 1) * 4]);
        }
        let rows = t.rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.row(0), dense.row(5));
        assert_eq!(rows.row(2), &[12.0, 13.0, 14.0, 15.0]);
        let sub = rows.range(1, 2);
        assert_eq!(sub.row(0), dense.row(0));
        assert_eq!(
            &*sub.contiguous(),
            &[0.0, 1.0, 2.0, 3.0, 12.0, 13.0, 14.0, 15.0]
        );
        assert_eq!(&*dense.range(2, 1).contiguous(), &[8.0, 9.0, 10.0, 11.0]);
        assert!(matches!(dense.contiguous(), Cow::Borrowed(_)));
    }

    #[test]
    #[should_panic(expected = "wrong width")]
    fn a_row_of_another_width_is_refused() {
        let data = [0f32; 5];
        let mut t = RowTable::new(4);
        t.push(&data);
    }

    #[test]
    #[should_panic(expected = "rows 2..4 of 3")]
    fn a_range_past_the_end_is_refused() {
        let data = [0f32; 12];
        Rows::dense(&data, 4).range(2, 2);
    }
}
