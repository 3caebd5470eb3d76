//! Sockets: the accept loops and the per-connection read-answer-write loop.

pub mod connection;
pub mod listener;
