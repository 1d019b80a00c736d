/*
 * Unit tests for amqpwire: the frames it writes are read back by a frame
 * splitter here and librabbitmq's own decoders (amqp_decode_method,
 * amqp_decode_properties), so a publish or an ack encoded by hand is what
 * amqp_basic_publish()/amqp_basic_ack() would have sent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/amqpwire.h"

struct frame {
	uint8_t type;
	uint16_t channel;
	const uint8_t *payload;
	uint32_t size;
};

static uint64_t get(const uint8_t *p, int n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = v << 8 | *p++;
	return v;
}

/* Splits b into frames; fails the test on a malformed one. */
static size_t split(const struct buf *b, struct frame *out, size_t max)
{
	const uint8_t *p = (const uint8_t *)b->data, *end = p + b->len;
	size_t n = 0;

	while (p < end) {
		assert_true(n < max);
		assert_true(end - p >= AMQPWIRE_FRAME_OVERHEAD);
		out[n] = (struct frame){ .type = p[0],
					 .channel = (uint16_t)get(p + 1, 2),
					 .size = (uint32_t)get(p + 3, 4),
					 .payload = p + 7 };
		assert_true((size_t)(end - p) >= out[n].size + AMQPWIRE_FRAME_OVERHEAD);
		assert_int_equal(p[7 + out[n].size], 0xCE);
		p += out[n].size + AMQPWIRE_FRAME_OVERHEAD;
		n++;
	}
	return n;
}

static void *decode_method(const struct frame *f, amqp_pool_t *pool, amqp_method_number_t want)
{
	void *m = NULL;

	assert_int_equal(f->type, AMQP_FRAME_METHOD);
	assert_int_equal(get(f->payload, 4), want);
	assert_int_equal(amqp_decode_method(want, pool,
					    (amqp_bytes_t){ .len = f->size - 4,
							    .bytes = (void *)(f->payload + 4) },
					    &m),
			 0);
	return m;
}

/* The properties of a content header frame, decoded by librabbitmq. */
static amqp_basic_properties_t *decode_props(const struct frame *f, amqp_pool_t *pool)
{
	amqp_basic_properties_t *p = NULL;

	assert_int_equal(f->type, AMQP_FRAME_HEADER);
	assert_int_equal(get(f->payload, 2), AMQP_BASIC_CLASS);
	assert_int_equal(
		amqp_decode_properties(
			AMQP_BASIC_CLASS, pool,
			(amqp_bytes_t){ .len = f->size - 12, .bytes = (void *)(f->payload + 12) },
			(void **)&p),
		0);
	return p;
}

static void test_ack_bytes(void **state)
{
	static const uint8_t want[AMQPWIRE_ACK_LEN] = {
		1,    0,    7,	  0,	0,    0,    13, /* method frame, channel 7, 13 bytes */
		0,    60,   0,	  80,			/* basic.ack */
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* delivery tag */
		1,						/* multiple */
		0xCE,
	};
	struct buf b;

	buf_init(&b, 1024);
	assert_int_equal(amqpwire_ack(&b, 7, 0x0102030405060708ULL, true), 0);
	assert_int_equal(b.len, AMQPWIRE_ACK_LEN);
	assert_memory_equal(b.data, want, sizeof(want));
	buf_done(&b);
}

static void test_acks_decode(void **state)
{
	struct frame f[8];
	amqp_pool_t pool;
	struct buf b;

	init_amqp_pool(&pool, 4096);
	buf_init(&b, 1024);
	assert_int_equal(amqpwire_ack(&b, 1, 41, true), 0);
	assert_int_equal(amqpwire_ack(&b, 1, 44, false), 0);
	assert_int_equal(amqpwire_ack(&b, 1, UINT64_MAX, false), 0);
	assert_int_equal(split(&b, f, 8), 3);
	amqp_basic_ack_t *a = decode_method(&f[0], &pool, AMQP_BASIC_ACK_METHOD);
	assert_int_equal(a->delivery_tag, 41);
	assert_true(a->multiple);
	a = decode_method(&f[1], &pool, AMQP_BASIC_ACK_METHOD);
	assert_int_equal(a->delivery_tag, 44);
	assert_false(a->multiple);
	a = decode_method(&f[2], &pool, AMQP_BASIC_ACK_METHOD);
	assert_true(a->delivery_tag == UINT64_MAX);
	empty_amqp_pool(&pool);
	buf_done(&b);
}

