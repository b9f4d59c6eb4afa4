//! Reader of the Open Bandit Dataset (OBD) CSV format, following obp's `OpenBanditDataset`.
//!
//! A log file (`{behavior_policy}/{campaign}/{campaign}.csv`) has the columns `timestamp`,
//! `item_id`, `position`, `click`, `propensity_score`, `user_feature_*` and
//! `user-item_affinity_*`, usually after an unnamed row-index column. Columns are found by
//! name in the header, in any order. The conversion is obp 0.5.7's:
//!
//! - rows are sorted by `timestamp` (stable, so ties keep file order);
//! - action = `item_id`, and `n_actions = max(item_id) + 1`;
//! - position = dense rank of `position` minus 1, so positions 1..3 become 0..2;
//! - reward = `click`, propensity = `propensity_score`;
//! - context = one-hot of the `user_feature_*` columns with the first (lexicographically
//!   smallest) category of each dropped, as `pd.get_dummies(..., drop_first=True)`; a column
//!   whose every value is a number is kept as that number, as pandas does. The affinities
//!   are not part of obp's context; they are kept apart in [`ObdLog::affinities`].
//!
//! The item file (`item_context.csv`: `item_id`, `item_feature_*`) becomes obp's
//! `action_context`: label-encoded categorical features (sorted categories numbered from 0),
//! then the numeric ones.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::DateTime;

use crate::error::{OpeError, Result};
use crate::log::{LoggedBandit, check_propensity, check_reward};

/// A log read from an OBD CSV file.
#[derive(Debug, Clone, PartialEq)]
pub struct ObdLog {
    /// The logged bandit feedback, with positions, obp's one-hot contexts and timestamps
    /// (microseconds since the Unix epoch).
    pub log: LoggedBandit,
    /// Names of the context columns, `{column}_{category}` for one-hot ones.
    pub context_columns: Vec<String>,
    /// The `user-item_affinity_*` values of each round, in header order (empty rows when absent).
    pub affinities: Vec<Vec<f64>>,
    /// 1-based line in the file of each round, after sorting by timestamp.
    pub lines: Vec<u64>,
}

/// Item features read from an OBD `item_context.csv`, obp's `action_context`.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemContext {
    /// `item_id` of each row, in file order.
    pub item_ids: Vec<usize>,
    /// Names of the feature columns, categorical ones first, then numeric ones.
    pub columns: Vec<String>,
    /// Feature vector of each row.
    pub features: Vec<Vec<f64>>,
}

struct Table {
    path: PathBuf,
    headers: Vec<String>,
    rows: Vec<(u64, csv::StringRecord)>,
}

impl Table {
    fn read(path: &Path) -> Result<Table> {
        let file = File::open(path).map_err(|source| OpeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(file);
        let csv_err = |e: csv::Error| OpeError::Csv {
            path: path.to_path_buf(),
            line: e.position().map_or(0, csv::Position::line),
            message: match e.kind() {
                csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                    format!("has {len} fields but the header has {expected_len}; fix or drop the row")
                }
                _ => e.to_string(),
            },
        };
        let headers: Vec<String> = reader.headers().map_err(csv_err)?.iter().map(str::to_owned).collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(csv_err)?;
            let line = record.position().map_or(0, csv::Position::line);
            rows.push((line, record));
        }
        Ok(Table {
            path: path.to_path_buf(),
            headers,
            rows,
        })
    }

    fn column(&self, name: &str) -> Result<usize> {
        self.find(name).ok_or_else(|| OpeError::MissingColumn {
            path: self.path.clone(),
            column: name.to_owned(),
        })
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    fn columns_with_prefix(&self, prefix: &str) -> Vec<usize> {
        self.headers
            .iter()
            .enumerate()
            .filter(|(_, h)| h.starts_with(prefix))
            .map(|(i, _)| i)
            .collect()
    }

    fn err(&self, line: u64, message: String) -> OpeError {
        OpeError::Csv {
            path: self.path.clone(),
            line,
            message,
        }
    }

    fn field<'a>(&self, line: u64, record: &'a csv::StringRecord, col: usize) -> Result<&'a str> {
        record
            .get(col)
            .map(str::trim)
            .ok_or_else(|| self.err(line, format!("missing field `{}`", self.headers[col])))
    }

    fn parse_usize(&self, line: u64, record: &csv::StringRecord, col: usize) -> Result<usize> {
        let s = self.field(line, record, col)?;
        parse_int_like(s).ok_or_else(|| {
            self.err(
                line,
                format!("`{}` = {s:?} is not a non-negative integer", self.headers[col]),
            )
        })
    }

    fn parse_f64(&self, line: u64, record: &csv::StringRecord, col: usize) -> Result<f64> {
        let s = self.field(line, record, col)?;
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| self.err(line, format!("`{}` = {s:?} is not a finite number", self.headers[col])))
    }
}

