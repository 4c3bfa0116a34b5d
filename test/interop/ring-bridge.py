#!/usr/bin/python3
"""ring-bridge.py PROBE RINGDIR GUESTDIR DOMID [--close-on-error] - gives a real daemon a --guest-dir socket.

Harness check only (XENSIM_INTEROP_DAEMON=oracle): the real C xenstored / oxenstored have no
--guest-dir, but the oracle's shim exposes a guest's ring page as RINGDIR/ring-<domid>. This
listens on GUESTDIR/<domid>, accepts one connection, and then moves bytes between that socket and
the ring with the probe's own RingConn (imported from PROBE, ../shared/oracle/xs-probe.py), so
test/interop/xs-probe-guestdir.py can be run end to end against the real daemons.
It exits when the client closes its socket. With --close-on-error it also closes the socket, as
a transport ending the connection would, once the daemon has written the page's `error` field
(C xenstored ignoring the ring); it then never blocks on a full req[] either.
"""
import ctypes
import importlib.util
import os
import select
import socket
import sys

probe_path, ringdir, guestdir, domid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
close_on_error = "--close-on-error" in sys.argv[5:]
ERROR = 2072  # struct xenstore_domain_interface: error
spec = importlib.util.spec_from_file_location("xs_probe", probe_path)
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)

os.makedirs(guestdir, exist_ok=True)
path = "%s/%d" % (guestdir, domid)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
print("listening", flush=True)
conn, _ = srv.accept()
srv.close()
os.unlink(path)
ring = probe.RingConn(ringdir, domid, "bridge")  # the ring file exists once domid is introduced

if not close_on_error:
    while True:
        r, _, _ = select.select([conn], [], [], 0.0005)
        if r:
            data = conn.recv(65536)
            if not data:
                break
            ring._send(data)
        data = ring._recv(0)
        if data:
            conn.sendall(bytes(data))
else:
    error = ctypes.c_uint32.from_buffer(ring.m, ERROR)
    pending = b""
    while True:
        r, _, _ = select.select([conn], [], [], 0.0005)
        if r:
            data = conn.recv(65536)
            if not data:
                break
            pending += data
        # What fits of the pending bytes into req[], never waiting for room.
        prod = ring._idx(ring.REQ_PROD)
        space = ring.RING - ((prod - ring._idx(ring.REQ_CONS)) & 0xFFFFFFFF)
        if pending and space:
            off = prod % ring.RING
            n = min(space, ring.RING - off, len(pending))
            ring.m[off:off + n] = pending[:n]
            ring._set_idx(ring.REQ_PROD, prod + n)
            pending = pending[n:]
            ring._kick()
        data = ring._recv(0)
        if data:
            conn.sendall(bytes(data))
        elif error.value != 0:
            break
    del error
    conn.close()
