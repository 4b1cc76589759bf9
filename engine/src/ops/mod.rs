//! `ops` closes the operations loop around runs: alerts in (`alert`: the rule an
//! alert matches and the params it renders; the webhooks are in `api::hooks`),
//! notifications out (`notice`: which run events notify which channels and the
//! payload of each format; `deliver`: the outbox sender), escalation by severity
//! tiers (`escalate`), and documents for people (`doc`: a plan as a runbook;
//! `report`: a run as a postmortem). `alert`, `notice`, `doc` and `report` are pure;
//! `deliver` and `escalate` are the two background tasks of `medic serve`, reading
//! and writing only through `store`, with time from the executor's clock.

pub mod alert;
pub mod deliver;
pub mod doc;
pub mod escalate;
pub mod notice;
pub mod report;
