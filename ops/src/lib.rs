//! The operator side of Vectis: the `vectis` CLI (each subcommand turns its
//! arguments into one library call) and the relay process.

pub mod cli;
pub mod import;
pub mod read_side;
pub mod relay_process;
pub mod snapshots;
pub mod workflows;
