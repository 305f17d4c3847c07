//! The migration core: states, the pure transition function, the durable
//! store, the live registry sessions consult per request, and the controller
//! that runs an operator's advance/rollback. It knows no protocol, config
//! format or metrics system: adapters and `app` wire those in.
//!
//! - [`state`]: the five states and the actions between them;
//! - [`machine`]: the pure transition function and its checks' results;
//! - [`registry`]: topic handles (state read with one atomic load) per migration;
//! - [`control`]: the controller (checks, prepare, commit, publish, applied);
//! - [`driver`]: what a protocol adapter provides to the controller;
//! - [`observer`]: what the core reports (registrations, states, outcomes);
//! - [`store`]: durable state, history and the admin action log.

pub mod control;
pub mod driver;
pub mod machine;
pub mod observer;
pub mod registry;
pub mod state;
pub mod store;

pub use control::{ControlError, Controller, Outcome, Selection};
pub use driver::Driver;
pub use machine::{CheckKind, CheckResult, Refusal, TopicRecord, Transition};
pub use observer::{Observer, Unobserved};
pub use registry::{MigrationHandle, MigrationSpec, TopicHandle};
pub use state::{Action, State};