/// Accepts `3` and `3.0` (pandas writes integer columns with missing values as floats).
fn parse_int_like(s: &str) -> Option<usize> {
    if let Ok(v) = s.parse::<usize>() {
        return Some(v);
    }
    let f = s.parse::<f64>().ok()?;
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 9.0e15).then_some(f as usize)
}

/// Parses `2019-11-24 00:00:34.762830+00:00`, RFC 3339, or an integer, into microseconds.
fn parse_timestamp(s: &str) -> Option<i64> {
    if let Ok(v) = s.parse::<i64>() {
        return Some(v);
    }
    DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z")
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|t| t.timestamp_micros())
}

/// Encodes one feature column: numeric when every value parses as a number, otherwise the
/// sorted categories. Returns `None` for numeric.
fn categories(values: &[&str]) -> Option<Vec<String>> {
    if values.iter().all(|v| v.parse::<f64>().is_ok_and(f64::is_finite)) {
        return None;
    }
    let set: BTreeSet<&str> = values.iter().copied().collect();
    Some(set.into_iter().map(str::to_owned).collect())
}

/// Reads an OBD log CSV into logged bandit feedback, the way obp's `OpenBanditDataset` does
/// (see the [module docs](self)).
///
/// Errors name the file, the 1-based line (the header is line 1) and the column.
pub fn read_obd_csv(path: &Path) -> Result<ObdLog> {
    let table = Table::read(path)?;
    let item_col = table.column("item_id")?;
    let click_col = table.column("click")?;
    let pscore_col = table.column("propensity_score")?;
    let position_col = table.find("position");
    let timestamp_col = table.find("timestamp");
    let user_cols = table.columns_with_prefix("user_feature");
    let affinity_cols = table.columns_with_prefix("user-item_affinity");
    if table.rows.is_empty() {
        return Err(OpeError::EmptyLog);
    }

    struct Row {
        line: u64,
        action: usize,
        reward: f64,
        pscore: f64,
        raw_position: Option<usize>,
        timestamp: Option<i64>,
        affinity: Vec<f64>,
    }
    let mut rows = Vec::with_capacity(table.rows.len());
    for (line, record) in &table.rows {
        let line = *line;
        let action = table.parse_usize(line, record, item_col)?;
        let reward = table.parse_f64(line, record, click_col)?;
        check_reward(0, reward).map_err(|_| table.err(line, "`click` is not a finite number".into()))?;
        let pscore = table.parse_f64(line, record, pscore_col)?;
        check_propensity(0, pscore).map_err(|_| {
            table.err(
                line,
                format!("`propensity_score` = {pscore} is outside (0, 1]; it must be the logging policy's probability"),
            )
        })?;
        let raw_position = position_col.map(|c| table.parse_usize(line, record, c)).transpose()?;
        let timestamp = match timestamp_col {
            Some(c) => {
                let s = table.field(line, record, c)?;
                Some(parse_timestamp(s).ok_or_else(|| {
                    table.err(
                        line,
                        format!("`timestamp` = {s:?} is not a date-time like 2019-11-24 00:00:34.762830+00:00"),
                    )
                })?)
            }
            None => None,
        };
        let affinity = affinity_cols
            .iter()
            .map(|&c| table.parse_f64(line, record, c))
            .collect::<Result<Vec<f64>>>()?;
        rows.push(Row {
            line,
            action,
            reward,
            pscore,
            raw_position,
            timestamp,
            affinity,
        });
    }

    // One-hot of the user features, from the unsorted table (the encoding does not depend on order).
    let mut context_columns = Vec::new();
    let mut encoders: Vec<(usize, Option<Vec<String>>)> = Vec::new();
    for &c in &user_cols {
        let values: Vec<&str> = table.rows.iter().map(|(_, r)| r.get(c).map_or("", str::trim)).collect();
        let cats = categories(&values);
        match &cats {
            None => context_columns.push(table.headers[c].clone()),
            Some(cats) => {
                for cat in cats.iter().skip(1) {
                    context_columns.push(format!("{}_{cat}", table.headers[c]));
                }
            }
        }
        encoders.push((c, cats));
    }
    let mut contexts = Vec::with_capacity(rows.len());
    for (line, record) in &table.rows {
        let mut ctx = Vec::with_capacity(context_columns.len());
        for (c, cats) in &encoders {
            let v = table.field(*line, record, *c)?;
            match cats {
                None => ctx.push(table.parse_f64(*line, record, *c)?),
                Some(cats) => {
                    let idx = cats.binary_search_by(|x| x.as_str().cmp(v)).unwrap_or(0);
                    ctx.extend((1..cats.len()).map(|j| if j == idx { 1.0 } else { 0.0 }));
                }
            }
        }
        contexts.push(ctx);
    }

    // obp sorts by timestamp; a stable sort keeps file order among ties.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    if timestamp_col.is_some() {
        order.sort_by_key(|&i| rows[i].timestamp);
    }

    // Dense rank of the raw positions, minus one.
    let positions = if position_col.is_some() {
        let distinct: BTreeSet<usize> = rows.iter().filter_map(|r| r.raw_position).collect();
        let ranks: Vec<usize> = distinct.into_iter().collect();
        Some(
            order
                .iter()
                .map(|&i| {
                    let p = rows[i].raw_position.unwrap_or(0);
                    ranks.binary_search(&p).unwrap_or(0)
                })
                .collect(),
        )
    } else {
        None
    };

    let n_actions = rows.iter().map(|r| r.action).max().map_or(0, |m| m + 1);
    let log = LoggedBandit {
        n_actions,
        actions: order.iter().map(|&i| rows[i].action).collect(),
        rewards: order.iter().map(|&i| rows[i].reward).collect(),
        propensities: order.iter().map(|&i| rows[i].pscore).collect(),
        positions,
        contexts: Some(order.iter().map(|&i| contexts[i].clone()).collect()),
        timestamps: timestamp_col.map(|_| order.iter().map(|&i| rows[i].timestamp.unwrap_or(0)).collect()),
        eligible: None,
        action_features: None,
    };
    log.validate()?;
    Ok(ObdLog {
        log,
        context_columns,
        affinities: order.iter().map(|&i| rows[i].affinity.clone()).collect(),
        lines: order.iter().map(|&i| rows[i].line).collect(),
    })
}

