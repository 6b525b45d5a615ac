//! The operator side of Vectis: the `vectis` CLI (each subcommand turns its
//! arguments into one library call) and the relay process.

pub mod archive;
pub mod audit;
pub mod cli;
pub mod events;
pub mod import;
pub mod progress;
pub mod read_side;
pub mod relay_process;
pub mod reset;
pub mod snapshots;
pub mod workflows;
