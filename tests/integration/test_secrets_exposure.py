"""
Where the broker password must not show, with checks that can fail.

/proc/PID/cmdline and /proc/PID/environ hold what dlqd was started with:
the harness never puts the password there, and nothing dlqd does later
(setenv, a rewritten argv) changes those kernel-kept areas, so "the secret
is not in them" holds by construction. Here each such read has a positive
control instead: a marker the test deliberately exposes (in the config
file's name, in an environment variable) must be found by the very same
read, so a read of the wrong process, an empty read or a permission error
fails the test instead of passing it.

And the places where dlqd itself could expose the password, which do
depend on dlqd's code, are checked too, each with its own positive control:
  - an exec job's environment, argv and open file descriptors (dlqd's
    environ as it is *now*, setenv included, and every fd it forgot to
    close: the AMQP socket, the credential file): only stdin/stdout/stderr
    may be open, DLQD_MESSAGE_ID must be there;
  - STATUS= on the NOTIFY_SOCKET (`systemctl status` shows it to anyone):
    names the broker's host:port, never the password;
  - the metrics endpoint: /metrics, / and /status.json;
  - the AMQP client properties the broker shows to its operators;
  - dlqd's log.
Both ways to give the password are run: a systemd credential
(password_file) and a password inside [broker] url.
"""
import json
import os
import secrets
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, envelope, note  # noqa: E402

# The exec job: records what it was given, as dlqd gave it.
PROBE_JOB = r'''
import json, os, sys
sys.stdin.buffer.read()
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink("/proc/self/fd/" + fd)
    except OSError:
        pass  # the listing's own descriptor, closed already
with open("/proc/self/environ", "rb") as f:
    env = f.read()
with open("/proc/self/cmdline", "rb") as f:
    cmd = f.read()
rec = {"environ": env.decode("latin-1"), "cmdline": cmd.decode("latin-1"), "fds": fds}
out = os.path.join(sys.argv[1], "job-%s.json" % os.environ.get("DLQD_MESSAGE_ID", "x"))
with open(out + ".tmp", "w") as f:
    json.dump(rec, f)
os.rename(out + ".tmp", out)
'''


def read_proc(pid, what):
    with open("/proc/%d/%s" % (pid, what), "rb") as f:
        return f.read()


