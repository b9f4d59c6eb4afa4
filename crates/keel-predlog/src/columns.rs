//! How logged tensors are named as table columns: shared by the lake sink (which writes
//! them) and live monitors (which read requests the same way).

/// Rows wider than this (values per row of one tensor) go to the `extra` JSON column.
pub const MAX_WIDTH: usize = 256;
/// The metadata columns of a predictions table; every other column is an input (or, with the
/// `out_` prefix, an output).
pub const FIXED: &[&str] = &[
    "ts",
    "date",
    "prediction_id",
    "row",
    "request_id",
    "model",
    "version",
    "deployment",
    "variant",
    "decision_id",
    "shadow",
    "latency_us",
    "extra",
];

/// The log columns an input tensor of `width` values per row flattens into (`name` alone for
/// one value per row, else `name_0 .. name_{width-1}`), as the prediction log names them:
/// what a monitor's reference table must call its columns.
pub fn input_columns(name: &str, width: usize) -> Vec<String> {
    if width > MAX_WIDTH {
        return Vec::new();
    }
    flat_names(&base_name(name, false), width)
}

/// The log columns an output tensor of `width` values per row flattens into (`out_name`, or
/// `out_name_0 ..`).
pub fn output_columns(name: &str, width: usize) -> Vec<String> {
    if width > MAX_WIDTH {
        return Vec::new();
    }
    flat_names(&base_name(name, true), width)
}

/// The column name a tensor's values start from: outputs get `out_`; an input whose name is a
/// fixed column or looks like an output gets `in_`.
pub(crate) fn base_name(name: &str, is_output: bool) -> String {
    let base = clean(name);
    if is_output {
        format!("out_{base}")
    } else if FIXED.contains(&base.as_str()) || base.starts_with("out_") {
        format!("in_{base}")
    } else {
        base
    }
}

pub(crate) fn flat_names(base: &str, width: usize) -> Vec<String> {
    if width == 1 {
        vec![base.to_owned()]
    } else {
        (0..width).map(|j| format!("{base}_{j}")).collect()
    }
}

/// Column name from a tensor name: characters other than `[A-Za-z0-9_]` become `_`.
fn clean(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}
