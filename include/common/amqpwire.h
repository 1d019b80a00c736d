/*
 * amqpwire: AMQP 0-9-1 frames encoded into a buffer, so that several leave
 * in one write. librabbitmq 0.11 gives every frame its own send() (a publish
 * is three) and offers no public way to batch them; dlqd acks and publishes
 * per message, and on a loopback broker each send() also pays for the
 * receiver's TCP work. The method arguments and properties are encoded by
 * librabbitmq's own amqp_encode_method() and amqp_encode_properties(); only
 * the framing around them is done here. Pure: no I/O.
 */
#pragma once

#include <amqp.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"

/* A basic.ack frame: 7 bytes of frame header, 13 of payload, the end octet. */
#define AMQPWIRE_ACK_LEN 21
/* Frame header (type, channel, size) and the frame-end octet. */
#define AMQPWIRE_FRAME_OVERHEAD 8

/* Appends one basic.ack frame. -E2BIG or -ENOMEM leave out as it was. */
int amqpwire_ack(struct buf *out, uint16_t channel, uint64_t tag, bool multiple);

/*
 * Appends a basic.publish: the method frame, the content header frame and
 * the body in frames of at most frame_max bytes, as amqp_basic_publish()
 * would send them. -E2BIG when they do not fit out's maximum (the caller
 * then sends it the library's way), -EINVAL for a frame_max too small to
 * carry the method or the header; out is left as it was on any error.
 */
int amqpwire_publish(struct buf *out, uint16_t channel, amqp_bytes_t exchange,
		     amqp_bytes_t routing_key, bool mandatory, const amqp_basic_properties_t *props,
		     amqp_bytes_t body, size_t frame_max);
