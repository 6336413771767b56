"""Test harness for medgate integration tests.

Starts what a user would start: a private PostgreSQL cluster (or the one
named by MEDGATE_TEST_PGHOST), a fresh database per test case, `medgate
migrate`, and `medgate serve` on free loopback ports. Assertions read the
database with psql and talk to the gateway over real sockets.
Standard library only, so it runs on Debian's python3 with nothing else.
"""
import atexit
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

SOURCE_DIR = os.environ.get(
    "MEDGATE_SOURCE_DIR",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN = os.environ.get("MEDGATE_BIN", os.path.join(SOURCE_DIR, "build", "src", "medgate"))
PG_SH = os.path.join(SOURCE_DIR, "deploy", "pg.sh")
TESTDATA = os.path.join(SOURCE_DIR, "tests", "data")

_own_cluster = None


def pg_host():
    """Socket directory of the test cluster, starting a private one if needed."""
    global _own_cluster
    host = os.environ.get("MEDGATE_TEST_PGHOST")
    if host:
        return host
    if _own_cluster is None:
        _own_cluster = tempfile.mkdtemp(prefix="medgate-it-pg-")
        out = subprocess.run([PG_SH, "start", _own_cluster], check=True,
                             capture_output=True, text=True)
        os.environ["MEDGATE_TEST_PGHOST"] = out.stdout.strip().splitlines()[-1]
        atexit.register(stop_own_cluster)
    return os.environ["MEDGATE_TEST_PGHOST"]


def stop_own_cluster():
    if _own_cluster:
        subprocess.run([PG_SH, "stop", _own_cluster], capture_output=True)
        subprocess.run(["rm", "-rf", _own_cluster])


def pg_stop():
    """Stops the cluster (only possible for one this process or dev.sh owns)."""
    subprocess.run([PG_SH, "stop", cluster_dir()], check=True, capture_output=True)


def pg_start():
    subprocess.run([PG_SH, "start", cluster_dir()], check=True, capture_output=True)


def cluster_dir():
    return os.path.dirname(pg_host())  # pg.sh puts the socket in DIR/run


class PsqlError(subprocess.CalledProcessError):
    def __str__(self):
        return "psql failed: " + self.stderr.strip()


def psql(db, sql, *params):
    """Runs sql (with :'p1'... psql variables) and returns rows of strings."""
    args = ["psql", "-h", pg_host(), "-U", "postgres", "-d", db, "-X", "-q",
            "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
    for i, p in enumerate(params, 1):
        args += ["-v", "p%d=%s" % (i, p)]
    out = subprocess.run(args, input=sql, capture_output=True, text=True)
    if out.returncode != 0:
        raise PsqlError(out.returncode, "psql", out.stdout, out.stderr)
    return [line.split("\t") for line in out.stdout.splitlines() if line != ""]


def scalar(db, sql, *params):
    rows = psql(db, sql, *params)
    return rows[0][0] if rows else None


def wait_for_scalar(db, sql, *params, timeout=30):
    """scalar() once the query returns a row (a commit nothing else
    signals, such as a message answered with no ACK); None at timeout."""
    deadline = time.time() + timeout
    while True:
        value = scalar(db, sql, *params)
        if value is not None or time.time() > deadline:
            return value
        time.sleep(0.05)


def wait_for(predicate, what, timeout=30):
    """Polls predicate() until it is true; fails the test naming `what`
    when it is not within timeout seconds."""
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


_db_counter = 0


def create_database(prefix="it"):
    global _db_counter
    _db_counter += 1
    name = "medgate_%s_%d_%d" % (prefix, os.getpid(), _db_counter)
    psql("postgres", "DROP DATABASE IF EXISTS %s;" % name)
    psql("postgres", "CREATE DATABASE %s;" % name)
    return name


def conninfo(db):
    return "host=%s user=postgres dbname=%s" % (pg_host(), db)


_ports_given = set()


def free_port():
    """A port the gateway can listen on. Picked below Linux's ephemeral
    range (32768-60999): a port from bind(0) could be taken meanwhile by a
    test client's outgoing connection, and the gateway would not start.
    Never the same port twice in one test process: a gateway may be given
    several before it binds any."""
    while True:
        port = random.randint(20000, 32000)
        if port in _ports_given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_given.add(port)
        return port


def run_medgate(*args, env=None, check=False, input=None, timeout=120):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([BIN] + list(args), capture_output=True, text=True,
                          env=e, check=check, input=input, timeout=timeout)


def migrate(db):
    r = run_medgate("migrate", env={"MEDGATE_DATABASE_URL": conninfo(db)})
    if r.returncode != 0:
        raise AssertionError("migrate failed: %s%s" % (r.stdout, r.stderr))
    psql(db, "INSERT INTO organizations (id, name, identifier) VALUES (:'p1', 'Test Hospital', 'test') "
         "ON CONFLICT DO NOTHING", DEMO_ORG)
    return r


DEMO_ORG = "00000000-0000-4000-8000-000000000001"


def segments(ack):
    """An ACK's segments by name (the last of a name wins), each a list of
    its fields: segments(ack)["MSA"][1] is MSA-1."""
    return {seg.split(b"|")[0].decode(): seg.decode("latin-1").split("|")
            for seg in ack.split(b"\r") if seg}


def mllp_exchange(port, payload, timeout=10):
    """Sends one MLLP frame and returns the ACK payload (bytes; empty when
    the gateway closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"\x0b" + payload + b"\x1c\r")
        buf = b""
        while not buf.endswith(b"\x1c\r"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return buf.strip(b"\x0b\x1c\r")


class Gateway:
    """One `medgate serve` process with its own config file and ports."""

    def __init__(self, db, config=None, mllp=True):
        self.db = db
        self.http_port = free_port()
        self.mllp_port = free_port() if mllp else None
        self.dir = tempfile.mkdtemp(prefix="medgate-it-")
        self.log_path = os.path.join(self.dir, "medgate.log")
        conf = {
            "database": {"url": conninfo(db), "pool_size": 4},
            "http": {"port": self.http_port, "header_timeout_ms": 2000},
            "log": {"level": "debug"},
            "shutdown": {"drain_timeout_ms": 3000},
        }
        if mllp:
            conf["mllp"] = {"listeners": [{
                "name": "test", "port": self.mllp_port,
                "senders": [{"application": "*", "facility": "*",
                             "organization_id": DEMO_ORG}]}]}
        for section, values in (config or {}).items():
            if isinstance(values, dict):
                conf.setdefault(section, {}).update(values)
            else:
                conf[section] = values
        self.conf = conf
        self.config_path = os.path.join(self.dir, "medgate.json")
        with open(self.config_path, "w") as f:
            json.dump(conf, f, indent=2)
        self.proc = None

    def start(self, wait_ready=True):
        self.log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.pop("MEDGATE_DATABASE_URL", None)
        self.proc = subprocess.Popen([BIN, "serve", "--config", self.config_path],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env)
        deadline = time.time() + 30
        path = "/readyz" if wait_ready else "/healthz"
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("medgate exited %s:\n%s" %
                                     (self.proc.returncode, self.read_log()))
            try:
                status, _, _ = self.get(path, timeout=1)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("medgate not ready:\n" + self.read_log())

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def get(self, path, timeout=5, headers=None):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.http_port, path),
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("medgate did not stop on %s" % sig)
        self.log.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        self.proc = None


def main():
    unittest.main(verbosity=2)
