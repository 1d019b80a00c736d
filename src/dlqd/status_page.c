/*
 * status_page: the operator's page at / on the metrics port, whose document
 * is status_page.html next to this file, embedded byte for byte at build time
 * (cmake/embed.cmake writes its bytes to dlqd/status_page_html.h).
 *
 * One self-contained document (inline CSS and script, no external assets, no
 * framework) so that it works on a host without internet access and cannot
 * be broken by a CDN. The script polls /status.json every two seconds and
 * computes rates from the difference of two samples on the server's clock
 * (now_seconds), so a slow or throttled browser tab still shows true rates.
 * Elements carry ids and data- attributes with the raw numbers, which is
 * what test_status_page.py reads from a headless Chromium.
 */
#include "dlqd/status_page.h"

/* NUL-terminated, so it can also be used as a string. */
const char status_page_html[] = {
#include "dlqd/status_page_html.h"
	0
};

const size_t status_page_html_len = sizeof(status_page_html) - 1;
