//! medic: durable, declarative recovery plans for distributed data systems.
//!
//! Data flows one way: `cli -> plan -> executor -> plugin`; `executor` is the only
//! writer of run state, through `store`. See ARCHITECTURE.md for the codemap.

pub mod api;
pub mod cli;
pub mod dag;
pub mod executor;
pub mod metrics;
pub mod ops;
pub mod plan;
pub mod plugin;
pub mod run;
pub mod schedule;
pub mod store;
