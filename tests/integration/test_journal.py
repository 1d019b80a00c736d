"""
journald's native protocol, for real (issue 3). sd_journal_send() writes to
the fixed path /run/systemd/journal/socket, so dlqd runs in a private mount
namespace (`unshare -m`, root only) where a directory of the test is mounted
over /run/systemd; the test's datagram socket is journal/socket in it.
JOURNAL_STREAM is the dev:ino of the stderr file dlqd gets, as under systemd.
  1. A workload that produces each event kind (retry, dead-letter,
     escalation, invalid envelope, DLQ publish failure, reload, broker lost
     and regained, drain): every entry carries MESSAGE_ID (the catalog id of
     its DLQD_EVENT, as in src/common/log.c), PRIORITY (crit for escalations and
     refused DLQ copies; no per-message success at the default level),
     SYSLOG_IDENTIFIER, and per-message entries the contract's fields
     DLQD_MESSAGE_ID, TRACE_ID, ATTEMPT, ERROR_CODE, ERROR_CLASS. Nothing
     goes to stderr meanwhile.
  2. Without journald: JOURNAL_STREAM naming another file, or no journal
     socket at all, gives one structured line per event on stderr.
"""
import os
import re
import shutil
import signal
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, envelope, note  # noqa: E402

UNSHARE = shutil.which("unshare")


