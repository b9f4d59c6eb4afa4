//! A report read by more than its own figures: broken down by a context feature
//! ([`segments`](super::segments)) and adjusted by a pre-period covariate
//! ([`cuped`](super::cuped)), both over one outcome. One operation for every transport: the REST
//! report (`?segment_by=&cuped=&outcome=`) and `keel experiment report` on the store.

use serde::{Deserialize, Serialize};

use super::cuped::cuped;
use super::ope::OpeOutcome;
use super::segments::segments;
use super::source::LogSource;
use super::{OfflineError, Result};
use crate::{DeploymentSpec, Deployments, Report};

/// What to read from the decision log besides the report's own figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Breakdown {
    /// A context feature to break the report down by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_by: Option<String>,
    /// A numeric context feature measured before the test, to adjust a fixed-weight test's
    /// differences by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuped: Option<String>,
    /// What both compare: `reward` (the default: the decision metric), `net` (minus the chosen
    /// variant's cost) or another declared metric.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

impl Breakdown {
    /// Nothing asked besides the report.
    pub fn is_empty(&self) -> bool {
        self.segment_by.is_none() && self.cuped.is_none()
    }

    /// An outcome without a breakdown to compare it in is refused (the report itself shows every
    /// metric).
    pub fn validate(&self) -> Result<()> {
        if self.outcome.is_some() && self.is_empty() {
            return Err(OfflineError::InvalidArgument {
                name: "outcome",
                reason:
                    "chooses what segment_by and cuped compare; give one of them (the report itself shows every metric)"
                        .into(),
            });
        }
        Ok(())
    }

    /// Reads `log` (of a deployment under `spec`) for each part asked and sets
    /// `report.segments` and `report.cuped`. Reads files or the database: call it on a blocking
    /// thread.
    pub fn fill(&self, log: LogSource, spec: &DeploymentSpec, report: &mut Report) -> Result<()> {
        self.validate()?;
        if self.is_empty() {
            return Ok(());
        }
        let outcome = OpeOutcome::named(self.outcome.as_deref(), spec)?;
        if let Some(feature) = &self.segment_by {
            report.segments = Some(segments(log.clone(), spec, feature, &outcome)?);
        }
        if let Some(covariate) = &self.cuped {
            report.cuped = Some(cuped(log, spec, covariate, &outcome)?);
        }
        Ok(())
    }

    /// [`fill`](Self::fill) for deployment `name` as this process serves it (its running spec
    /// and its log, wherever it lives).
    pub fn fill_running(&self, deployments: &Deployments, name: &str, report: &mut Report) -> Result<()> {
        self.validate()?;
        if self.is_empty() {
            return Ok(());
        }
        let engine = deployments.get(name)?;
        let spec = engine.with_inner(|inner| inner.spec.clone())?;
        self.fill(LogSource::of_running(&engine), &spec, report)
    }
}
