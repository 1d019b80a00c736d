/*
 * amqpmsg: the librabbitmq side of a copy, shared by the daemon's broker and
 * dlqctl's dlqscan. It flattens a delivery's headers and properties into the
 * plain structs the pure modules read (struct header, struct copy_source),
 * and turns a struct copy back into the properties and header table to
 * publish, so both programs send copies exactly alike.
 */
#pragma once

#include <amqp.h>

#include "common/copy.h"

/* One header or property value as a struct header (raw = v). */
void amqpmsg_header(struct header *h, amqp_bytes_t key, const amqp_field_value_t *v);

/*
 * Flattens p's headers into *hdrs (grown with realloc to *cap entries as
 * needed, so a reader can reuse it; pointing into p) and describes the
 * delivery in src. Returns 0 or -ENOMEM.
 */
int amqpmsg_source(const amqp_basic_properties_t *p, const void *body, size_t len,
		   struct header **hdrs, size_t *cap, struct copy_source *src);

/* The properties set in p, by their AMQP names, into out (room for 16). */
#define AMQPMSG_PROPS_MAX 16
size_t amqpmsg_props(const amqp_basic_properties_t *p, struct header *out);

/*
 * The properties to publish c with: orig's (may be NULL) minus c->drop_props,
 * persistent, application/json when c asks for it and orig names no content
 * type, and the
 * header table of c->headers plus extra (an adapter's own, e.g. a publish
 * sequence number). *entries is malloc'd and backs the table; the values
 * point into c, orig and extra. Returns 0 or -ENOMEM.
 */
int amqpmsg_publish_props(const amqp_basic_properties_t *orig, const struct copy *c,
			  const struct header *extra, size_t n_extra, amqp_basic_properties_t *out,
			  amqp_table_entry_t **entries);
