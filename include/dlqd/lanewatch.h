/*
 * lanewatch: when a delay lane has stopped expiring its messages, as a pure
 * rule over the depths a caller reads now and then.
 *
 * A lane is a queue with one TTL that nobody consumes: its depth changes
 * only when a retry enters or an expired one leaves. RabbitMQ 3.10's quorum
 * queues can stop expiring a lane whose leadership moved to a restarted node
 * until the next operation on it (docs/runbook.md, "Retries stuck in a delay
 * lane"). A lane whose non-zero depth stayed exactly the same for longer
 * than its TTL plus a grace period, over several readings, has had no
 * message in and none out: every message in it is overdue.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Beyond the TTL: dead-lettering is asynchronous and takes its time on a
 * busy broker; a stall is a matter of minutes, not seconds. */
#define LANEWATCH_GRACE_USEC (30 * UINT64_C(1000000))
/* Readings of the same depth (after the first) before a verdict. */
#define LANEWATCH_SAME_READINGS 3

struct lane_seen {
	uint64_t depth;
	uint64_t since_usec; /* CLOCK_MONOTONIC: when depth was first read */
	uint32_t same;	     /* readings of depth since then */
};

/*
 * One reading of the lane's depth at now_usec (monotonic). Returns true
 * when the lane is stalled: then its head is overdue by at least the grace
 * period. The caller that acts on it calls lanewatch_reset().
 */
bool lanewatch_read(struct lane_seen *s, uint64_t now_usec, uint64_t depth, uint64_t ttl_usec);
void lanewatch_reset(struct lane_seen *s, uint64_t now_usec);
