//! Cluster test helpers.
