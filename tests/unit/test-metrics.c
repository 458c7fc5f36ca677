/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Prometheus exposition (metrics_render) of a device after known I/O:
 * the counters and the histogram match what was done, every sample line is
 * well formed, and only whole-number backend counters become samples. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test-helpers.h"
#include "metrics.h"
#include "stats.h"

#define ASYNC_CONFIG                                                                                                   \
	"device \"am\" {\n  frontend \"testfe\" { socket = \"/x\" }\n"                                                 \
	"  backend \"asyncmem\" { }\n}\n"
#define LABELS "device=\"am\",frontend=\"testfe\",backend=\"asyncmem\",kernel_device=\"\""

static size_t one_count(void *userdata)
{
	return 1;
}

static struct blkserv_device *one_device(void *userdata, size_t i)
{
	return userdata;
}

static char *render(struct blkserv_device *dev)
{
	const struct metrics_source src = { .userdata = dev, .count = one_count, .device_at = one_device };
	size_t len = 0;
	char *text = metrics_render(&src, &len);

	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	return text;
}

static void expect_line(const char *text, const char *line)
{
	char *needle;

	assert_true(asprintf(&needle, "\n%s\n", line) > 0);
	if (!strstr(text, needle))
		fail_msg("no line '%s' in:\n%s", line, text);
	free(needle);
}

/* Every line is a comment (HELP or TYPE) or NAME{LABELS} VALUE. */
static void check_syntax(const char *text)
{
	regex_t re;
	const char *p = text;

	assert_int_equal(regcomp(&re,
				 "^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\\{([a-z_]+=\"([^\"\\\\]|\\\\.)*\",?)*\\})? "
				 "-?[0-9]+(\\.[0-9]+)?(e[-+]?[0-9]+)?)$",
				 REG_EXTENDED | REG_NOSUB),
			 0);
	while (*p) {
		size_t n = strcspn(p, "\n");
		char *line = strndup(p, n);
		if (regexec(&re, line, 0, NULL, 0) != 0)
			fail_msg("malformed line: '%s'", line);
		free(line);
		p += n + (p[n] == '\n');
	}
	regfree(&re);
}

static void test_render(void **state)
{
	struct blkserv_device *dev = test_open_backend(ASYNC_CONFIG, "am");
	struct blkserv_queue *q;
	char buf[4096] = { 1 }, *text;

	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 4096u * i, sizeof(buf), buf), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, sizeof(buf), buf), 0);
	text = render(dev);
	check_syntax(text);
	expect_line(text, "blkservd_device_info{" LABELS "} 1");
	expect_line(text, "blkservd_requests_total{" LABELS ",op=\"write\"} 3");
	expect_line(text, "blkservd_requests_total{" LABELS ",op=\"read\"} 1");
	expect_line(text, "blkservd_request_bytes_total{" LABELS ",op=\"write\"} 12288");
	expect_line(text, "blkservd_request_errors_total{" LABELS ",op=\"write\"} 0");
	expect_line(text, "blkservd_requests_in_flight{" LABELS "} 0");
	expect_line(text, "blkservd_request_duration_seconds_bucket{" LABELS ",op=\"write\",le=\"+Inf\"} 3");
	expect_line(text, "blkservd_request_duration_seconds_count{" LABELS ",op=\"write\"} 3");
	expect_line(text, "# TYPE blkservd_request_duration_seconds histogram");
	/* The backend's counters: whole numbers become samples, the rest not. */
	expect_line(text, "blkservd_backend_stat{" LABELS ",name=\"writes\"} 3");
	expect_line(text, "blkservd_backend_stat{" LABELS ",name=\"neg\"} -3");
	assert_null(strstr(text, "name=\"hex\""));
	assert_null(strstr(text, "name=\"nan\""));
	assert_null(strstr(text, "name=\"quote\""));
	assert_non_null(strstr(text, "\nprocess_resident_memory_bytes "));
	free(text);
	blkserv_queue_free(q);
	test_close_device(dev);
}

/* Cumulative buckets never go down, and end at the count. */
static void test_histogram_cumulative(void **state)
{
	struct blkserv_device *dev = test_open_backend(ASYNC_CONFIG, "am");
	struct blkserv_queue *q;
	char buf[512] = { 2 }, *text, *p;
	unsigned long long prev = 0, v;
	int buckets = 0;

	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	for (int i = 0; i < 20; i++)
		assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 0, sizeof(buf), buf), 0);
	text = render(dev);
	for (p = text; (p = strstr(p, "blkservd_request_duration_seconds_bucket{" LABELS ",op=\"write\",le=\"")); p++) {
		assert_int_equal(sscanf(strchr(p, '}') + 1, " %llu", &v), 1);
		assert_true(v >= prev);
		prev = v;
		buckets++;
	}
	assert_int_equal(buckets, 20); /* 19 bounds and +Inf */
	assert_int_equal(prev, 20);
	free(text);
	blkserv_queue_free(q);
	test_close_device(dev);
}

/* The internal buckets' bounds never go down (the fold into Prometheus
 * buckets relies on it; buckets 4..7 are never used). */
static void test_bucket_bounds(void **state)
{
	for (unsigned b = 1; b < LATENCY_BUCKETS; b++)
		if (stats_bucket_upper_ns(b) < stats_bucket_upper_ns(b - 1))
			fail_msg("bucket %u ends at %llu ns, below bucket %u's %llu", b,
				 (unsigned long long)stats_bucket_upper_ns(b), b - 1,
				 (unsigned long long)stats_bucket_upper_ns(b - 1));
	assert_int_equal(stats_bucket_upper_ns(0), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_histogram_cumulative),
		cmocka_unit_test(test_bucket_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
