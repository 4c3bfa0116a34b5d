#!/usr/bin/python3
"""xs-difffuzz.py - differential fuzzer: a real xenstored (reference) vs xensim xenstored.

From a seed it generates a random but reproducible script of XenStore requests over several
connections: 2-3 dom0 socket connections (A, B, C) and 1-2 unprivileged guests (G = domain 5,
H = domain 6, set up by dom0 first: home with `n0 r<N>`, `data` owned by the guest, INTRODUCE).
The script is run against both servers (in parallel, each in its own thread), each run prints a
transcript in the format of ../shared/oracle/xs-probe.py, and the first differing line is
reported with the preceding context. Exit status: 0 equal, 1 difference, 2 usage/setup error.

Transports: the reference's guests talk through the oracle shim's ring files (SOCK.rings/ring-N,
kicked through SOCK.rings/evtchn, indexes written as whole 32-bit words); xensim's guests through
its --guest-dir sockets (DIR/N). A guest is (re)connected lazily after dom0's INTRODUCE of it
got OK. A released domain's ring or socket just goes silent on both servers.

Determinism: every request waits for its reply (4 s limit, printed as "<no reply within 4s>"),
then every connection is synchronised in the fixed order A B C G H - an unprinted GET_DOMAIN_PATH
whose reply comes after every event the step caused there (a connection that cannot answer, a
released guest's, is drained until quiet for --quiet seconds instead) - so events on other
connections land at a fixed place in the transcript, however loaded the machine.
Transaction ids in headers are printed symbolically (tx#1, ...) in order of first appearance,
DIRECTORY_PART generations as <gen>, as the probe does; TRANSACTION_START's payload stays raw.

Known bugs of C xenstored 4.17 (oracle README) are never triggered: READ, DIRECTORY, GET_PERMS,
MKDIR and RM always carry exactly `path\\0` in profile c, and SET_PERMS on an @ path is only sent
(in profile c) by dom0, outside transactions, with a well-formed ACL on @introduceDomain or
@releaseDomain, so it cannot fail.

Usage:
  # one seed against servers you started yourself (both fresh!)
  xs-difffuzz.py --profile c --ref SOCK[,RINGDIR] --sim SOCK,GUESTDIR --seed 7 [--steps 200]
  # start fresh daemons per seed (reference via ../shared/oracle/start.sh, xensim via node)
  xs-difffuzz.py --profile c --start --seed 1 --runs 20 [--steps 200] [--minimise]
  # print a seed's script (editable text, one request per line), or run a script file
  xs-difffuzz.py --profile c --seed 7 --print-script > s.txt
  xs-difffuzz.py --profile c --start --script s.txt [--minimise]
Script lines: `CONN OP TX BIND PAYLOAD`, e.g. `A WRITE 0 - b'/a\\x00v'`, `B READ h2 - b'/a\\x00'`,
`A TRANSACTION_START 0 h2 b'\\x00'` (binds symbolic handle h2 to the id in the reply),
TX = 0 | hN (a handle, bogus id if unbound) | #N (a literal id). `#` starts a comment line.
`A SLEEP 0 - b'0.2'` is no request: both runs stay idle that many seconds (oxenstored trims its
transaction history by wall-clock time). Directive lines in a script file: `#! history-seconds S`
runs both daemons (profile ocaml) with conflict-max-history-seconds = S (as --history-seconds),
`#! strict` applies no known difference.
--minimise shrinks a differing script (greedy chunk removal, fresh daemons per try) to a short one
that still shows the same first difference, and prints it.
"""
import argparse
import ast
import ctypes
import mmap
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
ORACLE_DIR = os.environ.get("XS_ORACLE_DIR",
                            os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "oracle")))

HDR = struct.Struct("<IIII")  # type, req_id, tx_id, len
OPS = ["CONTROL", "DIRECTORY", "READ", "GET_PERMS", "WATCH", "UNWATCH",
       "TRANSACTION_START", "TRANSACTION_END", "INTRODUCE", "RELEASE",
       "GET_DOMAIN_PATH", "WRITE", "MKDIR", "RM", "SET_PERMS", "WATCH_EVENT",
       "ERROR", "IS_DOMAIN_INTRODUCED", "RESUME", "SET_TARGET", "RESTRICT",
       "RESET_WATCHES", "DIRECTORY_PART"]
OP = {name: i for i, name in enumerate(OPS)}
REPLY_TIMEOUT = 4.0   # generous: a loaded machine must not make a difference
GUEST_NAMES = {5: "G", 6: "H"}
GUEST_DOMID = {v: k for k, v in GUEST_NAMES.items()}
BOGUS_TX_BASE = 900000          # raw id sent for a handle that was never bound


def show(b):
    b = bytes(b)
    if len(b) > 80:
        return "%s...(%d bytes)" % (repr(b[:40])[1:], len(b))
    return repr(b)[1:]


# ---------------------------------------------------------------- transports

class SockTransport:
    """A Unix-socket connection: dom0's main socket, or a xensim --guest-dir guest socket."""

    def __init__(self, path, retry=0.0):
        deadline = time.monotonic() + retry
        while True:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.s.connect(path)
                return
            except (FileNotFoundError, ConnectionRefusedError):
                self.s.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def send(self, data):
        self.s.sendall(data)

    def recv(self, timeout):
        """Bytes available within timeout; None on timeout, b"" on EOF."""
        r, _, _ = select.select([self.s], [], [], timeout)
        if not r:
            return None
        try:
            return self.s.recv(65536)
        except (ConnectionResetError, OSError):
            return b""

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class RingTransport:
    """Fake guest `domid` on the oracle shim's shared ring page (struct xenstore_domain_interface),
    as xs-probe.py's RingConn, but with a send deadline (a dead ring never makes room)."""
    RING = 1024
    REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD = 2048, 2052, 2056, 2060

    def __init__(self, ringdir, domid):
        fd = os.open("%s/ring-%d" % (ringdir, domid), os.O_RDWR)
        self.m = mmap.mmap(fd, 4096, mmap.MAP_SHARED)
        os.close(fd)
        # single aligned 32-bit accesses for the indexes (a torn index breaks the ring)
        self.words = {off: ctypes.c_uint32.from_buffer(self.m, off)
                      for off in (self.REQ_CONS, self.REQ_PROD, self.RSP_CONS, self.RSP_PROD)}
        self.kick_fd = os.open(ringdir + "/evtchn", os.O_WRONLY | os.O_NONBLOCK)
        self.port = struct.pack("<I", 1000 + domid)

    def _idx(self, off):
        return self.words[off].value

    def _set_idx(self, off, v):
        self.words[off].value = v & 0xFFFFFFFF

    def _kick(self):
        try:
            os.write(self.kick_fd, self.port)
        except (BlockingIOError, OSError):
            pass

    def send(self, data):
        deadline = time.monotonic() + REPLY_TIMEOUT
        while data:
            prod = self._idx(self.REQ_PROD)
            space = self.RING - ((prod - self._idx(self.REQ_CONS)) & 0xFFFFFFFF)
            if space <= 0 or space > self.RING:
                if time.monotonic() > deadline:
                    raise TimeoutError("ring full")
                self._kick()
                time.sleep(0.0005)
                continue
            off = prod % self.RING
            n = min(space, self.RING - off, len(data))
            self.m[off:off + n] = data[:n]
            self._set_idx(self.REQ_PROD, prod + n)
            data = data[n:]
        self._kick()

    def recv(self, timeout):
        end = time.monotonic() + timeout
        while True:
            cons = self._idx(self.RSP_CONS)
            avail = (self._idx(self.RSP_PROD) - cons) & 0xFFFFFFFF
            if avail and avail <= self.RING:
                off = cons % self.RING
                n = min(avail, self.RING - off)
                data = self.m[self.RING + off:self.RING + off + n]
                self._set_idx(self.RSP_CONS, cons + n)
                self._kick()
                return data
            if time.monotonic() >= end:
                return None
            time.sleep(0.0005)

    def close(self):
        try:
            os.close(self.kick_fd)
        except OSError:
            pass
        self.words = None  # the mapping stays (ctypes exports); it is tiny


