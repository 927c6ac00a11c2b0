//! The CPU reference implementation of every op: float64 arithmetic, written for clarity.
//! Conformance tests compare every adapter against it; [`crate::Context::cpu`] runs it behind
//! the same API as the devices.

pub mod assign;
pub mod int8;
pub mod kmeans;
pub mod matmul;
pub mod noise;
pub mod observer;
pub mod pq;
pub mod pq_matmul;
pub mod ste;
