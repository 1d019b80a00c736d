"""
dlqctl over a DLQ of 1,000,000 small messages: `stats` reads every one of
them (in order, without consuming: the depth is the same afterwards) while
its own memory stays bounded. dlqctl keeps counters, not messages: its peak
RSS (VmHWM of /proc/PID/status, polled while it runs) must stay under
RSS_BOUND_MIB, documented in docs/dlqctl.md. Under ASan the DLQ holds
250,000 messages (ASan makes the scan ~3x slower) and the bound allows for
the sanitizer's own allocator and shadow memory.
"""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
import dlqctl_util as U  # noqa: E402
from dlqtest import note  # noqa: E402

N = 250000 if dlqtest.IS_ASAN else 1000000
RSS_BOUND_MIB = 64 if dlqtest.IS_ASAN else 32
AMQPTOOL = os.path.join(dlqtest.BUILD_DIR, "tests", "dlqd-amqptool")


class DlqctlMillion(dlqtest.DlqdTestCase):
    def test_stats_over_a_million(self):
        c = self.ctx
        conf = U.ctl_config(c)
        t0 = time.monotonic()
        # amqptool's "mixed" kind: 95% valid envelopes, 5% invalid bodies,
        # ~150 bytes each, non-persistent so the broker's disk is not the test.
        subprocess.run([AMQPTOOL, "--url", dlqtest.AMQP_URL, "publish", "--queue", c.dlq,
                        "--count", str(N), "--kind", "mixed", "--transient", "--declare"],
                       check=True, stdout=subprocess.DEVNULL, timeout=dlqtest.scaled(300))
        c.broker.declare_queue(c.q)
        c.wait_until(lambda: c.broker.depth(c.dlq) == N, 60, "%d messages in the DLQ" % N)
        note("published %d messages in %.1fs" % (N, time.monotonic() - t0))

        t0 = time.monotonic()
        errf = open(c.path("stats.stderr"), "wb")
        env = dict(os.environ)
        if dlqtest.IS_ASAN:
            env["ASAN_OPTIONS"] = ":".join(
                x for x in (env.get("ASAN_OPTIONS"), "quarantine_size_mb=8") if x)
        p = subprocess.Popen([U.CTL, "--config", conf, "stats", "--json"],
                             stdout=subprocess.PIPE, stderr=errf, stdin=subprocess.DEVNULL,
                             env=env)
        errf.close()
        # VmHWM of the child, polled while it runs (wait4's ru_maxrss would
        # count the forked Python image from before the exec).
        peak = [0]

        def poll():
            while p.poll() is None:
                try:
                    with open("/proc/%d/comm" % p.pid) as f:
                        execed = f.read().strip() == U.CTL_NAME
                    with open("/proc/%d/status" % p.pid) as f:
                        for line in f:
                            if execed and line.startswith("VmHWM:"):
                                peak[0] = max(peak[0], int(line.split()[1]))
                except OSError:
                    pass
                time.sleep(0.05)
        t = threading.Thread(target=poll, daemon=True)
        t.start()
        out = p.stdout.read()
        p.stdout.close()
        p.wait(dlqtest.scaled(600))
        t.join(5)
        self.peak_mib = peak[0] / 1024.0
        self.assertGreater(peak[0], 0, "VmHWM of dlqctl was never read")
        with open(c.path("stats.stderr")) as f:
            err = f.read()
        self.assertEqual(p.returncode, 0, err)
        self.assertFalse(dlqtest.SANITIZER_RE.search(err), err)
        st = json.loads(out)
        note("stats over %d messages in %.1fs, peak RSS %.1f MiB" %
             (N, time.monotonic() - t0, self.peak_mib))
        self.assertEqual(st["depth"], N)
        self.assertEqual(st["scanned"], N)
        self.assertEqual(st["invalid_envelope"], N // 20)
        self.assertLess(self.peak_mib, RSS_BOUND_MIB)
        c.wait_until(lambda: c.broker.depth(c.dlq) == N, 60,
                     "all %d messages back in the DLQ after stats" % N)


if __name__ == "__main__":
    dlqtest.main()