# ---------------------------------------------------------------- one server's run

class Client:
    def __init__(self, name, transport, run):
        self.name = name
        self.t = transport
        self.run = run
        self.rid = 0
        self.buf = b""
        self.dead = None  # reason, once the connection is gone
        self.nosync = False

    def recv_msg(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= HDR.size:
                ty, rid, tx, ln = HDR.unpack_from(self.buf)
                if len(self.buf) >= HDR.size + ln:
                    body = self.buf[HDR.size:HDR.size + ln]
                    self.buf = self.buf[HDR.size + ln:]
                    return ty, rid, tx, body
            chunk = self.t.recv(max(0.0, deadline - time.monotonic()))
            if chunk is None:
                return None
            if not chunk:
                return "EOF"
            self.buf += chunk

    def show_msg(self, m):
        if m == "EOF":
            self.dead = "closed by server"
            self.run.out("  %s << <connection closed>" % self.name)
            return
        ty, rid, tx, body = m
        op = OPS[ty] if ty < len(OPS) else str(ty)
        if op == "DIRECTORY_PART" and b"\0" in body:
            body = b"<gen>" + body[body.index(b"\0"):]
        self.run.out("  %s << %-18s rid=%d tx=%s %s" % (self.name, op, rid, self.run.txname(tx),
                                                       show(body)))

    def request(self, ty, opname, payload, tx):
        self.rid += 1
        self.run.out("%s >> %-18s rid=%d tx=%s %s" % (self.name, opname, self.rid,
                                                     self.run.txname(tx), show(payload)))
        if self.dead:
            self.run.out("  %s << <not sent: connection %s>" % (self.name, self.dead))
            return None
        try:
            self.t.send(HDR.pack(ty, self.rid, tx, len(payload)) + payload)
        except TimeoutError:
            self.run.out("  %s << <send timed out: ring full>" % self.name)
            return None
        except OSError as e:
            self.dead = "send failed"
            self.run.out("  %s << <send failed: %s>" % (self.name, e.strerror))
            return None
        while True:
            m = self.recv_msg(REPLY_TIMEOUT)
            if m is None:
                self.run.out("  %s << <no reply within %gs>" % (self.name, REPLY_TIMEOUT))
                return None
            self.show_msg(m)
            if m == "EOF":
                return None
            if m[1] == self.rid and m[0] != OP["WATCH_EVENT"]:
                return m

    def sync(self):
        """A barrier: a GET_DOMAIN_PATH whose reply is not printed. Both daemons queue the events
        a request causes on every connection before they answer anything later on it, so once
        this reply is in, everything the last step caused here has been printed - whatever the
        machine's load. False if it cannot serve as one (no reply: fall back to a quiet drain)."""
        if self.dead or self.nosync:
            return False
        self.rid += 1
        try:
            self.t.send(HDR.pack(OP["GET_DOMAIN_PATH"], self.rid, 0, 2) + b"0\0")
        except (TimeoutError, OSError):
            self.nosync = True
            return False
        while True:
            m = self.recv_msg(REPLY_TIMEOUT)
            if m is None:
                self.nosync = True
                self.run.out("  %s << <no reply to a sync>" % self.name)
                return False
            if m != "EOF" and m[1] == self.rid and m[0] != OP["WATCH_EVENT"]:
                return True
            self.show_msg(m)
            if m == "EOF":
                return True

    def drain(self, quiet):
        if self.dead:
            return
        while True:
            m = self.recv_msg(quiet)
            if m is None:
                return
            self.show_msg(m)
            if m == "EOF":
                return


class Run:
    """Executes a script against one server and collects its transcript."""

    def __init__(self, kind, sock, guestpath, quiet):
        self.kind = kind            # "ring" (reference) or "sock" (xensim --guest-dir)
        self.sock = sock
        self.guestpath = guestpath  # ring dir or guest dir
        self.quiet = quiet
        self.lines = []             # (step, text)
        self.step = -1
        self.tx = {0: "0"}
        self.handles = {}
        self.clients = {}
        self.introduced = set()
        self.error = None

    def out(self, text):
        self.lines.append((self.step, text))

    def txname(self, t):
        if t not in self.tx:
            self.tx[t] = "tx#%d" % len(self.tx)
        return self.tx[t]

    def client(self, name):
        c = self.clients.get(name)
        if c is not None:
            return c
        if name in GUEST_DOMID:
            domid = GUEST_DOMID[name]
            if domid not in self.introduced:
                return None
            try:
                if self.kind == "ring":
                    t = RingTransport(self.guestpath, domid)
                else:
                    t = SockTransport("%s/%d" % (self.guestpath, domid), retry=2.0)
            except OSError as e:
                self.out("  %s << <cannot connect guest %d: %s>" % (name, domid, e.strerror))
                return None
        else:
            t = SockTransport(self.sock)
        c = self.clients[name] = Client(name, t, self)
        return c

    def raw_tx(self, spec):
        if spec == 0:
            return 0
        if isinstance(spec, str) and spec.startswith("h"):
            k = int(spec[1:])
            return self.handles.get(k, BOGUS_TX_BASE + k)
        return int(str(spec).lstrip("#"))

    def execute(self, script, order):
        try:
            for i, st in enumerate(script):
                self.step = i
                self.do_step(st)
                for name in order:
                    c = self.clients.get(name)
                    if c is None:
                        continue
                    live = name not in GUEST_DOMID or GUEST_DOMID[name] in self.introduced
                    if not (live and c.sync()):
                        c.drain(self.quiet)
        except Exception as e:  # a fuzzer bug: keep what we have, report it
            import traceback
            self.error = traceback.format_exc()
            self.out("<fuzzer error: %r>" % (e,))
        for c in self.clients.values():
            c.t.close()

    def do_step(self, st):
        conn, op, txspec, bind, payload = st
        if op == "SLEEP":
            self.out("-- idle %s s" % payload.decode())
            time.sleep(float(payload))
            return
        ty = OP[op] if op in OP else int(op)
        c = self.client(conn)
        if c is None:
            self.out("%s >> %-18s rid=- tx=%s %s" % (conn, op, txspec, show(payload)))
            self.out("  %s << <not connected: domain not introduced>" % conn)
            return
        reply = c.request(ty, op, payload, self.raw_tx(txspec))
        if reply is None:
            return
        rty, _, _, body = reply
        if bind and rty == OP["TRANSACTION_START"]:
            try:
                self.handles[int(bind[1:])] = int(body.rstrip(b"\0"))
            except ValueError:
                pass
        if op in ("INTRODUCE", "RELEASE") and rty == ty and conn not in GUEST_DOMID:
            try:
                domid = int(payload.split(b"\0")[0])
            except ValueError:
                return
            if op == "INTRODUCE":
                again = domid in self.introduced
                self.introduced.add(domid)
                name = GUEST_NAMES.get(domid)
                # Introduced after a RELEASE: talk through a fresh mapping/socket. Introduced again
                # while introduced: the guest keeps its ring (its connection, in oxenstored), so
                # xensim's guest keeps its socket too.
                old = self.clients.pop(name, None) if name and not again else None
                if old is not None:
                    old.t.close()
            else:
                self.introduced.discard(domid)


# ---------------------------------------------------------------- script generation

AVOID = {
    "dup-token": "every WATCH gets a token of its own (no two watches of a connection share one)",
    "watch-args": "no WATCH/UNWATCH with a third argument",
    "special-perms": "no GET_PERMS/SET_PERMS on @ paths",
}


def gen_args_script(seed, steps, profile):
    """--generator args: any operation type (unknown ones too) with arguments made of random
    pieces - paths, numbers, ACL entries, odd bytes - joined by NULs, with or without the final
    NUL, on real, closed or made-up transaction ids. It finds argument parsing that the structured
    generator never exercises."""
    rng = random.Random(seed)
    pieces = [b"/a", b"/a/b", b"@x", b"@x/y", b"@introduceDomain", b"rel", b"", b"/", b"//", b"/a/",
              b"/local/domain/5", b"/local/domain/5/data", b"data", b"/tool/xenstored", b"5", b"6",
              b"0", b"-1", b"32768", b"4294967295", b"1e3", b" 5", b"5 ", b"0x5", b"T", b"F", b"n0",
              b"r5", b"b6", b"w0", b"x", b"tok", b"v", b"\xff\xfe", b"a\x01b", b"y" * 300,
              b"/" + b"p" * 200]
    ops = ["READ", "DIRECTORY", "WRITE", "MKDIR", "RM", "GET_PERMS", "SET_PERMS", "WATCH",
           "UNWATCH", "TRANSACTION_START", "TRANSACTION_END", "INTRODUCE", "RELEASE",
           "GET_DOMAIN_PATH", "IS_DOMAIN_INTRODUCED", "SET_TARGET", "RESUME", "RESET_WATCHES",
           "DIRECTORY_PART", "CONTROL"]
    script = []
    for n in (5, 6):
        script.append(("A", "INTRODUCE", 0, None, b"%d\0%d\0%d\0" % (n, 4700 + n, 4 + n)))
    script.append(("A", "WRITE", 0, None, b"/local/domain/5/data\0v"))
    script.append(("A", "SET_PERMS", 0, None, b"/local/domain/5/data\0n5\0"))
    handles = {}
    for i in range(steps):
        conn = rng.choice("ABGH")
        op = rng.choice(ops) if rng.random() < 0.9 else str(rng.choice([0, 17, 20, 22, 23, 30, 99]))
        payload = b"\0".join(rng.choice(pieces) for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 4])))
        if rng.random() < 0.7:
            payload += b"\0"
        if profile == "c" and op in ("READ", "DIRECTORY", "GET_PERMS", "MKDIR", "RM"):
            # C answers a malformed path argument with a stale errno (documented; xensim: ENOENT)
            payload = rng.choice(pieces) + b"\0"
        if op == "RELEASE" and rng.random() < 0.7:
            continue   # keep the guests mostly alive
        tx, bind = 0, None
        if handles.get(conn) and rng.random() < 0.5:
            tx = rng.choice(handles[conn])
        elif rng.random() < 0.05:
            tx = "#%d" % rng.choice([1, 77, 4294967295])
        if op == "TRANSACTION_START" and tx == 0:
            bind = "h%d" % i
            handles.setdefault(conn, []).append(bind)
        script.append((conn, op if op in OP else int(op), tx, bind, payload))
    return script


