//! The input side of batch decide: the columns a run reads, checked before any decision, and
//! the chunks of units and contexts it decides (buffers reused chunk after chunk), with the
//! run's set of units already seen.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use keel_experiments::UnitContext;
use keel_lake::arrow::array::{Array, Float64Array, RecordBatch, StringArray};
use keel_lake::arrow::datatypes::Schema;
use serde_json::{Map, Value};

use crate::BatchError;
use crate::columns::{column_names, float_column, is_text, string_column};

/// How a unit column or a context feature is read from the input.
#[derive(Debug, Clone)]
pub(super) enum Feature {
    Numeric(String),
    Categorical(String),
}

/// A chunk being decided: units and their contexts, owned. Its buffers are reused by a later
/// chunk once this one is decided, so a chunk after the first few allocates nothing per row.
pub(super) struct Pending {
    /// The units, one after the other; unit `i` ends at `ends[i]`.
    pub(super) units: String,
    pub(super) ends: Vec<usize>,
    /// Row `i`'s context is `contexts[i]` when the deployment declares features (else every
    /// row's context is `None`); maps beyond `ends.len()` are kept for reuse.
    pub(super) contexts: Vec<Map<String, Value>>,
    pub(super) with_context: bool,
}

/// The units of the input read so far, each once: their bytes in one buffer, a hash table of
/// where each starts and ends (no allocation per unit, no SipHash).
pub(super) struct Seen {
    pub(super) bytes: Vec<u8>,
    pub(super) spans: HashTable<(usize, usize)>,
    pub(super) hasher: DefaultHashBuilder,
}

