#!/usr/bin/python3
"""xs-probe-guestdir.py - xs-probe.py with the guest reached through xensim's --guest-dir.

A copy of ../shared/oracle/xs-probe.py (keep it in sync) that differs only in how the
unprivileged guest (domain 5) talks to the server: instead of the fake shared-ring files of the
oracle's xs-shim.so (RINGDIR/ring-5, RINGDIR/evtchn), it connects to the Unix socket GUESTDIR/5
that `xensim xenstored --guest-dir GUESTDIR` opens once dom0 has introduced domain 5, and which IS
domain 5's xenstore connection. Every request, and the order and timing of all requests, is that
of xs-probe.py, so the whole transcript must equal the stored results of the real daemons.

Transport notes (GuestSocketConn below):
* The socket is looked for after INTRODUCE, where the original maps the ring file; connecting is
  retried for up to 2 s in case the server creates it just after replying.
* A ring has no end-of-file: after RELEASE the real daemons simply stop serving the page, and the
  guest sees silence. xensim closes the guest socket instead, so an EOF on it reads as silence
  (noted on stderr), and a send on a closed socket is dropped like a write into a dead ring.
  A server that closes the guest connection too early still shows up in the transcript, as
  "<no reply within 2s>" for the next guest request.

    usage: xs-probe-guestdir.py SOCKET [GUESTDIR] > transcript.txt

--- the original description follows ---

xs-probe.py - raw-wire XenStore behaviour probe for differential testing.

Sends a fixed script of requests (incl. malformed ones) over the Unix socket
and prints every message received, in arrival order, as a transcript:

    usage: xs-probe.py SOCKET [RINGDIR] > transcript.txt
           diff <(xs-probe.py A) <(xs-probe.py B)

With RINGDIR (the server's XS_SHIM_RINGDIR, start.sh uses SOCKET.rings) it
also introduces domain 5 and talks as that unprivileged guest over the shared
ring page (permission checks, guest-relative paths, watch filtering).

Transaction ids are printed symbolically (tx#1, tx#2, ...) and the
DIRECTORY_PART generation as <gen>, so transcripts of different servers can
be diffed.  Run it against a freshly started server (it assumes an empty
store apart from the server's own nodes).  Stdlib only (no pyxs).
"""
import ctypes
import mmap
import os
import select
import socket
import struct
import sys
import time

HDR = struct.Struct("<IIII")  # type, req_id, tx_id, len
OPS = ["CONTROL", "DIRECTORY", "READ", "GET_PERMS", "WATCH", "UNWATCH",
       "TRANSACTION_START", "TRANSACTION_END", "INTRODUCE", "RELEASE",
       "GET_DOMAIN_PATH", "WRITE", "MKDIR", "RM", "SET_PERMS", "WATCH_EVENT",
       "ERROR", "IS_DOMAIN_INTRODUCED", "RESUME", "SET_TARGET", "RESTRICT",
       "RESET_WATCHES", "DIRECTORY_PART"]
OP = {name: i for i, name in enumerate(OPS)}
TX = {0: "0"}


def txname(t):
    if t not in TX:
        TX[t] = "tx#%d" % len(TX)
    return TX[t]


def show(b):
    b = bytes(b)
    if len(b) > 80:
        return "%s...(%d bytes)" % (repr(b[:40])[1:], len(b))
    return repr(b)[1:]