def make_script(args, seed, avoid):
    if args.generator == "args":
        return gen_args_script(seed, args.steps, args.profile)
    return gen_script(seed, args.steps, args.profile, avoid)


def gen_script(seed, steps, profile, avoid=()):
    """The script of a seed. `avoid` (keys of AVOID) steers clear of known differences so that
    others can be found; it changes the random choices, so a seed's script depends on it."""
    rng = random.Random(seed)
    tok_counter = [0]
    n_dom0 = rng.choice([2, 3])
    guests = rng.choice([[5], [5, 6], [5, 6]])
    dom0 = ["A", "B", "C"][:n_dom0]
    script = []

    def add(conn, op, payload, tx=0, bind=None):
        script.append((conn, op, tx, bind, payload))

    for n in guests:
        home = b"/local/domain/%d" % n
        add("A", "WRITE", home + b"\0")
        add("A", "SET_PERMS", home + b"\0n0\0r%d\0" % n)
        add("A", "WRITE", home + b"/data\0")
        add("A", "SET_PERMS", home + b"/data\0n%d\0" % n)
        add("A", "INTRODUCE", b"%d\0%d\0%d\0" % (n, 4700 + n, 4 + n))

    alive = {n: True for n in guests}
    open_tx = {c: [] for c in dom0 + [GUEST_NAMES[n] for n in guests]}
    closed_tx = []
    next_h = [1]
    watches = {c: [] for c in open_tx}

    dom0_paths = ["/a", "/a/b", "/a/b/c", "/a/x", "/x", "/x/y", "/local/domain/5",
                  "/local/domain/5/data", "/local/domain/5/data/p", "/local/domain/5/data/p/q",
                  "/local/domain/6/data", "/local/domain/6/data/p", "/local/domain/7",
                  "/local/domain/7/d", "/tool", "/tool/xenstored", "/local", "/local/domain",
                  "r", "r/s"]
    specials = ["@introduceDomain", "@releaseDomain", "@foo"]
    if profile == "ocaml":
        # oxenstored takes a path starting with '@' as one root child name, whatever follows
        specials += ["@foo/bar", "@a b", "@foo/"]
    bad = ["", "/a/", "//a", "/a//b", "/a b", "/a/.", "data/", "/\xe9", "a\x01"]
    values = [b"", b"v", b"v2", b"w", b"\0bin\x01", b"x" * 40]
    # over oxenstored's 2048-byte value quota, and near the 4096-byte payload limit
    big_values = [b"y" * 2049, b"z" * 3000, b"q" * 4000]
    long_paths = ["/" + "p" * 3100, "/a/" + "q/" * 1500 + "z", "r" * 3500, "/" + "s" * 4080,
                  "/a/" + "t" * 2000]
    tokens = [b"t1", b"t2", b"tok"]

    def guest_paths(n):
        other = 6 if n == 5 else 5
        return ["data", "data/p", "data/p/q", "data/x", "name", "/local/domain/%d/data/p" % n,
                "/local/domain/%d" % n, "/local/domain/%d/data" % n, "/a", "/a/b", "/x",
                "/local/domain/%d/data" % other, "/local/domain/%d/data/p" % other, "/tool",
                "/", "/local/domain", "/local", "/local/x", "/local/domain/3/name"]

    def path(conn, special=0.03, badp=0.04):
        r = rng.random()
        if r < special:
            p = rng.choice(specials)
        elif r < special + badp:
            p = rng.choice(bad)
        elif conn in GUEST_DOMID:
            p = rng.choice(guest_paths(GUEST_DOMID[conn]))
        else:
            p = rng.choice(dom0_paths)
        return p.encode("latin1")

    def acl(conn):
        """(payload tail, well_formed)"""
        ids = [0, 5, 6, 7]
        # now and then a domain nobody introduced, a reserved id (>= DOMID_FIRST_RESERVED), one
        # past 16 bits, or one past 32 bits
        odd = [3, 8, 20, 99, 0x7FF0, 0x7FF2, 0x7FF4, 65535, 65541, 70000, 4294967297]
        n = rng.choice([1, 1, 2, 2, 3, 4])
        ents = [(rng.choice("rwbn") + str(rng.choice(odd if rng.random() < 0.15 else ids))).encode()
                for _ in range(n)]
        r = rng.random()
        if r < 0.12:
            bads = [b"x5", b"r", b"rabc", b"r5x", b"r0x5", b"r-1", b"r99999", b"", b"R5",
                    b"r 5", b"r05"]
            ents[rng.randrange(n)] = rng.choice(bads)
            return b"".join(e + b"\0" for e in ents), False
        if r < 0.16:
            return b"", False                                     # no ACL at all
        if r < 0.20:
            return b"".join(e + b"\0" for e in ents)[:-1], False  # last entry without NUL
        return b"".join(e + b"\0" for e in ents), True

    def pick_tx(conn):
        r = rng.random()
        if r < 0.45:
            return "h%d" % rng.choice(open_tx[conn]) if open_tx[conn] else 0
        if r < 0.47:
            return "h%d" % rng.choice(closed_tx) if closed_tx else 0
        if r < 0.48:
            return "#%d" % rng.choice([1, 2, 3, 77])
        return 0

    def malformed(conn):
        """Malformed payloads that do not hit documented C bugs."""
        choices = [
            ("WRITE", b"/a"), ("WRITE", b""), ("WRITE", b"@foo\0v"), ("WRITE", b"/a b\0v"),
            ("WATCH", b"/a\0tok"), ("WATCH", b"/a\0"), ("WATCH", b"/a"), ("WATCH", b"/a\0t\0x\0"),
            ("UNWATCH", b"/a\0tok"), ("UNWATCH", b"/a"),
            ("SET_PERMS", b"/a"), ("SET_PERMS", b"/a\0n0"),
            ("TRANSACTION_END", b"T"), ("TRANSACTION_END", b""), ("TRANSACTION_END", b"TT\0"),
            ("TRANSACTION_START", b"x"),
            ("INTRODUCE", b"7\0" + b"4707\0"), ("INTRODUCE", b"7\0x\0y\0"),
            ("INTRODUCE", b"abc\0" + b"1\0" + b"2\0"),
            # domid 70000: C 4.17 under the oracle's shim accepts it (every domid exists there);
            # xensim answers as under a real hypervisor (known difference D6), so not in profile c
            ("INTRODUCE", b"70000\0" + b"1\0" + b"2\0") if profile == "ocaml" else
            ("INTRODUCE", b"7\0" + b"4707\0" + b"-3\0"),
            ("GET_DOMAIN_PATH", b"5"), ("GET_DOMAIN_PATH", b""), ("GET_DOMAIN_PATH", b"-1\0"),
            ("GET_DOMAIN_PATH", b"99999\0"), ("GET_DOMAIN_PATH", b" 7x\0"),
            ("IS_DOMAIN_INTRODUCED", b"5"), ("IS_DOMAIN_INTRODUCED", b"abc\0"),
            ("IS_DOMAIN_INTRODUCED", b"32752\0"),
            ("RELEASE", b"7"), ("RELEASE", b"abc\0"), ("RELEASE", b"0\0"),
            ("MKDIR", b"@foo\0"), ("RM", b"@introduceDomain\0"), ("DIRECTORY", b"@foo\0"),
            ("READ", b"\0"), ("RM", b"/\0"),
        ]
        if profile == "c":
            choices += [("DIRECTORY_PART", b"/a\0"), ("DIRECTORY_PART", b"/a\0x\0"),
                        ("DIRECTORY_PART", b"/a\0" + b"1"), ("DIRECTORY_PART", b"/a\0-1\0")]
        else:  # allowed on oxenstored only (C answers with a leftover errno)
            choices += [("READ", b"/a"), ("READ", b"/a\0\0"), ("DIRECTORY", b"/a"),
                        ("GET_PERMS", b"/a"), ("MKDIR", b"/a"), ("RM", b"/a\0x\0"),
                        ("READ", b"/a\0extra")]
            # oxenstored holds a zero-length request until more bytes arrive: a 2 s stall each
            choices = [ch for ch in choices if ch[1]]
        return rng.choice(choices)

    conns = dom0 + [GUEST_NAMES[n] for n in guests]
    for _ in range(steps):
        live = [c for c in conns if c not in GUEST_DOMID or alive[GUEST_DOMID[c]]]
        conn = rng.choice(live)
        is_guest = conn in GUEST_DOMID
        weights = {
            "READ": 12, "WRITE": 14, "MKDIR": 5, "RM": 6, "DIRECTORY": 6,
            "DIRECTORY_PART": 2 if profile == "c" else 0, "GET_PERMS": 5, "SET_PERMS": 7,
            "WATCH": 6, "UNWATCH": 3, "TRANSACTION_START": 5, "TRANSACTION_END": 6,
            "RESET_WATCHES": 1, "GET_DOMAIN_PATH": 1, "IS_DOMAIN_INTRODUCED": 1,
            "RELEASE": 1.5, "INTRODUCE": 1.5, "MALFORMED": 3,
            "SET_TARGET": 0.8, "RESUME": 0.4, "GIVE_ANCESTOR": 0.8, "BIG_WRITE": 1,
            "CONTROL": 0.6,
        }
        if is_guest:
            weights["SET_TARGET"] = 0.1
            weights["GIVE_ANCESTOR"] = 0
        op = rng.choices(list(weights), list(weights.values()))[0]
        tx = 0
        if op in ("READ", "WRITE", "MKDIR", "RM", "DIRECTORY", "DIRECTORY_PART", "GET_PERMS",
                  "SET_PERMS"):
            tx = pick_tx(conn)
        if op == "READ":
            add(conn, op, path(conn) + b"\0", tx)
        elif op in ("MKDIR", "RM", "DIRECTORY", "GET_PERMS"):
            sp = 0.15 if op == "GET_PERMS" and "special-perms" not in avoid else 0.03
            p = path(conn, special=sp)
            if "special-perms" in avoid and op == "GET_PERMS" and p.startswith(b"@"):
                p = b"/a"
            if op == "RM" and p == b"/" and rng.random() < 0.7:
                p = b"/a"  # RM / is rare: it wipes oxenstored's store
            add(conn, op, p + b"\0", tx)
        elif op == "DIRECTORY_PART":
            add(conn, op, path(conn) + b"\0" + rng.choice([b"0", b"0", b"1", b"2", b"5"]) + b"\0",
                tx)
        elif op == "WRITE":
            add(conn, op, path(conn) + b"\0" + rng.choice(values), tx)
        elif op == "SET_PERMS":
            p = path(conn, special=0.12)
            tail, ok = acl(conn)
            if "special-perms" in avoid and p.startswith(b"@"):
                p = b"/a"
            if profile == "c" and p.startswith(b"@") and (
                    is_guest or tx != 0 or not ok or p == b"@foo"):
                # a failing SET_PERMS on an @ path aborts C xenstored (known bug)
                p = rng.choice([b"/a", b"/x", b"data" if is_guest else b"/a/b"])
            add(conn, op, p + b"\0" + tail, tx)
        elif op == "WATCH":
            p = path(conn, special=0.2)
            if rng.random() < 0.06:
                p = rng.choice(long_paths).encode()
            tok = rng.choice(tokens)
            if rng.random() < 0.03 and len(p) < 100:
                # events for nodes below the watched path then exceed XENSTORE_PAYLOAD_MAX
                tok = b"L" * (4090 - len(p))
            if "dup-token" in avoid:
                tok_counter[0] += 1
                tok = b"%s-%d" % (tok, tok_counter[0])
            watches[conn].append((p, tok))
            # WATCH/UNWATCH do not look at the header's tx_id: send one now and then
            add(conn, op, p + b"\0" + tok + b"\0", pick_tx(conn) if rng.random() < 0.15 else 0)
        elif op == "UNWATCH":
            if watches[conn] and rng.random() < 0.8:
                p, tok = rng.choice(watches[conn])
                if rng.random() < 0.9:
                    watches[conn].remove((p, tok))
            else:
                p, tok = path(conn, special=0.2), rng.choice(tokens)
            add(conn, op, p + b"\0" + tok + b"\0", pick_tx(conn) if rng.random() < 0.15 else 0)
        elif op == "TRANSACTION_START":
            h = next_h[0]
            next_h[0] += 1
            if rng.random() < 0.06 and open_tx[conn]:
                add(conn, op, b"\0", "h%d" % rng.choice(open_tx[conn]))   # nested: EBUSY
            else:
                open_tx[conn].append(h)
                add(conn, op, b"\0", 0, "h%d" % h)
        elif op == "TRANSACTION_END":
            if open_tx[conn] and rng.random() < 0.9:
                h = rng.choice(open_tx[conn])
                arg = rng.choices([b"T\0", b"F\0", b"X\0"], [70, 25, 5])[0]
                if arg != b"X\0":
                    open_tx[conn].remove(h)
                    closed_tx.append(h)
                add(conn, op, arg, "h%d" % h)
            elif closed_tx and rng.random() < 0.6:
                add(conn, op, b"T\0", "h%d" % rng.choice(closed_tx))
            else:
                add(conn, op, rng.choice([b"T\0", b"F\0"]), rng.choice([0, "#77"]))
        elif op == "RESET_WATCHES":
            add(conn, op, b"\0" if (profile == "ocaml" or rng.random() < 0.5) else b"")
            watches[conn].clear()
            closed_tx.extend(open_tx[conn])
            open_tx[conn].clear()
        elif op == "GET_DOMAIN_PATH":
            add(conn, op, rng.choice([b"5", b"6", b"7", b"0", b"abc"]) + b"\0")
        elif op == "SET_TARGET":
            # device-model style targets, chains (5 -> 6 -> 7) and domains not introduced
            d = rng.choice(guests + [7, 7, 8, 0, 20])
            t = rng.choice(guests + [7, 0, 22])
            add(conn, op, b"%d\0%d\0" % (d, t))
        elif op == "RESUME":
            add(conn, op, rng.choice([b"5", b"6", b"7", b"0", b"9"]) + b"\0")
        elif op == "GIVE_ANCESTOR":
            # dom0 hands a guest an ancestor of other domains' nodes (then its RM in a
            # transaction removes nodes it does not own)
            g = rng.choice(guests)
            anc = rng.choice([b"/local", b"/local/domain", b"/a", b"/x", b"/local/domain/7"])
            extra = rng.choice([b"", b"r20\0", b"r%d\0" % (11 - g), b"b0\0"])
            add(conn, "SET_PERMS", anc + b"\0" + rng.choice([b"w", b"b", b"n"]) + b"%d\0" % g + extra)
        elif op == "BIG_WRITE":
            # values over oxenstored's quota, to nodes the writer may or may not write
            p = path(conn)
            if profile == "c" and is_guest and rng.random() < 0.5:
                p = rng.choice([b"data/big", b"/tool/x"])
            add(conn, "WRITE", p + b"\0" + rng.choice(big_values)[:4096 - len(p) - 1],
                pick_tx(conn) if rng.random() < 0.3 else 0)
        elif op == "CONTROL":
            # both daemons: C's CONTROL, oxenstored's DEBUG (OK to anything it does not know);
            # nothing that re-executes or writes files (live-update -s/-f/-c, logfile)
            add(conn, op, rng.choice([
                b"check\0", b"help\0", b"quota\0", b"quota-soft\0", b"quota\0%d\0" % rng.choice(guests + [0, 7]),
                b"quota\0x\0", b"print\0m\0", b"log\0on\0", b"mfn\0%d\0" % rng.choice(guests + [0, 7]),
                b"live-update\0-x\0", b"live-update\0", b"live-update\0-a\0", b"unknown\0", b"",
                b"quota\0set\0nodes\0" + rng.choice([b"2000", b"1000", b"x"]) + b"\0"]))
        elif op == "IS_DOMAIN_INTRODUCED":
            add(conn, op, rng.choice([b"5", b"6", b"7", b"0", b"9"]) + b"\0")
        elif op == "RELEASE":
            r = rng.random()
            if r < 0.6:
                d = 7
            elif r < 0.75:
                d = rng.choice(guests)
            else:
                d = rng.choice([9, 0, 7, 8, 8])
            if profile == "ocaml" and is_guest and d == GUEST_DOMID.get(conn):
                # oxenstored 4.17 dies when a guest allowed to release its own domain does so
                # (campaign seeds 70105, 80035: every connection closed, nothing in its log);
                # xensim does not copy the crash, so the fuzzer leaves that request out there
                d = 7
            # now and then inside the requester's transaction (oxenstored resets that tree then)
            add(conn, op, b"%d\0" % d, pick_tx(conn) if rng.random() < 0.1 else 0)
            if not is_guest:
                if d in alive:
                    alive[d] = False
                    name = GUEST_NAMES[d]
                    watches[name].clear()
                    closed_tx.extend(open_tx[name])
                    open_tx[name].clear()
        elif op == "INTRODUCE":
            dead = [n for n in guests if not alive[n]]
            live_guests = [n for n in guests if alive[n]]
            if dead and rng.random() < 0.7:
                d = rng.choice(dead)
                args = b"%d\0%d\0%d\0" % (d, 4700 + d, 4 + d)
            elif live_guests and rng.random() < 0.2:
                # introduced again while introduced: the same mfn (a new event channel) or another
                d = rng.choice(live_guests)
                args = b"%d\0%d\0%d\0" % (d, 4700 + d + rng.choice([0, 0, 1]), 4 + d)
            elif rng.random() < 0.3:
                d = 8
                args = b"8\0" + b"4708\0" + b"12\0"
            else:
                d = 7
                args = rng.choice([b"7\0" + b"4707\0" + b"11\0", b"7\0" + b"4707\0" + b"11\0",
                                   b"7\0" + b"4708\0" + b"12\0", b"7\0" + b"4707\0" + b"0\0"])
            add(conn, op, args)
            if not is_guest:
                if d in alive:
                    alive[d] = True
        else:  # MALFORMED
            op, payload = malformed(conn)
            add(conn, op, payload, pick_tx(conn) if op in ("READ", "WRITE") else 0)
            if "watch-args" in avoid and op in ("WATCH", "UNWATCH") and payload.count(b"\0") > 2:
                payload = payload[:payload.index(b"\0", payload.index(b"\0") + 1) + 1]
                script[-1] = (conn, op, 0, None, payload)
            if op == "TRANSACTION_END" and payload == b"T" and open_tx[conn]:
                script[-1] = (conn, op, "h%d" % open_tx[conn][-1], None, payload)
    return script


