/*
 * daemon: the hub. Owns the sd-event loop, the config, the taxonomy, the
 * broker and the handler, and walks each message through its life:
 *
 *   delivery -> decode envelope -> handler -> router decision
 *     ACK   -> basic.ack
 *     RETRY -> publish to a delay lane -> confirm -> basic.ack
 *     DLQ   -> publish to <queue>.dlx   -> confirm -> basic.ack
 *
 * A failed publish keeps the delivery unacked and tries again with backoff;
 * the broker keeps the message whatever happens to this process.
 * Signals: SIGTERM/SIGINT drain, SIGHUP reloads config and taxonomy.
 */
#pragma once

#include <stdint.h>

struct daemon;

struct daemon_counters {
	uint64_t consumed;
	uint64_t succeeded;
	uint64_t retried;
	uint64_t dead_lettered;
	uint64_t invalid;
	uint64_t publish_failures;
	uint64_t dlq_publish_failures;
	uint64_t escalations;
	uint64_t in_flight;
};

/* Loads config_path and its taxonomy; logs every diagnostic on failure. */
int daemon_new(const char *config_path, struct daemon **out);
/* Runs until drained; returns 0 for a clean exit. */
int daemon_run(struct daemon *d);
struct daemon *daemon_free(struct daemon *d);
void daemon_freep(struct daemon **d);
const struct daemon_counters *daemon_counters(const struct daemon *d);
