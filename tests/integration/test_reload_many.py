"""
1,000 SIGHUP reloads under a steady stream of messages (successes, transient
failures that recover, permanent failures): every reload completes (one
"reload" event between RELOADING=1 and READY=1, never "reload-failed" or a
cap on reloads), nothing is lost, and dlqd's resident memory stays flat.

The reloads alternate between two taxonomies and, every 10th, two handler
timeouts (so the handler is replaced while calls are in flight). The config
carries a ~4 KiB [handler] command (unused by the http handler) and the
taxonomy 200 padding rules: a reload that keeps its config or its taxonomy
then costs >= 4 KiB, i.e. >= 4 MiB over 1,000 reloads, well over the bound
below, while a realistic config of a few hundred bytes would leak less than
the allocator's own noise.

RSS bound: VmRSS may grow by at most 2 MiB from the sample after the first
100 reloads (allocator arenas, curl's connection pool, the broker client's
buffers and the log/metrics state have reached their working size by then)
to any later sample. Under ASan the samples are printed but not judged:
its quarantine holds freed memory on purpose.
"""
import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import HarnessError, Msg, dlq, envelope, note, success  # noqa: E402

N_RELOADS = 1000
WARMUP_RELOADS = 100
SAMPLE_EVERY = 50
# Reloads are spread over ~30 s so that they land among ~6,000 messages.
RELOAD_SPACING = 0.02
RSS_BOUND_KIB = 2048
# ~4 KiB of argv (a config line holds at most 4096 bytes).
PAD_COMMAND = "/bin/true " + " ".join("--pad-%03d-%s" % (i, "x" * 30) for i in range(95))


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise HarnessError("no VmRSS for pid %d" % pid)


def taxonomy(variant):
    """The tests' taxonomy plus 200 rules no failure here matches; the two
    variants differ in jitter so every reload really changes the table."""
    pad = [{"when": {"handler_code": ["PAD_%03d" % i]}, "error_code": "PAD_%03d" % i,
            "class": "NON_RETRYABLE"} for i in range(200)]
    jitter = [0.1, 0.3] if variant == 0 else [0.15, 0.25]
    return dlqtest.test_taxonomy(fast={"jitter": jitter}, rules_after=pad)


