#!/usr/bin/env python3
# Observes C xenstored 4.17's memory quota, XSA-326 charging of queued watch events, the
# watch-event timeout and the write-rate limiter on the oracle (../shared/oracle), through a
# fake guest on the shim's shared ring. Prints a transcript; test/dom0/xenstored/limits.test.ts
# quotes it beside each test (limits-oracle.txt).
#
#   xs-limits-probe.py ORACLE_DIR PART SOCKET
#   PART: memory (start the server with -Q memory=8192 -q memory=4096),
#         events (same server options), timeout (-w watch-event=1), wrl, duplicates (defaults)
import struct
import sys
import time

sys.path.insert(0, sys.argv[1])
xp = __import__("xs-probe")
Conn, RingConn, OP, HDR = xp.Conn, xp.RingConn, xp.OP, xp.HDR
Z = b"\0"


def quiet(c, op, payload=b"", tx=0):
    """One request, the reply's type name and body (watch events skipped)."""
    c.rid += 1
    c._send(HDR.pack(OP[op], c.rid, tx, len(payload)) + payload)
    while True:
        m = c._recv_msg(5.0)
        if m is None or m == "EOF":
            return ("NONE", b"")
        if m[1] == c.rid and m[0] != OP["WATCH_EVENT"]:
            return (xp.OPS[m[0]], m[3])


def guest(a, ringdir, domid):
    quiet(a, "INTRODUCE", b"%d\0%d\0%d\0" % (domid, 1000 + domid, 7))
    home = b"/local/domain/%d" % domid
    quiet(a, "MKDIR", home + Z)
    quiet(a, "SET_PERMS", home + Z + b"n%d\0" % domid)
    return RingConn(ringdir, domid, "G%d" % domid)


def memline(a, domid):
    _, body = quiet(a, "CONTROL", b"quota\0%d\0" % domid)
    return body.rstrip(Z).decode().replace("\n", " | ")


def count_events(g, wait):
    n = 0
    while True:
        m = g._recv_msg(wait)
        if m is None or m == "EOF":
            return n
        if m[0] == OP["WATCH_EVENT"]:
            n += 1


def part_memory(a, ringdir):
    print("## CONTROL quota / quota-soft (-Q memory=8192 -q memory=4096)")
    for q in (b"quota\0", b"quota-soft\0"):
        ty, body = quiet(a, "CONTROL", q)
        print(ty)
        print(body.rstrip(Z).decode(), end="")
    g = guest(a, ringdir, 3)
    print("## guest 3 fresh:", memline(a, 3))
    # each node: 24-byte header + 8 per ACL entry + 200-byte value + path length
    for i in range(40):
        ty, body = quiet(g, "WRITE", b"/local/domain/3/n%02d\0" % i + b"x" * 200)
        if ty != "WRITE":
            print("write n%02d -> %s %s" % (i, ty, body.rstrip(Z).decode()))
            print("   ", memline(a, 3))
            break
        print("write n%02d -> OK    %s" % (i, memline(a, 3)))
    ty, body = quiet(g, "WRITE", b"/local/domain/3/s\0x")
    print("small write after -> %s %s   %s" % (ty, body.rstrip(Z).decode(), memline(a, 3)))
    ty, body = quiet(g, "WATCH", b"/local/domain/3/w\0tok\0")
    print("watch after -> %s %s   %s" % (ty, body.rstrip(Z).decode(), memline(a, 3)))
    ty, body = quiet(g, "RM", b"/local/domain/3/n00\0")
    print("rm n00 -> %s   %s" % (ty, memline(a, 3)))
    ty, body = quiet(g, "WATCH", b"/local/domain/3/w\0tok\0")
    print("watch again -> %s %s   %s" % (ty, body.rstrip(Z).decode(), memline(a, 3)))
    # dom0 writes a node owned by the guest: no quota for the privileged writer
    ty, body = quiet(a, "WRITE", b"/local/domain/3/big\0" + b"y" * 1000)
    print("dom0 writes 1000 bytes into the guest's home -> %s   %s" % (ty, memline(a, 3)))
    ty, body = quiet(g, "READ", b"/local/domain/3/big\0")
    print("guest read once over hard quota -> %s %d bytes" % (ty, len(body)))


