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

/* Loads config_path and its taxonomy; logs every diagnostic on failure. */
int daemon_new(const char *config_path, struct daemon **out);
/* Runs until drained; returns 0 for a clean exit. */
int daemon_run(struct daemon *d);
struct daemon *daemon_free(struct daemon *d);
void daemon_freep(struct daemon **d);
