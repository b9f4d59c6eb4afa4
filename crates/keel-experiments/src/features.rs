//! Features: the context's (sent with every decide) and the variants' own (declared once in the
//! spec, for policies that share one model across variants), their validation and their
//! encoding into the numbers the policies see.

use crate::spec::{DeploymentSpec, FeatureSpec};
use crate::{DeploymentError, Result};
use keel_bandit::PolicyState;

/// Encodes `values` under `schema`: numbers as given, categories one-hot over their levels
/// (an unknown level encodes as zeros). `what` names the values in messages ("context",
/// "variant 'a'"), `owner` who declares the schema ("this deployment").
fn encode(
    schema: &[FeatureSpec],
    values: &serde_json::Map<String, serde_json::Value>,
    what: &str,
    owner: &str,
) -> std::result::Result<Vec<f64>, String> {
    let mut out = Vec::with_capacity(schema.iter().map(FeatureSpec::width).sum());
    for f in schema {
        let value = values.get(f.name()).ok_or_else(|| {
            format!(
                "{what} is missing feature '{}'; {owner} needs {}",
                f.name(),
                names(schema)
            )
        })?;
        match f {
            FeatureSpec::Numeric { name } => {
                let v = value
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("{what} feature '{name}' must be a finite number, got {value}"))?;
                out.push(v);
            }
            FeatureSpec::Categorical { name, levels } => {
                let v = value.as_str().ok_or_else(|| {
                    format!("{what} feature '{name}' must be a string (one of {levels:?}), got {value}")
                })?;
                out.extend(levels.iter().map(|l| if l == v { 1.0 } else { 0.0 }));
            }
        }
    }
    if let Some(extra) = values.keys().find(|k| !schema.iter().any(|f| f.name() == k.as_str())) {
        return Err(format!(
            "{what} has unknown feature '{}'; {owner} knows {}",
            extra.escape_default(),
            names(schema)
        ));
    }
    Ok(out)
}

fn names(schema: &[FeatureSpec]) -> String {
    schema
        .iter()
        .map(|f| format!("'{}'", f.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names empty or repeated, categories without levels.
fn schema_problems(schema: &[FeatureSpec], what: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, f) in schema.iter().enumerate() {
        if f.name().trim().is_empty() {
            problems.push(format!("{what} {} has an empty name", i + 1));
        }
        if schema[..i].iter().any(|o| o.name() == f.name()) {
            problems.push(format!("{what} '{}' appears twice", f.name()));
        }
        if let FeatureSpec::Categorical { name, levels } = f
            && levels.is_empty()
        {
            problems.push(format!("categorical feature '{name}' needs at least one level"));
        }
    }
    problems
}

impl DeploymentSpec {
    /// Encodes a JSON object of feature values into the policy's context vector.
    pub fn encode_context(&self, context: Option<&serde_json::Map<String, serde_json::Value>>) -> Result<Vec<f64>> {
        if self.context.is_empty() {
            return Ok(Vec::new());
        }
        let Some(context) = context else {
            return Err(DeploymentError::InvalidRequest(format!(
                "this deployment needs a context with the features {}",
                names(&self.context)
            )));
        };
        encode(&self.context, context, "context", "this deployment").map_err(DeploymentError::InvalidRequest)
    }

    /// Encoded width of the variants' features.
    pub fn action_feature_width(&self) -> usize {
        self.action_features.iter().map(FeatureSpec::width).sum()
    }

    /// Every serving variant's encoded features, in arm order; `None` when the deployment
    /// declares no `action_features`.
    pub fn action_feature_rows(&self) -> Result<Option<Vec<Vec<f64>>>> {
        if self.action_features.is_empty() {
            return Ok(None);
        }
        self.arms()
            .into_iter()
            .map(|i| {
                self.variant_features(i)
                    .map_err(|e| DeploymentError::InvalidSpec(vec![e]))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn variant_features(&self, i: usize) -> std::result::Result<Vec<f64>, String> {
        let v = &self.variants[i];
        let what = format!("variant '{}'", v.name);
        match &v.features {
            Some(values) => encode(
                &self.action_features,
                values,
                &what,
                "every serving variant of this deployment",
            ),
            None => Err(format!(
                "{what} has no \"features\"; give every serving variant its values of {}",
                names(&self.action_features)
            )),
        }
    }

    /// The problems of the context's and the variants' features (reported with the rest of
    /// the spec's).
    pub(crate) fn feature_problems(&self) -> Vec<String> {
        let mut problems = schema_problems(&self.context, "context feature");
        problems.extend(self.action_feature_problems());
        problems
    }

    fn action_feature_problems(&self) -> Vec<String> {
        let mut problems = schema_problems(&self.action_features, "action feature");
        if self.action_features.is_empty() {
            for v in self.variants.iter().filter(|v| v.features.is_some()) {
                problems.push(format!(
                    "variant '{}' has \"features\" but the deployment declares no \"action_features\"; declare them (numeric or categorical, like \"context\")",
                    v.name
                ));
            }
        } else if problems.is_empty() {
            for i in self.arms() {
                if let Err(e) = self.variant_features(i) {
                    problems.push(e);
                }
            }
        }
        if self.policy.is_shared() {
            if self.action_features.is_empty() {
                problems.push(format!(
                    "policy: {} with \"shared\": true learns over the variants' features; declare \"action_features\" and give every variant its \"features\"",
                    self.policy.name()
                ));
            }
            let d = (self.feature_width() + 1) * (self.action_feature_width() + 1);
            if d.saturating_mul(d) > keel_bandit::MAX_MATRIX_ENTRIES {
                problems.push(format!(
                    "policy: {} context values times {} action feature values need more than {} matrix entries; use fewer features",
                    self.feature_width(),
                    self.action_feature_width(),
                    keel_bandit::MAX_MATRIX_ENTRIES
                ));
            }
        }
        problems
    }

    /// A fresh policy state for this spec: over the variants' features when they have some.
    pub fn new_policy(&self) -> Result<PolicyState> {
        let width = self.feature_width();
        Ok(match self.action_feature_rows()? {
            Some(rows) => PolicyState::with_action_features(self.policy.clone(), width, rows)?,
            None => PolicyState::new(self.policy.clone(), self.arms().len(), width)?,
        })
    }
}
