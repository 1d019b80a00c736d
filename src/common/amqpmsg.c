/*
 * amqpmsg: converts between librabbitmq's property/table types and the
 * copy module's plain structs (see include/common/amqpmsg.h). A header kept
 * from the original travels as its original amqp_field_value_t (struct
 * header.raw), so tables, arrays and decimals that dlqd does not read go
 * out exactly as they came in.
 */
#include "common/amqpmsg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/amqpconn.h"
#include "common/util.h"

void amqpmsg_header(struct header *h, amqp_bytes_t key, const amqp_field_value_t *v)
{
	*h = (struct header){
		.key = key.bytes, .key_len = key.len, .kind = HEADER_OTHER, .raw = v
	};
	switch (v->kind) {
	case AMQP_FIELD_KIND_UTF8:
	case AMQP_FIELD_KIND_BYTES:
		h->kind = HEADER_STRING;
		h->s = v->value.bytes.bytes;
		h->s_len = v->value.bytes.len;
		break;
	case AMQP_FIELD_KIND_BOOLEAN:
		h->kind = HEADER_BOOL;
		h->i = v->value.boolean ? 1 : 0;
		break;
	case AMQP_FIELD_KIND_I8:
		h->kind = HEADER_INT, h->i = v->value.i8;
		break;
	case AMQP_FIELD_KIND_U8:
		h->kind = HEADER_INT, h->i = v->value.u8;
		break;
	case AMQP_FIELD_KIND_I16:
		h->kind = HEADER_INT, h->i = v->value.i16;
		break;
	case AMQP_FIELD_KIND_U16:
		h->kind = HEADER_INT, h->i = v->value.u16;
		break;
	case AMQP_FIELD_KIND_I32:
		h->kind = HEADER_INT, h->i = v->value.i32;
		break;
	case AMQP_FIELD_KIND_U32:
		h->kind = HEADER_INT, h->i = v->value.u32;
		break;
	case AMQP_FIELD_KIND_I64:
		h->kind = HEADER_INT, h->i = v->value.i64;
		break;
	case AMQP_FIELD_KIND_U64:
	case AMQP_FIELD_KIND_TIMESTAMP:
		/* Saturate: a huge count must not read as a negative one. */
		h->kind = HEADER_INT, h->i = (int64_t)MIN(v->value.u64, (uint64_t)INT64_MAX);
		break;
	case AMQP_FIELD_KIND_F32:
		h->kind = HEADER_FLOAT, h->f = v->value.f32;
		break;
	case AMQP_FIELD_KIND_F64:
		h->kind = HEADER_FLOAT, h->f = v->value.f64;
		break;
	default:
		break;
	}
}

int amqpmsg_source(const amqp_basic_properties_t *p, const void *body, size_t len,
		   struct header **hdrs, size_t *cap, struct copy_source *src)
{
	size_t n = (p->_flags & AMQP_BASIC_HEADERS_FLAG) ? (size_t)p->headers.num_entries : 0;

	*src = (struct copy_source){ .body = body, .len = len };
	if (n > *cap) {
		struct header *h = realloc(*hdrs, n * sizeof(*h));
		if (!h)
			return -ENOMEM;
		*hdrs = h;
		*cap = n;
	}
	for (size_t i = 0; i < n; i++)
		amqpmsg_header(&(*hdrs)[i], p->headers.entries[i].key,
			       &p->headers.entries[i].value);
	src->headers = *hdrs;
	src->n_headers = n;
	if (p->_flags & AMQP_BASIC_EXPIRATION_FLAG) {
		src->expiration = p->expiration.bytes ? p->expiration.bytes : "";
		src->expiration_len = p->expiration.len;
	}
	if (p->_flags & AMQP_BASIC_USER_ID_FLAG) {
		src->user_id = p->user_id.bytes ? p->user_id.bytes : "";
		src->user_id_len = p->user_id.len;
	}
	return 0;
}

size_t amqpmsg_props(const amqp_basic_properties_t *p, struct header *out)
{
	size_t n = 0;

#define STR(field, flag)                                               \
	if (p->_flags & (flag))                                        \
		out[n++] = (struct header){ .key = #field,             \
					    .key_len = strlen(#field), \
					    .kind = HEADER_STRING,     \
					    .s = p->field.bytes,       \
					    .s_len = p->field.len };
#define INT(field, flag)                                               \
	if (p->_flags & (flag))                                        \
		out[n++] = (struct header){ .key = #field,             \
					    .key_len = strlen(#field), \
					    .kind = HEADER_INT,        \
					    .i = (int64_t)p->field };
	STR(content_type, AMQP_BASIC_CONTENT_TYPE_FLAG);
	STR(content_encoding, AMQP_BASIC_CONTENT_ENCODING_FLAG);
	INT(delivery_mode, AMQP_BASIC_DELIVERY_MODE_FLAG);
	INT(priority, AMQP_BASIC_PRIORITY_FLAG);
	STR(correlation_id, AMQP_BASIC_CORRELATION_ID_FLAG);
	STR(reply_to, AMQP_BASIC_REPLY_TO_FLAG);
	STR(expiration, AMQP_BASIC_EXPIRATION_FLAG);
	STR(message_id, AMQP_BASIC_MESSAGE_ID_FLAG);
	INT(timestamp, AMQP_BASIC_TIMESTAMP_FLAG);
	STR(type, AMQP_BASIC_TYPE_FLAG);
	STR(user_id, AMQP_BASIC_USER_ID_FLAG);
	STR(app_id, AMQP_BASIC_APP_ID_FLAG);
#undef STR
#undef INT
	return n;
}

static amqp_table_entry_t entry_of(const struct header *h)
{
	amqp_bytes_t k = { .len = h->key_len, .bytes = (void *)h->key };

	if (h->raw)
		return (amqp_table_entry_t){ .key = k,
					     .value = *(const amqp_field_value_t *)h->raw };
	if (h->kind == HEADER_INT)
		return (amqp_table_entry_t){
			.key = k, .value = { .kind = AMQP_FIELD_KIND_I64, .value.i64 = h->i }
		};
	return amqpconn_entry_bytes(k, (amqp_bytes_t){ .len = h->s_len, .bytes = (void *)h->s });
}

int amqpmsg_publish_props(const amqp_basic_properties_t *orig, const struct copy *c,
			  const struct header *extra, size_t n_extra, amqp_basic_properties_t *out,
			  amqp_table_entry_t **entries)
{
	size_t n = 0;

	*out = orig ? *orig : (amqp_basic_properties_t){ 0 };
	*entries = calloc(c->n_headers + n_extra + 1, sizeof(**entries));
	if (!*entries)
		return -ENOMEM;
	for (size_t i = 0; i < c->n_headers; i++)
		(*entries)[n++] = entry_of(&c->headers[i]);
	for (size_t i = 0; i < n_extra; i++)
		(*entries)[n++] = entry_of(&extra[i]);
	if (c->drop_props & COPY_DROP_EXPIRATION)
		out->_flags &= ~AMQP_BASIC_EXPIRATION_FLAG;
	if (c->drop_props & COPY_DROP_USER_ID)
		out->_flags &= ~AMQP_BASIC_USER_ID_FLAG;
	out->headers = (amqp_table_t){ .num_entries = (int)n, .entries = *entries };
	out->_flags |= AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
	/* Copies are always persistent: a retry must survive a broker restart. */
	out->delivery_mode = AMQP_DELIVERY_PERSISTENT;
	if (c->default_content_type && !(out->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)) {
		out->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
		out->content_type = amqp_cstring_bytes("application/json");
	}
	return 0;
}
