//! Sockets: the shard's listening sockets, its socket loop over one io_uring
//! (`driver`), each connection's state (`conn`), and the sans-IO answering of
//! the frames a connection received (`frames`).

pub mod buffers;
pub mod conn;
pub mod driver;
pub mod frames;
pub mod listener;
