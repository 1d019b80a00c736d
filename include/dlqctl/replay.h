/*
 * replay: what `dlqctl replay` does with each matching message (replay.c),
 * a part of the run in ctlrun.c and its struct ctl.
 */
#pragma once

#include "dlqctl/ctlrun.h"

/*
 * Publishes r's replay copy (or counts it: --dry-run, or a blocked schema
 * version) once the window has room and --rate a token. Errors stop the
 * run through ctlrun_fail().
 */
void replay_one(struct ctl *c, const struct dlqscan_delivery *d, const struct dlq_record *r,
		const struct envelope *env);
/* Reads confirms for up to timeout_usec and acks the confirmed DLQ copies. */
int replay_pump(struct ctl *c, uint64_t timeout_usec);
/* At the end of the run: waits (30 s at most) for the confirms still due. */
void replay_drain(struct ctl *c);
