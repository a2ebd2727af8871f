//! The DNS forwarder sandboxes resolve through: it listens on the sandboxes' gateway (UDP and
//! TCP on one port) and forwards each query, unchanged, to the host's own resolvers in order,
//! moving to the next one on a timeout, an error or `SERVFAIL`. The client gets the upstream's
//! answer byte for byte (so its id and flags are the query's).
//!
//! Queries are parsed with hickory before they are forwarded: a malformed query gets `FORMERR`
//! when its header can be read and is dropped otherwise, and responses sent to the forwarder are
//! dropped. Work is bounded: at most [`MAX_IN_FLIGHT`] queries and [`MAX_TCP_CONNECTIONS`] TCP
//! connections at once, and [`QUERY_TIMEOUT`] per query, after which the client gets `SERVFAIL`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout};

/// Most queries forwarded at once; a UDP query beyond it is dropped (the client retries), a TCP
/// query waits.
pub const MAX_IN_FLIGHT: usize = 1_024;
/// Most TCP client connections at once; more are closed on accept.
pub const MAX_TCP_CONNECTIONS: usize = 256;
/// How long one query may take over all upstreams before the client gets `SERVFAIL`.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one upstream gets before the next one is asked.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a TCP client connection may stay idle between queries.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest UDP query accepted; larger datagrams are cut, fail to parse and are dropped.
const MAX_UDP_QUERY: usize = 4_096;
/// The largest DNS message (the TCP length prefix is 16 bits).
const MAX_MESSAGE: usize = u16::MAX as usize;

/// A DNS forwarder bound on UDP and TCP; run it with [`DnsForwarder::serve`].
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// use e2b_local::network::dns::{DnsForwarder, upstreams_from_resolv_conf};
///
/// let resolv_conf = std::fs::read_to_string("/etc/resolv.conf")?;
/// let forwarder = DnsForwarder::bind(
///     "0.0.0.0:5353".parse().unwrap(),
///     upstreams_from_resolv_conf(&resolv_conf),
/// )
/// .await?;
/// tokio::spawn(forwarder.serve());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct DnsForwarder {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    upstreams: Arc<[SocketAddr]>,
}

impl DnsForwarder {
    /// Binds UDP and TCP on `addr` (with port 0, on one free port for both).
    ///
    /// # Errors
    /// The bind's error, for either socket.
    pub async fn bind(addr: SocketAddr, upstreams: Vec<SocketAddr>) -> io::Result<Self> {
        // With port 0 the kernel picks the UDP port, which TCP may already use elsewhere: retry.
        let attempts = if addr.port() == 0 { 16 } else { 1 };
        let mut last_error = None;
        for _ in 0..attempts {
            let udp = UdpSocket::bind(addr).await?;
            match TcpListener::bind(udp.local_addr()?).await {
                Ok(tcp) => {
                    return Ok(Self {
                        udp: Arc::new(udp),
                        tcp,
                        upstreams: upstreams.into(),
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no attempt to bind was made")))
    }

    /// The address both sockets are bound on.
    ///
    /// # Errors
    /// The socket's error (it has none once bound).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Answers queries until the future is dropped.
    pub async fn serve(self) {
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        tokio::join!(
            serve_udp(self.udp.clone(), self.upstreams.clone(), in_flight.clone()),
            serve_tcp(self.tcp, self.upstreams, in_flight),
        );
    }
}

/// The host's resolvers from the text of its `/etc/resolv.conf`: each `nameserver` on port 53,
/// in order, without duplicates. IPv6 link-local servers are left out: they need a zone (an
/// interface) that does not exist where the forwarder connects from.
///
/// ```
/// use e2b_local::network::dns::upstreams_from_resolv_conf;
///
/// let text = "# generated\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\noptions edns0\n";
/// assert_eq!(upstreams_from_resolv_conf(text), ["127.0.0.53:53".parse().unwrap()]);
/// ```
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut upstreams = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            // Unparsable, including addresses with a `%zone`.
            continue;
        };
        if let IpAddr::V6(v6) = ip
            && v6.is_unicast_link_local()
        {
            continue;
        }
        let upstream = SocketAddr::new(ip, 53);
        if !upstreams.contains(&upstream) {
            upstreams.push(upstream);
        }
    }
    upstreams
}

async fn serve_udp(
    socket: Arc<UdpSocket>,
    upstreams: Arc<[SocketAddr]>,
    in_flight: Arc<Semaphore>,
) {
    let mut buf = vec![0; MAX_UDP_QUERY];
    loop {
        let (len, client) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                // ICMP errors from earlier replies surface here; the socket still works.
                tracing::debug!(error = %e, "dns forwarder: udp receive failed");
                continue;
            }
        };
        let query = match check_query(&buf[..len]) {
            Checked::Forward(query) => query,
            Checked::Reply(reply) => {
                let _ = socket.send_to(&reply, client).await;
                continue;
            }
            Checked::Drop => continue,
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            tracing::debug!(%client, "dns forwarder: too many queries in flight, dropping one");
            continue;
        };
        let socket = socket.clone();
        let upstreams = upstreams.clone();
        let bytes = buf[..len].to_vec();
        tokio::spawn(async move {
            let answer = forward(&upstreams, &bytes, &query, Transport::Udp).await;
            if let Err(e) = socket.send_to(&answer, client).await {
                tracing::debug!(%client, error = %e, "dns forwarder: udp reply failed");
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, upstreams: Arc<[SocketAddr]>, in_flight: Arc<Semaphore>) {
    let connections = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "dns forwarder: tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(%client, "dns forwarder: too many tcp connections, closing one");
            continue;
        };
        let upstreams = upstreams.clone();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_tcp_connection(stream, &upstreams, &in_flight).await {
                tracing::debug!(%client, error = %e, "dns forwarder: tcp connection ended");
            }
            drop(permit);
        });
    }
}