class Conn:
    """Client on the Unix socket (always privileged, domid 0)."""

    def __init__(self, path, name):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.name = name
        self.rid = 0
        self.buf = b""

    def _send(self, data):
        self.s.sendall(data)

    def _recv(self, timeout):
        """Bytes available within timeout; None on timeout, b"" on EOF."""
        r, _, _ = select.select([self.s], [], [], timeout)
        if not r:
            return None
        try:
            return self.s.recv(65536)
        except ConnectionResetError:
            return b""

    def _recv_msg(self, timeout):
        while True:
            if len(self.buf) >= HDR.size:
                ty, rid, tx, ln = HDR.unpack_from(self.buf)
                if len(self.buf) >= HDR.size + ln:
                    body = self.buf[HDR.size:HDR.size + ln]
                    self.buf = self.buf[HDR.size + ln:]
                    return ty, rid, tx, body
            chunk = self._recv(timeout)
            if chunk is None:
                return None
            if not chunk:
                return "EOF"
            self.buf += chunk

    def _print(self, m):
        if m == "EOF":
            print("  %s << <connection closed>" % self.name)
            return
        ty, rid, tx, body = m
        op = OPS[ty] if ty < len(OPS) else str(ty)
        if op == "DIRECTORY_PART" and b"\0" in body:  # generation varies
            body = b"<gen>" + body[body.index(b"\0"):]
        print("  %s << %-18s rid=%d tx=%s %s" % (self.name, op, rid,
                                                txname(tx), show(body)))

    def req(self, op, payload=b"", tx=0, wait=0.05):
        """Send one request, print everything that arrives until the reply
        (matching req_id) and then for `wait` more seconds."""
        self.rid += 1
        ty = OP[op] if isinstance(op, str) else op
        opname = op if isinstance(op, str) else str(op)
        print("%s >> %-18s rid=%d tx=%s %s" % (self.name, opname, self.rid,
                                              txname(tx), show(payload)))
        try:
            self._send(HDR.pack(ty, self.rid, tx, len(payload)) + payload)
        except OSError as e:
            print("  %s << <send failed: %s>" % (self.name, e.strerror))
            return "EOF"
        reply = None
        while True:
            m = self._recv_msg(2.0 if reply is None else wait)
            if m is None:
                if reply is None:
                    print("  %s << <no reply within 2s>" % self.name)
                return reply
            self._print(m)
            if m == "EOF":
                return m
            if m[1] == self.rid and m[0] != OP["WATCH_EVENT"]:
                reply = m

    def drain(self, wait=0.1):
        while True:
            m = self._recv_msg(wait)
            if m is None:
                return
            self._print(m)
            if m == "EOF":
                return


class GuestSocketConn(Conn):
    """Guest `domid` on its own Unix socket GUESTDIR/<domid> (xensim --guest-dir): the server
    treats it as that domain's connection (unprivileged, paths relative to /local/domain/<domid>).
    Replaces RingConn; see the module docstring for how EOF maps to a ring's silence."""

    def __init__(self, guestdir, domid, name):
        path = "%s/%d" % (guestdir, domid)
        deadline = time.monotonic() + 2.0
        while True:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.s.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.s.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
        self.name = name
        self.rid = 0
        self.buf = b""
        self.closed = False

    def _send(self, data):
        if self.closed:
            return
        try:
            self.s.sendall(data)
        except OSError as e:
            self.closed = True
            sys.stderr.write("%s: send failed (%s); treated as a dead ring\n" % (self.name, e.strerror))

    def _recv(self, timeout):
        if self.closed:
            time.sleep(timeout)
            return None
        r, _, _ = select.select([self.s], [], [], timeout)
        if not r:
            return None
        try:
            data = self.s.recv(65536)
        except ConnectionResetError:
            data = b""
        if data:
            return data
        self.closed = True
        sys.stderr.write("%s: server closed the guest socket; treated as a silent ring\n" % self.name)
        return None


