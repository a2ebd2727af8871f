//! The address pool: one `/30` per sandbox, taken round-robin so an address is reused as
//! late as possible (stale conntrack entries and ARP caches of a killed sandbox then never
//! meet its successor). The first `/30` is no sandbox's: its first address is where every
//! sandbox sends DNS, so `/etc/resolv.conf` is the same in all of them and survives a
//! restore into another slot.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use ipnet::Ipv4Net;

/// The smallest pool: three sandboxes and the DNS address.
pub const MIN_POOL_PREFIX: u8 = 28;

/// One sandbox's `/30`: network, gateway (host side), sandbox, broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    index: u32,
    network: Ipv4Addr,
}

impl Slot {
    /// The slot's number in its pool (names the host-side interface).
    pub fn index(self) -> u32 {
        self.index
    }

    /// The host side of the veth: the sandbox's default gateway, DNS server and proxy.
    pub fn gateway(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The sandbox's own address.
    pub fn sandbox(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 2)
    }

    /// The `/30` both ends share.
    pub fn subnet(self) -> Ipv4Net {
        Ipv4Net::new(self.network, 30).unwrap_or_else(|_| unreachable!("30 is a valid prefix"))
    }
}

/// Hands out slots of a pool.
#[derive(Debug)]
pub struct Pool {
    net: Ipv4Net,
    slots: u32,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    used: BTreeSet<u32>,
    next: u32,
}

/// Why a pool cannot be used or is used up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Fewer than four `/30`s.
    #[error("network pool {0} is too small: give a prefix of /{MIN_POOL_PREFIX} or shorter")]
    TooSmall(Ipv4Net),
    /// Every slot is taken.
    #[error("network pool {0} is used up ({1} sandboxes have an address)")]
    Exhausted(Ipv4Net, u32),
}

impl Pool {
    /// A pool over `net` (its host bits are ignored).
    ///
    /// # Errors
    ///
    /// [`PoolError::TooSmall`] for a prefix longer than [`MIN_POOL_PREFIX`].
    pub fn new(net: Ipv4Net) -> Result<Self, PoolError> {
        let net = net.trunc();
        if net.prefix_len() > MIN_POOL_PREFIX {
            return Err(PoolError::TooSmall(net));
        }
        Ok(Pool {
            net,
            slots: 1u32 << (30 - net.prefix_len()),
            state: Mutex::new(PoolState::default()),
        })
    }

    /// The pool's network.
    pub fn net(&self) -> Ipv4Net {
        self.net
    }

    /// The address every sandbox's `/etc/resolv.conf` names (redirected to the server's
    /// DNS forwarder on the sandbox's own gateway).
    pub fn dns_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net.network()) + 1)
    }

    /// Takes the next free slot after the last one taken.
    ///
    /// # Errors
    ///
    /// [`PoolError::Exhausted`] when all are taken.
    pub fn take(&self) -> Result<Slot, PoolError> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Slot 0 is the DNS address's.
        let sandboxes = self.slots - 1;
        for step in 0..sandboxes {
            let index = 1 + (st.next + step) % sandboxes;
            if st.used.insert(index) {
                st.next = index % sandboxes;
                return Ok(self.slot(index));
            }
        }
        Err(PoolError::Exhausted(self.net, sandboxes))
    }

    /// Gives a slot back.
    pub fn give_back(&self, slot: Slot) {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .used
            .remove(&slot.index);
    }

    fn slot(&self, index: u32) -> Slot {
        Slot {
            index,
            network: Ipv4Addr::from(u32::from(self.net.network()) + index * 4),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_slash_30s_taken_round_robin() {
        let pool = Pool::new("10.9.0.0/28".parse().unwrap()).unwrap();
        assert_eq!(pool.dns_address(), "10.9.0.1".parse::<Ipv4Addr>().unwrap());
        let a = pool.take().unwrap();
        assert_eq!(
            (a.gateway(), a.sandbox()),
            ("10.9.0.5".parse().unwrap(), "10.9.0.6".parse().unwrap())
        );
        let b = pool.take().unwrap();
        assert_eq!(b.subnet(), "10.9.0.8/30".parse::<Ipv4Net>().unwrap());
        pool.give_back(a);
        // Not `a` again until the others were used.
        let c = pool.take().unwrap();
        assert_eq!(c.index(), 3);
        assert_eq!(pool.take().unwrap().index(), 1);
        assert_eq!(
            pool.take().unwrap_err().to_string(),
            "network pool 10.9.0.0/28 is used up (3 sandboxes have an address)"
        );
    }

    #[test]
    fn a_pool_needs_four_slots() {
        assert_eq!(
            Pool::new("10.9.0.0/29".parse().unwrap())
                .unwrap_err()
                .to_string(),
            "network pool 10.9.0.0/29 is too small: give a prefix of /28 or shorter"
        );
    }
}
