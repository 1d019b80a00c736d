/*
 * archive: appending purged messages to the archive file, all or nothing
 * per batch.
 */
#include "dlqctl/archive.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int archive_open(struct archive *a, const char *path)
{
	_cleanup_free_ char *dir = strdup(path);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	_cleanup_close_ int dfd = -1;

	*a = (struct archive){ .fd = -1 };
	buf_init(&a->batch, ARCHIVE_LINE_MAX);
	if (!dir)
		return -ENOMEM;
	a->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (a->fd < 0)
		return -errno;
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0)
		return -errno;
	return 0;
}

void archive_close(struct archive *a)
{
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
	buf_done(&a->batch);
}

int archive_add(struct archive *a, const char *line, size_t len)
{
	size_t was = a->batch.len;
	int r = buf_append(&a->batch, line, len);

	if (r >= 0 && (r = buf_append(&a->batch, "\n", 1)) < 0)
		a->batch.len = was; /* no line without its newline */
	return r;
}

int archive_flush(struct archive *a)
{
	off_t start = lseek(a->fd, 0, SEEK_END);
	int r = 0;

	if (start < 0)
		return -errno;
	for (size_t off = 0; off < a->batch.len && r == 0;) {
		ssize_t n = write(a->fd, a->batch.data + off, a->batch.len - off);
		if (n < 0) {
			if (errno != EINTR)
				r = -errno;
		} else if (n == 0) {
			r = -EIO;
		} else {
			off += (size_t)n;
		}
	}
	if (r == 0 && fsync(a->fd) < 0)
		r = -errno;
	if (r < 0) {
		/* Best effort: if even this fails the next line starts after a
		 * partial one, which a reader can skip; nothing is acked. */
		(void)!ftruncate(a->fd, start);
		return r;
	}
	buf_reset(&a->batch);
	return 0;
}
