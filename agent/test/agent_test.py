#!/usr/bin/env python3
"""Standalone protocol test for sbx-agent (run on the host, agent is not PID 1).

Usage: python3 agent/test/agent_test.py [path/to/sbx-agent]
Prints one line per check and a final "N passed, M failed".
"""
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build", "sbx-agent")

# Mirrors agent/proto.h
HELLO, EXEC, STDIN, STDIN_CLOSE, SIGNAL = 1, 2, 3, 4, 5
OK, ERR, EXIT = 128, 129, 130
F = dict(REQ=1, ID=2, ARG=3, ENV=4, CWD=5, TIMEOUT_MS=6, OFFSET=7, DATA=8, SIGNAL=9, CODE=10,
         MSG=11, VERSION=12, FEATURES=13, FLAGS=14, PID=15, REASON=16, UID=17, GID=18)
TAGNAME = {v: k for k, v in F.items()}
FRAME_MAX = 1024 * 1024 + 4096
MIB = 1024 * 1024

passed = failed = 0
CREATED = []  # temp run dirs, removed when everything passed


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def b(v):
    if isinstance(v, bytes):
        return v
    return str(v).encode()


def field(tag, val):
    v = b(val)
    return struct.pack(">BI", tag, len(v)) + v


def frame(ftype, fields):
    body = bytes([ftype]) + b"".join(field(F[k] if isinstance(k, str) else k, v) for k, v in fields)
    return struct.pack(">I", len(body)) + body


def parse_fields(payload):
    out, pos = {}, 0
    while pos < len(payload):
        tag, ln = struct.unpack(">BI", payload[pos:pos + 5])
        out.setdefault(TAGNAME.get(tag, tag), []).append(payload[pos + 5:pos + 5 + ln])
        pos += 5 + ln
    return {k: (v[0] if len(v) == 1 else v) for k, v in out.items()}


