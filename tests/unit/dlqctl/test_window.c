/*
 * Unit tests for window: FIFO order across the ring's wrap, the bound, and
 * how confirms settle entries: in order, multiple, a single ack that
 * overtakes (its entry settles but stays until the head is settled), nacks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dlqctl/window.h"

struct seen {
	uint64_t tags[WINDOW_SIZE * 2];
	bool acks[WINDOW_SIZE * 2];
	size_t n;
};

static void on_settle(void *userdata, const struct pending *p, bool ack)
{
	struct seen *s = userdata;

	s->tags[s->n] = p->tag;
	s->acks[s->n++] = ack;
}

static struct window *filled(uint64_t first_seq, size_t n)
{
	struct window *w = calloc(1, sizeof(*w));

	for (size_t i = 0; i < n; i++) {
		struct pending *p = window_push(w);
		assert_non_null(p);
		p->seq = first_seq + i;
		p->tag = 100 + first_seq + i;
	}
	return w;
}

static void test_fifo_and_bound(void **state)
{
	struct window *w = calloc(1, sizeof(*w));

	(void)state;
	/* Go round the ring a few times: order is kept across the wrap. */
	for (uint64_t i = 0; i < 3 * WINDOW_SIZE; i++) {
		struct pending *p = window_push(w);
		assert_non_null(p);
		assert_false(p->settled);
		p->tag = i;
		if (w->count == 10) {
			assert_int_equal(window_at(w, 0)->tag, i - 9);
			window_pop(w);
		}
	}
	while (!window_full(w))
		window_push(w);
	assert_null(window_push(w));
	assert_int_equal(w->count, WINDOW_SIZE);
	while (w->count)
		window_pop(w);
	window_pop(w); /* empty: nothing */
	assert_int_equal(w->count, 0);
	free(w);
}

static void test_confirms_in_order_and_multiple(void **state)
{
	struct window *w = filled(1, 5);
	struct seen s = { 0 };

	(void)state;
	assert_int_equal(window_confirm(w, 1, false, true, on_settle, &s), 1);
	assert_int_equal(w->count, 4);
	assert_int_equal(window_confirm(w, 4, true, true, on_settle, &s), 3);
	assert_int_equal(w->count, 1);
	assert_int_equal(s.n, 4);
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(s.tags[i], 101 + i);
		assert_true(s.acks[i]);
	}
	/* A confirm for nothing pending (already settled) settles nothing. */
	assert_int_equal(window_confirm(w, 3, false, true, on_settle, &s), 0);
	assert_int_equal(window_confirm(w, 5, false, false, on_settle, &s), 1);
	assert_false(s.acks[4]);
	assert_int_equal(w->count, 0);
	free(w);
}

static void test_single_ack_overtakes(void **state)
{
	struct window *w = filled(7, 3);
	struct seen s = { 0 };

	(void)state;
	/* seq 8 first: settled at once, but 7 still holds the head. */
	assert_int_equal(window_confirm(w, 8, false, true, on_settle, &s), 1);
	assert_int_equal(s.tags[0], 108);
	assert_int_equal(w->count, 3);
	assert_int_equal(window_at(w, 0)->seq, 7);
	/* The multiple for 9 settles 7 and 9, not 8 again; all leave. */
	assert_int_equal(window_confirm(w, 9, true, true, on_settle, &s), 2);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.tags[1], 107);
	assert_int_equal(s.tags[2], 109);
	assert_int_equal(w->count, 0);
	free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo_and_bound),
		cmocka_unit_test(test_confirms_in_order_and_multiple),
		cmocka_unit_test(test_single_ack_overtakes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
