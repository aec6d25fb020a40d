//! Pure MQTT 3.1.1 / 5.0 codec: bytes in, packets out. No I/O, no tokio.
//!
//! Decoding is a two-step state machine: the fixed header is read first and
//! its remaining length checked against the maximum packet size, so a packet
//! announced too large is refused before its body is read or buffered; only
//! then is the whole frame split off and parsed. Strings and payloads are
//! zero-copy `Bytes` slices of the frame.

mod decode;
mod encode;
mod properties;
mod reason;
pub mod topic;
mod types;

pub use decode::{DecodeError, decode};
pub use encode::{encode, encoded_len};
pub use reason::ReasonCode;
pub use types::*;
