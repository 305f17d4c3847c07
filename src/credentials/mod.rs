//! Credential files and the key derivations behind them, shared by config
//! validation, `cutover user add` and the adapters that check logins (a
//! leaf: it imports no other module of the crate).
//!
//! - [`scram`]: SCRAM-SHA-256/512 mechanisms and stored credentials;
//! - [`kafka_users`]: the Kafka users file (`kafka.users_file`);
//! - [`rocketmq_accounts`]: the RocketMQ accounts file (`rocketmq.accounts_file`);
//! - [`secret`]: a password inline or in a file read at every use.

pub mod kafka_users;
pub mod rocketmq_accounts;
pub mod scram;
pub mod secret;
