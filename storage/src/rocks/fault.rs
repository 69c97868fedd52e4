//! Fault injection for tests of tamper evidence and corruption handling: changes stored bytes the way
//! a disk error or an attacker with file access would. The server never calls this.

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, DB};
use rookery_events::Position;

use super::schema::{ALL, LOG};
use super::{backend, cf, cf_options, db_options, split_record};
use crate::{Result, StorageError};

/// XORs `mask` into byte `offset` of the body of the record at `position`, in a log that no process
/// has open.
///
/// # Errors
/// [`StorageError::Invalid`] when there is no such record or byte; [`StorageError::Backend`] when the
/// log cannot be opened (for example, a server holds it).
pub fn flip_body_byte(path: &Path, position: Position, offset: usize, mask: u8) -> Result<()> {
    let cfs = ALL.iter().map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n)));
    let db = DB::open_cf_descriptors(&db_options(), path, cfs).map_err(backend)?;
    let log = cf(&db, LOG)?;
    let key = position.0.to_be_bytes();
    let mut value = db.get_cf(log, key).map_err(backend)?.ok_or_else(|| StorageError::Invalid(format!("no record at position {position}")))?;
    let body_offset = split_record(position, &value)?.body_offset;
    let byte = value.get_mut(body_offset + offset).ok_or_else(|| StorageError::Invalid(format!("record {position} has no body byte {offset}")))?;
    *byte ^= mask;
    db.put_cf(log, key, value).map_err(backend)?;
    db.flush_wal(true).map_err(backend)
}