def replace_file(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


class Publisher(threading.Thread):
    """A steady stream (batches of `batch` every `period` s) on its own AMQP
    connection: 75 % successes, 15 % one 503 then success, 10 % 400s."""

    def __init__(self, queue, batch=20, period=0.1, seed=11):
        super().__init__(daemon=True)
        self.queue = queue
        self.batch = batch
        self.period = period
        self.rnd = random.Random(seed)
        self.msgs, self.expected = [], {}
        self.error = None
        self._halt = threading.Event()

    def run(self):
        broker = dlqtest.Broker()
        n = 0
        try:
            while not self._halt.is_set():
                t0 = time.monotonic()
                out = []
                for _ in range(self.batch):
                    mid = "rl-%d" % n
                    n += 1
                    r = self.rnd.random()
                    if r < 0.75:
                        stub, exp = None, success(0)
                    elif r < 0.90:
                        stub, exp = {"op": "fail", "status": 503, "times": 1}, success(1)
                    else:
                        stub, exp = {"op": "fail", "status": 400}, dlq("INVALID_PAYLOAD",
                                                                        "NON_RETRYABLE", 1)
                    out.append(Msg(envelope(mid, stub=stub), key=mid))
                    self.expected[mid] = exp
                broker.publish(self.queue, out)
                self.msgs.extend(out)
                self._halt.wait(max(0.0, self.period - (time.monotonic() - t0)))
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            broker.close()

    def stop(self):
        self._halt.set()
        self.join(30)


class LogTail:
    """dlqd's log read incrementally: the events that appeared since the last call."""

    def __init__(self, path):
        self.f = open(path, "rb")
        self.partial = b""

    def new_events(self):
        data = self.partial + self.f.read()
        lines = data.split(b"\n")
        self.partial = lines.pop()
        evs = []
        for line in lines:
            ev = dlqtest.parse_log_line(line.decode(errors="replace"))
            if ev is not None:
                evs.append(ev)
        return evs

    def close(self):
        self.f.close()


class ReloadMany(dlqtest.DlqdTestCase):
    def wait_reload_pair(self, d, cursor, i):
        """Until RELOADING=1 then READY=1 arrived after notify message
        `cursor`; returns the new cursor."""
        deadline = time.monotonic() + dlqtest.scaled(15)
        seen_reloading = False
        while True:
            msgs = d.notify.messages[cursor:]  # a slice is atomic under the GIL
            for _, pairs in msgs:
                cursor += 1
                if ("RELOADING", "1") in pairs:
                    seen_reloading = True
                elif ("READY", "1") in pairs and seen_reloading:
                    return cursor
            if time.monotonic() > deadline:
                d.assert_alive("at reload %d" % i)
                raise HarnessError("reload %d: no RELOADING=1/READY=1 within %.0fs" %
                                   (i, dlqtest.scaled(15)))
            time.sleep(0.002)

    def test_reload_many(self):
        c = self.ctx
        self.addCleanup(dlqtest.close_notify_sockets, c)
        c.start_stub()
        tax_path = c.write_taxonomy(taxonomy(0))
        conf_path = c.write_config(prefetch=20, timeout="5s",
                                   extra={"handler": {"command": PAD_COMMAND}})
        with open(conf_path) as f:
            conf = [f.read()]
        self.assertIn("\ntimeout = 5s", conf[0])
        conf.append(conf[0].replace("\ntimeout = 5s", "\ntimeout = 6s"))
        taxes = [dlqtest.json.dumps(taxonomy(v), indent=1) + "\n" for v in (0, 1)]

        d = dlqtest.start_service_dlqd(c)
        log = LogTail(d.log_path)
        self.addCleanup(log.close)
        samples = [("start", 0, vm_rss_kib(d.pid))]

        pub = Publisher(c.q)
        pub.start()
        self.addCleanup(pub.stop)
        c.wait_until(lambda: len(c.stub.records()) >= 200, 30, "200 answers before reloading")
        samples.append(("before", 0, vm_rss_kib(d.pid)))

        cursor = len(d.notify.messages)
        n_reload_events = 0
        t0 = time.monotonic()
        for i in range(1, N_RELOADS + 1):
            replace_file(tax_path, taxes[i % 2])
            if i % 10 == 0:
                replace_file(conf_path, conf[(i // 10) % 2])
            time.sleep(RELOAD_SPACING)
            d.signal(signal.SIGHUP)
            cursor = self.wait_reload_pair(d, cursor, i)
            for ev in log.new_events():
                if ev.name == "reload":
                    n_reload_events += 1
                elif ev.name == "reload-failed" or ev.level in ("emerg", "alert", "crit",
                                                                 "error"):
                    self.fail("reload %d did not complete: %s" % (i, ev.raw))
            if n_reload_events != i:
                self.fail("reload %d: %d 'reload' events so far; last lines:\n%s" %
                          (i, n_reload_events, d.tail(10)))
            if pub.error:
                raise pub.error
            if i % SAMPLE_EVERY == 0:
                samples.append(("during", i, vm_rss_kib(d.pid)))
                note("reload %d: VmRSS %d KiB, %d messages published, %.1fs" %
                     (i, samples[-1][2], len(pub.msgs), time.monotonic() - t0))
        pub.stop()
        if pub.error:
            raise pub.error
        note("%d reloads in %.1fs under %d messages" % (N_RELOADS, time.monotonic() - t0,
                                                          len(pub.msgs)))

        c.wait_settled(pub.expected, c.stub.successes, timeout=90)
        report = dlqtest.account(pub.msgs, pub.expected, c.stub.successes(),
                                 c.broker.get_all(c.dlq))
        self.assertAccounted(report)
        samples.append(("after", N_RELOADS, vm_rss_kib(d.pid)))

        note("VmRSS samples (phase, reloads done, KiB):")
        for phase, i, kib in samples:
            note("  %-6s %4d %7d" % (phase, i, kib))
        base = next(kib for phase, i, kib in samples if i == WARMUP_RELOADS)
        peak = max(kib for phase, i, kib in samples if i >= WARMUP_RELOADS)
        note("growth after %d reloads of warm-up: %+d KiB (bound %d KiB)" %
             (WARMUP_RELOADS, peak - base, RSS_BOUND_KIB))
        if dlqtest.IS_ASAN:
            note("ASan build: RSS not judged (its quarantine keeps freed memory)")
        else:
            self.assertLessEqual(peak - base, RSS_BOUND_KIB,
                                 "dlqd's RSS grew by %d KiB over %d reloads" %
                                 (peak - base, N_RELOADS - WARMUP_RELOADS))
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    dlqtest.main()