/// Reads an OBD `item_context.csv` into obp's `action_context` (see the [module docs](self)).
pub fn read_item_context_csv(path: &Path) -> Result<ItemContext> {
    let table = Table::read(path)?;
    let item_col = table.column("item_id")?;
    let feature_cols = table.columns_with_prefix("item_feature");
    let mut item_ids = Vec::with_capacity(table.rows.len());
    for (line, record) in &table.rows {
        item_ids.push(table.parse_usize(*line, record, item_col)?);
    }
    let mut categorical = Vec::new();
    let mut numeric = Vec::new();
    for &c in &feature_cols {
        let values: Vec<&str> = table.rows.iter().map(|(_, r)| r.get(c).map_or("", str::trim)).collect();
        match categories(&values) {
            Some(cats) => categorical.push((c, cats)),
            None => numeric.push(c),
        }
    }
    let columns = categorical
        .iter()
        .map(|(c, _)| table.headers[*c].clone())
        .chain(numeric.iter().map(|c| table.headers[*c].clone()))
        .collect();
    let mut features = Vec::with_capacity(table.rows.len());
    for (line, record) in &table.rows {
        let mut f = Vec::with_capacity(feature_cols.len());
        for (c, cats) in &categorical {
            let v = table.field(*line, record, *c)?;
            f.push(cats.binary_search_by(|x| x.as_str().cmp(v)).unwrap_or(0) as f64);
        }
        for &c in &numeric {
            f.push(table.parse_f64(*line, record, c)?);
        }
        features.push(f);
    }
    Ok(ItemContext {
        item_ids,
        columns,
        features,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_obd_timestamps() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:01.5+00:00"), Some(1_500_000));
        assert_eq!(parse_timestamp("1970-01-01T00:00:01+01:00"), Some(-3_599_000_000));
        assert_eq!(parse_timestamp("42"), Some(42));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn int_like() {
        assert_eq!(parse_int_like("3"), Some(3));
        assert_eq!(parse_int_like("3.0"), Some(3));
        assert_eq!(parse_int_like("3.5"), None);
        assert_eq!(parse_int_like("-1"), None);
    }
}
