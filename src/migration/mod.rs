//! The migration core: states, the pure transition function, the durable
//! store, the live registry sessions consult per request, and the controller
//! that runs an operator's advance/rollback.

pub mod control;
pub mod driver;
pub mod machine;
pub mod pattern;
pub mod recall;
pub mod registry;
pub mod state;
pub mod store;

pub use control::{ControlError, Controller, Outcome, Selection};
pub use driver::Driver;
pub use machine::{CheckKind, CheckResult, Refusal, TopicRecord, Transition};
pub use registry::{MigrationHandle, TopicHandle};
pub use state::{Action, State};