class RingConn(Conn):
    """Fake guest `domid` on the shared ring page (struct
    xenstore_domain_interface) exported by xs-shim.so via XS_SHIM_RINGDIR."""
    RING = 1024
    REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD = 2048, 2052, 2056, 2060

    def __init__(self, ringdir, domid, name):
        fd = os.open("%s/ring-%d" % (ringdir, domid), os.O_RDWR)
        self.m = mmap.mmap(fd, 4096, mmap.MAP_SHARED)
        os.close(fd)
        # Ring indexes need single aligned 32-bit accesses: struct packs byte by byte, and a
        # server that sees a torn index marks the ring broken for good.
        self.words = {off: ctypes.c_uint32.from_buffer(self.m, off) for off in (2048, 2052, 2056, 2060)}
        self.kick_fd = os.open(ringdir + "/evtchn", os.O_WRONLY | os.O_NONBLOCK)
        self.port = struct.pack("<I", 1000 + domid)
        self.name = name
        self.rid = 0
        self.buf = b""

    def _idx(self, off):
        return self.words[off].value

    def _set_idx(self, off, v):
        self.words[off].value = v & 0xFFFFFFFF

    def _kick(self):
        try:
            os.write(self.kick_fd, self.port)
        except BlockingIOError:
            pass

    def _send(self, data):
        while data:
            prod = self._idx(self.REQ_PROD)
            space = self.RING - ((prod - self._idx(self.REQ_CONS)) & 0xFFFFFFFF)
            if not space:
                self._kick()
                time.sleep(0.0005)
                continue
            off = prod % self.RING
            n = min(space, self.RING - off, len(data))
            self.m[off:off + n] = data[:n]
            self._set_idx(self.REQ_PROD, prod + n)   # x86: stores in order
            data = data[n:]
        self._kick()

    def _recv(self, timeout):
        end = time.monotonic() + timeout
        while True:
            cons = self._idx(self.RSP_CONS)
            avail = (self._idx(self.RSP_PROD) - cons) & 0xFFFFFFFF
            if avail:
                off = cons % self.RING
                n = min(avail, self.RING - off)
                data = self.m[self.RING + off:self.RING + off + n]
                self._set_idx(self.RSP_CONS, cons + n)
                self._kick()                          # ring had room again
                return data
            if time.monotonic() >= end:
                return None
            time.sleep(0.0005)


def tx_of(reply):
    return int(reply[3].rstrip(b"\0"))