async fn serve_tcp_connection(
    mut stream: TcpStream,
    upstreams: &[SocketAddr],
    in_flight: &Semaphore,
) -> io::Result<()> {
    loop {
        let len = match timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            // EOF between queries is how a client says it is done.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        let mut bytes = vec![0; len];
        timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut bytes))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "query body timed out"))??;
        let answer = match check_query(&bytes) {
            Checked::Forward(query) => {
                let _permit = in_flight
                    .acquire()
                    .await
                    .map_err(|_| io::Error::other("forwarder closed"))?;
                forward(upstreams, &bytes, &query, Transport::Tcp).await
            }
            Checked::Reply(reply) => reply,
            Checked::Drop => return Ok(()),
        };
        write_framed(&mut stream, &answer).await?;
    }
}

/// What to do with a message a client sent.
enum Checked {
    /// A well-formed query: forward it.
    Forward(Box<Message>),
    /// Answer this instead (`FORMERR`).
    Reply(Vec<u8>),
    /// Not a query at all.
    Drop,
}

fn check_query(bytes: &[u8]) -> Checked {
    match Message::from_vec(bytes) {
        Ok(message) if message.metadata.message_type == MessageType::Query => {
            if message.queries.len() == 1 {
                Checked::Forward(Box::new(message))
            } else {
                // Resolvers answer only single-question queries; say so instead of guessing.
                error_reply(
                    message.metadata.id,
                    message.metadata.op_code,
                    ResponseCode::FormErr,
                )
            }
        }
        Ok(_) => Checked::Drop,
        Err(_) => match Header::read(&mut BinDecoder::new(bytes)) {
            Ok(header) if header.metadata.message_type == MessageType::Query => error_reply(
                header.metadata.id,
                header.metadata.op_code,
                ResponseCode::FormErr,
            ),
            _ => Checked::Drop,
        },
    }
}

fn error_reply(id: u16, op_code: OpCode, code: ResponseCode) -> Checked {
    match Message::error_msg(id, op_code, code).to_vec() {
        Ok(bytes) => Checked::Reply(bytes),
        Err(_) => Checked::Drop,
    }
}

#[derive(Clone, Copy, Debug)]
enum Transport {
    Udp,
    Tcp,
}