def setq(a, v):
    return quiet(a, "CONTROL", b"quota\0set\0memory\0%d\0" % v)[0]


def part_boundary(a, ringdir):
    print("## hard memory quota at its boundary (CONTROL quota set memory N)")
    g = guest(a, ringdir, 3)
    print("fresh:", memline(a, 3))
    for q in (302, 303):
        setq(a, q)
        print("quota %d: guest writes n00 (200 bytes) -> %s %s   %s" % (
            (q,) + quiet(g, "WRITE", b"/local/domain/3/n00\0" + b"x" * 200) + (memline(a, 3),)))
    for q in (322, 323):
        setq(a, q)
        print("quota %d: guest watches /local/domain/3/w tok -> %s %s   %s" % (
            (q,) + quiet(g, "WATCH", b"/local/domain/3/w\0tok\0") + (memline(a, 3),)))
    setq(a, 200)
    print("quota 200 (below use): guest rewrites n00 with 1 byte -> %s %s   %s" % (
        quiet(g, "WRITE", b"/local/domain/3/n00\0x") + (memline(a, 3),)))
    setq(a, 120)
    print("quota 120: guest rewrites n00 with 1 byte again -> %s %s   %s" % (
        quiet(g, "WRITE", b"/local/domain/3/n00\0y") + (memline(a, 3),)))
    print("quota 120: dom0 writes /local/domain/3/d0 -> %s %s   %s" % (
        quiet(a, "WRITE", b"/local/domain/3/d0\0z") + (memline(a, 3),)))
    print("quota 120: dom0 writes /local/domain/3/n00 (guest-owned) -> %s %s   %s" % (
        quiet(a, "WRITE", b"/local/domain/3/n00\0" + b"z" * 50) + (memline(a, 3),)))
    print("quota 120: guest unwatches -> %s %s   %s" % (
        quiet(g, "UNWATCH", b"/local/domain/3/w\0tok\0") + (memline(a, 3),)))
    setq(a, 90)
    print("quota 90: guest rm n00 -> %s %s   %s" % (
        quiet(g, "RM", b"/local/domain/3/n00\0") + (memline(a, 3),)))
    setq(a, 1000)
    t = quiet(g, "TRANSACTION_START", Z)[1].rstrip(Z)
    print("quota 1000: guest starts transaction", t.decode(), memline(a, 3))
    for i in range(10):
        r = quiet(g, "WRITE", b"/local/domain/3/t%d\0" % i + b"x" * 200, tx=int(t))
        print("  tx write t%d -> %s %s   %s" % ((i,) + r + (memline(a, 3),)))
        if r[0] != "WRITE":
            break
    print("  commit ->", quiet(g, "TRANSACTION_END", b"T\0", tx=int(t)), memline(a, 3))


def pub_dir(a, domid):
    """A dom0-owned directory the guest may read: its nodes are dom0's, its events the guest's."""
    pub = b"/local/domain/%d/pub" % domid
    quiet(a, "MKDIR", pub + Z)
    quiet(a, "SET_PERMS", pub + Z + b"n0\0r%d\0" % domid)
    return pub


def part_replies(a, ringdir):
    print("## a reply over 16 bytes is charged with a check (send_reply)")
    g = guest(a, ringdir, 3)
    print("write n00 ->", quiet(g, "WRITE", b"/local/domain/3/n00\0" + b"x" * 200)[0], memline(a, 3))
    for q in (302 + 216, 302 + 217):
        setq(a, q)
        ty, body = quiet(g, "READ", b"/local/domain/3/n00\0")
        print("quota %d: guest reads n00 (200 bytes) -> %s %s" % (q, ty, body[:8]))
    setq(a, 303)
    ty, body = quiet(g, "READ", b"/local/domain/3\0")
    print("quota 303: guest reads its home (0 bytes) -> %s %r" % (ty, body))
    ty, body = quiet(g, "DIRECTORY", b"/local/domain/3\0")
    print("quota 303: guest lists its home (4 bytes) -> %s %r" % (ty, body))


