#!/usr/bin/python3
"""exec_job: the test job for dlqd's exec handler (stdlib only).

Reads the job payload (JSON) on stdin. attempt = int($DLQD_ATTEMPT), the
failures so far. The payload's optional "stub" object picks the behaviour:

  absent / {"op":"ok"}                    exit 0
  {"op":"exit","code":C,"times":N}        exit C while attempt < N (no times:
                                          always), then 0
  {"op":"signal","sig":"SEGV"}            kill itself with that signal
  {"op":"hang"}                           sleep forever
  {"op":"stderr","text":T,"code":C}       write T to stderr, exit C (default 1)
  {"op":"error_code","error_code":X,"error_class":K,"code":C}
                                          print {"error_code":X,"error_class":K}
                                          as the last stdout line, exit C
                                          (default 1)
  {"op":"sleep","ms":M}                   sleep M ms, exit 0 (extension)

A payload that is not JSON exits 65 (EX_DATAERR), an unknown op 64 (EX_USAGE).

With $DLQD_TEST_LOG set, one line {"message_id":..,"attempt":..,"exit":..} is
appended with a single O_APPEND write() before exiting; "exit" is the status,
-N for a signal, and null for a hang (logged before it starts sleeping, so
every attempt is counted).
With $DLQD_TEST_LOG_STDIN set too, the line also holds "stdin_b64": the exact
bytes read on stdin, base64, so tests can compare them byte for byte.
"""

import base64
import json
import os
import signal
import sys
import time

STDIN = b""


def log(message_id, attempt, status):
    path = os.environ.get("DLQD_TEST_LOG")
    if not path:
        return
    rec = {"message_id": message_id, "attempt": attempt, "exit": status}
    if os.environ.get("DLQD_TEST_LOG_STDIN"):
        rec["stdin_b64"] = base64.b64encode(STDIN).decode()
    line = json.dumps(rec) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def finish(message_id, attempt, code):
    log(message_id, attempt, code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def signal_number(sig):
    if isinstance(sig, int):
        return sig
    name = str(sig).upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    return int(getattr(signal, name))


def main():
    global STDIN
    message_id = os.environ.get("DLQD_MESSAGE_ID", "")
    try:
        attempt = int(os.environ.get("DLQD_ATTEMPT", "0"))
    except ValueError:
        attempt = 0

    raw = STDIN = sys.stdin.buffer.read()
    try:
        payload = json.loads(raw) if raw.strip() else {}
    except ValueError as e:
        sys.stderr.write("exec_job: payload is not JSON: %s\n" % e)
        finish(message_id, attempt, 65)

    stub = payload.get("stub") if isinstance(payload, dict) else None
    if not isinstance(stub, dict):
        stub = {"op": "ok"}
    op = stub.get("op", "ok")

    if op == "ok":
        finish(message_id, attempt, 0)
    elif op == "exit":
        times = stub.get("times")
        code = int(stub.get("code", 1))
        finish(message_id, attempt,
               code if times is None or attempt < int(times) else 0)
    elif op == "signal":
        try:
            num = signal_number(stub.get("sig", "SEGV"))
        except (AttributeError, ValueError):
            sys.stderr.write("exec_job: unknown signal %r\n" % stub.get("sig"))
            finish(message_id, attempt, 64)
        log(message_id, attempt, -num)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            signal.signal(num, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL / SIGSTOP cannot be caught anyway
        os.kill(os.getpid(), num)
        time.sleep(1)
        os._exit(70)  # a signal that does not kill (e.g. SIGCHLD)
    elif op == "hang":
        log(message_id, attempt, None)
        while True:
            time.sleep(3600)
    elif op == "stderr":
        sys.stderr.write(str(stub.get("text", "")))
        finish(message_id, attempt, int(stub.get("code", 1)))
    elif op == "error_code":
        report = {"error_code": stub.get("error_code")}
        if "error_class" in stub:
            report["error_class"] = stub["error_class"]
        sys.stdout.write(json.dumps(report) + "\n")
        finish(message_id, attempt, int(stub.get("code", 1)))
    elif op == "sleep":
        time.sleep(int(stub.get("ms", 0)) / 1000.0)
        finish(message_id, attempt, 0)
    else:
        sys.stderr.write("exec_job: unknown op %r\n" % op)
        finish(message_id, attempt, 64)


if __name__ == "__main__":
    main()
