"""
dlqd --check-config / --version / --help: exit codes and FILE:LINE diagnostics.
No broker needed: validating a config must never connect anywhere.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import shutil
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import DLQD_BIN  # noqa: E402

GOOD_CONF = """\
[broker]
url = amqp://guest:guest@127.0.0.1:1/%2f
prefetch = 10
heartbeat = 30s

[pipeline]
queue = jobs
queue_type = classic
declare = true

[handler]
type = http
url = http://127.0.0.1:1/jobs
timeout = 2s

[retry]
taxonomy = {tax}

[metrics]
listen = 127.0.0.1:9464

[shutdown]
drain_timeout = 3s
"""


def run(*args, timeout=20):
    p = subprocess.run([DLQD_BIN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


class CheckConfig(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="dlqd-it-checkconfig-")
        self.tax = os.path.join(self.dir, "taxonomy.json")
        with open(self.tax, "w") as f:
            json.dump(dlqtest.test_taxonomy(), f, indent=2)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name, text):
        p = os.path.join(self.dir, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def good(self):
        return GOOD_CONF.format(tax=self.tax)

    def check(self, conf_text, name="dlqd.conf"):
        path = self.write(name, conf_text)
        rc, out = run("--check-config", "--config", path)
        return path, rc, out

    def assertDiag(self, out, path, line=None, also=None):
        """out has a `path:LINE: message` diagnostic (for that line, if given)."""
        pat = re.escape(path) + r":(\d+): \S"
        lines = [m.group(1) for m in re.finditer(pat, out)]
        self.assertTrue(lines, "no `%s:LINE: message` diagnostic in output:\n%s" % (path, out))
        if line is not None:
            self.assertIn(str(line), lines, "diagnostic not on line %d:\n%s" % (line, out))
        if also:
            self.assertRegex(out, also)

    def test_good_config(self):
        path, rc, out = self.check(self.good())
        self.assertEqual(rc, 0, "good config rejected:\n" + out)

    def test_harness_config_is_valid(self):
        # The config every other integration test writes must pass too.
        ctx_dir = self.dir

        class Fake(dlqtest.Ctx):
            def __init__(self):
                self.dir = ctx_dir
                self.q = "jobs"
                self.stubs = []
                self.metrics_port = None
        ctx = Fake()
        for kw in ({"handler": "http", "url": "http://127.0.0.1:1/jobs"},
                   {"handler": "exec", "command": ctx.exec_command()},
                   {"handler": "http", "url": "http://127.0.0.1:1/x", "queue_type": "quorum"}):
            path = ctx.write_config(taxonomy=self.tax, **kw)
            rc, out = run("--check-config", "--config", path)
            self.assertEqual(rc, 0, "harness config %r rejected:\n%s" % (kw, out))

    def test_unknown_key(self):
        text = self.good().replace("prefetch = 10\n", "prefetch = 10\nprefecth = 10\n")
        lineno = text.splitlines().index("prefecth = 10") + 1
        path, rc, out = self.check(text)
        self.assertEqual(rc, 1, out)
        self.assertDiag(out, path, lineno, also=r"prefecth")

    def test_unknown_section(self):
        text = self.good() + "\n[bogus]\nkey = 1\n"
        path, rc, out = self.check(text)
        self.assertEqual(rc, 1, out)
        self.assertDiag(out, path)

    def test_bad_duration(self):
        text = self.good().replace("timeout = 2s", "timeout = 2 fortnights")
        lineno = text.splitlines().index("timeout = 2 fortnights") + 1
        path, rc, out = self.check(text)
        self.assertEqual(rc, 1, out)
        self.assertDiag(out, path, lineno)

    def test_bad_values(self):
        for old, new in (("prefetch = 10", "prefetch = 0"), ("prefetch = 10", "prefetch = ten"),
                         ("queue_type = classic", "queue_type = stream"),
                         ("declare = true", "declare = perhaps"),
                         ("type = http", "type = carrier-pigeon")):
            text = self.good().replace(old, new)
            lineno = text.splitlines().index(new) + 1
            path, rc, out = self.check(text)
            self.assertEqual(rc, 1, "%r accepted:\n%s" % (new, out))
            self.assertDiag(out, path, lineno)

    def test_missing_handler_url(self):
        text = self.good().replace("url = http://127.0.0.1:1/jobs\n", "")
        path, rc, out = self.check(text)
        self.assertEqual(rc, 1, out)
        self.assertDiag(out, path, also=r"(?i)url")

    def test_missing_exec_command(self):
        text = self.good().replace("type = http", "type = exec").replace(
            "url = http://127.0.0.1:1/jobs\n", "")
        path, rc, out = self.check(text)
        self.assertEqual(rc, 1, out)
        self.assertDiag(out, path, also=r"(?i)command")

    def test_all_errors_listed(self):
        text = self.good().replace("prefetch = 10", "prefetch = -3").replace(
            "drain_timeout = 3s", "drain_timeout = soon")
        l1 = text.splitlines().index("prefetch = -3") + 1
        l2 = text.splitlines().index("drain_timeout = soon") + 1
        path, rc, out = self.check(text)
        self.assertEqual(rc, 1, out)
        self.assertDiag(out, path, l1)
        self.assertDiag(out, path, l2)

    def test_missing_config_file(self):
        rc, out = run("--check-config", "--config", os.path.join(self.dir, "nope.conf"))
        self.assertEqual(rc, 1, out)
        self.assertIn("nope.conf", out)

    def test_unreadable_taxonomy(self):
        missing = os.path.join(self.dir, "no-such-taxonomy.json")
        path, rc, out = self.check(self.good().replace(self.tax, missing))
        self.assertEqual(rc, 1, out)
        self.assertIn("no-such-taxonomy.json", out)

    def test_bad_taxonomy_json(self):
        bad = self.write("bad-taxonomy.json",
                         '{"version": 1,\n "policies": {\n   "fast": {"max_attempt": 3,, "initial": "1s"}},\n'
                         ' "classes": {}}\n')
        path, rc, out = self.check(self.good().replace(self.tax, bad))
        self.assertEqual(rc, 1, out)
        self.assertDiag(out, bad, 3)

    def test_bad_taxonomy_semantics(self):
        tax = dlqtest.test_taxonomy()
        tax["classes"]["TRANSIENT"] = "no-such-policy"
        bad = self.write("sem-taxonomy.json", json.dumps(tax, indent=2))
        path, rc, out = self.check(self.good().replace(self.tax, bad))
        self.assertEqual(rc, 1, out)
        self.assertIn("sem-taxonomy.json", out)

        tax = dlqtest.test_taxonomy()
        tax["policies"]["fast"]["initial"] = "soon"
        bad = self.write("dur-taxonomy.json", json.dumps(tax, indent=2))
        path, rc, out = self.check(self.good().replace(self.tax, bad))
        self.assertEqual(rc, 1, out)
        self.assertIn("dur-taxonomy.json", out)

    def test_taxonomy_with_nul_byte(self):
        """A NUL byte in the taxonomy and an error after it: a prompt FILE:LINE
        answer (this hung dlqd, --check-config and reload before)."""
        src = os.path.join(dlqtest.SOURCE_DIR, "tests", "data", "taxonomy", "bad-nul-byte.json")
        bad = os.path.join(self.dir, "nul.json")
        shutil.copyfile(src, bad)
        path, rc, out = self.check(self.good().replace(self.tax, bad))
        self.assertEqual(rc, 1, out)
        self.assertDiag(out, bad, 18, also=r"default\.notes: unknown key")

    def test_version_and_help(self):
        rc, out = run("--version")
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"\d+\.\d+\.\d+")
        rc, out = run("--help")
        self.assertEqual(rc, 0, out)
        self.assertIn("--config", out)
        self.assertIn("--check-config", out)

    def test_bad_option(self):
        rc, out = run("--no-such-option")
        self.assertNotEqual(rc, 0, out)


if __name__ == "__main__":
    dlqtest.main(need_broker=False, need_stub=False)
