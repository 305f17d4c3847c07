//! Kafka SASL on both sides of the proxy: the proxy logging in to each
//! cluster (`client`, with the cluster's `auth` or a client's mapped
//! principal, `identity`), and clients logging in to the proxy (`server`,
//! against `users`). The exchanges are in `scram` and `scram_server`, on the
//! credentials of `crate::credentials`.

pub(crate) mod client;
pub(crate) mod identity;
pub(crate) mod scram;
pub(crate) mod scram_server;
pub(crate) mod server;
pub mod users;