class Client:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(path)
        self.buf = b""
        self.req = 0
        self.events = []

    def close(self):
        self.s.close()

    def send_raw(self, data):
        self.s.sendall(data)

    def read_frame(self):
        while True:
            if len(self.buf) >= 4:
                (ln,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + ln:
                    body = self.buf[4:4 + ln]
                    self.buf = self.buf[4 + ln:]
                    return body[0], parse_fields(body[1:])
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def call(self, ftype, fields):
        self.req += 1
        self.send_raw(frame(ftype, [("REQ", self.req)] + list(fields)))
        while True:
            fr = self.read_frame()
            if fr is None:
                raise ConnectionError("closed")
            t, f = fr
            if t == EXIT:
                self.events.append(f)
                continue
            assert f.get("REQ") == b(self.req), (t, f)
            return t, f

    def wait_exit(self, exec_id, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.events:
                if e["ID"] == b(exec_id):
                    self.events.remove(e)
                    return int(e["CODE"]), e["REASON"].decode()
            self.s.settimeout(max(0.1, deadline - time.time()))
            fr = self.read_frame()
            self.s.settimeout(10)
            if fr is None:
                raise ConnectionError("closed")
            if fr[0] == EXIT:
                self.events.append(fr[1])
        raise TimeoutError(exec_id)

    def is_closed_by_peer(self, timeout=3):
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True


class Agent:
    def __init__(self, extra=(), run=None, preexec=None):
        self.dir = run or tempfile.mkdtemp(prefix="sbx-agent-test.")
        CREATED.append(self.dir)
        self.sock = os.path.join(self.dir, "agent.sock")
        self.errlog = open(self.dir + ".log", "wb")
        self.p = subprocess.Popen([AGENT, "--run-dir", self.dir, *extra], stderr=self.errlog,
                                  stdin=subprocess.DEVNULL, preexec_fn=preexec)
        for _ in range(200):
            if os.path.exists(self.sock):
                break
            time.sleep(0.01)

    def client(self):
        return Client(self.sock)

    def read(self, exec_id, name):
        with open(os.path.join(self.dir, "procs", exec_id, name), "rb") as fh:
            return fh.read()

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def exec_and_wait(c, exec_id, argv, extra=()):
    t, f = c.call(EXEC, [("ID", exec_id)] + [("ARG", a) for a in argv] + list(extra))
    if t != OK:
        return t, f, None
    return t, f, c.wait_exit(exec_id)


def test_basic(ag):
    c = ag.client()
    t, f = c.call(HELLO, [])
    check("hello", t == OK and f["VERSION"] == b"1" and f["FEATURES"] == b"exec,stdin,signal,exit-events,user", f)

    t, f, ex = exec_and_wait(c, "e1", ["sh", "-c", "echo out; echo err >&2; exit 42"])
    check("exec ok has pid", t == OK and int(f["PID"]) > 0, f)
    check("exec exit event", ex == (42, "exited"), ex)
    check("exec stdout", ag.read("e1", "stdout") == b"out\n")
    check("exec stderr", ag.read("e1", "stderr") == b"err\n")
    check("exec exit file", ag.read("e1", "exit") == b"42 exited\n", ag.read("e1", "exit"))
    check("no exit.tmp left", not os.path.exists(os.path.join(ag.dir, "procs", "e1", "exit.tmp")))

    t, f = c.call(EXEC, [("ID", "e1"), ("ARG", "true")])
    check("reused exec id -> ERR", t == ERR and b"used" in f["MSG"], f)

    _, _, ex = exec_and_wait(c, "env1", ["sh", "-c", 'echo "$FOO $BAR"; pwd'],
                             [("ENV", "FOO=1"), ("ENV", "BAR=x=y"), ("ENV", "FOO=2"), ("CWD", "/tmp")])
    check("env override + cwd", ag.read("env1", "stdout") == b"2 x=y\n/tmp\n", ag.read("env1", "stdout"))

    _, _, ex = exec_and_wait(c, "path1", ["mytool"], [("ENV", "PATH=" + ag.dir + "/bin")])
    os.makedirs(os.path.join(ag.dir, "bin"), exist_ok=True)
    check("PATH from ENV used for lookup (missing)", ex == (127, "failed"), ex)
    tool = os.path.join(ag.dir, "bin", "mytool")
    with open(tool, "w") as fh:
        fh.write("#!/bin/sh\necho tool\n")
    os.chmod(tool, 0o755)
    _, _, ex = exec_and_wait(c, "path2", ["mytool"], [("ENV", "PATH=" + ag.dir + "/bin:/usr/bin:/bin")])
    check("PATH from ENV used for lookup", ex == (0, "exited") and ag.read("path2", "stdout") == b"tool\n", ex)

    _, _, ex = exec_and_wait(c, "fds", ["sh", "-c", "ls /proc/$$/fd"])
    check("child inherits only fds 0,1,2", ag.read("fds", "stdout").split() == [b"0", b"1", b"2"],
          ag.read("fds", "stdout"))

    _, _, ex = exec_and_wait(c, "sigmask", ["sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status"])
    out = ag.read("sigmask", "stdout")
    check("child signal mask and dispositions reset", b"SigBlk:\t0000000000000000" in out and
          b"SigIgn:\t0000000000000000" in out, out)

    _, _, ex = exec_and_wait(c, "sess", ["sh", "-c", "ps -o sid=,pgid= -p $$"])
    sid, pgid = ag.read("sess", "stdout").split()
    t_ok = sid == pgid
    check("child is session + group leader", t_ok and ex == (0, "exited"), (sid, pgid))

    _, _, ex = exec_and_wait(c, "quiet", ["sh", "-c", "echo a; echo b >&2"], [("FLAGS", "3")])
    check("FLAGS=3 discards output", ag.read("quiet", "stdout") == b"" and ag.read("quiet", "stderr") == b"")

    _, _, ex = exec_and_wait(c, "nobin", ["/nonexistent/binary"])
    check("missing binary -> 127 failed", ex == (127, "failed"), ex)
    check("missing binary message", b"sbx: cannot execute /nonexistent/binary: No such file" in ag.read("nobin", "stderr"),
          ag.read("nobin", "stderr"))
    check("failed exit file", ag.read("nobin", "exit") == b"127 failed\n")

    _, _, ex = exec_and_wait(c, "nobin2", ["no-such-cmd-xyz"], [("FLAGS", "2")])
    check("failure message written even with FLAGS=2", ex == (127, "failed") and b"cannot execute" in ag.read("nobin2", "stderr"))

    _, _, ex = exec_and_wait(c, "noexec", ["/etc/passwd"])
    check("not executable -> 126 failed", ex == (126, "failed"), ex)

    _, _, ex = exec_and_wait(c, "badcwd", ["true"], [("CWD", "/nonexistent/dir")])
    check("bad cwd -> 126 failed", ex == (126, "failed"), ex)
    check("bad cwd message", ag.read("badcwd", "stderr").startswith(b"sbx: cannot chdir to /nonexistent/dir: No such file"),
          ag.read("badcwd", "stderr"))

    _, _, ex = exec_and_wait(c, "user1", ["sh", "-c", "id -u; id -g; id -G"], [("UID", "65534"), ("GID", "65533")])
    check("UID/GID: runs as that user with only that group", ex == (0, "exited") and
          ag.read("user1", "stdout") == b"65534\n65533\n65533\n", ag.read("user1", "stdout"))

    _, _, ex = exec_and_wait(c, "exit127", ["sh", "-c", "exit 127"])
    check("real exit 127 is 'exited'", ex == (127, "exited"), ex)

    t, f = c.call(EXEC, [("ID", "sig1"), ("ARG", "sleep"), ("ARG", "100")])
    t2, f2 = c.call(SIGNAL, [("ID", "sig1"), ("SIGNAL", "15")])
    check("signal ok", t == OK and t2 == OK, (f, f2))
    check("signaled exit", c.wait_exit("sig1") == (143, "signaled"))
    t, f = c.call(SIGNAL, [("ID", "sig1"), ("SIGNAL", "15")])
    check("signal after exit -> ERR", t == ERR and f["MSG"] == b"process has exited", f)
    t, f = c.call(SIGNAL, [("ID", "never"), ("SIGNAL", "15")])
    check("signal unknown id -> ERR", t == ERR and f["MSG"] == b"no such process", f)

    # Exit events go to every connected client.
    c2 = ag.client()
    c2.call(HELLO, [])
    c.call(EXEC, [("ID", "bc"), ("ARG", "true")])
    check("exit broadcast to other client", c2.wait_exit("bc") == (0, "exited"))
    c.wait_exit("bc")
    c2.close()
    c.close()


def test_stdin(ag):
    c = ag.client()
    t, f = c.call(EXEC, [("ID", "cat"), ("ARG", "sh"), ("ARG", "-c"), ("ARG", "sleep 1; exec cat")])
    check("cat started", t == OK, f)
    t, f = c.call(STDIN, [("ID", "cat"), ("OFFSET", 0), ("DATA", b"hello ")])
    check("stdin first write", t == OK and f["OFFSET"] == b"6", f)
    t, f = c.call(STDIN, [("ID", "cat"), ("OFFSET", 0), ("DATA", b"hello ")])
    check("stdin retried write applied once", t == OK and f["OFFSET"] == b"6", f)
    t, f = c.call(STDIN, [("ID", "cat"), ("OFFSET", 3), ("DATA", b"lo world")])
    check("stdin overlapping write", t == OK and f["OFFSET"] == b"11", f)
    t, f = c.call(STDIN, [("ID", "cat"), ("OFFSET", 12), ("DATA", b"x")])
    check("stdin gap -> ERR", t == ERR, f)
    t, f = c.call(STDIN, [("ID", "cat"), ("OFFSET", 11), ("DATA", b"")])
    check("stdin empty data", t == OK and f["OFFSET"] == b"11", f)

    rnd = random.Random(7)
    big = bytes(rnd.getrandbits(8) for _ in range(3 * MIB))
    expected = b"hello world" + big
    off = 11
    t, f = c.call(STDIN, [("ID", "cat"), ("OFFSET", off), ("DATA", big[:MIB])])
    acc1 = int(f["OFFSET"])
    t, f = c.call(STDIN, [("ID", "cat"), ("OFFSET", acc1), ("DATA", big[acc1 - 11:acc1 - 11 + MIB])])
    acc2 = int(f["OFFSET"])
    check("stdin partial acceptance when buffer full", t == OK and acc2 < acc1 + MIB and acc2 <= 11 + 2 * MIB + 65536 * 2,
          (acc1, acc2))
    pos, rounds = acc2, 0
    while pos < len(expected) and rounds < 1000:
        rounds += 1
        chunk = expected[pos:pos + MIB]
        t, f = c.call(STDIN, [("ID", "cat"), ("OFFSET", pos), ("DATA", chunk)])
        if t != OK:
            break
        newpos = int(f["OFFSET"])
        if newpos == pos:
            time.sleep(0.02)
        pos = newpos
    check("stdin all data accepted eventually", pos == len(expected), (pos, len(expected)))
    t1, _ = c.call(STDIN_CLOSE, [("ID", "cat")])
    t2, _ = c.call(STDIN_CLOSE, [("ID", "cat")])
    check("stdin close idempotent", t1 == OK and t2 == OK)
    t, f = c.call(STDIN, [("ID", "cat"), ("OFFSET", pos), ("DATA", b"more")])
    check("stdin after close with new bytes -> ERR", t == ERR, f)
    ex = c.wait_exit("cat", 30)
    check("cat exits 0 after STDIN_CLOSE", ex == (0, "exited"), ex)
    out = ag.read("cat", "stdout")
    check("cat stdout equals stdin", out == expected, (len(out), len(expected)))
    t, f = c.call(STDIN, [("ID", "cat"), ("OFFSET", 0), ("DATA", b"x")])
    check("stdin after exit -> ERR", t == ERR and f["MSG"] == b"process has exited", f)
    t, f = c.call(STDIN_CLOSE, [("ID", "cat")])
    check("stdin close after exit -> OK", t == OK, f)

    # A process that never reads and exits: EPIPE must not hurt the agent.
    t, f = c.call(EXEC, [("ID", "noread"), ("ARG", "sh"), ("ARG", "-c"), ("ARG", "exec 0<&-; sleep 0.3")])
    time.sleep(0.1)
    t, f = c.call(STDIN, [("ID", "noread"), ("OFFSET", 0), ("DATA", b"x" * 100000)])
    check("stdin to closed pipe handled", t in (OK, ERR), f)
    check("noread exits normally", c.wait_exit("noread") == (0, "exited"))
    check("agent alive after EPIPE", ag.p.poll() is None)
    c.close()


def test_timeout(ag):
    c = ag.client()
    pidfile = os.path.join(ag.dir, "pids")
    start = time.time()
    t, f = c.call(EXEC, [("ID", "to"), ("ARG", "sh"), ("ARG", "-c"),
                         ("ARG", f"sleep 100 & echo $! > {pidfile}; sleep 100 & echo $! >> {pidfile}; wait"),
                         ("TIMEOUT_MS", "500")])
    ex = c.wait_exit("to")
    el = time.time() - start
    check("timeout -> 137 timeout", ex == (137, "timeout"), ex)
    check("timeout fired on time", 0.4 < el < 3, el)
    check("timeout exit file", ag.read("to", "exit") == b"137 timeout\n")
    pids = [int(x) for x in open(pidfile).read().split()]
    alive = []
    for _ in range(50):
        alive = []
        for p in pids:
            try:
                os.kill(p, 0)
                alive.append(p)
            except ProcessLookupError:
                pass
        if not alive:
            break
        time.sleep(0.05)
    check("both sleeps killed and reaped", len(pids) == 2 and not alive, (pids, alive))
    c.close()


def expect_closed(ag, name, raw):
    c = ag.client()
    try:
        c.send_raw(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass
    closed = c.is_closed_by_peer()
    c.close()
    c2 = ag.client()
    t, f = c2.call(HELLO, [])
    c2.close()
    check(f"bad frame closes client: {name}", closed and t == OK and ag.p.poll() is None)


def test_malformed(ag):
    hello = frame(HELLO, [("REQ", 1)])
    cases = {
        "length 0": struct.pack(">I", 0),
        "length > max": struct.pack(">I", FRAME_MAX + 1) + b"\x01",
        "length 0xffffffff": b"\xff\xff\xff\xff",
        "truncated field": struct.pack(">I", 1 + 5 + 1) + bytes([HELLO]) + struct.pack(">BI", 1, 10) + b"1",
        "truncated field header": struct.pack(">I", 3) + bytes([HELLO, 1, 0]),
        "unknown tag": frame(HELLO, [("REQ", 1), (99, "x")]),
        "tag 0": frame(HELLO, [("REQ", 1), (0, "x")]),
        "tag not allowed for type": frame(HELLO, [("REQ", 1), ("ID", "x")]),
        "unknown type": frame(77, [("REQ", 1)]),
        "reply type from client": frame(OK, [("REQ", 1)]),
        "NUL in ARG": frame(EXEC, [("REQ", 1), ("ID", "n1"), ("ARG", b"tr\0ue")]),
        "NUL in CWD": frame(EXEC, [("REQ", 1), ("ID", "n2"), ("ARG", "true"), ("CWD", b"/tmp\0")]),
        "duplicate ID field": frame(EXEC, [("REQ", 1), ("ID", "d1"), ("ID", "d2"), ("ARG", "true")]),
        "duplicate REQ": frame(HELLO, [("REQ", 1), ("REQ", 2)]),
        "missing REQ": frame(HELLO, []),
        "missing ARG": frame(EXEC, [("REQ", 1), ("ID", "m1")]),
        "bad ID chars": frame(EXEC, [("REQ", 1), ("ID", "../x"), ("ARG", "true")]),
        "ID too long": frame(EXEC, [("REQ", 1), ("ID", "a" * 65), ("ARG", "true")]),
        "empty ID": frame(EXEC, [("REQ", 1), ("ID", ""), ("ARG", "true")]),
        "REQ not decimal": frame(HELLO, [("REQ", "-1")]),
        "REQ plus sign": frame(HELLO, [("REQ", "+1")]),
        "REQ 20 digits": frame(HELLO, [("REQ", "1" * 20)]),
        "REQ empty": frame(HELLO, [("REQ", "")]),
        "REQ leading zero": frame(HELLO, [("REQ", "01")]),
        "OFFSET with space": frame(STDIN, [("REQ", 1), ("ID", "x"), ("OFFSET", " 1"), ("DATA", "")]),
        "relative CWD": frame(EXEC, [("REQ", 1), ("ID", "c1"), ("ARG", "true"), ("CWD", "tmp")]),
        "ENV without =": frame(EXEC, [("REQ", 1), ("ID", "v1"), ("ARG", "true"), ("ENV", "FOO")]),
        "ENV empty key": frame(EXEC, [("REQ", 1), ("ID", "v2"), ("ARG", "true"), ("ENV", "=x")]),
        "UID without GID": frame(EXEC, [("REQ", 1), ("ID", "u1"), ("ARG", "true"), ("UID", "1")]),
        "UID 2^32-1": frame(EXEC, [("REQ", 1), ("ID", "u2"), ("ARG", "true"), ("UID", "4294967295"), ("GID", "0")]),
        "FLAGS 4": frame(EXEC, [("REQ", 1), ("ID", "fl"), ("ARG", "true"), ("FLAGS", "4")]),
        "SIGNAL 0": frame(SIGNAL, [("REQ", 1), ("ID", "x"), ("SIGNAL", "0")]),
        "SIGNAL 65": frame(SIGNAL, [("REQ", 1), ("ID", "x"), ("SIGNAL", "65")]),
        "STDIN missing DATA": frame(STDIN, [("REQ", 1), ("ID", "x"), ("OFFSET", "0")]),
        "valid then garbage": hello + b"\x00\x00\x00\x02\x01\xff",
    }
    for name, raw in cases.items():
        expect_closed(ag, name, raw)
    for bad_id in ("n1", "n2", "d1", "d2", "m1", "c1", "v1", "v2", "fl", "u1", "u2"):
        check(f"no side effect from bad frame ({bad_id})", not os.path.exists(os.path.join(ag.dir, "procs", bad_id)))

    # Partial frame then disconnect, and a frame split across many writes.
    c = ag.client()
    c.send_raw(struct.pack(">I", 100) + b"\x01")
    c.close()
    c = ag.client()
    raw = frame(HELLO, [("REQ", 5)])
    for i in range(len(raw)):
        c.send_raw(raw[i:i + 1])
        time.sleep(0.002)
    fr = c.read_frame()
    check("byte-by-byte frame", fr and fr[0] == OK and fr[1]["REQ"] == b"5", fr)
    # Pipelined requests in one write.
    c.send_raw(b"".join(frame(HELLO, [("REQ", i)]) for i in range(100, 600)))
    got = [c.read_frame()[1]["REQ"] for _ in range(500)]
    check("500 pipelined requests answered in order", got == [b(i) for i in range(100, 600)])
    c.close()

    # Max-size frame is accepted (STDIN with big DATA to an unknown id -> ERR, not close).
    c = ag.client()
    overhead = 1 + 5 + 1 + 5 + 1 + 5 + 1 + 5
    data = b"z" * (FRAME_MAX - overhead)
    raw = frame(STDIN, [("REQ", 1), ("ID", "x"), ("OFFSET", 0), ("DATA", data)])
    check("max frame size is exactly FRAME_MAX", len(raw) == 4 + FRAME_MAX)
    c.send_raw(raw)
    fr = c.read_frame()
    check("max-size frame accepted", fr and fr[0] == ERR, fr)
    c.close()

    # Client limit: 64 connections served, the 65th is refused.
    conns = [ag.client() for _ in range(64)]
    for cc in conns:
        cc.call(HELLO, [])
    extra = ag.client()
    check("65th client refused", extra.is_closed_by_peer())
    extra.close()
    for cc in conns:
        cc.close()
    time.sleep(0.1)
    c = ag.client()
    check("client slots freed", c.call(HELLO, [])[0] == OK)
    c.close()


def test_fuzz(ag, n=2000):
    rnd = random.Random(1234)
    templates = [
        (HELLO, [("REQ", 1)]),
        (EXEC, [("REQ", 2), ("ID", "fz"), ("ARG", "/bin/true"), ("ENV", "A=b"), ("CWD", "/"), ("TIMEOUT_MS", "1000"), ("FLAGS", "3")]),
        (STDIN, [("REQ", 3), ("ID", "fz"), ("OFFSET", "0"), ("DATA", b"abc")]),
        (STDIN_CLOSE, [("REQ", 4), ("ID", "fz")]),
        (SIGNAL, [("REQ", 5), ("ID", "fz"), ("SIGNAL", "28")]),
    ]

    def mutate(i):
        if rnd.random() < 0.3:
            return bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 64)))
        ftype, fields = rnd.choice(templates)
        fields = list(fields)
        if ftype == EXEC:
            fields[1] = ("ID", f"fz{i}")
        raw = bytearray(frame(ftype, fields))
        for _ in range(rnd.randint(0, 4)):
            op = rnd.random()
            pos = rnd.randrange(len(raw))
            if op < 0.5:
                raw[pos] = rnd.getrandbits(8)
            elif op < 0.7:
                del raw[pos:pos + rnd.randint(1, 8)]
                if not raw:
                    raw = bytearray(b"\0")
            elif op < 0.9:
                raw[pos:pos] = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 8)))
            else:
                raw[0:4] = struct.pack(">I", rnd.choice([0, 1, 5, len(raw) - 4, FRAME_MAX, FRAME_MAX + 1, 2**32 - 1]))
        # Sometimes follow with a valid frame to check the stream stays in sync.
        if rnd.random() < 0.3:
            raw += frame(HELLO, [("REQ", 9)])
        return bytes(raw)

    replies = 0
    for i in range(n):
        # Each case on a fresh connection, write side shut, so a bogus length
        # prefix cannot swallow the following cases.
        c = ag.client()
        try:
            c.send_raw(mutate(i))
            c.s.shutdown(socket.SHUT_WR)
            c.s.settimeout(2)
            while True:
                d = c.s.recv(65536)
                if not d:
                    break
                replies += 1
        except OSError:
            pass
        c.close()
        if ag.p.poll() is not None:
            break
    check(f"fuzz: some mutated frames were valid ({replies} replies)", replies > 0)
    check(f"fuzz: agent survived {n} random frames", ag.p.poll() is None, ag.p.poll())
    c = ag.client()
    check("fuzz: agent still serves", c.call(HELLO, [])[0] == OK)
    c.close()