/// Asks the upstreams in order; returns the first good answer, else the last `SERVFAIL` one,
/// else a `SERVFAIL` of our own.
async fn forward(
    upstreams: &[SocketAddr],
    bytes: &[u8],
    query: &Message,
    transport: Transport,
) -> Vec<u8> {
    let deadline = Instant::now() + QUERY_TIMEOUT;
    let mut servfail = None;
    for &upstream in upstreams {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let exchange = async {
            match transport {
                Transport::Udp => exchange_udp(upstream, bytes, query).await,
                Transport::Tcp => exchange_tcp(upstream, bytes, query).await,
            }
        };
        match timeout(left.min(UPSTREAM_TIMEOUT), exchange).await {
            Ok(Ok((answer, ResponseCode::ServFail))) => {
                tracing::debug!(%upstream, "dns forwarder: upstream answered SERVFAIL");
                servfail = Some(answer);
            }
            Ok(Ok((answer, _))) => return answer,
            Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "dns forwarder: upstream failed"),
            Err(_) => tracing::debug!(%upstream, "dns forwarder: upstream timed out"),
        }
    }
    servfail.unwrap_or_else(|| servfail_for(query))
}

/// Our own `SERVFAIL` for `query`, echoing its question as resolvers expect.
fn servfail_for(query: &Message) -> Vec<u8> {
    let mut reply = Message::error_msg(
        query.metadata.id,
        query.metadata.op_code,
        ResponseCode::ServFail,
    );
    reply.add_queries(query.queries.iter().cloned());
    // A message built from a parsed query always encodes; an empty datagram is the fallback.
    reply.to_vec().unwrap_or_default()
}

/// Checks an upstream's message answers `query`; returns its response code.
fn check_answer(answer: &[u8], query: &Message) -> io::Result<ResponseCode> {
    let message = Message::from_vec(answer)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad answer: {e}")))?;
    if message.metadata.message_type != MessageType::Response
        || message.metadata.id != query.metadata.id
        || message.queries != query.queries
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "answer does not match the query",
        ));
    }
    Ok(message.metadata.response_code)
}

async fn exchange_udp(
    upstream: SocketAddr,
    bytes: &[u8],
    query: &Message,
) -> io::Result<(Vec<u8>, ResponseCode)> {
    // A socket per query: a random source port, and only the upstream's datagrams come back.
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0; MAX_MESSAGE];
    loop {
        let len = socket.recv(&mut buf).await?;
        match check_answer(&buf[..len], query) {
            Ok(code) => {
                buf.truncate(len);
                return Ok((buf, code));
            }
            // A stray or forged datagram: keep waiting for the real answer.
            Err(e) => tracing::debug!(%upstream, error = %e, "dns forwarder: ignored a datagram"),
        }
    }
}

async fn exchange_tcp(
    upstream: SocketAddr,
    bytes: &[u8],
    query: &Message,
) -> io::Result<(Vec<u8>, ResponseCode)> {
    let mut stream = TcpStream::connect(upstream).await?;
    write_framed(&mut stream, bytes).await?;
    let len = usize::from(stream.read_u16().await?);
    let mut answer = vec![0; len];
    stream.read_exact(&mut answer).await?;
    let code = check_answer(&answer, query)?;
    Ok((answer, code))
}

