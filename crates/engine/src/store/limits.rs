//! The `clone_limits` table: each clone's own CPU and memory limits, kept beside its record so
//! that a restart starts its server with them again.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use crate::quota::CloneLimits;

/// Records `limits` as clone `id`'s, or forgets them when there are none.
pub(super) fn write_limits(
    connection: &Connection,
    id: &str,
    limits: &CloneLimits,
) -> rusqlite::Result<()> {
    if limits.is_empty() {
        return delete_limits(connection, id);
    }
    connection.execute(
        "INSERT INTO clone_limits (clone_id, cpu, memory) VALUES (?1, ?2, ?3)
         ON CONFLICT (clone_id) DO UPDATE SET cpu = excluded.cpu, memory = excluded.memory",
        params![id, limits.cpu, limits.memory.map(|bytes| bytes as i64)],
    )?;
    Ok(())
}

/// Forgets clone `id`'s limits.
pub(super) fn delete_limits(connection: &Connection, id: &str) -> rusqlite::Result<()> {
    connection.execute("DELETE FROM clone_limits WHERE clone_id = ?1", [id])?;
    Ok(())
}

/// Every clone's limits, by clone ID.
pub(super) fn all_limits(
    connection: &Connection,
) -> rusqlite::Result<HashMap<String, CloneLimits>> {
    let mut statement = connection.prepare("SELECT clone_id, cpu, memory FROM clone_limits")?;
    let rows = statement.query_map([], |row| {
        let memory: Option<i64> = row.get(2)?;
        Ok((
            row.get::<_, String>(0)?,
            CloneLimits { cpu: row.get(1)?, memory: memory.map(|bytes| bytes as u64) },
        ))
    })?;
    rows.collect()
}
