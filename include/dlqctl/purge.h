/*
 * purge: what `dlqctl purge` does with each matching message (purge.c), a
 * part of the run in ctlrun.c and its struct ctl.
 */
#pragma once

#include "dlqctl/ctlrun.h"

/* Archives (with --archive) and queues r for the ack, or counts it (--dry-run). */
void purge_one(struct ctl *c, const struct dlqscan_delivery *d, const struct dlq_record *r);
/* Writes and fsyncs the archive batch, then acks and logs its messages. */
void purge_flush(struct ctl *c);
/* Between deliveries: flushes a batch that waited long enough. */
void purge_tick(struct ctl *c);
