//! The integration tests, as one test binary (linking one binary instead of one per file
//! keeps the suite's build short): each module was a `tests/*.rs` file of its own.

mod common;

mod bad_input;
mod cancel;
mod chaos;
mod cli;
mod cluster;
mod contract_meta;
mod contract_seven;
mod contract_wazzup;
mod contract_whaapy;
mod dedupe_props;
mod deploy;
mod dlq;
mod flow;
mod inbound;
mod mock_gateway;
mod ops;
mod pipeline;
mod process;
mod python_example;
mod receipts;
mod schema;
