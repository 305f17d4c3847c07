//! Which of a migration's two clusters: every protocol routes to one or
//! the other, and labels metrics and logs with it.

/// Which real cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The cluster being migrated from.
    Source,
    /// The cluster being migrated to.
    Target,
}

impl Side {
    /// `source` / `target`, for metrics and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}
