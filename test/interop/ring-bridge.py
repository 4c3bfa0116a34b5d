#!/usr/bin/python3
"""ring-bridge.py PROBE RINGDIR GUESTDIR DOMID - gives a real daemon a --guest-dir socket.

Harness check only (XENSIM_INTEROP_DAEMON=oracle): the real C xenstored / oxenstored have no
--guest-dir, but the oracle's shim exposes a guest's ring page as RINGDIR/ring-<domid>. This
listens on GUESTDIR/<domid>, accepts one connection, and then moves bytes between that socket and
the ring with the probe's own RingConn (imported from PROBE, ../shared/oracle/xs-probe.py), so
test/interop/xs-probe-guestdir.py can be run end to end against the real daemons.
It exits when the client closes its socket.
"""
import importlib.util
import os
import select
import socket
import sys

probe_path, ringdir, guestdir, domid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
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
