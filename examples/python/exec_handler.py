#!/usr/bin/python3
"""
exec_handler: a command for dlqd's exec handler ([handler] type = exec,
command = /usr/bin/python3 /path/to/exec_handler.py), standard library only.

How dlqd runs it (design.md, "Handlers"): once per job attempt, without a
shell, in its own process group (killed whole on [handler] timeout), with
  stdin                  the envelope's payload bytes, exactly
  DLQD_MESSAGE_ID        the idempotency key, the same on every retry
  DLQD_ATTEMPT           failures so far, 0 on the first try
  DLQD_MAX_ATTEMPT       the attempts the policy allows
  DLQD_TRACE_ID          the envelope's trace_id ("" when none)
What dlqd reads back:
  exit status            0 is success; the taxonomy maps the others, and
                         dlqd's shipped rules follow sysexits.h: 75
                         (EX_TEMPFAIL) TRANSIENT, 65 (EX_DATAERR)
                         NON_RETRYABLE; a signal is a crash
  last stdout line       optionally {"error_code": "X", "error_class": "Y"}:
                         the handler's own verdict (a taxonomy rule
                         "when": {"handler_code": ["X"]} picks it, or X with
                         class Y when no rule matches)
  stderr                 its tail is kept as evidence in the copy's last_error
Exiting with the sysexits code AND printing the report makes the verdict
right under any taxonomy. The verdicts are orders.py's.
"""
import os
import sys

import orders


def main():
    message_id = os.environ.get("DLQD_MESSAGE_ID", "")
    attempt = int(os.environ.get("DLQD_ATTEMPT", "0"))
    payload = sys.stdin.buffer.read()
    try:
        order_id = orders.handle(payload, attempt)
    except orders.Failure as f:
        print(f.detail, file=sys.stderr)  # evidence for the operator
        print(f.report())                 # the verdict: the last stdout line
        sys.stdout.flush()
        sys.exit(os.EX_TEMPFAIL if f.error_class == "TRANSIENT" else os.EX_DATAERR)
    # A real job would do its work here, idempotently keyed by message_id.
    print("charged order %s (message %s, attempt %d)" % (order_id, message_id, attempt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