def part_events(a, ringdir):
    print("## XSA-326: queued events charged to the guest (-Q memory=8192)")
    g = guest(a, ringdir, 4)
    pub = pub_dir(a, 4)
    print("watch ->", quiet(g, "WATCH", pub + Z + b"tok\0")[0])
    print("initial events read:", count_events(g, 0.2))
    print("after watch:", memline(a, 4))
    # The guest stops reading: events fill the 1024-byte ring, then queue in the daemon.
    for i in range(400):
        quiet(a, "WRITE", pub + b"/e%03d\0v" % i)
        if i % 40 == 39:
            print("dom0 wrote %3d nodes: %s" % (i + 1, memline(a, 4)))
    print("guest reads its events:", count_events(g, 0.5))
    print("after reading:", memline(a, 4))


def part_duplicates(a, ringdir):
    print("## send_event(): an event identical to one still queued is dropped (defaults)")
    g = guest(a, ringdir, 7)
    pub = pub_dir(a, 7)
    print("watch ->", quiet(g, "WATCH", pub + Z + b"tok\0")[0])
    print("initial events read:", count_events(g, 0.2))
    # The guest stops reading: 60 rounds over the same 10 nodes. What fits the 1024-byte ring
    # is written there; of the rest, one event per node waits in the daemon.
    for r in range(60):
        for i in range(10):
            quiet(a, "WRITE", pub + b"/d%d\0v%d" % (i, r))
    print("dom0 rewrote 10 nodes 60 times:", memline(a, 7))
    print("guest reads its events:", count_events(g, 0.5))
    print("after reading:", memline(a, 7))
    for i in range(10):
        quiet(a, "WRITE", pub + b"/d%d\0again" % i)
    print("dom0 rewrites the 10 nodes once more; guest reads:", count_events(g, 0.5))


def part_timeout(a, ringdir):
    print("## watch-event timeout (-w watch-event=1)")
    g = guest(a, ringdir, 5)
    pub = pub_dir(a, 5)
    print("watch ->", quiet(g, "WATCH", pub + Z + b"tok\0")[0])
    print("initial events read:", count_events(g, 0.2))
    for i in range(60):
        quiet(a, "WRITE", pub + b"/e%03d\0v" % i)
    print("dom0 wrote 60 nodes:", memline(a, 5))
    time.sleep(2.5)
    print("2.5 s later:", memline(a, 5))
    print("guest reads its events:", count_events(g, 0.5))
    print("after reading:", memline(a, 5))


def part_wrl(a, ringdir):
    print("## write-rate limiter (4.17 constants: 200 writes/s shared, domain burst 10, global burst 1000)")
    g = guest(a, ringdir, 6)
    quiet(g, "WRITE", b"/local/domain/6/r\0v")
    for label in ("no transaction open", "dom0 holds a transaction open"):
        if label.startswith("dom0"):
            quiet(a, "TRANSACTION_START", Z)
        t0 = time.monotonic()
        times = []
        for i in range(1600):
            quiet(g, "WRITE", b"/local/domain/6/r\0v")  # one node rewritten: one debit each
            times.append(time.monotonic() - t0)
        print("%s: 1600 rewrites in %.2f s; writes 1400-1600 at %.0f writes/s"
              % (label, times[-1], 200 / (times[-1] - times[1399])))


def main():
    oracle_dir, part, sock = sys.argv[1], sys.argv[2], sys.argv[3]
    a = Conn(sock, "A")
    {"memory": part_memory, "boundary": part_boundary, "replies": part_replies, "events": part_events, "duplicates": part_duplicates,
     "timeout": part_timeout,
     "wrl": part_wrl}[part](a, sock + ".rings")


main()
