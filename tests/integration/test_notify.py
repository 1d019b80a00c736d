"""
dlqd's side of systemd's Type=notify protocol and watchdog (issue 3), with a
NOTIFY_SOCKET the test owns (no systemd PID 1 here):
  1. READY=1 comes once dlqd consumes (the queue has its consumer when it
     arrives), STATUS= is refreshed every few seconds with live counts, and
     WATCHDOG=1 pings (WATCHDOG_USEC=2s) come at about half the period; a
     stopped loop (SIGSTOP) stops them, SIGCONT brings them back;
  2. broker down at start: no READY=1, STATUS= says dlqd waits for the broker
     with host:port and the last error, the watchdog keeps being pinged; when
     the broker becomes reachable (a forwarder opens on that port), READY=1;
  3. SIGTERM while still waiting for the broker (what systemd does when
     TimeoutStartSec= expires): STOPPING=1 and exit 0 at once;
  4. SIGHUP: RELOADING=1 with a MONOTONIC_USEC= of now, then READY=1, also
     when the reload fails.
"""
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, envelope, note, scaled  # noqa: E402

WATCHDOG_S = 2.0


class Forwarder:
    """A TCP port that forwards to the test broker once opened: 'the broker
    comes back' without touching the shared node."""

    def __init__(self, port, target_port):
        self.port, self.target = port, target_port
        self.lsock = None
        self.socks = []
        self.stop_flag = False
        self.frozen = False  # a silent peer: bytes and EOF swallowed, no RST

    def open(self):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop_flag:
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            u.settimeout(None)
            c.settimeout(None)
            self.socks += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if not self.frozen:
                    b.sendall(data)
        except OSError:
            pass
        while self.frozen and not self.stop_flag:
            time.sleep(0.1)  # a silent peer sends no EOF nor RST either
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.stop_flag = True
        for s in self.socks + ([self.lsock] if self.lsock else []):
            try:
                s.close()
            except OSError:
                pass


