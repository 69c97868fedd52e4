//! Black-box tests: the real `rookery` binary on ephemeral ports with a temporary data directory,
//! driven over real sockets.

mod abuse;
mod audit;
mod backup;
mod conversation;
mod durability;
mod families;
mod faults;
pub(crate) mod gateway;
mod history;
mod jmessage;
mod jssdk;
mod lookup;
mod openim;
mod ops;
mod popim;
mod rest;
mod send_path;
mod streams;
mod support;
mod tls;
mod webhook;
