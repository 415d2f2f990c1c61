//! The `clone_limits` table: each clone's own CPU, memory and disk limits, kept beside its record so
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
        "INSERT INTO clone_limits (clone_id, cpu, memory, disk) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (clone_id) DO UPDATE
         SET cpu = excluded.cpu, memory = excluded.memory, disk = excluded.disk",
        params![id, limits.cpu, limits.memory.map(to_sql), limits.disk.map(to_sql)],
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
    let mut statement =
        connection.prepare("SELECT clone_id, cpu, memory, disk FROM clone_limits")?;
    let rows = statement.query_map([], |row| {
        let memory: Option<i64> = row.get(2)?;
        let disk: Option<i64> = row.get(3)?;
        Ok((
            row.get::<_, String>(0)?,
            CloneLimits {
                cpu: row.get(1)?,
                memory: memory.map(from_sql),
                disk: disk.map(from_sql),
            },
        ))
    })?;
    rows.collect()
}

/// A byte count as SQLite's signed integer (limits are checked far below `i64::MAX`).
fn to_sql(bytes: u64) -> i64 {
    bytes as i64
}

fn from_sql(bytes: i64) -> u64 {
    bytes as u64
}
