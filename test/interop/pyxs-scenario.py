#!/usr/bin/python3
"""pyxs-scenario.py SOCKET - drives a xenstored through pyxs (Debian's python3-pyxs) and prints
what it observed as one JSON object; test/interop/pyxs.test.ts checks it.

Covers read/write/mkdir/list/exists/delete, permissions, domain paths, a transaction that
conflicts (commit() returns False) and is retried until it commits, and watch events.
Every blocking wait is bounded; the whole run is bounded by SIGALRM.
"""
import json
import queue
import signal
import sys
import threading

from pyxs import Client, PyXSError

# A hang guard, not a time limit (test/helpers/wait.ts): SIGALRM kills a hung run, and the test
# then fails on its exit status. A busy machine only makes the run slower.
signal.alarm(100)

sock = sys.argv[1]
out = {}


def err_of(f):
    """Runs f; returns its result, or the errno name of the PyXSError it raised."""
    try:
        return f()
    except PyXSError as e:
        import errno
        return "error:" + errno.errorcode.get(e.args[0], str(e.args[0]))


def s(v):
    """bytes -> str, recursively, for JSON."""
    if isinstance(v, bytes):
        return v.decode("latin1")
    if isinstance(v, (list, tuple)):
        return [s(x) for x in v]
    if isinstance(v, dict):
        return {k: s(x) for k, x in v.items()}
    return v


with Client(unix_socket_path=sock) as c, Client(unix_socket_path=sock) as other:
    # --- basic operations
    c.write(b"/pyxs/a", b"1")
    c[b"/pyxs/b"] = b"two"
    out["read_a"] = c.read(b"/pyxs/a")
    out["getitem_b"] = c[b"/pyxs/b"]
    out["read_missing"] = err_of(lambda: c.read(b"/pyxs/none"))
    out["read_default"] = c.read(b"/pyxs/none", b"dflt")
    c.mkdir(b"/pyxs/dir/sub")
    out["read_mkdir"] = c.read(b"/pyxs/dir/sub")
    out["list"] = c.list(b"/pyxs")
    out["list_empty"] = c.list(b"/pyxs/dir/sub")
    out["exists_a"] = c.exists(b"/pyxs/a")
    out["exists_none"] = c.exists(b"/pyxs/none")
    c.write(b"/pyxs/bin", b"a\x00b\x7f")  # pyxs sends only NUL and 0x20-0x7f
    out["read_bin"] = list(c.read(b"/pyxs/bin"))
    c.delete(b"/pyxs/dir")
    out["list_after_delete"] = c.list(b"/pyxs")
    out["delete_missing_parent"] = err_of(lambda: c.delete(b"/pyxs/none/deeper"))
    out["walk"] = [[p, v, ch] for p, v, ch in c.walk(b"/pyxs")]
    out["domain_path"] = c.get_domain_path(7)
    out["is_introduced_0"] = c.is_domain_introduced(0)
    out["is_introduced_9"] = c.is_domain_introduced(9)

    # --- permissions
    out["perms_default"] = c.get_perms(b"/pyxs/a")
    c.set_perms(b"/pyxs/a", [b"n1", b"r2", b"w3"])
    out["perms_set"] = c.get_perms(b"/pyxs/a")
    c.write(b"/pyxs/a/child", b"c")
    out["perms_inherited"] = c.get_perms(b"/pyxs/a/child")
    out["perms_missing"] = err_of(lambda: c.get_perms(b"/pyxs/none"))
    out["read_other_conn"] = other.read(b"/pyxs/a")  # dom0: privileged, ignores perms

    # --- a transaction that conflicts, then is retried until it commits
    c.write(b"/pyxs/counter", b"0")
    attempts = []
    for attempt in range(5):
        c.transaction()
        v = int(c.read(b"/pyxs/counter"))
        if attempt == 0:
            other.write(b"/pyxs/counter", b"10")  # conflicting write outside the transaction
        c.write(b"/pyxs/counter", str(v + 1).encode())
        out.setdefault("tx_in_tx_read", c.read(b"/pyxs/counter"))
        ok = c.commit()
        attempts.append(ok)
        if ok:
            break
    out["tx_attempts"] = attempts
    out["tx_final"] = c.read(b"/pyxs/counter")

    # --- transaction rollback leaves no trace
    c.transaction()
    c.write(b"/pyxs/rolled", b"x")
    c.rollback()
    out["rollback_exists"] = c.exists(b"/pyxs/rolled")

    # --- watches
    m = c.monitor()
    events = queue.Queue()

    def pump():
        try:
            for ev in m.wait():
                events.put(ev)
        except Exception as e:  # router closed at exit
            events.put(("pump-ended", repr(e)))

    m.watch(b"/pyxs/w", b"tok")
    threading.Thread(target=pump, daemon=True).start()

    def next_event():
        try:
            ev = events.get(timeout=60)  # an event that is due: wait for it (hang guard only)
        except queue.Empty:
            return "timeout"
        return list(ev)

    out["ev_initial"] = next_event()
    other.write(b"/pyxs/w/x", b"1")
    out["ev_write_child"] = next_event()
    other.write(b"/pyxs/w", b"top")
    out["ev_write_self"] = next_event()
    other.transaction()
    other.write(b"/pyxs/w/y", b"in-tx")
    try:
        out["ev_before_commit"] = list(events.get(timeout=0.2))  # none is due before the commit
    except queue.Empty:
        out["ev_before_commit"] = "none"
    out["tx2_commit"] = other.commit()
    out["ev_commit"] = next_event()
    other.delete(b"/pyxs/w")
    out["ev_delete"] = next_event()
    other.write(b"/pyxs/elsewhere", b"1")
    m.unwatch(b"/pyxs/w", b"tok")
    other.write(b"/pyxs/w", b"after-unwatch")
    try:
        ev = events.get(timeout=0.3)
        out["ev_after_unwatch"] = list(ev)
    except queue.Empty:
        out["ev_after_unwatch"] = "none"

    c.delete(b"/pyxs")
    out["cleaned"] = not c.exists(b"/pyxs")

print(json.dumps(s(out), sort_keys=True))
sys.stdout.flush()
signal.alarm(0)