def script_to_text(script):
    out = []
    for conn, op, tx, bind, payload in script:
        out.append("%s %s %s %s %r" % (conn, op, tx if tx else "0", bind or "-", bytes(payload)))
    return "\n".join(out) + "\n"


def script_directives(text):
    """`#! NAME [VALUE]` lines of a script file, as a dict."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#!"):
            parts = line[2:].split()
            if parts:
                out[parts[0]] = parts[1] if len(parts) > 1 else True
    return out


def oxenstored_conf(path, sock, history_seconds):
    """start.sh's oxenstored.conf for SOCK with another conflict-max-history-seconds."""
    with open(os.path.join(ORACLE_DIR, "start.sh")) as f:
        sh = f.read()
    m = re.search(r'cat >"\$SOCK\.conf" <<EOF\n(.*?)\nEOF\n', sh, re.S)
    if not m:
        raise RuntimeError("start.sh: no oxenstored.conf here-document found")
    conf = m.group(1).replace("$SOCK", sock)
    conf, n = re.subn(r"(?m)^conflict-max-history-seconds = .*$",
                      "conflict-max-history-seconds = %s" % history_seconds, conf)
    if n != 1:
        raise RuntimeError("start.sh's oxenstored.conf has no conflict-max-history-seconds line")
    with open(path, "w") as f:
        f.write(conf + "\n")


