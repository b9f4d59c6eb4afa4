//! The serialisable result types.

use serde::Serialize;

/// How a column is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// floats, integers, decimals
    Numeric,
    /// strings, dictionaries of strings, booleans
    Categorical,
}

/// The test behind a column's score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    /// Wasserstein-1 distance / reference std (ddof 0, at least 0.001); drift when score >= threshold
    WassersteinNorm,
    /// Jensen-Shannon distance, natural log; drift when score >= threshold
    JensenShannon,
    /// population stability index; drift when score >= threshold
    Psi,
    /// two-sample Kolmogorov-Smirnov; score is the p-value, drift when score < threshold
    Ks,
    /// chi-squared goodness of fit of current against scaled reference counts; p-value, drift when < threshold
    ChiSquare,
    /// two-proportion Z-test (columns with two values); p-value, drift when < threshold
    ZTest,
}

impl TestKind {
    /// Default threshold of the test (Evidently's defaults).
    pub fn default_threshold(self) -> f64 {
        match self {
            TestKind::WassersteinNorm | TestKind::JensenShannon | TestKind::Psi => 0.1,
            TestKind::Ks | TestKind::ChiSquare | TestKind::ZTest => 0.05,
        }
    }

    /// Whether the score is a p-value (drift below the threshold) rather than a distance (drift at or above).
    pub fn is_p_value(self) -> bool {
        match self {
            TestKind::WassersteinNorm | TestKind::JensenShannon | TestKind::Psi => false,
            TestKind::Ks | TestKind::ChiSquare | TestKind::ZTest => true,
        }
    }

    /// Drift decision for a score.
    pub fn drifted(self, score: f64, threshold: f64) -> bool {
        if self.is_p_value() {
            score < threshold
        } else {
            score >= threshold
        }
    }
}

/// Extra numbers behind a score, for people reading the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatDetails {
    /// Distinct non-missing values in reference and current together (numeric; capped at 6 when only the
    /// threshold of 5 matters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_values: Option<usize>,
    /// Reference mean and standard deviation (numeric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_std: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_mean: Option<f64>,
    /// KS statistic D (when the test is KS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks_statistic: Option<f64>,
    /// Number of bins or categories compared (histogram tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bins: Option<usize>,
}

/// Data-quality figures of one column, computed in the same pass as drift.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ColumnQuality {
    /// Null (and NaN for numeric) values.
    pub reference_missing: u64,
    pub current_missing: u64,
    /// Infinite values (numeric; dropped before the test, as Evidently does).
    pub reference_infinite: u64,
    pub current_infinite: u64,
    /// Reference range (numeric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_max: Option<f64>,
    /// Current values outside [reference_min, reference_max] (numeric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_out_of_range: Option<u64>,
    /// Categories seen in current but not in reference (sorted, first 20) and the current rows holding them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub new_categories: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_rows_in_new_categories: Option<u64>,
}

/// Drift result of one column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnDrift {
    pub name: String,
    pub kind: ColumnKind,
    pub method: TestKind,
    pub score: f64,
    pub threshold: f64,
    pub drifted: bool,
    /// Non-missing values used by the test.
    pub reference_values: u64,
    pub current_values: u64,
    pub details: StatDetails,
    pub quality: ColumnQuality,
}

/// Drift of a reference/current pair of tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    /// Columns in file order.
    pub columns: Vec<ColumnDrift>,
    /// share_drifted >= drift_share
    pub dataset_drift: bool,
    pub share_drifted: f64,
    pub drift_share: f64,
    pub drifted_columns: Vec<String>,
    pub reference_rows: u64,
    pub current_rows: u64,
    /// Wall time of the computation, reading included.
    pub seconds: f64,
}
