//! The tag byte that opens every request and response.

pub(super) const HELLO: u8 = 0x01;
pub(super) const CREATE: u8 = 0x02;
pub(super) const SECURE: u8 = 0x03;
pub(super) const SEND: u8 = 0x04;
pub(super) const SUBSCRIBE: u8 = 0x05;
pub(super) const ACK: u8 = 0x06;
pub(super) const DELETE: u8 = 0x07;
pub(super) const FETCH_RELAY_KEY: u8 = 0x10;
pub(super) const FORWARD: u8 = 0x11;
pub(super) const RELAY_DELIVER: u8 = 0x12;
pub(super) const FORWARD_STATUS: u8 = 0x13;

pub(super) const OK: u8 = 0x40;
pub(super) const HELLO_OK: u8 = 0x41;
pub(super) const CREATED: u8 = 0x42;
pub(super) const STORED: u8 = 0x43;
pub(super) const DELIVER: u8 = 0x44;
pub(super) const ENDED: u8 = 0x45;
pub(super) const RELAY_KEY: u8 = 0x46;
pub(super) const QUEUED: u8 = 0x47;
pub(super) const FORWARD_STATUS_OK: u8 = 0x48;
pub(super) const ERROR: u8 = 0x7f;
