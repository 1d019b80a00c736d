/*
 * archive: the file `purge --archive FILE` appends purged messages to, one
 * JSON line each (docs/dlqctl.md). Lines gather in a batch; a flush writes
 * and fsyncs the batch before the caller acks its messages. When a flush
 * fails the file is cut back to where the batch began, so no half line is
 * left for the next run to append to, and nothing of the batch may be
 * acked. File I/O only: no AMQP, no logging.
 */
#pragma once

#include <stddef.h>

#include "common/util.h"

#define ARCHIVE_LINE_MAX (64 * 1024 * 1024) /* a batch (so a line) is at most this */

struct archive {
	int fd; /* -1 when closed */
	struct buf batch;
};

/*
 * Opens path for appending (created with mode 0600, never truncated) and
 * fsyncs its directory, so a new file's entry survives a power loss too.
 */
int archive_open(struct archive *a, const char *path);
/* Closes (accepts a closed or never opened archive); unflushed lines are dropped. */
void archive_close(struct archive *a);

/* Adds one line (without its newline) to the batch; -E2BIG past ARCHIVE_LINE_MAX. */
int archive_add(struct archive *a, const char *line, size_t len);
/* Bytes waiting in the batch. */
static inline size_t archive_pending(const struct archive *a)
{
	return a->batch.len;
}
/*
 * Appends the batch and fsyncs the file. On success the batch is empty; on
 * failure (-errno) the file is as it was before the call and the batch is
 * kept.
 */
int archive_flush(struct archive *a);
