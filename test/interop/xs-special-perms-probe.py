#!/usr/bin/env python3
# GET_PERMS and SET_PERMS of @introduceDomain / @releaseDomain on the oracle (../shared/oracle),
# from dom0 (the socket) and from guest 5 (the shim's shared ring), after each ACL dom0 gives the
# guest; then which errno C answers for a refused SET_PERMS of a special node after other
# requests. Prints a transcript; test/dom0/xenstored/watches.test.ts quotes it
# (special-perms-oracle-c.txt, special-perms-oracle-ocaml.txt). Run on a freshly started server.
#
#   xs-special-perms-probe.py ORACLE_DIR SOCKET   (the rings in SOCKET.rings, as start.sh makes them)
import sys

sys.path.insert(0, sys.argv[1])
xp = __import__("xs-probe")
path = sys.argv[2]
D = xp.Conn(path, "D")
D.req("INTRODUCE", b"5\0" + b"4711\0" + b"9\0")
G = xp.RingConn(path + ".rings", 5, "G")
S = [b"@introduceDomain", b"@releaseDomain"]

print("## the guest's first request, then the guest on untouched special nodes")
G.req("SET_PERMS", b"@introduceDomain\0n5\0")
for s in S:
    G.req("GET_PERMS", s + b"\0")
    G.req("SET_PERMS", s + b"\0n5\0")
    G.req("SET_PERMS", s + b"\0n0\0r5\0")
print("## dom0 reads them")
for s in S:
    D.req("GET_PERMS", s + b"\0")
print("## dom0 gives the guest r5")
for s in S:
    D.req("SET_PERMS", s + b"\0n0\0r5\0")
    D.req("GET_PERMS", s + b"\0")
    G.req("GET_PERMS", s + b"\0")
    G.req("SET_PERMS", s + b"\0n5\0")
print("## dom0 gives the guest b5 (read and write, not owner)")
for s in S:
    D.req("SET_PERMS", s + b"\0n0\0b5\0")
    G.req("SET_PERMS", s + b"\0n0\0b5\0")
print("## dom0 makes the guest the owner")
for s in S:
    D.req("SET_PERMS", s + b"\0n5\0")
    D.req("GET_PERMS", s + b"\0")
    G.req("GET_PERMS", s + b"\0")
    G.req("SET_PERMS", s + b"\0n5\0r0\0")
    D.req("GET_PERMS", s + b"\0")
print("## the guest's refused SET_PERMS after other requests (theirs or dom0's)")
D.req("SET_PERMS", b"@releaseDomain\0n0\0")
D.req("READ", b"/none\0")
G.req("SET_PERMS", b"@releaseDomain\0n5\0")
D.req("READ", b"//bad\0")
G.req("SET_PERMS", b"@releaseDomain\0n5\0")
G.req("READ", b"/tool/xenstored\0")
G.req("SET_PERMS", b"@releaseDomain\0n5\0")
D.req("READ", b"//bad\0")
D.req("WRITE", b"/new\0v")
G.req("SET_PERMS", b"@releaseDomain\0n5\0")
D.req("READ", b"//bad\0")
D.req("WRITE", b"/new\0w")
G.req("SET_PERMS", b"@releaseDomain\0n5\0")
print("## an @name that is not special, and malformed ACLs")
for c in (D, G):
    c.req("SET_PERMS", b"@bogus\0n0\0")
    c.req("GET_PERMS", b"@bogus\0")
D.req("SET_PERMS", b"@introduceDomain\0x1\0")
D.req("SET_PERMS", b"@introduceDomain\0")