def main():
    path = sys.argv[1]
    a = Conn(path, "A")
    b = Conn(path, "B")
    Z = b"\0"

    print("## basic read/write/directory")
    a.req("READ", b"/probe/none\0")
    a.req("WRITE", b"/probe/a\0v1")
    a.req("READ", b"/probe/a\0")
    a.req("READ", b"/probe\0")
    a.req("DIRECTORY", b"/probe\0")
    a.req("DIRECTORY", b"/probe/none\0")
    a.req("WRITE", b"/probe/empty\0")
    a.req("READ", b"/probe/empty\0")
    a.req("READ", b"/probe/a")            # no trailing NUL
    a.req("GET_PERMS", b"/probe/a\0")
    a.req("GET_PERMS", b"/probe/none\0")
    a.req("MKDIR", b"/probe/a\0")
    a.req("MKDIR", b"/probe/m/n\0")
    a.req("DIRECTORY", b"/probe\0")
    a.req("DIRECTORY_PART", b"/probe\0" + b"0\0")
    a.req("DIRECTORY", b"/\0")

    print("## relative paths and path validation")
    a.req("WRITE", b"rel\0x")
    a.req("READ", b"/local/domain/0/rel\0")
    for p in [b"", b"/probe/", b"//probe", b"/probe//a", b"/pro be",
              b"/probe/a-b_c@d", b"/probe/\xc3\xa9", b"@foo", b"/" + b"x" * 3100]:
        a.req("READ", p + Z)
    a.req("WRITE", b"/probe/v\0" + b"\0\x01binary\0")
    a.req("READ", b"/probe/v\0")

    print("## rm")
    a.req("RM", b"/probe/none\0")
    a.req("RM", b"/probe/x/y\0")
    a.req("RM", b"/probe/m\0")

    print("## permissions")
    a.req("SET_PERMS", b"/probe/a\0n1\0r0\0w5\0b6\0")
    a.req("GET_PERMS", b"/probe/a\0")
    a.req("SET_PERMS", b"/probe/a\0x1\0")
    a.req("SET_PERMS", b"/probe/a\0")
    a.req("SET_PERMS", b"/probe/none\0n0\0")
    a.req("WRITE", b"/probe/a/child\0c")
    a.req("GET_PERMS", b"/probe/a/child\0")
    a.req("SET_PERMS", b"/probe/a\0n0\0")

    print("## domains")
    a.req("GET_DOMAIN_PATH", b"5\0")
    a.req("GET_DOMAIN_PATH", b"abc\0")
    a.req("IS_DOMAIN_INTRODUCED", b"0\0")
    a.req("IS_DOMAIN_INTRODUCED", b"7\0")

    print("## watches")
    a.req("WATCH", b"/probe\0tok\0")
    a.req("WATCH", b"/probe\0tok\0")
    a.req("WATCH", b"/probe\0tok2\0")
    a.req("WATCH", b"rel\0rtok\0")
    a.req("WATCH", b"/nonexistent/deep\0ntok\0")
    b.req("WRITE", b"/probe/a\0v2")
    b.req("WRITE", b"/probe/a\0v2")      # same value again
    b.req("WRITE", b"rel\0y")
    b.req("WRITE", b"/nonexistent/deep/er\0z")
    b.req("MKDIR", b"/probe/a\0")        # exists: event?
    b.req("WRITE", b"/probe/d/e\0f")
    b.req("RM", b"/probe/d\0")
    b.req("SET_PERMS", b"/probe/a\0n0\0")
    b.req("RM", b"/nonexistent\0")
    a.drain()
    a.req("UNWATCH", b"/probe\0tok2\0")
    a.req("UNWATCH", b"/probe\0nosuch\0")
    a.req("WATCH", b"@introduceDomain\0intro\0")
    a.req("WATCH", b"@releaseDomain\0rel\0")
    a.req("WATCH", b"@bogus\0x\0")

    print("## transactions")
    t1 = tx_of(a.req("TRANSACTION_START", b"\0"))
    a.req("READ", b"/probe/a\0", tx=t1)
    a.req("WRITE", b"/probe/a\0in-tx", tx=t1)
    b.req("READ", b"/probe/a\0")
    a.req("WRITE", b"/probe/tnew\0n", tx=t1)
    a.req("DIRECTORY", b"/probe\0", tx=t1)
    a.req("TRANSACTION_END", b"T\0", tx=t1)
    b.req("READ", b"/probe/a\0")
    t2 = tx_of(a.req("TRANSACTION_START", b"\0"))
    a.req("READ", b"/probe/a\0", tx=t2)
    b.req("WRITE", b"/probe/a\0conflict")
    a.req("WRITE", b"/probe/a\0mine", tx=t2)
    a.req("TRANSACTION_END", b"T\0", tx=t2)
    a.req("READ", b"/probe/a\0", tx=t2)
    t3 = tx_of(a.req("TRANSACTION_START", b"\0"))
    a.req("WRITE", b"/probe/ab\0x", tx=t3)
    a.req("TRANSACTION_END", b"F\0", tx=t3)
    a.req("READ", b"/probe/ab\0")
    a.req("TRANSACTION_END", b"T\0", tx=12345)
    a.req("READ", b"/probe/a\0", tx=12345)
    t4 = tx_of(a.req("TRANSACTION_START", b"\0"))
    a.req("TRANSACTION_END", b"X\0", tx=t4)
    a.req("TRANSACTION_END", b"T\0", tx=t4)
    t5 = tx_of(a.req("TRANSACTION_START", b"\0"))
    a.req("TRANSACTION_START", b"\0", tx=t5)
    a.req("TRANSACTION_END", b"T\0", tx=t5)

    print("## domain introduction")
    a.req("INTRODUCE", b"3\0" + b"1234\0" + b"7\0")
    a.req("IS_DOMAIN_INTRODUCED", b"3\0")
    a.req("INTRODUCE", b"3\0" + b"1234\0" + b"0\0")
    a.req("SET_TARGET", b"3\0" + b"0\0")
    a.req("RESUME", b"3\0")
    a.req("RELEASE", b"3\0")
    a.req("RELEASE", b"3\0")
    a.req("IS_DOMAIN_INTRODUCED", b"3\0")

    print("## misc / malformed")
    a.req("CONTROL", b"print\0hello\0")
    a.req("RESET_WATCHES", b"")
    b.req("WRITE", b"/probe/a\0after-reset")
    a.req(99, b"junk\0")
    a.req("ERROR", b"x\0")
    a.req("WATCH_EVENT", b"/probe\0tok\0")
    a.req("WRITE", b"/probe/big\0" + b"x" * (4096 - 11))
    a.req("READ", b"/probe/big\0", wait=0.05)
    a.req("RM", b"/probe\0")
    a.req("RM", b"rel\0")
    a.req("WRITE", b"/probe/huge\0" + b"x" * 5000)
    if len(sys.argv) > 2:
        guest(Conn(path, "D"), sys.argv[2])   # argv[2]: GUESTDIR instead of RINGDIR

    print("## destructive: rm of the root node (last, oxenstored allows it)")
    b.req("RM", b"/\0")
    b.req("DIRECTORY", b"/\0")


