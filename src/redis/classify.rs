//! What a command does to keyspaces, as pure helpers both the command
//! router (`commands`) and MULTI/EXEC (`transaction`) use: which commands
//! write, which flush everything, and the keyspaces a write holds open.

use std::sync::Arc;

use cutover_redis::{Class, CommandSpec};

use super::keyspace::Keyspace;

/// Write commands plus scripts (which may write; read-only variants excepted).
pub(super) fn is_write(spec: &CommandSpec) -> bool {
    spec.is_write()
        || (spec.class() == Class::Scripting && !spec.name.ends_with("_ro") && spec.has_keys())
}

/// Commands that write every key of a database or of the server.
pub(super) fn flushes_everything(name: &str) -> bool {
    matches!(name, "flushall" | "flushdb" | "swapdb" | "function|flush")
}

/// The refusal of FLUSHALL, FLUSHDB, SWAPDB or FUNCTION FLUSH while a
/// keyspace converges, saying how an operator does it safely.
pub(super) fn flush_refusal(name: &str, states: &str) -> String {
    let command = name.to_uppercase().replace('|', " ");
    format!(
        "{command} is refused while a keyspace converges ({states}): it changes every key at once, on one cluster only, while the other still holds them. Roll the converging keyspaces back to source or advance them to target first, or run {command} directly on both clusters, target first, then source"
    )
}

/// Each keyspace once, in first-seen order.
pub(super) fn distinct_keyspaces<'a>(
    keyspaces: impl Iterator<Item = &'a Arc<Keyspace>>,
) -> Vec<Arc<Keyspace>> {
    let mut out: Vec<Arc<Keyspace>> = Vec::new();
    for keyspace in keyspaces {
        if !out.iter().any(|k| Arc::ptr_eq(k, keyspace)) {
            out.push(keyspace.clone());
        }
    }
    out
}

/// Ends the write each keyspace counted (its fence may then move).
pub(super) fn release(keyspaces: &[Arc<Keyspace>]) {
    for keyspace in keyspaces {
        keyspace.end_write();
    }
}