static void test_ack_over_max(void **state)
{
	struct buf b;

	buf_init(&b, AMQPWIRE_ACK_LEN + 5);
	assert_int_equal(amqpwire_ack(&b, 1, 1, false), 0);
	assert_int_equal(amqpwire_ack(&b, 1, 2, false), -E2BIG);
	assert_int_equal(b.len, AMQPWIRE_ACK_LEN);
	buf_done(&b);
}

/* Properties with a header table, as a copy carries them. */
static amqp_basic_properties_t props_with(amqp_table_entry_t *e, int n)
{
	return (amqp_basic_properties_t){
		._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
			  AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_HEADERS_FLAG,
		.content_type = amqp_cstring_bytes("application/json"),
		.delivery_mode = AMQP_DELIVERY_PERSISTENT,
		.message_id = amqp_cstring_bytes("job-1"),
		.headers = { .num_entries = n, .entries = e },
	};
}

/* Publishes body with frame_max fm and checks every frame read back. */
static void publish_and_read(size_t body_len, size_t fm, size_t want_body_frames)
{
	amqp_table_entry_t e[2] = {
		{ .key = amqp_cstring_bytes("x-dlqd-attempt"),
		  .value = { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 3 } },
		{ .key = amqp_cstring_bytes("x-dlqd-error-code"),
		  .value = { .kind = AMQP_FIELD_KIND_UTF8,
			     .value.bytes = amqp_cstring_bytes("UPSTREAM_TIMEOUT") } },
	};
	amqp_basic_properties_t props = props_with(e, 2), *got;
	uint8_t *body = malloc(body_len + 1);
	struct frame f[64];
	amqp_pool_t pool;
	struct buf b;
	size_t n, off = 0;

	assert_non_null(body);
	for (size_t i = 0; i < body_len; i++)
		body[i] = (uint8_t)(i * 7 + 3);
	init_amqp_pool(&pool, 4096);
	buf_init(&b, 1 << 20);
	assert_int_equal(amqpwire_ack(&b, 1, 9, false), 0); /* frames follow others */
	assert_int_equal(amqpwire_publish(&b, 4, amqp_cstring_bytes("jobs.retry"),
					  amqp_cstring_bytes("retry.2000"), true, &props,
					  (amqp_bytes_t){ .len = body_len, .bytes = body }, fm),
			 0);
	n = split(&b, f, 64);
	assert_int_equal(n, 3 + want_body_frames);

	amqp_basic_publish_t *m = decode_method(&f[1], &pool, AMQP_BASIC_PUBLISH_METHOD);
	assert_int_equal(f[1].channel, 4);
	assert_memory_equal(m->exchange.bytes, "jobs.retry", m->exchange.len);
	assert_memory_equal(m->routing_key.bytes, "retry.2000", m->routing_key.len);
	assert_true(m->mandatory);
	assert_false(m->immediate);

	got = decode_props(&f[2], &pool);
	assert_int_equal(f[2].channel, 4);
	assert_int_equal(get(f[2].payload + 4, 8), body_len);
	assert_int_equal(got->_flags, props._flags);
	assert_int_equal(got->delivery_mode, AMQP_DELIVERY_PERSISTENT);
	assert_memory_equal(got->message_id.bytes, "job-1", 5);
	assert_int_equal(got->headers.num_entries, 2);
	assert_int_equal(got->headers.entries[0].value.value.i64, 3);
	assert_memory_equal(got->headers.entries[1].value.value.bytes.bytes, "UPSTREAM_TIMEOUT",
			    16);

	for (size_t i = 3; i < n; i++) {
		assert_int_equal(f[i].type, AMQP_FRAME_BODY);
		assert_int_equal(f[i].channel, 4);
		assert_true(f[i].size + AMQPWIRE_FRAME_OVERHEAD <= fm);
		assert_memory_equal(f[i].payload, body + off, f[i].size);
		off += f[i].size;
	}
	assert_int_equal(off, body_len);
	empty_amqp_pool(&pool);
	buf_done(&b);
	free(body);
}