class Notify(dlqtest.DlqdTestCase):
    def setUp(self):
        super().setUp()
        self.addCleanup(dlqtest.close_notify_sockets, self.ctx)

    def test_ready_status_watchdog(self):
        c = self.ctx
        c.start_stub()
        c.write_config(prefetch=10)
        d = dlqtest.start_service_dlqd(c, wait_ready=False,
                                       env={"WATCHDOG_USEC": int(WATCHDOG_S * 1e6)})
        ns = d.notify
        ns.wait(c, "READY", "1", timeout=30)
        info = c.broker.queue_info(c.q)
        self.assertTrue(info and info[1] >= 1,
                        "READY=1 arrived before dlqd consumed %s: %s" % (c.q, info))
        self.assertEqual(ns.sequence(), ["READY=1"])

        # Live counts in STATUS=.
        n = 12
        c.broker.publish(c.q, [Msg(envelope("st-%d" % i), key="st-%d" % i) for i in range(n)])
        c.wait_until(lambda: len(c.stub.successes()) == n, 20, "%d successes" % n)
        want = "%d consumed, %d succeeded" % (n, n)
        st = ns.wait(c, "STATUS", timeout=10, pred=lambda v: want in v)
        note("STATUS: %s" % st[-1][2])
        self.assertRegex(st[-1][2], r"^Consuming %s on 127\.0\.0\.1:%d: 0 in flight" %
                         (re.escape(c.q), dlqtest.AMQP_PORT))
        t0 = time.monotonic()
        time.sleep(scaled(4.5))
        refreshed = [i for i in ns.items("STATUS") if i[0] > t0]
        self.assertGreaterEqual(len(refreshed), 2, "STATUS= not refreshed every few seconds")

        # Watchdog: pings at about half of WATCHDOG_USEC.
        pings = [t for t, _, _ in ns.items("WATCHDOG")]
        self.assertGreaterEqual(len(pings), 4, "too few WATCHDOG=1 pings: %s" % pings)
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        note("watchdog gaps (WATCHDOG_USEC %.1fs): %s" %
             (WATCHDOG_S, " ".join("%.2f" % g for g in gaps)))
        self.assertLess(max(gaps), WATCHDOG_S * 0.5 + scaled(0.3),
                        "a watchdog gap of %.2fs is well past half of WatchdogSec" % max(gaps))
        mean = sum(gaps) / len(gaps)
        self.assertTrue(WATCHDOG_S * 0.45 <= mean <= WATCHDOG_S * 0.6,
                        "mean ping interval %.2fs is not about half of %.1fs" % (mean, WATCHDOG_S))

        # A stuck loop stops pinging (systemd would kill it); it resumes.
        d.signal(signal.SIGSTOP)
        t_stop = time.monotonic()
        time.sleep(WATCHDOG_S * 1.5)
        during = [t for t, _, _ in ns.items("WATCHDOG") if t > t_stop + 0.05]
        d.signal(signal.SIGCONT)
        t_cont = time.monotonic()
        self.assertEqual(during, [], "WATCHDOG=1 while the process was stopped")
        after = ns.wait(c, "WATCHDOG", count=len(ns.items("WATCHDOG")) + 1, timeout=WATCHDOG_S)
        note("first ping %.2fs after SIGCONT" % (after[-1][0] - t_cont))

        rc = d.stop()
        self.assertEqual(rc, 0)
        self.assertEqual(ns.sequence(), ["READY=1", "STOPPING=1"])

    def test_broker_down_at_start(self):
        c = self.ctx
        c.start_stub()
        port = dlqtest.free_port()
        url = "amqp://guest:guest@127.0.0.1:%d/%%2f" % port
        c.write_config(prefetch=10, extra={"broker": {"url": url}})
        fwd = Forwarder(port, dlqtest.AMQP_PORT)
        self.addCleanup(fwd.close)
        d = dlqtest.start_service_dlqd(c, wait_ready=False,
                                       env={"WATCHDOG_USEC": int(WATCHDOG_S * 1e6)})
        ns = d.notify
        st = ns.wait(c, "STATUS", timeout=10,
                     pred=lambda v: v.startswith("Waiting for the broker at 127.0.0.1:%d (" % port)
                     and "connect" in v)
        note("STATUS while the broker is down: %s" % st[-1][2])
        self.assertRegex(st[-1][2], r"refused|socket error|cannot connect",
                         "STATUS does not give the last error")
        n_pings = len(ns.items("WATCHDOG"))
        time.sleep(scaled(3))
        d.assert_alive("while the broker is down")
        self.assertEqual(ns.sequence(), [], "READY=1 (or more) without a broker")
        # A reload before READY=1 applies the file but announces nothing:
        # READY=1 would tell systemd that dlqd consumes.
        d.signal(signal.SIGHUP)
        d.wait_event("reload")
        time.sleep(0.3)
        self.assertEqual(ns.sequence(), [], "RELOADING=1/READY=1 before dlqd was ready")
        self.assertGreater(len(ns.items("WATCHDOG")), n_pings,
                           "no watchdog pings while waiting for the broker")

        fwd.open()
        t_open = time.monotonic()
        ready = ns.wait(c, "READY", "1", timeout=45)
        note("READY=1 %.1fs after the broker became reachable" % (ready[0][0] - t_open))
        ns.wait(c, "STATUS", pred=lambda v: v.startswith("Consuming"), timeout=10)
        c.broker.publish(c.q, [Msg(envelope("bd-0"), key="bd-0")])
        c.wait_until(lambda: "bd-0" in c.stub.successes(), 20, "bd-0 handled")
        rc = d.stop()
        self.assertEqual(rc, 0)
        self.assertEqual(ns.sequence(), ["READY=1", "STOPPING=1"])

    def test_silent_broker_is_detected(self):
        """A broker that goes silent without closing (a dead host, a NAT that
        dropped the flow) is found by heartbeats on an idle connection: the
        consumer link is lost, STATUS says dlqd waits, and it comes back."""
        c = self.ctx
        c.start_stub()
        port = dlqtest.free_port()
        url = "amqp://guest:guest@127.0.0.1:%d/%%2f" % port
        c.write_config(extra={"broker": {"url": url, "heartbeat": "2s"}})
        fwd = Forwarder(port, dlqtest.AMQP_PORT)
        self.addCleanup(fwd.close)
        fwd.open()
        d = dlqtest.start_service_dlqd(c, wait_ready=False)
        d.notify.wait(c, "READY", "1", timeout=30)
        time.sleep(5)  # idle, past two heartbeat periods: the timers keep running
        fwd.frozen = True
        t = time.monotonic()
        d.wait_event("broker-lost", timeout=scaled(20))
        note("silent broker detected after %.1fs (heartbeat 2s)" % (time.monotonic() - t))
        d.notify.wait(c, "STATUS", pred=lambda v: v.startswith("Waiting for the broker"))
        fwd.frozen = False
        d.wait_event("broker-connected", count=2, timeout=scaled(30))
        self.assertEqual(d.stop(), 0)

    def test_sigterm_while_waiting_for_broker(self):
        c = self.ctx
        c.start_stub()
        url = "amqp://guest:guest@127.0.0.1:%d/%%2f" % dlqtest.free_port()
        c.write_config(extra={"broker": {"url": url}})
        d = dlqtest.start_service_dlqd(c, wait_ready=False)
        d.notify.wait(c, "STATUS", pred=lambda v: v.startswith("Waiting for the broker"))
        t = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(scaled(5))
        self.assertEqual(rc, 0, "exit status %s on SIGTERM while waiting for the broker" % rc)
        note("exited %.2fs after SIGTERM" % (time.monotonic() - t))
        self.assertEqual(d.notify.sequence(), ["STOPPING=1"])

    def test_reload_sequence(self):
        c = self.ctx
        c.start_stub()
        conf = c.write_config()
        d = dlqtest.start_service_dlqd(c, wait_ready=False)
        ns = d.notify
        ns.wait(c, "READY", "1", timeout=30)
        t_before = time.monotonic()
        d.signal(signal.SIGHUP)
        d.wait_event("reload")
        ns.wait(c, "READY", "1", count=2)
        t_after = time.monotonic()
        mono = [int(v) for _, _, v in ns.items("MONOTONIC_USEC")]
        self.assertEqual(len(mono), 1, "one MONOTONIC_USEC= per reload")
        # CLOCK_MONOTONIC is shared by the processes of one host.
        self.assertTrue(t_before - 0.01 <= mono[0] / 1e6 <= t_after + 0.01,
                        "MONOTONIC_USEC=%d is not the time of the reload" % mono[0])
        rel = [m for m in ns.snapshot() if ("RELOADING", "1") in m[1]]
        self.assertIn(("MONOTONIC_USEC", str(mono[0])), rel[0][1],
                      "MONOTONIC_USEC= must come with RELOADING=1 in one message")

        # A failed reload also ends with READY=1 (the old config keeps running).
        with open(conf, "a") as f:
            f.write("[handler]\nbogus = 1\n")
        d.signal(signal.SIGHUP)
        d.wait_event("reload-failed")
        ns.wait(c, "READY", "1", count=3)
        rc = d.stop()
        self.assertEqual(rc, 0)
        seq = ns.sequence()
        note("notify sequence: %s" % " ".join(seq))
        self.assertEqual(seq, ["READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1",
                               "STOPPING=1"])


if __name__ == "__main__":
    dlqtest.main()