def script_from_text(text):
    script = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        conn, op, tx, bind, payload = line.split(" ", 4)
        tx = 0 if tx == "0" else (tx if tx.startswith("h") else "#%d" % int(tx.lstrip("#")))
        script.append((conn, op, tx, None if bind == "-" else bind, ast.literal_eval(payload)))
    return script


# ---------------------------------------------------------------- daemons

class Daemons:
    """Fresh reference (oracle start.sh) and xensim daemons in a temp dir."""

    def __init__(self, profile, history_seconds=None):
        self.profile = profile
        self.history_seconds = history_seconds
        self.dir = tempfile.mkdtemp(prefix="xs-difffuzz-")
        self.ref_sock = os.path.join(self.dir, "ref")
        self.ref_rings = self.ref_sock + ".rings"
        self.sim_sock = os.path.join(self.dir, "sim")
        self.sim_guests = os.path.join(self.dir, "guests")
        self.ref_pid = None
        self.sim = None
        self.sim_log = open(os.path.join(self.dir, "sim.log"), "wb")

    def start(self):
        conf = []
        if self.history_seconds is not None:
            if self.profile != "ocaml":
                raise SystemExit("history-seconds is oxenstored's setting (profile ocaml)")
            path = os.path.join(self.dir, "oxenstored.conf")
            oxenstored_conf(path, self.ref_sock, self.history_seconds)
            conf = ["--config-file", path]   # after start.sh's own: the last one counts
        # xensim (node + tsx) is the slower one to come up: launch it first, then the reference
        self.sim = subprocess.Popen(
            ["node", "--import", "./scripts/tsx-preload.mjs", "sim/bin/xensim.mjs", "xenstored",
             "--socket", self.sim_sock, "--profile", self.profile, "--guest-dir", self.sim_guests]
            + conf,
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=self.sim_log, stderr=subprocess.STDOUT)
        args = [os.path.join(ORACLE_DIR, "start.sh")]
        if self.profile == "ocaml":
            args.append("--ocaml")
        r = subprocess.run(args + [self.ref_sock] + conf, capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError("start.sh failed: %s%s" % (r.stdout, r.stderr))
        self.ref_pid = int(r.stdout.split()[-1])
        deadline = time.monotonic() + 90
        while True:
            if self.sim.poll() is not None:
                raise RuntimeError("xensim exited: see %s/sim.log" % self.dir)
            if os.path.exists(self.sim_sock):
                try:
                    self.warm_up()
                    break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError("xensim not ready after 90 s")
            time.sleep(0.02)

    def warm_up(self):
        """One READ on a connection of its own, closed again (it leaves nothing behind): xensim
        compiles its core lazily, and a first request must not take seconds during a script."""
        t = SockTransport(self.sim_sock)
        try:
            t.send(HDR.pack(OP["READ"], 1, 0, 2) + b"/\0")
            buf = b""
            end = time.monotonic() + 60
            while len(buf) < HDR.size or len(buf) < HDR.size + HDR.unpack_from(buf)[3]:
                chunk = t.recv(max(0.0, end - time.monotonic()))
                if not chunk:
                    raise OSError("xensim did not answer the warm-up READ")
                buf += chunk
        finally:
            t.close()
        time.sleep(0.05)  # the close reaches the daemon before the script's first connection

    def ref_alive(self):
        try:
            with open("/proc/%d/stat" % self.ref_pid) as f:
                return ") Z " not in f.read()
        except OSError:
            return False

    def ref_log(self):
        try:
            with open(self.ref_sock + ".log", errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop(self, keep=False):
        if self.ref_pid:
            if self.ref_alive():
                try:
                    subprocess.run([os.path.join(ORACLE_DIR, "stop.sh"), str(self.ref_pid)],
                                   capture_output=True, timeout=30)
                except subprocess.TimeoutExpired:
                    # A machine loaded enough to stall stop.sh must not end a campaign.
                    try:
                        os.kill(self.ref_pid, signal.SIGKILL)
                    except OSError:
                        pass
            else:
                try:
                    os.waitpid(self.ref_pid, os.WNOHANG)
                except OSError:
                    pass
        if self.sim and self.sim.poll() is None:
            self.sim.terminate()
            try:
                self.sim.wait(5)
            except subprocess.TimeoutExpired:
                self.sim.kill()
                self.sim.wait()
        self.sim_log.close()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- comparison

def run_both(script, ref, sim, quiet):
    """ref = (sock, ringdir), sim = (sock, guestdir). Returns (ref Run, sim Run)."""
    order = ["A", "B", "C", "G", "H"]
    a = Run("ring", ref[0], ref[1], quiet)
    b = Run("sock", sim[0], sim[1], quiet)
    ta = threading.Thread(target=a.execute, args=(script, order))
    tb = threading.Thread(target=b.execute, args=(script, order))
    ta.start()
    tb.start()
    ta.join()
    tb.join()
    return a, b


NORM = re.compile(r"rid=\S+|tx=\S+")


def norm(line):
    """A transcript line without connection name, rid and tx: for signatures."""
    line = NORM.sub("", line)
    for arrow in (" << ", " >> "):
        if arrow in line:
            line = arrow.strip() + " " + line.split(arrow, 1)[1]
    return " ".join(line.split())


def line_at(run, i):
    return run.lines[i][1] if i < len(run.lines) else "<end of transcript>"


def signature(a, b, i):
    """OP of the request the difference belongs to, and both lines, normalised."""
    req = ""
    for j in range(min(i, len(a.lines)) - 1, -1, -1):
        if " >> " in a.lines[j][1]:
            req = a.lines[j][1].split()[2]
            break
    return "\t".join((req, norm(line_at(a, i)), norm(line_at(b, i))))


def first_diff(a, b, known=(), skipped=None):
    """Index of the first differing transcript line that is not a known difference (a line
    replaced one for one whose signature is in `known`; those go to `skipped`), or None."""
    la, lb = a.lines, b.lines
    for i in range(max(len(la), len(lb))):
        if line_at(a, i) != line_at(b, i):
            sig = signature(a, b, i)
            anyop = "*\t" + sig.split("\t", 1)[1]  # a known line pair whatever the request
            if (sig in known or anyop in known) and i < len(la) and i < len(lb):
                if skipped is not None:
                    skipped.append((i, sig))
                continue
            return i
    return None


def load_known(path):
    known = set()
    if path:
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if line and not line.startswith("#"):
                    known.add(line)
    return known


def report(a, b, i, script, context=30, f=sys.stdout):
    step = a.lines[i][0] if i < len(a.lines) else b.lines[i][0]
    print("=== first difference at transcript line %d (script step %d) ===" % (i + 1, step), file=f)
    for j in range(max(0, i - context), i):
        print("   " + a.lines[j][1], file=f)
    print("ref" + "-" * 60, file=f)
    for j in range(i, min(i + 6, len(a.lines))):
        print("-  " + a.lines[j][1], file=f)
    print("xensim" + "-" * 57, file=f)
    for j in range(i, min(i + 6, len(b.lines))):
        print("+  " + b.lines[j][1], file=f)
    for r, name in ((a, "ref"), (b, "xensim")):
        if r.error:
            print("fuzzer error while running %s:\n%s" % (name, r.error), file=f)


def run_script(script, args, daemons_box=None):
    """Runs on fresh daemons (--start) or on the given servers. Returns (a, b, daemons)."""
    if args.start:
        d = Daemons(args.profile, args.history_seconds)
        try:
            d.start()
            a, b = run_both(script, (d.ref_sock, d.ref_rings), (d.sim_sock, d.sim_guests),
                            args.quiet)
            if not d.ref_alive():
                a.out("<reference daemon died; log tail:>")
                for line in d.ref_log().splitlines():
                    a.out("    " + line)
            if d.sim.poll() is not None:
                b.out("<xensim daemon died (exit %s)>" % d.sim.returncode)
        finally:
            d.stop()
        return a, b
    ref = args.ref.split(",")
    if len(ref) == 1:
        ref.append(ref[0] + ".rings")
    sim = args.sim.split(",")
    if len(sim) != 2:
        raise SystemExit("--sim needs SOCK,GUESTDIR")
    return run_both(script, ref, sim, args.quiet)


def minimise(script, sig, args, known):
    """Greedy chunk removal keeping the same first-difference signature."""
    tries = 0

    def diff_step(s):
        nonlocal tries
        tries += 1
        a, b = run_script(s, args)
        i = first_diff(a, b, known)
        if i is None or signature(a, b, i) != sig:
            return None
        return a.lines[i][0] if i < len(a.lines) else b.lines[i][0]

    cur = list(script)
    step = diff_step(cur)
    if step is None:
        print("  minimise: the difference does not reproduce", file=sys.stderr)
        return cur
    cur = cur[:step + 1]          # nothing after the difference matters
    n = max(1, len(cur) // 2)
    while True:
        i = 0
        changed = False
        while i < len(cur) - 1:   # the last step is where the difference shows
            cand = cur[:i] + cur[i + n:]
            if cand and cur[-1] in cand[-1:] and diff_step(cand) is not None:
                cur = cand
                changed = True
                print("  minimise: %d steps (chunk %d, %d tries)" % (len(cur), n, tries),
                      file=sys.stderr)
            else:
                i += n
        if n == 1 and not changed:
            break
        if n > 1:
            n //= 2
    return cur


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=["c", "ocaml"], default="c")
    ap.add_argument("--ref", help="reference SOCK[,RINGDIR] (RINGDIR default SOCK.rings)")
    ap.add_argument("--sim", help="xensim SOCK,GUESTDIR")
    ap.add_argument("--start", action="store_true", help="start fresh daemons for every run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=1, help="seeds SEED .. SEED+RUNS-1 (needs --start)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--quiet", type=float, default=0.015,
                    help="drain: a connection counts as quiet after this many seconds")
    ap.add_argument("--script", help="run this script file instead of a generated one")
    ap.add_argument("--print-script", action="store_true", help="print the script and exit")
    ap.add_argument("--transcripts", metavar="PREFIX",
                    help="write PREFIX.ref.txt and PREFIX.xensim.txt")
    ap.add_argument("--minimise", action="store_true", help="shrink a differing script (--start)")
    ap.add_argument("--keep-going", action="store_true", help="with --runs: do not stop at a diff")
    ap.add_argument("--until", type=float, metavar="EPOCH",
                    help="with --runs: start no seed after this time (seconds since the epoch)")
    ap.add_argument("--known", help="file of known difference signatures (one per line, as "
                    "printed after 'signature:'); those lines are skipped when they replace each "
                    "other one for one")
    ap.add_argument("--history-seconds", type=float, metavar="S",
                    help="profile ocaml: run both daemons with conflict-max-history-seconds = S "
                    "(start.sh's config otherwise: 0.05)")
    ap.add_argument("--generator", choices=["structured", "args"], default="structured",
                    help="structured: sessions of well-formed operations (default); args: random "
                    "operation types and argument pieces (see gen_args_script)")
    ap.add_argument("--avoid", default="", help="comma-separated: steer the generator clear of "
                    "known differences: " + "; ".join("%s = %s" % kv for kv in AVOID.items()))
    args = ap.parse_args()
    avoid = [a for a in args.avoid.split(",") if a]
    for a in avoid:
        if a not in AVOID:
            ap.error("unknown --avoid %s" % a)

    if args.print_script:
        s = script_from_text(open(args.script).read()) if args.script else \
            make_script(args, args.seed, avoid)
        sys.stdout.write(script_to_text(s))
        return 0
    if not args.start and not (args.ref and args.sim):
        ap.error("give --start, or --ref and --sim")
    if (args.runs > 1 or args.minimise) and not args.start:
        ap.error("--runs and --minimise need --start (fresh daemons per run)")

    known = load_known(args.known)
    if args.script:
        directives = script_directives(open(args.script).read())
        if "history-seconds" in directives and args.history_seconds is None:
            args.history_seconds = float(directives["history-seconds"])
        if directives.get("strict"):
            known = load_known(None)
    status = 0
    seeds = [None] if args.script else range(args.seed, args.seed + args.runs)
    for seed in seeds:
        if args.until and time.time() > args.until:
            print("stopped before seed %s: --until reached" % seed, flush=True)
            break
        if seed is None:
            script = script_from_text(open(args.script).read())
            label = args.script
        else:
            script = make_script(args, seed, avoid)
            label = "seed %d" % seed
        t0 = time.monotonic()
        try:
            a, b = run_script(script, args)
        except RuntimeError as e:   # a daemon did not come up (a loaded machine): not a result
            print("%s (profile %s): not run: %s" % (label, args.profile, e), flush=True)
            status = 2
            continue
        if args.transcripts:
            for r, suffix in ((a, "ref"), (b, "xensim")):
                with open("%s.%s.txt" % (args.transcripts, suffix), "w") as f:
                    f.write("\n".join(t for _, t in r.lines) + "\n")
        skipped = []
        i = first_diff(a, b, known, skipped)
        dt = time.monotonic() - t0
        for _, sig in skipped:
            print("%s: known difference: %s" % (label, sig.replace("\t", " | ")))
        if i is None:
            print("%s (profile %s, %d steps): equal%s, %d lines, %.1fs" % (
                label, args.profile, len(script), " apart from known differences" if skipped
                else "", len(a.lines), dt), flush=True)
            continue
        status = 1
        print("%s (profile %s, %d steps): DIFFERENT, %.1fs" % (label, args.profile, len(script), dt))
        report(a, b, i, script)
        sig = signature(a, b, i)
        print("signature:\t" + sig)
        if args.minimise:
            small = minimise(script, sig, args, known)
            print("=== minimised script (%d steps; run with --script FILE) ===" % len(small))
            sys.stdout.write(script_to_text(small))
            a, b = run_script(small, args)
            j = first_diff(a, b, known)
            if j is not None:
                report(a, b, j, small, context=200)
        sys.stdout.flush()
        if not args.keep_going:
            break
    return status


if __name__ == "__main__":
    sys.exit(main())
