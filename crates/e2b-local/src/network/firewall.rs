//! The server's nftables table: NAT out of the host, the fences every sandbox has, and one
//! chain per sandbox holding its `allowOut`/`denyOut` addresses.
//!
//! Scripts go to `nft -f -` as text. Every value in them is typed (`Ipv4Net`, `Ipv4Addr`,
//! `u16`, a slot number and the interface prefix made of hex digits), so no string from a
//! request ever reaches nft; domain rules are the proxy's, not nftables'. Text keeps the
//! rules readable in `nft list table inet <name>` exactly as written here.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

/// Destinations no sandbox reaches, whatever its rules: "this" network, loopback,
/// link-local (cloud metadata lives at 169.254.169.254), multicast and reserved.
pub const FORBIDDEN: [Ipv4Net; 5] = [
    Ipv4Net::new_assert(Ipv4Addr::new(0, 0, 0, 0), 8),
    Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8),
    Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16),
    Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4),
    Ipv4Net::new_assert(Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// The server's table and the ports its sandboxes' DNS and domain traffic are sent to.
#[derive(Debug, Clone)]
pub struct Firewall {
    /// `e2b_local_<tag>`.
    pub table: String,
    /// Host-side interfaces are `<prefix><slot>`.
    pub ifprefix: String,
    /// The address pool (also forbidden as a destination: sandboxes never reach each other).
    pub pool: Ipv4Net,
    /// The address in every sandbox's `/etc/resolv.conf`.
    pub dns_address: Ipv4Addr,
    /// Where udp/tcp 53 to `dns_address` goes (the forwarder, on the sandbox's gateway).
    pub dns_port: u16,
    /// Where tcp 80/443 of proxied sandboxes, and all tcp of tunneled ones, goes.
    pub proxy_port: u16,
    /// Forbidden to sandboxes besides [`FORBIDDEN`] and the pool (`NetworkOptions::unreachable`).
    pub unreachable: Vec<Ipv4Net>,
}

/// One sandbox's egress rules as nftables sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxRules {
    /// Always allowed (`allowOut` addresses, and the DNS servers when a domain is allowed).
    pub allowed: Vec<Ipv4Net>,
    /// Denied unless allowed.
    pub denied: Vec<Ipv4Net>,
    /// TCP 80 and 443 go through the egress proxy (domain entries or header rules).
    pub proxied: bool,
    /// Every TCP connection goes through the egress proxy (to its `egressProxy`), and every
    /// other packet that would leave the host is refused.
    pub tunneled: bool,
}

impl SandboxRules {
    /// No chain is needed: everything goes out directly.
    pub fn is_open(&self) -> bool {
        self.allowed.is_empty() && self.denied.is_empty() && !self.proxied && !self.tunneled
    }
}

/// `nft` failed.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The binary could not be run.
    #[error("running nft (install the nftables package, or serve with --network none): {0}")]
    Spawn(#[source] std::io::Error),
    /// nft refused the script.
    #[error("nft refused the rules ({what}): {stderr}")]
    Refused {
        /// What the script was for.
        what: String,
        /// nft's own message.
        stderr: String,
    },
}