static void test_publish_small(void **state)
{
	publish_and_read(300, 131072, 1);
}

static void test_publish_empty_body(void **state)
{
	publish_and_read(0, 131072, 0);
}

static void test_publish_split(void **state)
{
	/* frame_max 4096: 4088 body bytes per frame. */
	publish_and_read(4088, 4096, 1);
	publish_and_read(4089, 4096, 2);
	publish_and_read(3 * 4088 + 1, 4096, 4);
}

/* A header table larger than the first guess is encoded again, in full. */
static void test_publish_big_headers(void **state)
{
	static char big[6000];
	amqp_table_entry_t e = { .key = amqp_cstring_bytes("x-dlqd-error-message"),
				 .value = { .kind = AMQP_FIELD_KIND_UTF8,
					    .value.bytes = { sizeof(big), big } } };
	amqp_basic_properties_t props = props_with(&e, 1), *got;
	struct frame f[8];
	amqp_pool_t pool;
	struct buf b;

	memset(big, 'e', sizeof(big));
	init_amqp_pool(&pool, 4096);
	buf_init(&b, 1 << 20);
	assert_int_equal(amqpwire_publish(&b, 1, amqp_cstring_bytes(""), amqp_cstring_bytes("q"),
					  false, &props, amqp_cstring_bytes("{}"), 131072),
			 0);
	assert_int_equal(split(&b, f, 8), 3);
	got = decode_props(&f[1], &pool);
	assert_int_equal(got->headers.entries[0].value.value.bytes.len, sizeof(big));
	empty_amqp_pool(&pool);
	buf_done(&b);
}

/* Over the buffer's maximum: nothing appended, the caller falls back. */
static void test_publish_over_max(void **state)
{
	amqp_basic_properties_t props = props_with(NULL, 0);
	static uint8_t body[10000];
	struct buf b;

	buf_init(&b, 8192);
	assert_int_equal(amqpwire_ack(&b, 1, 1, false), 0);
	assert_int_equal(amqpwire_publish(&b, 1, amqp_cstring_bytes("x"), amqp_cstring_bytes("k"),
					  false, &props,
					  (amqp_bytes_t){ .len = sizeof(body), .bytes = body },
					  131072),
			 -E2BIG);
	assert_int_equal(b.len, AMQPWIRE_ACK_LEN);
	/* Fits the body check, not the frames around it: still rolled back. */
	assert_int_equal(amqpwire_publish(&b, 1, amqp_cstring_bytes("x"), amqp_cstring_bytes("k"),
					  false, &props,
					  (amqp_bytes_t){ .len = 8192 - AMQPWIRE_ACK_LEN - 4,
							  .bytes = body },
					  131072),
			 -E2BIG);
	assert_int_equal(b.len, AMQPWIRE_ACK_LEN);
	buf_done(&b);
}

static void test_publish_bad_args(void **state)
{
	amqp_basic_properties_t props = props_with(NULL, 0);
	char key[300];
	struct buf b;

	memset(key, 'k', sizeof(key));
	buf_init(&b, 1 << 20);
	/* A routing key over 255 bytes is not a short string. */
	assert_int_equal(amqpwire_publish(&b, 1, amqp_cstring_bytes("x"),
					  (amqp_bytes_t){ .len = sizeof(key), .bytes = key }, false,
					  &props, amqp_cstring_bytes("{}"), 131072),
			 -EINVAL);
	assert_int_equal(b.len, 0);
	assert_int_equal(amqpwire_publish(&b, 1, amqp_cstring_bytes("x"), amqp_cstring_bytes("k"),
					  false, &props, amqp_cstring_bytes("{}"), 64),
			 -EINVAL);
	buf_done(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ack_bytes),	    cmocka_unit_test(test_acks_decode),
		cmocka_unit_test(test_ack_over_max),	    cmocka_unit_test(test_publish_small),
		cmocka_unit_test(test_publish_empty_body),  cmocka_unit_test(test_publish_split),
		cmocka_unit_test(test_publish_big_headers), cmocka_unit_test(test_publish_over_max),
		cmocka_unit_test(test_publish_bad_args),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
