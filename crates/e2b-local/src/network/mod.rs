//! Sandbox networking: egress rules, the DNS forwarder and the transparent egress proxy.

pub mod dns;
pub mod proxy;
pub mod rules;
