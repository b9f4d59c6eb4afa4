//! The data library: lake tables behind the catalog's rules.
//!
//! keel-data owns the operations on data that both transports offer: ingest a file into a
//! table, SQL with a read check on every table it names, versions, rows, a table's card
//! (schema, catalog entry, grants, lineage), listing, search, lineage, catalog edits and
//! compaction, export to a CSV or Parquet file, drift between two tables or files, a table's
//! feasibility assessment, and the checks on tables other operations name (a pushed model's
//! training data, a monitor's reference: `uses`). The CLI (`keel data ...`) and the REST API
//! (`/v1/data/...`) only turn flags or requests into a [`Caller`] and a call here, then format
//! the answer: one operation, two transports.
//!
//! Every table operation takes a [`TablePass`] from keel-catalog, which only a check that wrote
//! its audit record can produce: [`Workspace::check`] for an existing table, and
//! [`Catalog::check_create`] (inside [`Workspace::ingest`] and [`Workspace::check_create`]) for a
//! table about to be written for the first time. A read pass cannot write: the write operations
//! take `&TablePass<impl CanWrite>`:
//!
//! ```no_run
//! # async fn f(ws: &keel_data::Workspace, pass: keel_data::TablePass<keel_data::Write>) {
//! let _ = ws.compact_table(&pass, None, None).await;
//! # }
//! ```
//!
//! ```compile_fail,E0277
//! # async fn f(ws: &keel_data::Workspace, pass: keel_data::TablePass<keel_data::Read>) {
//! let _ = ws.compact_table(&pass, None, None).await;
//! # }
//! ```

mod analysis;
mod error;
mod export;
mod ingest;
mod read;
mod tables;
mod uses;

use keel_catalog::{Access, Actor, Catalog, Via};
use keel_lake::Lake;

pub use analysis::{DriftInput, assess_files, drift_files, parquet_file};
pub use error::{DataError, Result};
pub use export::{ExportFormat, Exported};
pub use ingest::{Ingest, Ingested};
pub use keel_catalog::{Admin, CanRead, CanWrite, Read, TablePass, Write};
pub use read::{Lineage, TableCard, Version};
pub use tables::{Describe, SearchHit};

/// Who is acting, and through which transport (for the audit log).
#[derive(Debug, Clone)]
pub struct Caller {
    actor: Actor,
    via: Via,
}

impl Caller {
    /// The acting principal with their teams.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The acting principal's name.
    pub fn name(&self) -> &str {
        &self.actor.name
    }

    /// The transport the caller came through.
    pub fn via(&self) -> Via {
        self.via
    }
}

/// The lake and the catalog that guards it: the handle every data operation runs on.
#[derive(Debug, Clone)]
pub struct Workspace {
    catalog: Catalog,
    lake: Lake,
}

impl Workspace {
    /// A workspace over `lake`, guarded by `catalog`.
    pub fn new(catalog: Catalog, lake: Lake) -> Workspace {
        Workspace { catalog, lake }
    }

    /// The catalog's rules.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The lake, for reads that need no pass (listing table names) and for tests.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// The caller acting on the command line as `principal` (created on first sight).
    pub async fn cli_caller(&self, principal: &str) -> Result<Caller> {
        Ok(Caller {
            actor: self.catalog.actor(principal).await?,
            via: Via::Cli,
        })
    }

    /// The caller acting over the API as `principal`, whom the server authenticated (keel-auth)
    /// before calling.
    pub async fn api_caller(&self, principal: &str) -> Result<Caller> {
        Ok(Caller {
            actor: self.catalog.actor(principal).await?,
            via: Via::Api,
        })
    }

    /// Checks (and audits) that `caller` holds `A` on `table` for `action`.
    pub async fn check<A: Access>(
        &self,
        caller: &Caller,
        table: &str,
        action: &str,
        details: serde_json::Value,
    ) -> Result<TablePass<A>> {
        Ok(self
            .catalog
            .check::<A>(&caller.actor, table, action, caller.via, details)
            .await?)
    }

    /// A write pass for `table` whether or not it exists yet (see [`Catalog::check_create`]):
    /// a new table is owned by `owner`, else the caller's only team.
    pub async fn check_create(
        &self,
        caller: &Caller,
        table: &str,
        owner: Option<&str>,
        details: serde_json::Value,
    ) -> Result<TablePass<Write>> {
        keel_lake::validate_table_name(table)?;
        let in_lake = self.lake.exists(table).await?;
        Ok(self
            .catalog
            .check_create(&caller.actor, table, owner, in_lake, "write", caller.via, details)
            .await?)
    }
}
