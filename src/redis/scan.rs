//! Walking a cluster's keys: which databases hold keys (INFO keyspace) and
//! one SCAN step at a time, shared by backfill and verify.

use bytes::Bytes;
use cutover_redis::encode;

use super::copier::bulk_payload;
use super::shared::Shared;
use super::side::{self, Mirror, Side, SideConn};
use super::slots::array_elements;

/// Opens a plain RESP2 connection to `side` on database `db`.
///
/// # Errors
/// A sentence naming the cluster.
pub async fn connect(shared: &Shared, side: Side, db: u32) -> Result<SideConn, String> {
    let mirror = Mirror {
        protocol: 2,
        db,
        name: Some(Bytes::from_static(b"cutover-scan")),
    };
    side::open(
        &shared.upstreams[side.index()],
        &shared.credentials[side.index()],
        &mirror,
        &shared.limits,
    )
    .await
    .map_err(|e| e.to_string())
}

/// `(db, keys)` for every database holding keys, from `INFO keyspace`.
///
/// # Errors
/// When the cluster cannot be asked.
pub async fn databases(shared: &Shared, side: Side) -> Result<Vec<(u32, u64)>, String> {
    let mut conn = connect(shared, side, 0).await?;
    let reply = side::call(
        &mut conn,
        &shared.limits,
        &encode::command(&[b"INFO", b"keyspace"]),
    )
    .await?;
    let text = bulk_payload(&reply).ok_or_else(|| {
        format!(
            "unexpected INFO reply {:?}",
            String::from_utf8_lossy(&reply)
        )
    })?;
    Ok(parse_keyspace_info(&String::from_utf8_lossy(&text)))
}

fn parse_keyspace_info(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .filter_map(|line| {
            let (db, fields) = line.strip_prefix("db")?.split_once(':')?;
            let keys = fields.split(',').find_map(|f| f.strip_prefix("keys="))?;
            Some((db.parse().ok()?, keys.parse().ok()?))
        })
        .collect()
}

/// One `SCAN cursor COUNT count`: the next cursor and the keys returned.
///
/// # Errors
/// When the exchange fails or the reply is not a SCAN reply.
pub async fn step(
    shared: &Shared,
    conn: &mut SideConn,
    cursor: u64,
    count: usize,
) -> Result<(u64, Vec<Bytes>), String> {
    let command = encode::command(&[
        b"SCAN",
        cursor.to_string().as_bytes(),
        b"COUNT",
        count.to_string().as_bytes(),
    ]);
    let reply = side::call(conn, &shared.limits, &command).await?;
    let parts = array_elements(&reply);
    let next = parts
        .first()
        .and_then(bulk_payload)
        .and_then(|c| std::str::from_utf8(&c).ok()?.parse().ok())
        .ok_or_else(|| {
            format!(
                "unexpected SCAN reply {:?}",
                String::from_utf8_lossy(&reply)
            )
        })?;
    let keys = parts
        .get(1)
        .map(array_elements)
        .unwrap_or_default()
        .iter()
        .filter_map(bulk_payload)
        .collect();
    Ok((next, keys))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keyspace_info_lists_databases_with_keys() {
        let info =
            "# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\ndb3:keys=4,expires=0,avg_ttl=0\r\n";
        assert_eq!(super::parse_keyspace_info(info), vec![(0, 12), (3, 4)]);
    }
}
