/*
 * amqpwire: AMQP frames encoded by hand around librabbitmq's own method and
 * property encoders (see include/common/amqpwire.h). A frame is
 * type(1) channel(2) size(4) payload(size) 0xCE.
 */
#include "common/amqpwire.h"

#include <errno.h>
#include <string.h>

#define FRAME_END 0xCE

static uint8_t *put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

static uint8_t *put32(uint8_t *p, uint32_t v)
{
	return put16(put16(p, (uint16_t)(v >> 16)), (uint16_t)v);
}

static uint8_t *put64(uint8_t *p, uint64_t v)
{
	return put32(put32(p, (uint32_t)(v >> 32)), (uint32_t)v);
}

/* The 7-byte frame header; the payload follows at p + 7. */
static uint8_t *frame_head(uint8_t *p, uint8_t type, uint16_t channel, uint32_t size)
{
	*p++ = type;
	return put32(put16(p, channel), size);
}

int amqpwire_ack(struct buf *out, uint16_t channel, uint64_t tag, bool multiple)
{
	uint8_t f[AMQPWIRE_ACK_LEN], *p;

	p = frame_head(f, AMQP_FRAME_METHOD, channel, AMQPWIRE_ACK_LEN - AMQPWIRE_FRAME_OVERHEAD);
	p = put32(p, AMQP_BASIC_ACK_METHOD);
	p = put64(p, tag);
	*p++ = multiple ? 1 : 0;
	*p = FRAME_END;
	return buf_append(out, f, sizeof(f));
}

/*
 * Reserves room for a frame of at most `room` payload bytes at the end of
 * out and returns where its payload starts; the frame is closed by
 * frame_close() once its size is known.
 */
static uint8_t *frame_open(struct buf *out, size_t room, int *r)
{
	*r = buf_reserve(out, room + AMQPWIRE_FRAME_OVERHEAD);
	return *r < 0 ? NULL : (uint8_t *)out->data + out->len + 7;
}

static void frame_close(struct buf *out, uint8_t type, uint16_t channel, size_t size)
{
	uint8_t *f = (uint8_t *)out->data + out->len;

	frame_head(f, type, channel, (uint32_t)size);
	f[7 + size] = FRAME_END;
	out->len += size + AMQPWIRE_FRAME_OVERHEAD;
	out->data[out->len] = '\0';
}

/* The arguments of a basic.publish: reserved short, two short strings, bits. */
#define PUBLISH_ARGS_MAX (2 + 1 + 255 + 1 + 255 + 1)
/* Most copies' properties fit this; larger ones are encoded again in a frame. */
#define PROPS_GUESS 2048

/* The content header: class, weight, body size, then the properties. */
static int header_frame(struct buf *out, uint16_t channel, const amqp_basic_properties_t *props,
			uint64_t body_len, size_t room)
{
	size_t sizes[] = { room < PROPS_GUESS ? room : PROPS_GUESS, room };
	uint8_t *p;
	int r, n = -1;

	for (size_t i = 0; i < 2 && n < 0; i++) {
		if (i == 1 && sizes[1] == sizes[0])
			break;
		if (!(p = frame_open(out, sizes[i], &r)))
			return r;
		p = put64(put16(put16(p, AMQP_BASIC_CLASS), 0), body_len);
		n = amqp_encode_properties(AMQP_BASIC_CLASS, (void *)props,
					   (amqp_bytes_t){ .len = sizes[i] - 12, .bytes = p });
	}
	if (n < 0)
		return -EINVAL;
	frame_close(out, AMQP_FRAME_HEADER, channel, (size_t)n + 12);
	return 0;
}

int amqpwire_publish(struct buf *out, uint16_t channel, amqp_bytes_t exchange,
		     amqp_bytes_t routing_key, bool mandatory, const amqp_basic_properties_t *props,
		     amqp_bytes_t body, size_t frame_max)
{
	amqp_basic_publish_t m = { .exchange = exchange,
				   .routing_key = routing_key,
				   .mandatory = mandatory };
	size_t start = out->len, room, chunk;
	uint8_t *p;
	int r, n;

	if (frame_max < AMQPWIRE_FRAME_OVERHEAD + 4 + PUBLISH_ARGS_MAX)
		return -EINVAL;
	room = frame_max - AMQPWIRE_FRAME_OVERHEAD;
	if (body.len > out->max || out->len + body.len > out->max)
		return -E2BIG;

	if (!(p = frame_open(out, 4 + PUBLISH_ARGS_MAX, &r)))
		return r;
	put32(p, AMQP_BASIC_PUBLISH_METHOD);
	n = amqp_encode_method(AMQP_BASIC_PUBLISH_METHOD, &m,
			       (amqp_bytes_t){ .len = PUBLISH_ARGS_MAX, .bytes = p + 4 });
	if (n < 0) {
		r = -EINVAL;
		goto fail;
	}
	frame_close(out, AMQP_FRAME_METHOD, channel, (size_t)n + 4);
	if ((r = header_frame(out, channel, props, body.len, room)) < 0)
		goto fail;
	for (size_t off = 0; off < body.len; off += chunk) {
		chunk = body.len - off < room ? body.len - off : room;
		if (!(p = frame_open(out, chunk, &r)))
			goto fail;
		memcpy(p, (const uint8_t *)body.bytes + off, chunk);
		frame_close(out, AMQP_FRAME_BODY, channel, chunk);
	}
	return 0;
fail:
	out->len = start;
	if (out->data)
		out->data[start] = '\0';
	return r;
}
