// Command producer publishes jobs to dlqd's main queue as envelopes, with
// github.com/rabbitmq/amqp091-go.
//
// It reads one JSON object per line on stdin, the job's payload, and
// publishes it wrapped in an envelope (docs/envelope.md,
// docs/envelope.schema.json):
//
//	{"message_id": "...", "trace_id": "...", "schema_version": "v1",
//	 "first_seen_at": "2026-03-17T03:10:00Z", "payload": <the line, byte for byte>}
//
// What a producer must get right:
//
//   - The payload goes into the envelope as the exact bytes of the line:
//     dlqd and the handler see what the producer wrote, big integers and
//     long decimals included. (json.Marshal would compact a RawMessage and
//     escape its <, > and &, so the envelope is put together by hand.)
//   - message_id is unique per job and stays the same on every retry: the
//     handler's idempotency key. Never reuse one for a different job.
//   - attempt, max_attempt, error_code... are dlqd's: leave them out
//     (attempt defaults to 0, max_attempt to the taxonomy policy's).
//   - Each message is persistent, application/json, and published with
//     mandatory on a confirm-mode channel: a job counts as sent only once
//     the broker confirmed it, and a message that no queue takes (the main
//     queue is missing) is an error instead of a silent drop.
//   - The main queue is the [pipeline] queue of dlqd's config ("jobs" by
//     default), published through the default exchange. dlqd declares it
//     (and its .retry / .dlx / .dlq companions) at start; this producer
//     only checks that it exists.
//
// Prints each message_id on stdout once the broker confirmed it; -dry-run
// prints the envelopes instead and publishes nothing.
//
// Usage: producer [-url amqp://guest:guest@127.0.0.1:5672/%2f] [-queue jobs]
// [-schema-version v1] [-dry-run] < jobs.jsonl
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// dlqd's default [pipeline] max_message_size: a longer line could not be a job.
const maxLine = 16 << 20

type head struct {
	MessageID     string `json:"message_id"`
	TraceID       string `json:"trace_id"`
	SchemaVersion string `json:"schema_version"`
	FirstSeenAt   string `json:"first_seen_at"`
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		log.Fatalf("producer: no randomness: %v", err)
	}
	return hex.EncodeToString(b)
}

// envelope wraps one payload (the bytes of a JSON object).
func envelope(payload []byte, schemaVersion string) (body []byte, messageID string, err error) {
	payload = bytes.TrimSpace(payload)
	// dlqd refuses (INVALID_ENVELOPE) a payload that is not an object: say so
	// here, at the producer, where the mistake can still be fixed.
	var object map[string]json.RawMessage
	if err := json.Unmarshal(payload, &object); err != nil {
		return nil, "", fmt.Errorf("a payload must be a JSON object: %v", err)
	}
	h := head{
		MessageID:     "ord-" + randomHex(16),
		TraceID:       "trc-" + randomHex(8),
		SchemaVersion: schemaVersion,
		FirstSeenAt:   time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"),
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, "", err
	}
	// The head without its closing brace, then the payload's own bytes.
	body = append(b[:len(b)-1], `,"payload":`...)
	body = append(body, payload...)
	return append(body, '}'), h.MessageID, nil
}

func main() {
	url := flag.String("url", "amqp://guest:guest@127.0.0.1:5672/%2f", "AMQP URL of the broker")
	queue := flag.String("queue", "jobs", "dlqd's [pipeline] queue")
	schemaVersion := flag.String("schema-version", "v1", "the envelope's schema_version")
	dryRun := flag.Bool("dry-run", false, "print the envelopes, publish nothing")
	flag.Parse()
	log.SetFlags(0)

	type job struct {
		body []byte
		id   string
	}
	var jobs []job
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), maxLine)
	for n := 1; in.Scan(); n++ {
		if len(bytes.TrimSpace(in.Bytes())) == 0 {
			continue
		}
		body, id, err := envelope(in.Bytes(), *schemaVersion)
		if err != nil {
			log.Fatalf("producer: stdin line %d: %v", n, err)
		}
		jobs = append(jobs, job{body, id})
	}
	if err := in.Err(); err != nil {
		log.Fatalf("producer: reading stdin: %v", err)
	}
	if *dryRun {
		for _, j := range jobs {
			fmt.Printf("%s\n", j.body)
		}
		return
	}

	conn, err := amqp.Dial(*url)
	if err != nil {
		log.Fatalf("producer: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		log.Fatalf("producer: %v", err)
	}
	if _, err := ch.QueueDeclarePassive(*queue, true, false, false, false, nil); err != nil {
		log.Fatalf("producer: queue %q: %v: start dlqd first (it declares its topology)", *queue, err)
	}
	if err := ch.Confirm(false); err != nil {
		log.Fatalf("producer: confirm mode: %v", err)
	}
	// The broker returns an unroutable mandatory message before it acks it,
	// and amqp091-go delivers the return before it passes on the ack.
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	// Confirmations through NotifyPublish, registered before the first
	// publish: Debian 12's amqp091-go 1.5.0 can lose the ack of a
	// PublishWithDeferredConfirm when it arrives before the deferred
	// confirmation is registered (fixed upstream in 1.8.0), and Wait then
	// never returns. One publish at a time, so the next confirmation is ours.
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1))

	for _, j := range jobs {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := ch.PublishWithContext(ctx, "", *queue, true, false,
			amqp.Publishing{
				DeliveryMode: amqp.Persistent, // survives a broker restart
				ContentType:  "application/json",
				MessageId:    j.id,
				Body:         j.body,
			})
		if err != nil {
			log.Fatalf("producer: publishing %s: %v", j.id, err)
		}
		var acked bool
		select {
		case c, ok := <-confirms:
			acked = ok && c.Ack // closed: the channel or connection went away
		case <-ctx.Done():
		}
		cancel()
		select {
		case r := <-returns:
			log.Fatalf("producer: %s was returned: %d %s (queue %q gone?)", r.MessageId,
				r.ReplyCode, r.ReplyText, *queue)
		default:
		}
		if !acked {
			log.Fatalf("producer: the broker did not confirm %s: publish it again", j.id)
		}
		fmt.Println(j.id)
	}
}