def guest(a, guestdir):
    """a: fresh dom0 socket connection."""
    print("## unprivileged guest domain 5 over the shared ring")  # same header as the original
    a.req("WRITE", b"/local/domain/5\0")
    a.req("SET_PERMS", b"/local/domain/5\0n0\0r5\0")
    a.req("WRITE", b"/local/domain/5/data\0")
    a.req("SET_PERMS", b"/local/domain/5/data\0n5\0")
    a.req("WRITE", b"/local/domain/0/backend/x\0be")
    a.req("SET_PERMS", b"/local/domain/0/backend\0n0\0r5\0")
    a.req("WATCH", b"@introduceDomain\0i\0")
    a.req("INTRODUCE", b"5\0" + b"4711\0" + b"9\0")
    g = GuestSocketConn(guestdir, 5, "G")
    g.req("READ", b"name\0")
    g.req("READ", b"/local/domain/5\0")
    g.req("WRITE", b"data/x\0" + b"1")
    g.req("GET_PERMS", b"data/x\0")
    g.req("WRITE", b"name\0" + b"guest")
    g.req("MKDIR", b"/local/domain/5\0")
    g.req("READ", b"/tool/xenstored\0")
    g.req("READ", b"/tool/none\0")
    g.req("READ", b"/none/deeper\0")
    g.req("DIRECTORY", b"/local/domain\0")
    g.req("DIRECTORY", b"/local/domain/0/backend\0")
    g.req("READ", b"/local/domain/0/backend/x\0")
    g.req("GET_PERMS", b"/local/domain/0/backend/x\0")
    g.req("RM", b"/local/domain/5/data/x\0")
    g.req("RM", b"/local/domain/0/backend\0")
    g.req("GET_DOMAIN_PATH", b"5\0")
    g.req("GET_DOMAIN_PATH", b"0\0")
    g.req("IS_DOMAIN_INTRODUCED", b"5\0")
    g.req("INTRODUCE", b"6\0" + b"1\0" + b"2\0")
    g.req("RELEASE", b"5\0")
    g.req("CONTROL", b"print\0x\0")
    g.req("WATCH", b"data\0gtok\0")
    g.req("WATCH", b"/tool\0ptok\0")
    g.req("WATCH", b"@releaseDomain\0grel\0")
    a.req("WRITE", b"/local/domain/5/data/y\0" + b"from-dom0")
    a.req("WRITE", b"/tool/secret\0" + b"s")
    g.drain(0.2)
    g.req("SET_PERMS", b"data\0n5\0r0\0")
    g.req("SET_PERMS", b"data\0n0\0")
    g.req("WRITE", b"data/z\0" + b"1")
    t = g.req("TRANSACTION_START", b"\0")
    if t and t != "EOF" and t[0] == OP["TRANSACTION_START"]:
        g.req("READ", b"data/y\0", tx=tx_of(t))
        g.req("WRITE", b"/local/domain/5/data/y\0" + b"t", tx=tx_of(t))
        g.req("TRANSACTION_END", b"T\0", tx=tx_of(t))
    a.req("RELEASE", b"5\0")
    g.drain(0.2)
    a.req("RM", b"/local/domain/5\0")
    a.req("RM", b"/local/domain/0/backend\0")
    a.req("RM", b"/tool/secret\0")


if __name__ == "__main__":
    main()
