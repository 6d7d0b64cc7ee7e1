//! modelgate's shared types: the LiteLLM config schema both binaries read and write, and
//! the Kubernetes resources (`ModelDeployment`, `ModelGroupAlias`) the operator reconciles.

pub mod config;