async fn write_framed(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "message over 65535 bytes"))?;
    let mut framed = Vec::with_capacity(2 + message.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use hickory_resolver::TokioResolver;
    use hickory_resolver::config::{
        ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig, ResolverOpts,
    };
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const A_TEST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

    #[derive(Clone, Copy)]
    enum Upstream {
        /// `a.test` A 203.0.113.10, NXDOMAIN for anything else.
        Authority,
        /// SERVFAIL for everything.
        ServFail,
    }

    fn answer(kind: Upstream, query: &[u8]) -> Vec<u8> {
        let query = Message::from_vec(query).unwrap();
        let mut reply = Message::response(query.metadata.id, OpCode::Query);
        reply.metadata.recursion_desired = query.metadata.recursion_desired;
        reply.add_queries(query.queries.clone());
        let question = &query.queries[0];
        match kind {
            Upstream::ServFail => reply.metadata.response_code = ResponseCode::ServFail,
            Upstream::Authority
                if question.name() == &Name::from_ascii("a.test.").unwrap()
                    && question.query_type() == RecordType::A =>
            {
                reply.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(A_TEST)),
                ));
            }
            Upstream::Authority => reply.metadata.response_code = ResponseCode::NXDomain,
        }
        reply.to_vec().unwrap()
    }

    /// A DNS server on 127.0.0.1 (UDP and TCP, one port) counting the queries it gets.
    async fn upstream(kind: Upstream) -> (SocketAddr, Arc<AtomicUsize>) {
        // The UDP port's TCP twin may be taken by another test: try other ports.
        let (udp, addr, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            if let Ok(tcp) = TcpListener::bind(addr).await {
                break (udp, addr, tcp);
            }
        };
        let count = Arc::new(AtomicUsize::new(0));
        let udp_count = count.clone();
        tokio::spawn(async move {
            let mut buf = vec![0; 4096];
            loop {
                let (len, from) = udp.recv_from(&mut buf).await.unwrap();
                udp_count.fetch_add(1, Ordering::SeqCst);
                udp.send_to(&answer(kind, &buf[..len]), from).await.unwrap();
            }
        });
        let tcp_count = count.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = tcp.accept().await.unwrap();
                let tcp_count = tcp_count.clone();
                tokio::spawn(async move {
                    while let Ok(len) = stream.read_u16().await {
                        let mut query = vec![0; usize::from(len)];
                        stream.read_exact(&mut query).await.unwrap();
                        tcp_count.fetch_add(1, Ordering::SeqCst);
                        write_framed(&mut stream, &answer(kind, &query))
                            .await
                            .unwrap();
                    }
                });
            }
        });
        (addr, count)
    }

    /// An address nothing listens on (UDP and TCP): the kernel refuses at once.
    async fn dead_upstream() -> SocketAddr {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        drop(TcpListener::bind(addr).await.unwrap());
        addr
    }

    async fn forwarder(upstreams: Vec<SocketAddr>) -> SocketAddr {
        let forwarder = DnsForwarder::bind("127.0.0.1:0".parse().unwrap(), upstreams)
            .await
            .unwrap();
        let addr = forwarder.local_addr().unwrap();
        tokio::spawn(forwarder.serve());
        addr
    }

    fn resolver(server: SocketAddr, protocol: ProtocolConfig) -> TokioResolver {
        let mut connection = ConnectionConfig::new(protocol);
        connection.port = server.port();
        let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
            server.ip(),
            true,
            vec![connection],
        )]);
        let mut opts = ResolverOpts::default();
        opts.attempts = 1;
        opts.cache_size = 0;
        opts.timeout = Duration::from_secs(8);
        TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .unwrap()
    }

    async fn resolve_a(resolver: &TokioResolver, name: &str) -> Vec<Ipv4Addr> {
        let lookup = resolver.ipv4_lookup(name).await.unwrap();
        lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn answers_over_udp_and_tcp() {
        let (up, count) = upstream(Upstream::Authority).await;
        let fwd = forwarder(vec![up]).await;
        for protocol in [ProtocolConfig::Udp, ProtocolConfig::Tcp] {
            let resolver = resolver(fwd, protocol);
            assert_eq!(resolve_a(&resolver, "a.test.").await, [A_TEST]);
        }
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn nxdomain_passes_through() {
        let (up, _) = upstream(Upstream::Authority).await;
        let fwd = forwarder(vec![up]).await;
        for protocol in [ProtocolConfig::Udp, ProtocolConfig::Tcp] {
            let err = resolver(fwd, protocol)
                .ipv4_lookup("missing.test.")
                .await
                .unwrap_err();
            assert!(err.is_nx_domain(), "{err}");
        }
    }

    #[tokio::test]
    async fn dead_or_servfail_upstream_falls_back_to_the_next() {
        let dead = dead_upstream().await;
        let (servfail, servfail_count) = upstream(Upstream::ServFail).await;
        let (good, good_count) = upstream(Upstream::Authority).await;
        let fwd = forwarder(vec![dead, servfail, good]).await;
        for protocol in [ProtocolConfig::Udp, ProtocolConfig::Tcp] {
            assert_eq!(
                resolve_a(&resolver(fwd, protocol), "a.test.").await,
                [A_TEST]
            );
        }
        assert_eq!(servfail_count.load(Ordering::SeqCst), 2);
        assert_eq!(good_count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn silent_upstream_times_out_then_the_next_answers() {
        // Bound but never read: the query just goes unanswered.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (good, _) = upstream(Upstream::Authority).await;
        let fwd = forwarder(vec![silent.local_addr().unwrap(), good]).await;
        let started = std::time::Instant::now();
        assert_eq!(
            resolve_a(&resolver(fwd, ProtocolConfig::Udp), "a.test.").await,
            [A_TEST]
        );
        assert!(started.elapsed() >= UPSTREAM_TIMEOUT);
    }

    fn raw_query(id: u16, name: &str) -> Vec<u8> {
        let mut query = Message::query();
        query.metadata.id = id;
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        query.to_vec().unwrap()
    }

    async fn udp_exchange(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(bytes, server).await.unwrap();
        let mut buf = vec![0; MAX_MESSAGE];
        let len = timeout(Duration::from_millis(500), socket.recv(&mut buf))
            .await
            .ok()?
            .unwrap();
        Some(buf[..len].to_vec())
    }

    #[tokio::test]
    async fn answer_is_the_upstreams_bytes_with_the_clients_id() {
        let (up, _) = upstream(Upstream::Authority).await;
        let fwd = forwarder(vec![up]).await;
        let query = raw_query(0xbeef, "a.test.");
        let answer = udp_exchange(fwd, &query).await.unwrap();
        assert_eq!(answer, super::tests::answer(Upstream::Authority, &query));
        assert_eq!(answer[..2], [0xbe, 0xef]);
    }

    #[tokio::test]
    async fn no_upstream_answers_servfail() {
        let fwd = forwarder(vec![dead_upstream().await]).await;
        let answer = udp_exchange(fwd, &raw_query(7, "a.test.")).await.unwrap();
        let answer = Message::from_vec(&answer).unwrap();
        assert_eq!(answer.metadata.id, 7);
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(answer.queries.len(), 1);
    }

    #[tokio::test]
    async fn malformed_input_gets_formerr_or_is_dropped_and_the_forwarder_lives_on() {
        let (up, count) = upstream(Upstream::Authority).await;
        let fwd = forwarder(vec![up]).await;
        // Shorter than a header: dropped.
        assert_eq!(udp_exchange(fwd, &[1, 2, 3]).await, None);
        // A query header claiming a question that is not there: FORMERR with its id.
        let mut truncated = raw_query(0x1234, "a.test.");
        truncated.truncate(14);
        let reply = udp_exchange(fwd, &truncated).await.unwrap();
        let header = Header::read(&mut BinDecoder::new(&reply)).unwrap();
        assert_eq!(header.metadata.id, 0x1234);
        assert_eq!(header.metadata.message_type, MessageType::Response);
        assert_eq!(header.metadata.response_code, ResponseCode::FormErr);
        // Two questions: FORMERR.
        let mut two = Message::query();
        two.metadata.id = 9;
        two.add_query(Query::query(
            Name::from_ascii("a.test.").unwrap(),
            RecordType::A,
        ));
        two.add_query(Query::query(
            Name::from_ascii("b.test.").unwrap(),
            RecordType::A,
        ));
        let reply = udp_exchange(fwd, &two.to_vec().unwrap()).await.unwrap();
        assert_eq!(
            Message::from_vec(&reply).unwrap().metadata.response_code,
            ResponseCode::FormErr
        );
        // A response sent to the forwarder: dropped, never forwarded.
        let response = super::tests::answer(Upstream::Authority, &raw_query(5, "a.test."));
        assert_eq!(udp_exchange(fwd, &response).await, None);
        // Garbage over TCP: FORMERR, then the connection is still usable.
        let mut stream = TcpStream::connect(fwd).await.unwrap();
        write_framed(&mut stream, &truncated).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut reply = vec![0; usize::from(len)];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(
            Header::read(&mut BinDecoder::new(&reply))
                .unwrap()
                .metadata
                .response_code,
            ResponseCode::FormErr
        );
        write_framed(&mut stream, &raw_query(11, "a.test."))
            .await
            .unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut reply = vec![0; usize::from(len)];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(Message::from_vec(&reply).unwrap().metadata.id, 11);
        // Nothing malformed reached the upstream; real queries still work.
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(
            resolve_a(&resolver(fwd, ProtocolConfig::Udp), "a.test.").await,
            [A_TEST]
        );
    }

    #[test]
    fn resolv_conf_upstreams_in_order() {
        let text = "\
# comment
; another
search example.internal
nameserver 10.0.0.2
nameserver   192.0.2.53 # trailing comment
nameserver fe80::1%eth0
nameserver fe80::1
nameserver 2001:db8::53
nameserver not-an-ip
nameserver
nameserver 10.0.0.2
options edns0 trust-ad
";
        assert_eq!(
            upstreams_from_resolv_conf(text),
            [
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "192.0.2.53:53".parse().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
            ]
        );
        assert!(upstreams_from_resolv_conf("").is_empty());
    }
}
