//! A JSON array kept as compact text beside the values it mirrors, one element serialised per
//! push. A run's histories (metrics, tracker measurements) grow by a record per iteration and
//! are written into every checkpoint; serialising them whole each time costs time that grows
//! with the run (tens of milliseconds after a day). With this, an iteration pays for its own
//! record only, and the text stays byte for byte what `serde_json::to_string` of the whole
//! slice gives.

use serde::Serialize;

/// Compact JSON text of an array, built incrementally. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonArray {
    text: String,
    len: usize,
}

impl Default for JsonArray {
    fn default() -> Self {
        JsonArray::new()
    }
}

impl JsonArray {
    /// The empty array, `[]`.
    pub fn new() -> Self {
        JsonArray {
            text: "[]".into(),
            len: 0,
        }
    }

    /// The array of `items`: `serde_json::to_string(items)`.
    pub fn of<T: Serialize>(items: &[T]) -> serde_json::Result<Self> {
        Ok(JsonArray {
            text: serde_json::to_string(items)?,
            len: items.len(),
        })
    }

    /// Appends one element. On error (a value serde cannot write) nothing changes.
    pub fn push<T: Serialize>(&mut self, item: &T) -> serde_json::Result<()> {
        let rec = serde_json::to_string(item)?;
        self.text.pop(); // the closing ']'
        if self.len > 0 {
            self.text.push(',');
        }
        self.text.push_str(&rec);
        self.text.push(']');
        self.len += 1;
        Ok(())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Serialize)]
    struct Rec {
        step: u64,
        name: String,
        value: f64,
    }

    proptest! {
        #[test]
        fn pushes_equal_serialising_the_whole_slice(
            items in proptest::collection::vec((any::<u64>(), "[a-z\"\\\\]{0,6}", -1e9f64..1e9), 0..20),
            split in 0usize..20,
        ) {
            let recs: Vec<Rec> = items
                .into_iter()
                .map(|(step, name, value)| Rec { step, name, value })
                .collect();
            let split = split.min(recs.len());
            // Built from a prefix, then pushed: the same text as the whole slice at once.
            let mut a = JsonArray::of(&recs[..split]).unwrap();
            for r in &recs[split..] {
                a.push(r).unwrap();
            }
            prop_assert_eq!(a.as_str(), serde_json::to_string(&recs).unwrap());
            prop_assert_eq!(a.len(), recs.len());
        }
    }

    #[test]
    fn a_value_serde_cannot_write_leaves_the_array_unchanged() {
        let mut a = JsonArray::new();
        a.push(&1.5f64).unwrap();
        // A map with non-string keys is an error in serde_json.
        let bad: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(a.push(&bad).is_err());
        assert_eq!(a.as_str(), "[1.5]");
        assert_eq!(a.len(), 1);
    }
}
