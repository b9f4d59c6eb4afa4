//! Tables that other operations name: a model version's training data (a lineage edge from the
//! table's version to the model version) and a monitored deployment's reference table. Each is
//! checked here, once, for every transport: `keel model push` and `POST /v1/models/NAME/versions`,
//! `keel deployment apply` and `PUT /v1/deployments/NAME`.

use serde_json::json;

use crate::{Caller, DataError, Read, Result, Workspace};

impl Workspace {
    /// When `reference` names a catalogued table (`NAME`, `NAME@vN`, `table/NAME[@vN]`,
    /// `table:NAME[@vN]`), checks that `caller` may read it for training (audited as `train`)
    /// and returns its lineage node `table/NAME@vN` (the latest version when none is given),
    /// which [`record_trained_on`](Self::record_trained_on) links to the pushed version. Any
    /// other reference (a path, a query, a table outside the catalog) is kept by the registry as
    /// text only: `None`.
    pub async fn training_source(&self, caller: &Caller, reference: &str) -> Result<Option<String>> {
        let bare = reference
            .strip_prefix("table/")
            .or_else(|| reference.strip_prefix("table:"))
            .unwrap_or(reference);
        let (table, version) = keel_lake::split_version(bare).unwrap_or((bare, None));
        if self.catalog.store().table_entry(table).await?.is_none() {
            return Ok(None);
        }
        self.check::<Read>(caller, table, "train", json!({ "reference": reference }))
            .await?;
        let version = match version {
            Some(v) => Some(v),
            None => self.lake.history(table).await?.first().map(|v| v.version),
        };
        Ok(Some(match version {
            Some(v) => format!("table/{table}@v{v}"),
            None => format!("table/{table}"),
        }))
    }

    /// Records that `model` version `version` was trained on `source` (a node from
    /// [`training_source`](Self::training_source)), by `caller`.
    pub async fn record_trained_on(&self, caller: &Caller, source: &str, model: &str, version: i64) -> Result<()> {
        let target = format!("model/{model}/{version}");
        self.catalog
            .store()
            .add_lineage(source, &target, "trained_on", caller.name())
            .await?;
        Ok(())
    }

    /// A monitored deployment's reference table: `caller`, who applies the deployment, must be
    /// able to read it (the server then samples it on their behalf; audited as
    /// `monitor_reference`), and it must be a table of the lake.
    pub async fn check_monitor_reference(&self, caller: &Caller, table: &str, deployment: &str) -> Result<()> {
        self.check::<Read>(caller, table, "monitor_reference", json!({ "deployment": deployment }))
            .await?;
        if !self.lake.exists(table).await? {
            return Err(DataError::Invalid(format!(
                "monitor.reference {table:?} is not a table of the lake: ingest the training data first (`keel data ingest FILE --table {table}`)"
            )));
        }
        Ok(())
    }
}
