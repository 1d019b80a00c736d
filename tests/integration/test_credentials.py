"""
Secrets (issue 3): the broker password comes from a systemd credential, so it
is in neither the config nor the process arguments or environment.
The test makes its own RabbitMQ user with a random password on the node and
a credentials directory like the one LoadCredential= gives a service
($CREDENTIALS_DIRECTORY, files mode 0400).
  1. url without a password, `password_file = amqp-password` (relative):
     dlqd reads $CREDENTIALS_DIRECTORY/amqp-password, logs in (as the
     broker sees it: two connections as that user) and works; the secret is
     not in the log. `dlqd --check-config` finds it the same way, and
     without $CREDENTIALS_DIRECTORY looks next to the config (and says so). The config, /proc/PID/cmdline and environ are not read here:
     the test never puts the secret there, so such a check could not fail;
     test_secrets_exposure.py reads them with positive controls, and checks
     where dlqd itself could leak it (exec jobs, STATUS=, metrics).
  2. a wrong password in the credential: broker-connect-failed at err with
     the login refusal, and no secret in the log.
  3. a config that holds a password in its url and is readable by every
     user: a warning at start and from --check-config (exit 0 still);
     none once it is chmod o-r.
"""
import os
import secrets
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlqtest  # noqa: E402
from dlqtest import Msg, envelope, note  # noqa: E402


class Credentials(dlqtest.DlqdTestCase):
    def setUp(self):
        super().setUp()
        self.user = "dlqd-cred-%s" % secrets.token_hex(4)
        self.password = "pw-" + secrets.token_urlsafe(18)
        dlqtest.broker_sh("ctl", "add_user", self.user, self.password)
        self.addCleanup(dlqtest.broker_sh, "ctl", "delete_user", self.user, check=False)
        dlqtest.broker_sh("ctl", "set_permissions", "-p", "/", self.user, ".*", ".*", ".*")
        self.creds = self.ctx.path("credentials")
        os.mkdir(self.creds, 0o700)

    def credential(self, name, value):
        p = os.path.join(self.creds, name)
        with open(p, "w") as f:
            f.write(value)
        os.chmod(p, 0o400)
        return p

    def url(self, password=None):
        auth = self.user + (":" + password if password else "")
        return "amqp://%s@127.0.0.1:%d/%%2f" % (auth, dlqtest.AMQP_PORT)

    def check_config(self, conf, env):
        full = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
        full.update(env)
        p = subprocess.run([dlqtest.DLQD_BIN, "--check-config", "--config", conf], env=full,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        return p.returncode, p.stdout.decode() + p.stderr.decode()

    def test_password_from_credential(self):
        c = self.ctx
        c.start_stub()
        self.credential("amqp-password", self.password + "\n")
        conf = c.write_config(extra={"broker": {"url": self.url(),
                                                "password_file": "amqp-password"}})
        env = {"CREDENTIALS_DIRECTORY": self.creds}
        rc, out = self.check_config(conf, env)
        self.assertEqual(rc, 0, out)
        rc, out = self.check_config(conf, {})
        self.assertEqual(rc, 1, out)
        self.assertIn("cannot read password_file %s" % c.path("amqp-password"), out)

        d = dlqtest.start_service_dlqd(c, notify=False, env=env)
        c.broker.publish(c.q, [Msg(envelope("cr-%d" % i), key="cr-%d" % i) for i in range(5)])
        c.wait_until(lambda: len(c.stub.successes()) == 5, 20, "5 messages handled")
        conns = dlqtest.ctl_json("list_connections", "user", "client_properties")
        mine = [x for x in conns if x.get("user") == self.user]
        self.assertEqual(len(mine), 2, "dlqd's two connections as %s: %s" % (self.user, conns))
        self.assertEqual(d.stop(), 0)
        self.assertNotIn(self.password, d.text(), "the secret is in the log")

    def test_wrong_password(self):
        c = self.ctx
        c.start_stub()
        self.credential("amqp-password", "not-the-password\n")
        c.write_config(extra={"broker": {"url": self.url(), "password_file": "amqp-password"}})
        d = dlqtest.start_service_dlqd(c, wait_ready=False, env={"CREDENTIALS_DIRECTORY": self.creds})
        evs = d.wait_event("broker-connect-failed", timeout=15)
        note("refused: %s" % evs[0].raw)
        self.assertEqual(evs[0].level, "error")
        self.assertIn("login", evs[0].message)
        self.assertIn(self.user, evs[0].message)
        self.assertNotIn("not-the-password", d.text())
        self.assertFalse(d.events("broker-connected"))
        self.assertEqual(d.stop(), 0)

    def test_world_readable_password_warning(self):
        c = self.ctx
        c.start_stub()
        conf = c.write_config(extra={"broker": {"url": self.url(self.password)}})
        os.chmod(conf, 0o644)
        rc, out = self.check_config(conf, {})
        self.assertEqual(rc, 0, out)
        self.assertIn("readable by every user (mode 0644)", out)
        self.assertNotIn(self.password, out)
        d = dlqtest.start_service_dlqd(c, notify=False)
        warn = [e for e in d.events() if "readable by every user" in e.raw]
        self.assertEqual(len(warn), 1, d.text())
        note("warning: %s" % warn[0].raw)
        self.assertEqual(warn[0].level, "warning")
        self.assertNotIn(self.password, d.text())
        self.assertEqual(d.stop(), 0)

        os.chmod(conf, 0o640)
        rc, out = self.check_config(conf, {})
        self.assertEqual(rc, 0, out)
        self.assertNotIn("readable by every user", out)
        d2 = dlqtest.start_service_dlqd(c, notify=False)
        self.assertNotIn("readable by every user", d2.text())
        self.assertEqual(d2.stop(), 0)


if __name__ == "__main__":
    dlqtest.main()