def parse_native(data):
    """One native-protocol datagram -> [(KEY, VALUE)] (both forms)."""
    out, i = [], 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, _, v = line.partition(b"=")
            out.append((k.decode(), v.decode(errors="replace")))
            i = nl + 1
        else:  # KEY\n<le64 size><bytes>\n, for values with newlines
            (size,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            v = data[nl + 9:nl + 9 + size]
            if data[nl + 9 + size:nl + 10 + size] != b"\n":
                raise ValueError("bad binary field %r" % line)
            out.append((line.decode(), v.decode(errors="replace")))
            i = nl + 10 + size
    return out


class JournalSocket(dlqtest.DatagramSocket):
    def __init__(self, path):
        super().__init__(path, lambda data: dict(parse_native(data)))

    @property
    def entries(self):
        return [e for _, e in self.snapshot()]

    def events(self, name=None):
        return [e for e in self.entries if name is None or e.get("DLQD_EVENT") == name]


def message_ids():
    with open(os.path.join(dlqtest.SOURCE_DIR, "src", "common", "log.c")) as f:
        return dict(re.findall(r'\{ "([a-z-]+)", "([0-9a-f]{32})" \}', f.read()))


def stream_of(logf):
    st = os.fstat(logf.fileno())
    return "%d:%d" % (st.st_dev, st.st_ino)


@unittest.skipIf(os.geteuid() != 0 or UNSHARE is None,
                 "needs root and unshare(1) for a private mount namespace: the journald "
                 "native path is NOT tested")
class Journal(dlqtest.DlqdTestCase):
    def start_under_journal(self):
        c = self.ctx
        run_systemd = c.path("run-systemd")
        os.makedirs(os.path.join(run_systemd, "journal"))
        js = JournalSocket(os.path.join(run_systemd, "journal", "socket"))
        self.addCleanup(js.close)
        wrap = [UNSHARE, "-m", "--propagation", "private", "sh", "-c",
                'mount --bind "$1" /run/systemd && shift && exec "$@"', "sh", run_systemd]
        d = dlqtest.start_service_dlqd(c, notify=False, wrap=wrap,
                                       env={"JOURNAL_STREAM": stream_of})
        return d, js

    def test_native_fields(self):
        c = self.ctx
        c.start_stub()
        c.write_config(prefetch=10, drain_timeout="5s")
        d, js = self.start_under_journal()
        ids = message_ids()

        msgs = [Msg(envelope("ok-1"), key="ok-1"),
                Msg(envelope("tr-1", stub={"op": "fail", "status": 503, "times": 1}), key="tr-1"),
                Msg(envelope("bad-1", stub={"op": "fail", "status": 400}), key="bad-1"),
                Msg(envelope("auth-1", stub={"op": "fail", "status": 401}), key="auth-1"),
                Msg(b"not json", key="raw-1")]
        c.broker.publish(c.q, msgs)
        c.wait_until(lambda: (c.broker.depth(c.dlq) or 0) >= 3 and
                     "tr-1" in c.stub.successes(), 30, "the workload settled")

        # A refused DLQ copy: no binding behind <q>.dlx.
        c.broker.unbind(c.dlq, c.dlx, "#")
        c.broker.publish(c.q, [Msg(envelope("unr-1", stub={"op": "fail", "status": 400}),
                                   key="unr-1")])
        c.wait_until(lambda: js.events("dlq-publish-failed"), 20, "dlq-publish-failed entry")
        c.broker.bind(c.dlq, c.dlx, "#")
        c.wait_until(lambda: (c.broker.depth(c.dlq) or 0) >= 4, 30, "unr-1 in the DLQ")

        d.signal(signal.SIGHUP)
        c.wait_until(lambda: js.events("reload"), 10, "reload entry")
        # Broker lost and regained: the node drops every connection.
        dlqtest.broker_sh("ctl", "close_all_connections", "test: broker lost")
        c.wait_until(lambda: js.events("broker-lost") and len(js.events("broker-connected")) >= 2,
                     30, "broker-lost, then broker-connected again")
        c.wait_ready(d)
        rc = d.stop()
        self.assertEqual(rc, 0)
        time.sleep(0.3)

        self.assertEqual(js.errors, [], "unparsable datagrams")
        kinds = {}
        for e in js.entries:
            kinds.setdefault(e.get("DLQD_EVENT"), []).append(e)
        note("journal entries: %s" % ", ".join("%s=%d" % (k, len(v))
                                               for k, v in sorted(kinds.items(), key=str)))
        for want in ("start", "retry", "dead-letter", "escalation", "invalid-envelope",
                     "dlq-publish-failed", "reload", "broker-lost", "broker-connected",
                     "drain-start", "drain-done", "stop"):
            self.assertIn(want, kinds, "no %s entry in the journal" % want)
        self.assertNotIn("success", kinds, "per-message success logged at the default level")
        for e in js.entries:
            self.assertEqual(e.get("SYSLOG_IDENTIFIER"), "dlqd", e)
            self.assertIn(e.get("PRIORITY"), [str(p) for p in range(8)], e)
            self.assertTrue(e.get("MESSAGE"), e)
            ev = e.get("DLQD_EVENT")
            if ev is not None:
                self.assertIn(ev, ids, "event %s has no MESSAGE_ID in src/common/log.c" % ev)
                self.assertEqual(e.get("MESSAGE_ID"), ids[ev], e)
        prio = lambda ev: {e["PRIORITY"] for e in kinds[ev]}
        self.assertEqual(prio("escalation"), {"2"}, "escalation must be crit")
        self.assertEqual(prio("dlq-publish-failed"), {"2"}, "a refused DLQ copy must be crit")
        self.assertEqual(prio("retry"), {"6"})
        self.assertEqual(prio("broker-lost"), {"3"})

        retry = kinds["retry"][0]
        for k, v in (("DLQD_MESSAGE_ID", "tr-1"), ("TRACE_ID", "trc-tr-1"), ("ATTEMPT", "1"),
                     ("ERROR_CODE", "UPSTREAM_THROTTLED"), ("ERROR_CLASS", "TRANSIENT")):
            self.assertEqual(retry.get(k), v, "retry entry %s: %s" % (k, retry))
        self.assertTrue(retry.get("DLQD_DELAY_MS", "").isdigit(), retry)
        esc = kinds["escalation"][0]
        self.assertEqual((esc.get("DLQD_MESSAGE_ID"), esc.get("ERROR_CODE"),
                          esc.get("ERROR_CLASS")), ("auth-1", "AUTH_REVOKED", "NON_RETRYABLE"))
        dl = {e.get("DLQD_MESSAGE_ID"): e for e in kinds["dead-letter"]}
        self.assertEqual(dl["bad-1"].get("ERROR_CODE"), "INVALID_PAYLOAD")
        self.assertEqual(dl["bad-1"].get("ATTEMPT"), "1")
        self.assertEqual(kinds["invalid-envelope"][0].get("ERROR_CODE"), "INVALID_ENVELOPE")

        # Under journald, stderr stays quiet (sanitizer reports aside).
        lines = [l for l in d.text().splitlines() if dlqtest.parse_log_line(l) and
                 dlqtest.parse_log_line(l).name]
        self.assertEqual(lines, [], "events went to stderr as well as to the journal")


class Stderr(dlqtest.DlqdTestCase):
    def run_once(self, env):
        c = self.ctx
        c.start_stub()
        c.write_config()
        d = dlqtest.start_service_dlqd(c, notify=False, env=env)
        c.broker.publish(c.q, [Msg(envelope("tr-1", stub={"op": "fail", "status": 503,
                                                          "times": 1}), key="tr-1")])
        c.wait_until(lambda: "tr-1" in c.stub.successes(), 20, "tr-1 handled")
        self.assertEqual(d.stop(), 0)
        retry = d.events("retry")
        self.assertEqual(len(retry), 1, d.text())
        note("stderr line: %s" % retry[0].raw)
        self.assertEqual(retry[0].level, "info")
        for k, v in (("message_id", "tr-1"), ("trace_id", "trc-tr-1"), ("attempt", "1"),
                     ("error_code", "UPSTREAM_THROTTLED"), ("error_class", "TRANSIENT")):
            self.assertEqual(retry[0].get(k), v)
        for ev in ("start", "broker-connected", "drain-start", "drain-done", "stop"):
            self.assertEqual(len(d.events(ev)), 1, "%s: %s" % (ev, d.text()))

    def test_journal_stream_of_another_file(self):
        other = open(self.ctx.path("other"), "wb")
        self.addCleanup(other.close)
        self.run_once({"JOURNAL_STREAM": stream_of(other)})

    def test_journal_socket_missing(self):
        """JOURNAL_STREAM matches but journald cannot be reached: stderr."""
        if os.path.exists("/run/systemd/journal/socket"):
            self.skipTest("a journald runs here; the fallback is not tested")
        self.run_once({"JOURNAL_STREAM": stream_of})


if __name__ == "__main__":
    dlqtest.main()