impl Firewall {
    /// The whole table, replacing any earlier one of the same name (a crashed run's).
    pub fn table_script(&self) -> String {
        let Firewall {
            table,
            ifprefix,
            pool,
            dns_address,
            dns_port,
            proxy_port,
            unreachable: _,
        } = self;
        let sbx = format!("\"{ifprefix}*\"");
        let forbidden = join(&self.forbidden());
        format!(
            "table inet {table}
delete table inet {table}
table inet {table} {{
    set proxied {{ type ipv4_addr; }}
    set tunneled {{ type ipv4_addr; }}
    map egress {{ type ipv4_addr : verdict; }}

    chain spoofing {{
        type filter hook prerouting priority raw; policy accept;
        iifname {sbx} meta nfproto ipv6 drop
        iifname {sbx} fib saddr . iif oif missing drop
    }}

    chain to_services {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname {sbx} ip daddr {dns_address} meta l4proto {{ tcp, udp }} th dport 53 redirect to :{dns_port}
        iifname {sbx} ip saddr @tunneled fib daddr type != local meta l4proto tcp redirect to :{proxy_port}
        iifname {sbx} ip saddr @proxied fib daddr type != local tcp dport {{ 80, 443 }} redirect to :{proxy_port}
    }}

    chain input {{
        type filter hook input priority filter; policy accept;
        iifname {sbx} ct status dnat meta l4proto {{ tcp, udp }} th dport {{ {dns_port}, {proxy_port} }} accept
        iifname {sbx} meta l4proto tcp reject with tcp reset
        iifname {sbx} reject with icmpx type admin-prohibited
        meta l4proto {{ tcp, udp }} th dport {{ {dns_port}, {proxy_port} }} drop
    }}

    chain forward {{
        type filter hook forward priority filter; policy accept;
        oifname {sbx} ct state established,related accept
        oifname {sbx} reject with icmpx type admin-prohibited
        iifname {sbx} ip daddr {{ {forbidden} }} reject with icmpx type admin-prohibited
        iifname {sbx} ip saddr @tunneled meta l4proto tcp reject with tcp reset
        iifname {sbx} ip saddr @tunneled reject with icmpx type admin-prohibited
        iifname {sbx} ip saddr vmap @egress
    }}

    chain source_nat {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {pool} oifname != {sbx} masquerade
    }}
}}
"
        )
    }

    /// Every destination no sandbox may reach: [`FORBIDDEN`], the pool and `unreachable`.
    pub fn forbidden(&self) -> Vec<Ipv4Net> {
        FORBIDDEN
            .iter()
            .copied()
            .chain([self.pool])
            .chain(self.unreachable.iter().copied())
            .collect()
    }

    /// Installs (or replaces) the table.
    ///
    /// # Errors
    ///
    /// [`FirewallError`] with nft's message.
    pub fn install(&self) -> Result<(), FirewallError> {
        run_nft(&self.table_script(), "the server's table")
    }

    /// Removes the table (at shutdown).
    pub fn uninstall(&self) {
        let _ = run_nft(
            &format!("table inet {0}\ndelete table inet {0}\n", self.table),
            "removing the table",
        );
    }

    /// The script that gives sandbox `addr` (slot `slot`) exactly `rules` in place of
    /// `previous` (nft 1.0.6 has no "delete if present", so what exists must be known).
    pub fn sandbox_script(
        &self,
        slot: u32,
        addr: Ipv4Addr,
        rules: &SandboxRules,
        previous: &SandboxRules,
    ) -> String {
        let table = &self.table;
        let chain = format!("sandbox_{slot}");
        let mut s = String::new();
        if !previous.is_open() {
            let _ = writeln!(s, "delete element inet {table} egress {{ {addr} }}");
            let _ = writeln!(s, "delete chain inet {table} {chain}");
        }
        if previous.proxied {
            let _ = writeln!(s, "delete element inet {table} proxied {{ {addr} }}");
        }
        if previous.tunneled {
            let _ = writeln!(s, "delete element inet {table} tunneled {{ {addr} }}");
        }
        if rules.is_open() {
            return s;
        }
        let _ = writeln!(s, "add chain inet {table} {chain}");
        if !rules.allowed.is_empty() {
            let _ = writeln!(
                s,
                "add rule inet {table} {chain} ip daddr {{ {} }} accept",
                join(&rules.allowed)
            );
        }
        if !rules.denied.is_empty() {
            let denied = join(&rules.denied);
            let _ = writeln!(
                s,
                "add rule inet {table} {chain} ip daddr {{ {denied} }} meta l4proto tcp reject with tcp reset"
            );
            let _ = writeln!(
                s,
                "add rule inet {table} {chain} ip daddr {{ {denied} }} reject with icmpx type admin-prohibited"
            );
        }
        let _ = writeln!(
            s,
            "add element inet {table} egress {{ {addr} : jump {chain} }}"
        );
        if rules.proxied {
            let _ = writeln!(s, "add element inet {table} proxied {{ {addr} }}");
        }
        if rules.tunneled {
            let _ = writeln!(s, "add element inet {table} tunneled {{ {addr} }}");
        }
        s
    }

    /// Applies [`sandbox_script`](Self::sandbox_script) as one transaction.
    ///
    /// # Errors
    ///
    /// [`FirewallError`] with nft's message; nothing changed then.
    pub fn apply_sandbox(
        &self,
        slot: u32,
        addr: Ipv4Addr,
        rules: &SandboxRules,
        previous: &SandboxRules,
    ) -> Result<(), FirewallError> {
        let script = self.sandbox_script(slot, addr, rules, previous);
        if script.is_empty() {
            return Ok(());
        }
        run_nft(&script, &format!("sandbox {addr}"))
    }
}