impl Seen {
    pub(super) fn new() -> Seen {
        Seen {
            bytes: Vec::new(),
            spans: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// Adds `unit`; false if it was there already.
    pub(super) fn insert(&mut self, unit: &str) -> bool {
        let unit = unit.as_bytes();
        let Seen { bytes, spans, hasher } = self;
        let hash = hasher.hash_one(unit);
        match spans.entry(
            hash,
            |&(start, end)| &bytes[start..end] == unit,
            |&(start, end)| hasher.hash_one(&bytes[start..end]),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(slot) => {
                let start = bytes.len();
                bytes.extend_from_slice(unit);
                slot.insert((start, bytes.len()));
                true
            }
        }
    }
}

impl Pending {
    pub(super) fn new(capacity: usize, with_context: bool) -> Pending {
        Pending {
            units: String::new(),
            ends: Vec::with_capacity(capacity),
            contexts: Vec::with_capacity(if with_context { capacity } else { 0 }),
            with_context,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Empties the chunk, keeping its buffers (and its context maps) for the next.
    pub(super) fn clear(&mut self) {
        self.units.clear();
        self.ends.clear();
    }

    /// Adds a row: `unit`, and its context from row `i` of `values`.
    pub(super) fn push(&mut self, unit: &str, values: &[Values], i: usize) {
        self.units.push_str(unit);
        self.ends.push(self.units.len());
        if self.with_context {
            let n = self.ends.len() - 1;
            if n == self.contexts.len() {
                self.contexts.push(Map::new());
            }
            fill_context(&mut self.contexts[n], values, i);
        }
    }

    /// The rows as the deployment takes them.
    pub(super) fn rows(&self) -> Vec<UnitContext<'_>> {
        let mut start = 0;
        self.ends
            .iter()
            .enumerate()
            .map(|(i, &end)| {
                let unit = &self.units[start..end];
                start = end;
                UnitContext {
                    unit,
                    context: self.with_context.then(|| &self.contexts[i]),
                }
            })
            .collect()
    }
}

/// The unit column and every context feature exist with a usable type, checked before any
/// decision.
pub(super) fn check_columns(schema: &Schema, unit: &str, features: &[Feature]) -> Result<(), BatchError> {
    let field = schema.field_with_name(unit).map_err(|_| {
        BatchError::Invalid(format!(
            "the table has no unit column {unit:?}; it has {}. Name it with --unit-column",
            column_names(schema)
        ))
    })?;
    if !is_text(field.data_type()) && !field.data_type().is_integer() {
        return Err(BatchError::Invalid(format!(
            "the unit column {unit:?} is {}; a unit is a string or an integer id",
            field.data_type()
        )));
    }
    let mut missing = Vec::new();
    for f in features {
        let (name, numeric) = match f {
            Feature::Numeric(n) => (n, true),
            Feature::Categorical(n) => (n, false),
        };
        let Ok(field) = schema.field_with_name(name) else {
            missing.push(format!("{name:?}"));
            continue;
        };
        let dt = field.data_type();
        if numeric && !dt.is_numeric() {
            return Err(BatchError::Invalid(format!(
                "column {name:?} is {dt} but the deployment's context feature {name:?} is numeric; cast it when you ingest the table"
            )));
        }
        if !numeric && !is_text(dt) {
            return Err(BatchError::Invalid(format!(
                "column {name:?} is {dt} but the deployment's context feature {name:?} is categorical (a string); cast it when you ingest the table"
            )));
        }
    }
    if !missing.is_empty() {
        return Err(BatchError::Invalid(format!(
            "the table has no column {} that the deployment's context names; it has {}",
            missing.join(", "),
            column_names(schema)
        )));
    }
    Ok(())
}

pub(super) enum Values {
    Numeric(String, Float64Array),
    Categorical(String, StringArray),
}

pub(super) fn feature_columns(batch: &RecordBatch, features: &[Feature]) -> Result<Vec<Values>, BatchError> {
    features
        .iter()
        .map(|f| match f {
            Feature::Numeric(n) => Ok(Values::Numeric(n.clone(), float_column(batch, n)?)),
            Feature::Categorical(n) => Ok(Values::Categorical(n.clone(), string_column(batch, n)?)),
        })
        .collect()
}

/// Makes `map` row `i`'s context: each feature's value, a null one left out (so the deployment
/// refuses that row with its own message: a missing feature). `map` holds only feature names
/// (it is only ever filled here), so overwriting the values in place leaves it equal to a map
/// built afresh, without allocating anything for a row like the one before.
pub(super) fn fill_context(map: &mut Map<String, Value>, values: &[Values], i: usize) {
    for v in values {
        let (name, value) = match v {
            Values::Numeric(name, a) if !a.is_null(i) => {
                // Not finite: JSON has no such number; the deployment refuses it as not a number.
                let number = serde_json::Number::from_f64(a.value(i)).map_or(Value::Null, Value::Number);
                (name, number)
            }
            Values::Categorical(name, a) if !a.is_null(i) => {
                let level = a.value(i);
                if let Some(Value::String(s)) = map.get_mut(name.as_str()) {
                    s.clear();
                    s.push_str(level);
                    continue;
                }
                (name, Value::String(level.to_owned()))
            }
            Values::Numeric(name, _) | Values::Categorical(name, _) => {
                map.remove(name.as_str());
                continue;
            }
        };
        match map.get_mut(name.as_str()) {
            Some(slot) => *slot = value,
            None => {
                map.insert(name.clone(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row `i`'s context built afresh, as every row's was before maps were reused.
    fn fresh(values: &[Values], i: usize) -> Map<String, Value> {
        let mut map = Map::new();
        for v in values {
            match v {
                Values::Numeric(name, a) if !a.is_null(i) => {
                    let x = serde_json::Number::from_f64(a.value(i)).map_or(Value::Null, Value::Number);
                    map.insert(name.clone(), x);
                }
                Values::Categorical(name, a) if !a.is_null(i) => {
                    map.insert(name.clone(), Value::String(a.value(i).to_owned()));
                }
                _ => {}
            }
        }
        map
    }

    #[test]
    fn a_reused_context_map_equals_the_map_built_afresh_for_every_row() {
        let values = vec![
            Values::Numeric(
                "age".into(),
                Float64Array::from(vec![
                    Some(30.0),
                    None,
                    Some(f64::NAN),
                    Some(-0.0),
                    Some(f64::INFINITY),
                    Some(41.5),
                    None,
                ]),
            ),
            Values::Categorical(
                "segment".into(),
                StringArray::from(vec![
                    Some("loyal"),
                    Some("new"),
                    None,
                    Some(""),
                    Some("a much longer level than the ones before it"),
                    None,
                    Some("lapsed"),
                ]),
            ),
            Values::Numeric(
                "spend".into(),
                Float64Array::from(vec![
                    None,
                    Some(1.25),
                    Some(2.5),
                    None,
                    Some(1e300),
                    Some(0.1),
                    Some(7.0),
                ]),
            ),
        ];
        let n = 7;
        // Every row after every other row (and after itself), so each kind of value replaces
        // each kind, a null included.
        for before in 0..n {
            for i in 0..n {
                let mut map = Map::new();
                fill_context(&mut map, &values, before);
                assert_eq!(map, fresh(&values, before));
                fill_context(&mut map, &values, i);
                assert_eq!(map, fresh(&values, i), "row {i} after row {before}");
                assert_eq!(
                    serde_json::to_string(&map).expect("json"),
                    serde_json::to_string(&fresh(&values, i)).expect("json")
                );
            }
        }
    }

    #[test]
    fn a_chunk_hands_out_its_units_and_contexts_in_order_after_being_reused() {
        let values = vec![Values::Categorical(
            "segment".into(),
            StringArray::from(vec![Some("new"), None, Some("loyal")]),
        )];
        let mut chunk = Pending::new(2, true);
        chunk.push("c1", &values, 0);
        chunk.push("c22", &values, 2);
        chunk.push("c333", &values, 1);
        chunk.clear();
        chunk.push("é", &values, 2);
        chunk.push("", &values, 1);
        let rows = chunk.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].unit, "é");
        assert_eq!(rows[0].context, Some(&fresh(&values, 2)));
        assert_eq!(rows[1].unit, "");
        assert_eq!(rows[1].context, Some(&fresh(&values, 1)));
        let without = {
            let mut c = Pending::new(2, false);
            c.push("u", &values, 0);
            c
        };
        assert!(without.rows()[0].context.is_none());
    }

    #[test]
    fn the_seen_set_holds_each_unit_once() {
        let mut seen = Seen::new();
        let units: Vec<String> = (0..10_000).map(|i| format!("c{i}")).collect();
        for u in &units {
            assert!(seen.insert(u));
        }
        for u in &units {
            assert!(!seen.insert(u), "{u} again");
        }
        // Prefixes and concatenations of units seen are other units.
        assert!(seen.insert("c"));
        assert!(seen.insert("c1c2"));
        assert!(seen.insert(""));
        assert!(!seen.insert(""));
        assert!(!seen.insert("c1c2"));
    }
}
