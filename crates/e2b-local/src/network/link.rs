//! Netlink: the veth pair of each sandbox, its addresses and default route, and the host's
//! routes checked against the pool at start-up.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use nix::sched::CloneFlags;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::pool::Slot;

/// The sandbox's end of its veth.
pub const SANDBOX_IFNAME: &str = "eth0";

/// A netlink failure, naming the step.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct LinkError {
    step: String,
    #[source]
    source: io::Error,
}

fn step(step: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let step = step.into();
    move |e| LinkError {
        step,
        source: match e {
            // Keep the errno (EEXIST, ENODEV, EPERM…) for the caller and the message.
            rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
            other => io::Error::other(other),
        },
    }
}

/// A route of the host that overlaps the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    /// The route's destination.
    pub destination: Ipv4Net,
    /// Its output interface's index, if any.
    pub interface: Option<u32>,
}

/// A netlink connection to the host's network namespace (the server's own).
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a route netlink socket in the calling thread's network namespace; its
    /// connection runs on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// The socket's error.
    pub fn open() -> Result<Self, LinkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| LinkError {
            step: "opening a netlink socket".into(),
            source: e,
        })?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// Opens one inside the network namespace behind `netns`: a short-lived thread joins
    /// it and creates the socket, which keeps that namespace for its lifetime.
    ///
    /// # Errors
    ///
    /// `setns` or the socket's error.
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Self, LinkError> {
        let runtime = tokio::runtime::Handle::current();
        let fd = netns.try_clone_to_owned().map_err(|e| LinkError {
            step: "duplicating the sandbox's netns descriptor".into(),
            source: e,
        })?;
        let opened = std::thread::scope(|s| {
            s.spawn(move || {
                let _entered = runtime.enter();
                nix::sched::setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                rtnetlink::new_connection()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netns netlink thread panicked")))
        });
        let (conn, handle, _) = opened.map_err(|e| LinkError {
            step: "opening a netlink socket in the sandbox".into(),
            source: e,
        })?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// Creates the veth pair `host_ifname` (in this namespace) and `eth0` (in the namespace
    /// behind `netns`) in one request, gives the host end the gateway address and brings it
    /// up. Returns the host end's index.
    ///
    /// # Errors
    ///
    /// The failing step (an existing `host_ifname` is `EEXIST`).
    pub async fn add_veth(
        &self,
        host_ifname: &str,
        netns: BorrowedFd<'_>,
        slot: Slot,
    ) -> Result<u32, LinkError> {
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(SANDBOX_IFNAME.to_owned())
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let veth = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(
            rtnetlink::packet_route::link::InfoKind::Veth,
        )
        .name(host_ifname.to_owned())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
        self.handle
            .link()
            .add(veth)
            .execute()
            .await
            .map_err(step(format!("creating veth {host_ifname}")))?;
        let index = self.index_of(host_ifname).await?;
        self.handle
            .address()
            .add(index, IpAddr::V4(slot.gateway()), 30)
            .execute()
            .await
            .map_err(step(format!("addressing {host_ifname}")))?;
        // Up only now: a veth cannot open before both ends exist (ENOTCONN).
        self.set_up(index, host_ifname).await?;
        Ok(index)
    }

    /// Inside the sandbox: gives `eth0` the sandbox's address, brings it up and routes
    /// everything through the gateway.
    ///
    /// # Errors
    ///
    /// The failing step.
    pub async fn address_sandbox(&self, slot: Slot) -> Result<(), LinkError> {
        let index = self.index_of(SANDBOX_IFNAME).await?;
        self.handle
            .address()
            .add(index, IpAddr::V4(slot.sandbox()), 30)
            .execute()
            .await
            .map_err(step("addressing the sandbox's eth0"))?;
        self.set_up(index, SANDBOX_IFNAME).await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(slot.gateway())
            .output_interface(index)
            .build();
        self.handle
            .route()
            .add(route)
            .execute()
            .await
            .map_err(step("adding the sandbox's default route"))
    }

    /// Deletes an interface by name; one that is already gone is no error.
    ///
    /// # Errors
    ///
    /// Other netlink errors.
    pub async fn delete(&self, ifname: &str) -> Result<(), LinkError> {
        let index = match self.index_of(ifname).await {
            Ok(i) => i,
            Err(e) if is_no_device(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = step(format!("deleting {ifname}"))(e);
                if is_no_device(&e) { Ok(()) } else { Err(e) }
            }
        }
    }

    /// Names of the interfaces starting with `prefix`.
    ///
    /// # Errors
    ///
    /// The dump's error.
    pub async fn names_with_prefix(&self, prefix: &str) -> Result<Vec<String>, LinkError> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(step("listing interfaces"))?;
        Ok(links
            .iter()
            .filter_map(|l| {
                l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) if n.starts_with(prefix) => Some(n.clone()),
                    _ => None,
                })
            })
            .collect())
    }

    /// IPv4 routes of any table whose destination overlaps `pool` (the default route
    /// does not count: it overlaps everything and is how sandboxes get out).
    ///
    /// # Errors
    ///
    /// The dump's error.
    pub async fn routes_overlapping(&self, pool: Ipv4Net) -> Result<Vec<HostRoute>, LinkError> {
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(step("listing routes"))?;
        Ok(routes
            .iter()
            .filter_map(|r| {
                let len = r.header.destination_prefix_length;
                let addr = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(*a),
                    _ => None,
                })?;
                let destination = Ipv4Net::new(addr, len).ok()?.trunc();
                let overlaps = destination.contains(&pool.network()) || pool.contains(&addr);
                (len > 0 && overlaps).then(|| HostRoute {
                    destination,
                    interface: r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Oif(i) => Some(*i),
                        _ => None,
                    }),
                })
            })
            .collect())
    }

    /// The name of interface `index`.
    ///
    /// # Errors
    ///
    /// The lookup's error.
    pub async fn name_of(&self, index: u32) -> Result<String, LinkError> {
        let link: Option<LinkMessage> = self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await
            .map_err(step(format!("looking up interface {index}")))?;
        Ok(link
            .and_then(|l| {
                l.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n),
                    _ => None,
                })
            })
            .unwrap_or_else(|| format!("#{index}")))
    }

    async fn set_up(&self, index: u32, ifname: &str) -> Result<(), LinkError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(step(format!("bringing {ifname} up")))
    }

    async fn index_of(&self, ifname: &str) -> Result<u32, LinkError> {
        let link: Option<LinkMessage> = self
            .handle
            .link()
            .get()
            .match_name(ifname.to_owned())
            .execute()
            .try_next()
            .await
            .map_err(step(format!("looking up {ifname}")))?;
        link.map(|l| l.header.index).ok_or_else(|| LinkError {
            step: format!("looking up {ifname}"),
            source: io::Error::from_raw_os_error(libc::ENODEV),
        })
    }
}

fn is_no_device(e: &LinkError) -> bool {
    e.source.raw_os_error() == Some(libc::ENODEV)
}
