//! How a column is treated by the statistics, from its Arrow data type.

use arrow::datatypes::DataType;

/// The statistical kind of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Integers, floats and decimals (and dictionaries of them): summarised as numbers.
    Numeric,
    /// Strings and booleans (and dictionaries of strings): summarised as categories.
    Categorical,
    /// Timestamps and dates.
    Time,
    /// Anything else (lists, structs, binary): counted, not summarised.
    Unsupported,
}

/// The kind of a column of this Arrow type. A dictionary takes the kind of its values when
/// those are numeric or categorical; `is_dictionary` tells callers that treat dictionaries apart.
pub fn column_kind(data_type: &DataType) -> ColumnKind {
    match data_type {
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => ColumnKind::Numeric,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => ColumnKind::Categorical,
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => ColumnKind::Time,
        DataType::Dictionary(_, value) => match column_kind(value) {
            ColumnKind::Categorical => ColumnKind::Categorical,
            ColumnKind::Numeric => ColumnKind::Numeric,
            ColumnKind::Time | ColumnKind::Unsupported => ColumnKind::Unsupported,
        },
        _ => ColumnKind::Unsupported,
    }
}

/// Whether values of this type are strings (directly or as dictionary values).
pub fn is_string(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => is_string(value),
        _ => false,
    }
}

/// Whether this type is a dictionary encoding.
pub fn is_dictionary(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Dictionary(_, _))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::TimeUnit;

    #[test]
    fn kinds() {
        assert_eq!(column_kind(&DataType::Int32), ColumnKind::Numeric);
        assert_eq!(column_kind(&DataType::Boolean), ColumnKind::Categorical);
        assert_eq!(
            column_kind(&DataType::Timestamp(TimeUnit::Millisecond, None)),
            ColumnKind::Time
        );
        assert_eq!(column_kind(&DataType::Binary), ColumnKind::Unsupported);
        let dict = |v: DataType| DataType::Dictionary(Box::new(DataType::Int32), Box::new(v));
        assert_eq!(column_kind(&dict(DataType::Utf8)), ColumnKind::Categorical);
        assert_eq!(column_kind(&dict(DataType::Int64)), ColumnKind::Numeric);
        assert_eq!(column_kind(&dict(DataType::Date32)), ColumnKind::Unsupported);
        assert!(is_string(&dict(DataType::LargeUtf8)));
        assert!(!is_string(&DataType::Boolean));
    }
}
