"""Foundation: migrations, the schema catalog, configuration checks, the
serve loop's health endpoints, metrics, drain, and riding out a database
outage. Real binary, real PostgreSQL, real sockets."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness as h


def wait_readyz(gw, want, timeout=30):
    """Polls /readyz until it answers status want (or timeout); returns
    (status, body), status None when the gateway did not answer."""
    deadline = time.time() + timeout
    status, body = None, ""
    while time.time() < deadline:
        try:
            status, _, body = gw.get("/readyz", timeout=2)
        except OSError:
            status, body = None, ""
        if status == want:
            break
        time.sleep(0.1)
    return status, body


def assert_not_ready(test, gw, why, timeout=20):
    """/readyz is 503 for reason why once the gateway has connected
    (before that it says "connecting"); returns the body."""
    deadline = time.time() + timeout
    status, _, body = gw.get("/readyz")
    while why not in body and time.time() < deadline:
        time.sleep(0.1)
        status, _, body = gw.get("/readyz")
    test.assertEqual(status, 503, body)
    test.assertIn(why, body)
    return body


class MigrateTest(unittest.TestCase):
    def setUp(self):
        self.db = h.create_database("mig")

    def test_migrate_twice_changes_nothing_the_second_time(self):
        first = h.migrate(self.db)
        self.assertIn("applied 0001_", first.stdout)
        before = h.psql(self.db, "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY 1")
        schema_before = h.psql(self.db, "SELECT table_name, column_name, data_type FROM "
                               "information_schema.columns WHERE table_schema='public' ORDER BY 1, 2")
        second = h.migrate(self.db)
        self.assertNotIn("applied 0", second.stdout)
        self.assertIn("(0 applied now)", second.stdout)
        self.assertEqual(before, h.psql(self.db, "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY 1"))
        self.assertEqual(schema_before, h.psql(self.db, "SELECT table_name, column_name, data_type FROM "
                                               "information_schema.columns WHERE table_schema='public' ORDER BY 1, 2"))

    def test_help_or_a_stray_argument_migrates_nothing(self):
        env = {"MEDGATE_DATABASE_URL": h.conninfo(self.db)}
        for args, code in ((["--help"], 0), (["-h"], 0), (["--dry-run"], 2),
                           (["--confg", "/etc/medgate.json"], 2), (["--config"], 2)):
            r = h.run_medgate("migrate", *args, env=env)
            self.assertEqual(r.returncode, code, (args, r.stderr))
            if code == 0:
                self.assertIn("usage: medgate", r.stdout)
            else:
                self.assertIn("medgate migrate", r.stderr)
            self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM pg_tables WHERE "
                                    "tablename = 'schema_migrations'"), "0", args)
        r = h.run_medgate("serve", "--confg", "x.json", env=env)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("unexpected argument --confg", r.stderr)

    def test_migrate_refuses_a_newer_database(self):
        h.migrate(self.db)
        h.psql(self.db, "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, '9999_future.sql', 'x')")
        r = h.run_medgate("migrate", env={"MEDGATE_DATABASE_URL": h.conninfo(self.db)})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("9999", r.stderr)
        self.assertIn("newer", r.stderr)

    def migrate_dir(self, schema_dir):
        return h.run_medgate("migrate", env={"MEDGATE_DATABASE_URL": h.conninfo(self.db),
                                             "MEDGATE_PATHS_SCHEMA": schema_dir})

    def copy_of_schema(self, leave_out=()):
        d = tempfile.mkdtemp(prefix="medgate-schema-")
        src = os.path.join(h.SOURCE_DIR, "schema")
        for name in os.listdir(src):
            if name not in leave_out:
                shutil.copy(os.path.join(src, name), d)
        return d

    def test_migrate_refuses_a_file_numbered_below_the_applied_ones(self):
        # 0009 arrives (a merge, a late branch) after the database has
        # 0010: skipping it silently would leave the schema without it for
        # good, while every run reports the database current.
        d = self.copy_of_schema(leave_out=("0009_adapter_lookups.sql",))
        r = self.migrate_dir(d)
        self.assertEqual(r.returncode, 0, r.stderr)
        shutil.copy(os.path.join(h.SOURCE_DIR, "schema", "0009_adapter_lookups.sql"), d)
        r = self.migrate_dir(d)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("0009_adapter_lookups.sql", r.stderr)
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM schema_migrations "
                                  "WHERE version = 9"), "0")

    def test_migrate_takes_a_crlf_checkout_of_applied_files(self):
        # The same files with CRLF line ends (a Windows checkout, a copy
        # through a tool that converts) are not changed files.
        d = self.copy_of_schema()
        r = self.migrate_dir(d)
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in os.listdir(d):
            path = os.path.join(d, name)
            with open(path, "rb") as f:
                text = f.read()
            with open(path, "wb") as f:
                f.write(text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        r = self.migrate_dir(d)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("(0 applied now)", r.stdout)
        # A real change is still refused.
        with open(os.path.join(d, "0002_patients.sql"), "ab") as f:
            f.write(b"CREATE TABLE sneaked_in (x int);\r\n")
        r = self.migrate_dir(d)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("0002_patients.sql changed", r.stderr)

    def test_migrate_refuses_a_file_with_a_nul_byte_instead_of_applying_half(self):
        # libpq sends a query string up to its first NUL: the statements
        # after it were silently dropped and the file recorded as applied.
        d = self.copy_of_schema()
        with open(os.path.join(d, "0999_half.sql"), "wb") as f:
            f.write(b"CREATE TABLE half_a (x int);\n\0CREATE TABLE half_b (x int);\n")
        r = self.migrate_dir(d)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("0999_half.sql", r.stderr)
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM schema_migrations "
                                  "WHERE version = 999"), "0")
        self.assertEqual(h.scalar(self.db, "SELECT to_regclass('half_a') IS NULL"), "t")

    def test_every_table_and_required_index_exists(self):
        h.migrate(self.db)
        expected = os.path.join(os.path.dirname(__file__), "schema_expected.txt")
        tables = {r[0] for r in h.psql(self.db, "SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        indexes = h.psql(self.db, """
            SELECT t.relname, string_agg(a.attname, ',' ORDER BY k.n)
            FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
            JOIN pg_namespace ns ON ns.oid = t.relnamespace AND ns.nspname = 'public'
            CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
            GROUP BY i.indexrelid, t.relname""")
        have = {(r[0], r[1]) for r in indexes}
        checked = 0
        with open(expected) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                checked += 1
                if line.startswith("index:"):
                    table, cols = line[len("index:"):].rstrip(")").split("(")
                    cols = cols.replace(" ", "")
                    self.assertTrue(any(t == table and c.startswith(cols) for t, c in have),
                                    "no index on %s(%s)" % (table, cols))
                else:
                    self.assertIn(line, tables)
        self.assertGreater(checked, 25)

    def test_schema_smoke_script(self):
        # Sample rows in every table, expected refusals, the duplicate and
        # job-claim SQL; the script rolls everything back.
        h.migrate(self.db)
        with open(os.path.join(os.path.dirname(__file__), "schema_smoke.sql")) as f:
            out = h.psql(self.db, f.read())
        self.assertIn(["schema smoke: ok"], out)

    def test_uuid_keys_tenancy_and_enum_checks(self):
        h.migrate(self.db)
        # Every tenant-owned core table carries organization_id.
        for table in ("patients", "scans", "reports", "ai_analyses", "sync_logs",
                      "hl7_messages", "api_keys", "users", "external_integrations"):
            self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM information_schema.columns "
                                      "WHERE table_name='%s' AND column_name='organization_id'" % table), "1", table)
        self.assertEqual(h.scalar(self.db, "SELECT data_type FROM information_schema.columns "
                                  "WHERE table_name='patients' AND column_name='id'"), "uuid")
        org = h.scalar(self.db, "INSERT INTO organizations (name, identifier) VALUES ('T', 't') RETURNING id")
        with self.assertRaises(subprocess.CalledProcessError):
            h.psql(self.db, "INSERT INTO scans (organization_id, scan_number, priority) "
                   "VALUES ('%s', 'S1', 'whenever')" % org)
        h.psql(self.db, "INSERT INTO patients (organization_id, patient_number) VALUES ('%s', 'P1')" % org)
        with self.assertRaises(subprocess.CalledProcessError):
            h.psql(self.db, "INSERT INTO patients (organization_id, patient_number) VALUES ('%s', 'P1')" % org)


class SecretsInErrorsTest(unittest.TestCase):
    def test_a_url_that_does_not_parse_is_reported_without_its_password(self):
        # libpq quotes the offending token ('invalid percent-encoded token:
        # "s3cr%zzet"'), which here is the password.
        url = "postgresql://medgate:s3cr%zzet@/medgate"
        for cmd in (["migrate"], ["replay", "--failed", "--dry-run"]):
            r = h.run_medgate(*cmd, env={"MEDGATE_DATABASE_URL": url})
            self.assertNotEqual(r.returncode, 0, cmd)
            self.assertIn("does not parse", r.stderr, cmd)
            self.assertNotIn("s3cr", r.stdout + r.stderr, cmd)


class ConfigTest(unittest.TestCase):
    def test_reference_file_is_valid(self):
        # Its paths.mappings is where an install puts them; here, the checkout's.
        r = h.run_medgate("config", "check", os.path.join(h.SOURCE_DIR, "deploy", "medgate.example.json"),
                          env={"MEDGATE_PATHS_MAPPINGS": os.path.join(h.SOURCE_DIR, "mappings")})
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_reference_file_and_docs_list_every_option(self):
        ref = h.run_medgate("config", "reference", check=True).stdout
        options = [line.split("`")[1] for line in ref.splitlines() if line.startswith("| `")]
        self.assertGreater(len(options), 15)
        with open(os.path.join(h.SOURCE_DIR, "docs", "configuration.md")) as f:
            doc = f.read()
        with open(os.path.join(h.SOURCE_DIR, "deploy", "medgate.example.json")) as f:
            example = f.read()
        for opt in options:
            self.assertIn("`%s`" % opt, doc, "docs/configuration.md lacks " + opt)
            leaf = opt.split(".")[-1].replace("[]", "")
            self.assertIn('"%s"' % leaf, example, "example lacks " + opt)

    def test_unknown_character_set_is_refused_at_load(self):
        """A misspelt charset made every message without MSH-18 an AE
        ("configured character set not supported") at run time."""
        path = os.path.join(h.tempfile.mkdtemp(), "cs.json")
        with open(path, "w") as f:
            json.dump({"mllp": {"listeners": [{"name": "ris", "default_charset": "ISO8859-1", "senders": [
                {"application": "A", "facility": "B", "organization_id": h.DEMO_ORG, "charset": "8859/1"},
                {"application": "C", "facility": "D", "organization_id": h.DEMO_ORG, "charset": "CP1252"}]}]}}, f)
        r = h.run_medgate("config", "check", path)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        # file:line: key: problem, like any other problem, never quoting the
        # value, and reported with the file's other problems in one run.
        self.assertIn("%s:1: mllp.listeners[0].default_charset: unknown character set (" % path, r.stderr)
        self.assertNotIn("ISO8859-1", r.stderr)
        self.assertNotIn("senders", r.stderr)  # 8859/1 and CP1252 are HL7 table 0211 names
        with open(path, "w") as f:
            f.write('{"mllp": {"listeners": [{"name": "ris", "port": "x",\n'
                    '  "senders": [{"organization_id": "%s",\n'
                    '    "charset": "ISO8859-1"}]}]}}\n' % h.DEMO_ORG)
        r = h.run_medgate("config", "check", path)
        self.assertIn("%s:1: mllp.listeners[0].port: " % path, r.stderr)
        self.assertIn("%s:3: mllp.listeners[0].senders[0].charset: unknown character set (" % path,
                      r.stderr)

    def test_errors_name_file_line_and_key(self):
        path = os.path.join(h.tempfile.mkdtemp(), "bad.json")
        with open(path, "w") as f:
            f.write('{\n  "http": {\n    "port": "eighty"\n  },\n  "databse": {}\n}\n')
        r = h.run_medgate("config", "check", path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("%s:3: http.port: expected a whole number" % path, r.stderr)
        self.assertIn("%s:5: databse: unknown section" % path, r.stderr)

    def test_secret_with_a_bad_form_is_refused_without_printing_it(self):
        """An API-key pepper that is not 64 hex digits (here from the
        environment) and log.format "JSON" passed `config check` and were
        ignored or taken as kv; the error must name the variable only."""
        path = os.path.join(h.tempfile.mkdtemp(), "ok.json")
        with open(path, "w") as f:
            f.write("{}\n")
        r = h.run_medgate("config", "check", path, env={
            "MEDGATE_SECURITY_API_KEY_PEPPER": "hunter2-is-not-hex",
            "MEDGATE_LOG_FORMAT": "JSON"})
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("MEDGATE_SECURITY_API_KEY_PEPPER: expected 64 hex digits", r.stderr)
        self.assertIn("MEDGATE_LOG_FORMAT: expected kv or json", r.stderr)
        self.assertNotIn("hunter2", r.stdout + r.stderr)


    def test_a_secret_in_a_file_every_user_can_read_is_named(self):
        path = os.path.join(h.tempfile.mkdtemp(), "secret.json")
        with open(path, "w") as f:
            json.dump({"database": {"url": "postgresql://medgate:s3cret@db.example/medgate"},
                       "security": {"api_key_pepper": "ab" * 32}}, f)
        os.chmod(path, 0o644)
        r = h.run_medgate("config", "check", path)
        self.assertIn("database.url holds a password and the file is readable by every user", r.stderr)
        self.assertIn("security.api_key_pepper is in a file every user can read", r.stderr)
        self.assertNotIn("s3cret", r.stdout + r.stderr)
        os.chmod(path, 0o640)
        r = h.run_medgate("config", "check", path)
        self.assertNotIn("readable", r.stderr)

    def test_misspelt_variable_is_named_without_its_value(self):
        """A MEDGATE_ variable that names no option was ignored without a
        word. It is a warning, with the closest option, and never shows
        its value; `config check` still passes (README: the systemd unit
        runs it before every start)."""
        path = os.path.join(h.tempfile.mkdtemp(), "ok.json")
        with open(path, "w") as f:
            f.write("{}\n")
        r = h.run_medgate("config", "check", path, env={
            "MEDGATE_DATABSE_URL": "host=db.hunter2.example password=hunter2",
            "MEDGATE_TEST_PGHOST": "/tmp", "MEDGATE_MIGRATE": "0"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("(environment): warning: MEDGATE_DATABSE_URL is not a medgate option, "
                      "ignored; did you mean MEDGATE_DATABASE_URL?", r.stderr)
        self.assertNotIn("MEDGATE_TEST_PGHOST", r.stderr)
        self.assertNotIn("MEDGATE_MIGRATE", r.stderr)
        self.assertNotIn("hunter2", r.stdout + r.stderr)


class ServeTest(unittest.TestCase):
    def setUp(self):
        self.db = h.create_database("serve")
        h.migrate(self.db)
        self.gw = h.Gateway(self.db).start()

    def tearDown(self):
        self.gw.stop()

    def test_health_ready_and_metrics(self):
        self.assertEqual(self.gw.get("/healthz")[0], 200)
        self.assertEqual(self.gw.get("/readyz")[0], 200)
        status, headers, body = self.gw.get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        for name in ("medgate_uptime_seconds", "medgate_http_open_connections",
                     'medgate_http_requests_total{route="readyz",code="200"}',
                     "medgate_http_request_duration_seconds_bucket",
                     "medgate_db_connections", "medgate_db_errors_total"):
            self.assertIn(name, body)

    def test_serve_starts_despite_a_misspelt_variable_and_names_it(self):
        self.gw.stop()
        os.environ["MEDGATE_HTTP_PROT"] = "1"
        try:
            self.gw = h.Gateway(self.db).start()  # waits for /readyz 200
        finally:
            del os.environ["MEDGATE_HTTP_PROT"]
        self.assertIn("MEDGATE_HTTP_PROT is not a medgate option, ignored; "
                      "did you mean MEDGATE_HTTP_PORT?", self.gw.read_log())

    def test_unknown_path_gets_operation_outcome(self):
        status, headers, body = self.gw.get("/fhir/Nope")
        self.assertEqual(status, 404)
        self.assertIn('"resourceType":"OperationOutcome"', body.replace(" ", ""))

    def test_error_answers_write_few_lines(self):
        # A client in a loop of bad requests wrote a line per request:
        # now 5 in 10 s, the next saying how many were left out. The
        # metrics count every one.
        for _ in range(40):
            self.assertEqual(self.gw.get("/fhir/Nope")[0], 404)
        with socket.create_connection(("127.0.0.1", self.gw.http_port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n")
            self.assertIn(b"413", s.recv(4096))
        log = self.gw.read_log()
        self.assertEqual(log.count("status=404 route=unmatched"), 5, log)
        self.assertIn('{route="unmatched",code="404"} 40', self.gw.get("/metrics")[2])

    def test_blank_before_colon_is_a_400_then_close(self):
        """A blank before the colon ("Content-Length : 5") was taken as
        the body length although a proxy in front may ignore the field
        (request smuggling): RFC 7230 section 3.2.4 says 400. The answer
        names the problem and closes."""
        with socket.create_connection(("127.0.0.1", self.gw.http_port), timeout=10) as s:
            s.sendall(b"POST /healthz HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\n"
                      b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
        self.assertIn(b"Connection: close\r\n", data)
        self.assertIn(b'"diagnostics":"whitespace in a header field name"', data)
        self.assertEqual(data.count(b"HTTP/1.1 "), 1, data)  # nothing after

    def test_sigterm_drains_and_exits_zero(self):
        self.assertEqual(self.gw.stop(signal.SIGTERM), 0)
        self.assertIn("draining", self.gw.read_log())
        self.assertIn("stopped", self.gw.read_log())

    def test_shutdown_with_a_commit_still_running(self):
        """The drain deadline passes while a commit is still running (a
        deferred trigger sleeps in COMMIT): the gateway closes its sockets
        and exits cleanly when the commit ends -- no ACK for it, and no
        touch of the freed listener (ASan runs this too). While draining it
        takes no new MLLP connections."""
        self.gw.stop()
        h.psql(self.db, "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
               " PERFORM pg_sleep(3); RETURN NULL; END $$;"
               "CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON hl7_messages"
               " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow()")
        self.gw = h.Gateway(self.db, config={"shutdown": {"drain_timeout_ms": 500}}).start()
        frame = (b"\x0bMSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ADT^A01^ADT_A01|SLOW-1|P|2.5.1\r"
                 b"PID|1||9^^^HOSP^MR||Doe^Jane\r\x1c\r")
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=10) as s:
            s.sendall(frame)
            h.wait_for(lambda: h.scalar(self.db, "SELECT count(*) FROM pg_stat_activity "
                                        "WHERE wait_event = 'PgSleep'") != "0",
                       "the commit to reach the sleeping trigger")
            self.gw.proc.send_signal(signal.SIGTERM)
            h.wait_for(lambda: "draining" in self.gw.read_log(), "the gateway to start draining")
            try:  # draining: refused, or closed at once without an answer
                with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=2) as late:
                    late.sendall(frame.replace(b"SLOW-1", b"LATE-1"))
                    self.assertEqual(late.recv(100), b"")
            except socket.timeout:
                self.fail("a connection made while draining was kept open")
            except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
                pass
            self.assertEqual(s.recv(1000), b"")  # no ACK of any kind for the commit cut off
        self.assertEqual(self.gw.proc.wait(timeout=30), 0, self.gw.read_log()[-3000:])
        self.assertNotIn("AddressSanitizer", self.gw.read_log())
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages WHERE control_id='LATE-1'"), "0")

    def test_not_ready_when_schema_is_behind(self):
        h.psql(self.db, "DELETE FROM schema_migrations WHERE version = "
               "(SELECT max(version) FROM schema_migrations)")
        gw = h.Gateway(self.db, mllp=False).start(wait_ready=False)
        try:
            # The log says why at WARN by itself, without a /readyz probe
            # (the harness waited on /healthz only).
            deadline = time.time() + 15
            while time.time() < deadline and "not ready: schema" not in gw.read_log():
                time.sleep(0.1)
            self.assertRegex(gw.read_log(), r"level=warn component=admin .*not ready: schema version \d+, "
                                            r"expected \d+ \(run medgate migrate\)")
            assert_not_ready(self, gw, "schema")
            # Probes of /readyz are answers, not failures: no line each.
            self.assertNotIn("status=503 route=readyz", gw.read_log())
        finally:
            gw.stop()

    def test_not_ready_until_the_adapters_of_this_build_are_installed(self):
        # As after upgrading the binary without `medgate migrate`: the
        # database holds another build's adapter SQL, then none at all.
        h.psql(self.db, "CREATE OR REPLACE FUNCTION medgate_adapters_checksum() RETURNS text "
               "LANGUAGE sql AS $$ SELECT 'another build'::text $$")
        for why in ("another build", "schema check failed"):
            gw = h.Gateway(self.db, mllp=False).start(wait_ready=False)
            try:
                self.assertIn("run medgate migrate", assert_not_ready(self, gw, why))
            finally:
                gw.stop()
            h.psql(self.db, "DROP FUNCTION IF EXISTS medgate_adapters_checksum()")
        h.migrate(self.db)
        gw = h.Gateway(self.db, mllp=False).start()  # waits for /readyz 200
        try:
            # Another instance migrates a newer build while this one runs:
            # its adapters are no longer in the database, and within the
            # recheck period (10 s) it says so and stops being ready.
            h.psql(self.db, "CREATE OR REPLACE FUNCTION medgate_adapters_checksum() RETURNS text "
                   "LANGUAGE sql AS $$ SELECT 'another build'::text $$")
            assert_not_ready(self, gw, "another build", timeout=30)
        finally:
            gw.stop()


class ReadyRecheckTest(unittest.TestCase):
    def test_a_recheck_that_cannot_run_keeps_the_instance_ready(self):
        # A migration holds schema_migrations longer than the statement
        # timeout while the 10 s recheck runs: the check fails to run,
        # which says nothing about the schema, so /readyz stays 200.
        db = h.create_database("recheck")
        h.migrate(db)
        gw = h.Gateway(db, mllp=False, config={"database": {"statement_timeout_ms": 1000}}).start()
        holder = subprocess.Popen(["psql", "-h", h.pg_host(), "-U", "postgres", "-d", db, "-X", "-q"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            holder.stdin.write("BEGIN;\nLOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE;\n"
                               "SELECT pg_sleep(25);\nCOMMIT;\n")
            holder.stdin.flush()
            h.wait_for(lambda: "keeping the last answer" in gw.read_log(), "a recheck that timed out",
                       timeout=40)
            self.assertIn("schema recheck failed sqlstate=57014", gw.read_log())
            self.assertEqual(gw.get("/readyz")[0], 200)
        finally:
            holder.kill()
            holder.wait()
            gw.stop()


class UnknownOrganizationTest(unittest.TestCase):
    """patients, scans and messages name their organization without a
    foreign key (schema/0010): the start-up check is what keeps a mistyped
    or deactivated organization id out of them."""

    OTHER = "00000000-0000-4000-8000-0000000000c7"

    def setUp(self):
        self.db = h.create_database("org")
        h.migrate(self.db)
        self.port = h.free_port()
        self.gw = h.Gateway(self.db, config={"mllp": {"listeners": [
            {"name": "ris-west", "port": self.port, "db_down_reply": "ar",
             "senders": [{"organization_id": self.OTHER}]}]}})

    def tearDown(self):
        self.gw.stop()

    def send(self, control_id):
        msg = ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ADT^A01|%s|P|2.5\r"
               "EVN|A01|20240101120000\r"
               "PID|1||ORG-1^^^HOSP^MR||Doe^Jane||19800101|F\r" % control_id)
        return h.mllp_exchange(self.port, msg.encode()).decode()

    def test_unknown_then_deactivated_organization_is_refused_until_fixed(self):
        self.gw.start(wait_ready=False)
        # /readyz answers anyone: which check failed; the log says why.
        body = assert_not_ready(self, self.gw, "database check refused")
        self.assertEqual(body, "not ready: database check refused\n")
        self.assertIn("not ready: database check refused: organization %s of "
                      "listener ris-west is not an active organization" % self.OTHER,
                      self.gw.read_log())
        # Nothing is acknowledged or written while the check refuses: the
        # listener's db_down_reply (AR) answers, as when the database is down.
        seg = h.segments(self.send("ORG-MSG-1").encode())
        self.assertEqual(seg["MSA"][1:3], ["AR", "ORG-MSG-1"])
        self.assertEqual(seg["ERR"][3].split("^")[0], "207")
        self.assertIn("resend later", "|".join(seg["ERR"]))
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages"), "0")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "0")
        self.assertIn("database check refused", self.gw.read_log())
        # Adding the organization is enough: the gateway checks again by
        # itself (a SIGHUP makes it check at once).
        h.psql(self.db, "INSERT INTO organizations (id, name, identifier) "
               "VALUES (:'p1', 'West', 'west')", self.OTHER)
        self.gw.proc.send_signal(signal.SIGHUP)
        status, body = wait_readyz(self.gw, 200)
        self.assertEqual(status, 200, body)
        self.assertIn("MSA|AA|ORG-MSG-2", self.send("ORG-MSG-2"))
        self.assertEqual(h.scalar(self.db, "SELECT organization_id FROM patients"), self.OTHER)
        # Deactivated: refused again, at the next check.
        said = self.gw.read_log().count("is not an active organization")
        h.psql(self.db, "UPDATE organizations SET is_active = false WHERE id = :'p1'", self.OTHER)
        self.gw.proc.send_signal(signal.SIGHUP)
        assert_not_ready(self, self.gw, "database check refused")
        self.assertGreater(self.gw.read_log().count("is not an active organization"), said)
        self.assertIn("MSA|AR|ORG-MSG-3", self.send("ORG-MSG-3"))
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages"), "1")


class ReadyzDetailTest(unittest.TestCase):
    """/readyz answers anyone who can reach the port: libpq's connection
    error (socket paths, host names, ports) goes to the log only, the body
    says which check failed."""

    def test_unreachable_database_is_named_without_its_address(self):
        nosock = tempfile.mkdtemp(prefix="medgate-nosock-")  # no server in it
        port = h.free_port()  # nothing listens there
        for url, secret in (("host=%s user=postgres dbname=x" % nosock, nosock),
                            ("host=localhost port=%d user=postgres dbname=x" % port, str(port))):
            gw = h.Gateway("x", config={"database": {"url": url, "reconnect_max_ms": 200}},
                           mllp=False).start(wait_ready=False)
            try:
                body = assert_not_ready(self, gw, "database unreachable")
                self.assertEqual(body, "not ready: database unreachable\n")
                self.assertNotIn(secret, body)
                self.assertNotIn("PGSQL", body)
                # The detail is for the on-call engineer, in the log.
                log = gw.read_log()
                self.assertIn("not ready: database unreachable: connection to server", log)
                self.assertIn(secret, log)
            finally:
                gw.stop()
        os.rmdir(nosock)


class DatabaseTlsWarningTest(unittest.TestCase):
    """A database reached over the network without sslmode=verify-full
    (libpq's default is prefer: plaintext if the answer says so, no check
    of the server) is named once at start; a unix socket or loopback is
    not."""

    def start(self, url):
        gw = h.Gateway("x", config={"database": {"url": url, "reconnect_max_ms": 200}},
                       mllp=False).start(wait_ready=False)
        self.addCleanup(gw.stop)
        deadline = time.time() + 10
        while "serving" not in gw.read_log() and time.time() < deadline:
            time.sleep(0.1)
        return gw.read_log()

    def test_network_database_without_verify_full_is_named(self):
        port = h.free_port()
        log = self.start("hostaddr=192.0.2.1 port=%d dbname=x connect_timeout=1" % port)
        self.assertIn("the database is reached over the network with sslmode=prefer", log)
        log = self.start("hostaddr=192.0.2.1 port=%d dbname=x connect_timeout=1 sslmode=require" % port)
        self.assertIn("with sslmode=require", log)
        for url in ("hostaddr=192.0.2.1 port=%d dbname=x connect_timeout=1 sslmode=verify-full" % port,
                    "host=localhost port=%d dbname=x" % port, "host=%s dbname=x" % h.pg_host()):
            self.assertNotIn("over the network", self.start(url), url)


class SighupTest(unittest.TestCase):
    def test_options_a_reload_cannot_apply_are_named(self):
        db = h.create_database("hup")
        h.migrate(db)
        gw = h.Gateway(db).start()
        try:
            conf = dict(gw.conf)
            conf["http"] = dict(conf["http"], port=h.free_port())
            conf["log"] = {"level": "info"}
            conf["mllp"]["listeners"][0]["idle_timeout_ms"] = 12345
            with open(gw.config_path, "w") as f:
                json.dump(conf, f)
            gw.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 10
            while time.time() < deadline and "mllp.listeners changed" not in gw.read_log():
                time.sleep(0.05)
            log = gw.read_log()
            self.assertIn("SIGHUP: reloaded log level info", log)
            self.assertIn("SIGHUP: http.port changed in %s; it takes effect at the next restart"
                          % gw.config_path, log)
            self.assertIn("SIGHUP: mllp.listeners changed in", log)
            self.assertNotIn("log.level changed", log)
            self.assertNotIn("database.url changed", log)
        finally:
            gw.stop()


class NotStoredLogTest(unittest.TestCase):
    def test_a_sender_retrying_while_the_database_is_down_writes_few_lines(self):
        # Every message not stored (database unreachable) used to log one
        # WARN: a sender in a retry loop wrote tens of thousands of lines a
        # second. Now at most 5 lines a listener in 10 s.
        nosock = tempfile.mkdtemp(prefix="medgate-nosock-")
        gw = h.Gateway("x", config={"database": {"url": "host=%s user=postgres dbname=x" % nosock,
                                                 "reconnect_max_ms": 200}}).start(wait_ready=False)
        try:
            msg = ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ADT^A01|NS-%d|P|2.5\r"
                   "PID|1||N1^^^HOSP^MR||Doe^Jane\r")
            for i in range(40):
                self.assertEqual(h.mllp_exchange(gw.mllp_port, (msg % i).encode()), b"")  # closed, no ACK
            log = gw.read_log()
            self.assertEqual(log.count("message not stored"), 5, log[-2000:])
        finally:
            gw.stop()
            os.rmdir(nosock)


class DatabaseOutageTest(unittest.TestCase):
    """Stops the test cluster itself, so it runs in its own cluster."""

    def test_readyz_follows_the_database_and_recovers(self):
        own = h.tempfile.mkdtemp(prefix="medgate-outage-")
        sock = subprocess.run([h.PG_SH, "start", own], check=True, capture_output=True,
                              text=True).stdout.strip()
        saved = os.environ.get("MEDGATE_TEST_PGHOST")
        os.environ["MEDGATE_TEST_PGHOST"] = sock
        try:
            db = h.create_database("outage")
            h.migrate(db)
            gw = h.Gateway(db, config={"database": {"reconnect_max_ms": 500}}).start()
            try:
                self.assertEqual(gw.get("/readyz")[0], 200)
                subprocess.run([h.PG_SH, "stop", own], check=True, capture_output=True)
                status, body = wait_readyz(gw, 503)
                self.assertEqual(status, 503)
                self.assertNotIn(own, body)
                self.assertIsNone(gw.proc.poll(), "gateway died with the database")
                # An HL7 message now gets no ACK at all (db_down_reply
                # "none", the default): the connection is closed.
                ack = h.mllp_exchange(gw.mllp_port, b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|DOWN1|P|2.5\rPID|1||1")
                self.assertEqual(ack, b"")
                subprocess.run([h.PG_SH, "start", own], check=True, capture_output=True)
                self.assertEqual(wait_readyz(gw, 200)[0], 200)
                self.assertEqual(gw.stop(), 0)
            finally:
                if gw.proc is not None:
                    gw.stop()
        finally:
            if saved is None:
                os.environ.pop("MEDGATE_TEST_PGHOST", None)
            else:
                os.environ["MEDGATE_TEST_PGHOST"] = saved
            subprocess.run([h.PG_SH, "stop", own], capture_output=True)
            subprocess.run(["rm", "-rf", own])


if __name__ == "__main__":
    h.main()
