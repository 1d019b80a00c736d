/*
 * topology: the broker names derived from [pipeline] queue (design.md Part 1,
 * "Topology"), written in one place for dlqd, dlqctl and the copy module.
 * Pure.
 */
#pragma once

#include <stdint.h>

#define TOPOLOGY_NAME_MAX 256 /* AMQP short strings: at most 255 bytes */

struct topology {
	char queue[TOPOLOGY_NAME_MAX];	 /* jobs */
	char retry_x[TOPOLOGY_NAME_MAX]; /* jobs.retry (direct exchange) */
	char dlx[TOPOLOGY_NAME_MAX];	 /* jobs.dlx (topic exchange) */
	char dlq[TOPOLOGY_NAME_MAX];	 /* jobs.dlq */
};

void topology_init(struct topology *t, const char *queue);
/* jobs.retry.<lane_ms>: a delay lane, also the routing key that reaches it. */
void topology_lane(const char *queue, uint64_t lane_ms, char out[TOPOLOGY_NAME_MAX]);
