//! Table passes: the proof, checked and audited by [`Catalog::check`](crate::Catalog::check), that
//! an actor may read, write or administer one table.
//!
//! A pass can only be made inside keel-catalog, by a check that wrote its audit record, so an
//! operation that takes a `&TablePass<impl CanWrite>` cannot be reached without a write check.

use std::marker::PhantomData;

use keel_store::TableEntry;

use crate::{Actor, Permission, Via};

mod sealed {
    pub trait Sealed {}
}

/// The level of access a pass proves: [`Read`], [`Write`] or [`Admin`].
pub trait Access: sealed::Sealed + Send + Sync + 'static {
    /// The catalog permission this level needs.
    const PERMISSION: Permission;
}

/// Levels that allow reading the table's rows and catalog entry (all of them).
pub trait CanRead: Access {}

/// Levels that allow writing the table (write and admin).
pub trait CanWrite: CanRead {}

/// Read access: rows, history, catalog entry, lineage.
#[derive(Debug, Clone, Copy)]
pub struct Read;

/// Write access: appends, overwrites, compaction, catalog edits; includes reading.
#[derive(Debug, Clone, Copy)]
pub struct Write;

/// Admin access: grants and revocations; includes writing and reading.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl sealed::Sealed for Read {}
impl sealed::Sealed for Write {}
impl sealed::Sealed for Admin {}

impl Access for Read {
    const PERMISSION: Permission = Permission::Read;
}
impl Access for Write {
    const PERMISSION: Permission = Permission::Write;
}
impl Access for Admin {
    const PERMISSION: Permission = Permission::Admin;
}

impl CanRead for Read {}
impl CanRead for Write {}
impl CanRead for Admin {}
impl CanWrite for Write {}
impl CanWrite for Admin {}

/// Proof that `actor` holds at least `A` on `table`, with the catalog entry seen by the check
/// and, for a table about to be created, the team that will own it.
#[derive(Debug, Clone)]
pub struct TablePass<A: Access> {
    pub(crate) actor: Actor,
    pub(crate) table: String,
    pub(crate) via: Via,
    pub(crate) entry: Option<TableEntry>,
    /// The owner team: the entry's, or the one resolved by `check_create` for a new table.
    pub(crate) owner: Option<String>,
    pub(crate) access: PhantomData<A>,
}

impl<A: Access> TablePass<A> {
    /// The table this pass is for.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Who holds the pass.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Through which entry point the holder acts (for the audit log).
    pub fn via(&self) -> Via {
        self.via
    }

    /// The catalog entry at check time (`None`: not catalogued yet).
    pub fn entry(&self) -> Option<&TableEntry> {
        self.entry.as_ref()
    }

    /// Gives up the pass for its catalog entry.
    pub fn into_entry(self) -> Option<TableEntry> {
        self.entry
    }

    /// The team owning the table, or that will own it once its first commit is recorded.
    pub fn owner(&self) -> Option<&str> {
        self.owner
            .as_deref()
            .or(self.entry.as_ref().map(|e| e.owner_team.as_str()))
    }
}

impl<A: CanRead> TablePass<A> {
    /// A read pass for the same table (any pass allows reading).
    pub fn to_read(&self) -> TablePass<Read> {
        TablePass {
            actor: self.actor.clone(),
            table: self.table.clone(),
            via: self.via,
            entry: self.entry.clone(),
            owner: self.owner.clone(),
            access: PhantomData,
        }
    }
}
