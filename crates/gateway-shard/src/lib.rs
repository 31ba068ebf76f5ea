#![doc = include_str!("../README.md")]

/// The role's name: the same for the crate, the CLI, the metric label and the Kubernetes object.
pub const ROLE: &str = "gateway-shard";
