"""The compat suite's fake internet: servers run.sh starts inside its "internet" namespace.

Standard library only (run with the system's python3). Every socket binds an address of
the test-made namespace (203.0.113.0/24, TEST-NET-3), nothing else:

  203.0.113.10:80, 203.0.113.11:80  HTTP: every request is answered 200 with the JSON
                                    {"server", "host", "method", "path", "headers"}
                                    (header names lowercased), i.e. what the server saw.
  203.0.113.53:53 (UDP)             DNS: A records a.test, b.test -> 203.0.113.10,
                                    c.test -> 203.0.113.11; no data for other types of
                                    those names; NXDOMAIN for every other name.

Prints `ready` once every socket is bound, then serves until killed.
"""

import json
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTTP_ADDRS = ["203.0.113.10", "203.0.113.11"]
DNS_ADDR = "203.0.113.53"
ZONE = {"a.test": "203.0.113.10", "b.test": "203.0.113.10", "c.test": "203.0.113.11"}


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {
                "server": self.server.server_address[0],
                "host": self.headers.get("Host"),
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            },
            sort_keys=True,
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _answer

    def log_message(self, fmt, *args):
        sys.stderr.write("http %s %s\n" % (self.server.server_address[0], fmt % args))


def dns_reply(query):
    """The answer to one DNS query (bytes), or None when it is not a query we can parse."""
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    labels, i = [], 12
    while True:
        if i >= len(query):
            return None
        n = query[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0 or i + n > len(query):
            return None
        labels.append(query[i : i + n].decode("ascii", "replace").lower())
        i += n
    if i + 4 > len(query):
        return None
    qtype, qclass = struct.unpack("!HH", query[i : i + 4])
    question = query[12 : i + 4]
    name = ".".join(labels)
    answers = b""
    rcode = 0
    if name not in ZONE:
        rcode = 3  # NXDOMAIN
    elif qtype == 1 and qclass == 1:
        answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(ZONE[name])
    # QR, the query's opcode and RD, RA, rcode.
    rflags = 0x8000 | (flags & 0x7900) | 0x0080 | rcode
    header = struct.pack("!HHHHHH", qid, rflags, 1, 1 if answers else 0, 0, 0)
    return header + question + answers


def serve_dns(sock):
    while True:
        data, peer = sock.recvfrom(4096)
        reply = dns_reply(data)
        if reply is not None:
            sys.stderr.write("dns %s\n" % peer[0])
            sock.sendto(reply, peer)


def main():
    servers = [ThreadingHTTPServer((addr, 80), Echo) for addr in HTTP_ADDRS]
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind((DNS_ADDR, 53))
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    threads.append(threading.Thread(target=serve_dns, args=(dns,), daemon=True))
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