def test_sigterm_ignored(ag):
    ag.p.send_signal(signal.SIGTERM)
    ag.p.send_signal(signal.SIGINT)
    ag.p.send_signal(signal.SIGHUP)
    ag.p.send_signal(signal.SIGPIPE)
    time.sleep(0.2)
    check("no entry: SIGTERM/INT/HUP/PIPE ignored", ag.p.poll() is None)


def test_entry():
    ag = Agent(["--", "sh", "-c", "exit 3"])
    try:
        rc = ag.p.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    check("entry exit 3 -> agent exits 3", rc == 3, rc)
    check("entry exit file", ag.read("entry", "exit") == b"3 exited\n")
    ag.stop()

    ag = Agent(["--", "cat"])
    c = ag.client()
    t, f = c.call(STDIN, [("ID", "entry"), ("OFFSET", 0), ("DATA", b"via entry stdin\n")])
    t2, _ = c.call(STDIN_CLOSE, [("ID", "entry")])
    ex = c.wait_exit("entry")
    rc = ag.p.wait(10)
    check("entry stdin via STDIN frames", t == OK and t2 == OK and ex == (0, "exited") and rc == 0, (f, ex, rc))
    check("entry stdout", ag.read("entry", "stdout") == b"via entry stdin\n")
    c.close()

    ag = Agent(["--", "sleep", "100"])
    c = ag.client()
    c.call(HELLO, [])
    ag.p.send_signal(signal.SIGTERM)
    ex = c.wait_exit("entry")
    rc = ag.p.wait(10)
    check("SIGTERM forwarded to entry group", ex == (143, "signaled") and rc == 143, (ex, rc))
    c.close()

    ag = Agent(["--", "sh", "-c", "exit 5"], preexec=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    rc = ag.p.wait(10)
    check("inherited SIGCHLD=SIG_IGN does not hide exit status", rc == 5 and ag.read("entry", "exit") == b"5 exited\n", rc)

    ag = Agent(["--", "/nonexistent"])
    rc = ag.p.wait(10)
    check("entry exec failure -> agent exits 127", rc == 127 and ag.read("entry", "exit") == b"127 failed\n", rc)

    # A stale procs/entry (reused run dir) refuses to start.
    ag2 = Agent(["--", "true"], run=ag.dir)
    rc = ag2.p.wait(10)
    check("reused run dir with procs/entry -> exit 125", rc == 125, rc)


def main():
    if not os.path.exists(AGENT):
        print(f"missing {AGENT}; run make first")
        sys.exit(2)
    ag = Agent()
    time.sleep(0.1)
    fds_before = sorted(os.listdir(f"/proc/{ag.p.pid}/fd"))
    try:
        for t in (test_basic, test_stdin, test_timeout, test_malformed, test_sigterm_ignored, test_fuzz):
            try:
                t(ag)
            except Exception as e:  # a crashing test is a failure, not an abort
                import traceback
                traceback.print_exc()
                check(f"{t.__name__} raised {e!r}", False)
        check("agent still running at the end", ag.p.poll() is None, ag.p.poll())
        time.sleep(1.2)  # fuzz EXECs carry a 1s timeout
        fds_after = sorted(os.listdir(f"/proc/{ag.p.pid}/fd"))
        check("no fd leak in the agent", fds_before == fds_after, (fds_before, fds_after))
    finally:
        ag.stop()
    try:
        test_entry()
    except Exception as e:
        import traceback
        traceback.print_exc()
        check(f"test_entry raised {e!r}", False)
    if not failed:
        for d in set(CREATED):
            shutil.rmtree(d, ignore_errors=True)
            if os.path.exists(d + ".log"):
                os.unlink(d + ".log")
    else:
        print("kept run dirs and agent logs:", " ".join(sorted(set(CREATED))))
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