/// A tool the network code runs (`nft`, `conntrack`): found in the sbin directories too,
/// which a rootless server's `PATH` may lack; else the bare name (the spawn error names it).
pub(super) fn tool(name: &str) -> std::path::PathBuf {
    crate::isolation::rootless::find_in_path(name).unwrap_or_else(|| name.into())
}

fn join(nets: &[Ipv4Net]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs one script through `nft -f -`: all of it applies, or none.
fn run_nft(script: &str, what: &str) -> Result<(), FirewallError> {
    let mut child = Command::new(tool("nft"))
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(FirewallError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(FirewallError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(FirewallError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FirewallError::Refused {
            what: what.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fw() -> Firewall {
        Firewall {
            table: "e2b_local_test".into(),
            ifprefix: "e2bt".into(),
            pool: "10.9.0.0/16".parse().unwrap(),
            dns_address: "10.9.0.1".parse().unwrap(),
            dns_port: 5353,
            proxy_port: 15001,
            unreachable: vec!["192.0.2.7/32".parse().unwrap()],
        }
    }

    #[test]
    fn an_open_sandbox_needs_no_chain() {
        let open = SandboxRules::default();
        let addr = "10.9.0.14".parse().unwrap();
        assert_eq!(fw().sandbox_script(3, addr, &open, &open), "");
        let proxied = SandboxRules {
            proxied: true,
            ..SandboxRules::default()
        };
        assert_eq!(
            fw().sandbox_script(3, addr, &open, &proxied),
            "delete element inet e2b_local_test egress { 10.9.0.14 }\n\
             delete chain inet e2b_local_test sandbox_3\n\
             delete element inet e2b_local_test proxied { 10.9.0.14 }\n"
        );
    }

    #[test]
    fn allowed_addresses_come_before_denied_ones() {
        let rules = SandboxRules {
            allowed: vec!["203.0.113.7/32".parse().unwrap()],
            denied: vec!["0.0.0.0/0".parse().unwrap()],
            proxied: true,
            tunneled: false,
        };
        let s = fw().sandbox_script(
            3,
            "10.9.0.14".parse().unwrap(),
            &rules,
            &SandboxRules::default(),
        );
        let accept = s.find("203.0.113.7/32 } accept").unwrap();
        let reject = s.find("0.0.0.0/0 } meta l4proto tcp reject").unwrap();
        assert!(accept < reject, "{s}");
        assert!(
            s.contains("add element inet e2b_local_test egress { 10.9.0.14 : jump sandbox_3 }")
        );
        assert!(s.contains("add element inet e2b_local_test proxied { 10.9.0.14 }"));
    }

    #[test]
    fn a_tunneled_sandbox_joins_and_leaves_the_tunneled_set() {
        let addr = "10.9.0.14".parse().unwrap();
        let tunneled = SandboxRules {
            tunneled: true,
            ..SandboxRules::default()
        };
        assert_eq!(
            fw().sandbox_script(3, addr, &tunneled, &SandboxRules::default()),
            "add chain inet e2b_local_test sandbox_3\n\
             add element inet e2b_local_test egress { 10.9.0.14 : jump sandbox_3 }\n\
             add element inet e2b_local_test tunneled { 10.9.0.14 }\n"
        );
        assert_eq!(
            fw().sandbox_script(3, addr, &SandboxRules::default(), &tunneled),
            "delete element inet e2b_local_test egress { 10.9.0.14 }\n\
             delete chain inet e2b_local_test sandbox_3\n\
             delete element inet e2b_local_test tunneled { 10.9.0.14 }\n"
        );
        let table = fw().table_script();
        // All of its TCP goes to the proxy; what still reaches forward (other protocols, and
        // connections opened before the tunnel was switched on) is refused.
        assert!(table.contains(
            "iifname \"e2bt*\" ip saddr @tunneled fib daddr type != local meta l4proto tcp redirect to :15001"
        ));
        assert!(table.contains(
            "iifname \"e2bt*\" ip saddr @tunneled reject with icmpx type admin-prohibited"
        ));
        // The extra unreachable addresses are fenced like the fixed ones.
        assert!(table.contains("240.0.0.0/4, 10.9.0.0/16, 192.0.2.7/32 } reject"));
    }
}
