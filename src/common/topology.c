/*
 * topology: names of the pipeline's exchanges and queues. config.c bounds
 * [pipeline] queue so that every derived name fits an AMQP short string;
 * snprintf cuts rather than overflows should a caller skip that check.
 */
#include "common/topology.h"

#include <inttypes.h>
#include <stdio.h>

void topology_init(struct topology *t, const char *queue)
{
	snprintf(t->queue, sizeof(t->queue), "%s", queue);
	snprintf(t->retry_x, sizeof(t->retry_x), "%s.retry", queue);
	snprintf(t->dlx, sizeof(t->dlx), "%s.dlx", queue);
	snprintf(t->dlq, sizeof(t->dlq), "%s.dlq", queue);
}

void topology_lane(const char *queue, uint64_t lane_ms, char out[TOPOLOGY_NAME_MAX])
{
	snprintf(out, TOPOLOGY_NAME_MAX, "%s.retry.%" PRIu64, queue, lane_ms);
}
