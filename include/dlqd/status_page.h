/*
 * status_page: the read-only HTML status page that the metrics server serves
 * at / (DLQ depth, oldest DLQ message, DLQ rate, why messages were
 * dead-lettered, top error codes, live rates). It reads /status.json
 * (metrics_render_json()). Static data only: no I/O.
 */
#pragma once

#include <stddef.h>

extern const char status_page_html[];
extern const size_t status_page_html_len;
