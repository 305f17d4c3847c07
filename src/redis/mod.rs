//! Redis sessions (placeholder while the codec lands).
use crate::config::Config;
use crate::migration::{Controller, MigrationHandle};
use crate::proxy::Shutdown;
use std::sync::Arc;
/// Starts the Redis listener.
///
/// # Errors
/// Bind failures.
pub async fn start(
    _c: &Config,
    _m: Arc<MigrationHandle>,
    _ctl: Arc<Controller>,
    _s: Shutdown,
) -> Result<(), std::io::Error> {
    Ok(())
}