class SecretsExposure(dlqtest.DlqdTestCase):
    @classmethod
    def setUpClass(cls):
        # One broker user for the class: each rabbitmqctl call costs seconds.
        cls.user = "dlqd-sec-%s" % secrets.token_hex(4)
        cls.password = "pw-" + secrets.token_urlsafe(18)
        dlqtest.broker_sh("ctl", "add_user", cls.user, cls.password)
        dlqtest.broker_sh("ctl", "set_permissions", "-p", "/", cls.user, ".*", ".*", ".*")

    @classmethod
    def tearDownClass(cls):
        dlqtest.broker_sh("ctl", "delete_user", cls.user, check=False)

    def setUp(self):
        super().setUp()
        self.marker = "exposed-" + secrets.token_hex(6)
        self.addCleanup(dlqtest.close_notify_sockets, self.ctx)

    def url(self, password=None):
        auth = self.user + (":" + password if password else "")
        return "amqp://%s@127.0.0.1:%d/%%2f" % (auth, dlqtest.AMQP_PORT)

    def start(self, broker, env):
        """dlqd with the exec probe job, a config file whose name holds the
        marker, and env (plus the marker variable)."""
        c = self.ctx
        self.jobs = c.path("jobs")
        os.mkdir(self.jobs)
        job = c.write("probe_job.py", PROBE_JOB)
        conf = c.write_config(handler="exec", command="%s %s %s" % (dlqtest.PYTHON, job, self.jobs),
                              prefetch=5, timeout="10s", extra={"broker": broker},
                              name="dlqd-%s.conf" % self.marker)
        os.chmod(conf, 0o600)
        env = dict(env, DLQD_TEST_EXPOSED=self.marker)
        d = dlqtest.start_service_dlqd(c, config=conf, env=env)
        mids = ["sec-%d" % i for i in range(3)]
        c.broker.publish(c.q, [Msg(envelope(m), key=m) for m in mids])
        c.wait_until(lambda: all(os.path.exists(os.path.join(self.jobs, "job-%s.json" % m))
                                 for m in mids), 30, "3 probe jobs")
        return d, mids

    def assertHidden(self, data, where, control):
        """The password is not in data; control (a string that must be
        there) proves data is what we think it is."""
        if isinstance(data, bytes):
            data = data.decode("latin-1")
        self.assertIn(control, data, "positive control %r missing from %s: the check "
                      "reads the wrong thing: %r" % (control, where, data[:500]))
        self.assertNotIn(self.password, data, "the broker password is in %s" % where)

    def check_everything(self, d, mids):
        c = self.ctx
        # dlqd's own cmdline and environ, with their positive controls.
        self.assertHidden(read_proc(d.pid, "cmdline"), "dlqd's /proc/PID/cmdline", self.marker)
        self.assertHidden(read_proc(d.pid, "environ"), "dlqd's /proc/PID/environ",
                          "DLQD_TEST_EXPOSED=" + self.marker)

        # What an exec job got.
        for m in mids:
            with open(os.path.join(self.jobs, "job-%s.json" % m)) as f:
                rec = json.load(f)
            self.assertHidden(rec["environ"], "job %s's environment" % m, "DLQD_MESSAGE_ID=" + m)
            self.assertIn("DLQD_TEST_EXPOSED=" + self.marker, rec["environ"],
                          "dlqd's environment did not reach job %s" % m)
            self.assertHidden(rec["cmdline"], "job %s's argv" % m, self.jobs)
            fds = sorted(rec["fds"].items(), key=lambda kv: int(kv[0]))
            note("job %s's descriptors: %s" % (m, fds))
            self.assertEqual([fd for fd, _ in fds][:3], ["0", "1", "2"],
                             "positive control: stdio missing from job %s's fds: %s" % (m, fds))
            extra = [(fd, target) for fd, target in fds if int(fd) > 2]
            self.assertFalse(extra, "job %s inherited dlqd's descriptors (the broker "
                             "socket? a credential file?): %s" % (m, extra))
            for fd, target in fds:
                self.assertNotIn("credential", target, "job %s holds %s" % (m, target))

        # STATUS= (what `systemctl status` shows).
        status = [v for _, k, v in d.notify.items("STATUS")]
        self.assertTrue(status, "no STATUS= on the NOTIFY_SOCKET")
        self.assertHidden("\n".join(status), "STATUS=", "127.0.0.1:%d" % dlqtest.AMQP_PORT)

        # The metrics endpoint.
        base = "http://127.0.0.1:%d" % c.metrics_port
        for path, control in (("/metrics", "dlqd_build_info"), ("/", "dlqd status"),
                              ("/status.json", c.q)):
            with urllib.request.urlopen(base + path, timeout=5) as r:
                self.assertHidden(r.read(), "GET %s" % path, control)

        # What the broker shows its operators about dlqd's connections.
        conns = [x for x in dlqtest.ctl_json("list_connections", "user", "client_properties")
                 if x.get("user") == self.user]
        self.assertEqual(len(conns), 2, "dlqd's two connections as %s" % self.user)
        self.assertHidden(json.dumps(conns), "the broker's list_connections", self.user)

        self.assertEqual(d.stop(), 0)
        self.assertHidden(d.text(), "dlqd's log", c.q)

    def test_password_from_credential(self):
        creds = self.ctx.path("credentials")
        os.mkdir(creds, 0o700)
        p = os.path.join(creds, "amqp-password")
        with open(p, "w") as f:
            f.write(self.password + "\n")
        os.chmod(p, 0o400)
        d, mids = self.start({"url": self.url(), "password_file": "amqp-password"},
                             {"CREDENTIALS_DIRECTORY": creds})
        self.check_everything(d, mids)

    def test_password_in_url(self):
        d, mids = self.start({"url": self.url(self.password)}, {})
        self.check_everything(d, mids)

    def test_controls_catch_exposure(self):
        """The checks fail when the secret is there: the same helper, given
        data that holds it, raises."""
        self.password = "pw-" + secrets.token_urlsafe(18)
        with self.assertRaises(AssertionError):
            self.assertHidden(b"A=1\0SECRET=" + self.password.encode() + b"\0", "environ", "A=1")
        with self.assertRaises(AssertionError):  # a read of the wrong thing
            self.assertHidden(b"", "environ", "A=1")


if __name__ == "__main__":
    dlqtest.main()
