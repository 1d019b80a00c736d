// Command exec-handler is a command for dlqd's exec handler ([handler]
// type = exec, command = /usr/local/bin/exec-handler).
//
// How dlqd runs it (design.md, "Handlers"): once per job attempt, without a
// shell, in its own process group (killed whole on [handler] timeout), with
//
//	stdin             the envelope's payload bytes, exactly
//	DLQD_MESSAGE_ID   the idempotency key, the same on every retry
//	DLQD_ATTEMPT      failures so far, 0 on the first try
//	DLQD_MAX_ATTEMPT  the attempts the policy allows
//	DLQD_TRACE_ID     the envelope's trace_id ("" when none)
//
// What dlqd reads back:
//
//	exit status       0 is success; the taxonomy maps the others, and dlqd's
//	                  shipped rules follow sysexits.h: 75 (EX_TEMPFAIL)
//	                  TRANSIENT, 65 (EX_DATAERR) NON_RETRYABLE; a signal is
//	                  a crash
//	last stdout line  optionally {"error_code": "X", "error_class": "Y"}: the
//	                  handler's own verdict (a taxonomy rule "when":
//	                  {"handler_code": ["X"]} picks it, or X with class Y when
//	                  no rule matches)
//	stderr            its tail is kept as evidence in the copy's last_error
//
// Exiting with the sysexits code AND printing the report makes the verdict
// right under any taxonomy. The verdicts are package orders'.
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"dlqdexample/orders"
)

// From sysexits.h (Go's standard library has no names for them).
const (
	exDataErr  = 65 // the input data was incorrect: do not retry
	exTempFail = 75 // temporary failure: try again later
)

func main() {
	messageID := os.Getenv("DLQD_MESSAGE_ID")
	attempt, _ := strconv.Atoi(os.Getenv("DLQD_ATTEMPT"))
	payload, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading the payload:", err)
		os.Exit(exTempFail)
	}

	orderID, f := orders.Handle(payload, attempt)
	if f != nil {
		fmt.Fprintln(os.Stderr, f.Detail) // evidence for the operator
		fmt.Printf("%s\n", f.Report())    // the verdict: the last stdout line
		if f.Transient() {
			os.Exit(exTempFail)
		}
		os.Exit(exDataErr)
	}
	// A real job would do its work here, idempotently keyed by messageID.
	fmt.Printf("charged order %s (message %s, attempt %d)\n", orderID, messageID, attempt)
}
