// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * truth_target: a process that calls its probe functions exactly when told,
 * for tests/bpf/truth.bpf.c to record (built by build.rs for the host).
 *
 * Protocol, one command per line on stdin, each answered `ok` on stdout:
 *   observe <u64>...                    truth_observe(v) for each, this thread
 *   gauge <s64>                         truth_gauge_set(v)
 *   string <word>...                    truth_string(word) for each
 *   ip4 <a.b.c.d>...                    truth_ip(address, 4) for each, the
 *                                       address in network byte order
 *   ip6 <IPv6 text>...                  truth_ip(address, 16) for each
 *   pinned <cpu> <count> <u64> [...]    per triple, a thread pinned to <cpu>
 *                                       calls truth_observe(v) <count> times;
 *                                       all the triples' threads run at once
 * It prints `ready <pid>` first. EOF exits 0; a bad command prints why on
 * stderr and exits 2.
 *
 * Adding a probe function: define it with PROBE, add a command to run().
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Never inlined, never dropped, never merged: each call is one probe hit. */
#define PROBE __attribute__((noinline, used)) __attribute__((visibility("default")))

PROBE void truth_observe(unsigned long long value)
{
	asm volatile("" : : "r"(value) : "memory");
}

PROBE void truth_gauge_set(long long value)
{
	asm volatile("" : : "r"(value) : "memory");
}

PROBE void truth_string(const char *text)
{
	asm volatile("" : : "r"(text) : "memory");
}

PROBE void truth_ip(const unsigned char *address, int len)
{
	asm volatile("" : : "r"(address), "r"(len) : "memory");
}

#define MAX_WORDS 4096

static unsigned long line_number;

static void fail(const char *format, ...)
{
	va_list args;

	fprintf(stderr, "truth_target: line %lu: ", line_number);
	va_start(args, format);
	vfprintf(stderr, format, args);
	va_end(args);
	fputc('\n', stderr);
	exit(2);
}

static unsigned long long parse_u64(const char *word)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(word, &end, 0);
	if (errno || end == word || *end || word[0] == '-')
		fail("%s: not an unsigned 64-bit number", word);
	return v;
}

static long long parse_s64(const char *word)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(word, &end, 0);
	if (errno || end == word || *end)
		fail("%s: not a signed 64-bit number", word);
	return v;
}

struct pinned {
	pthread_t thread;
	int cpu;
	unsigned long long count;
	unsigned long long value;
	int error; /* set by the thread: pinning failed or landed elsewhere */
};

static void *pinned_thread(void *arg)
{
	struct pinned *p = arg;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(p->cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		p->error = errno;
		return NULL;
	}
	if (sched_getcpu() != p->cpu) {
		p->error = EAGAIN;
		return NULL;
	}
	for (unsigned long long i = 0; i < p->count; i++)
		truth_observe(p->value);
	return NULL;
}

static void run_pinned(char **words, int n)
{
	static struct pinned threads[MAX_WORDS / 3];
	int count = n / 3;

	if (n == 0 || n % 3)
		fail("pinned takes <cpu> <count> <value> triples");
	for (int i = 0; i < count; i++) {
		unsigned long long cpu = parse_u64(words[3 * i]);

		if (cpu >= CPU_SETSIZE)
			fail("cpu %llu is out of range", cpu);
		threads[i] = (struct pinned){
			.cpu = (int)cpu,
			.count = parse_u64(words[3 * i + 1]),
			.value = parse_u64(words[3 * i + 2]),
		};
	}
	for (int i = 0; i < count; i++) {
		int err = pthread_create(&threads[i].thread, NULL, pinned_thread, &threads[i]);

		if (err)
			fail("pthread_create: %s", strerror(err));
	}
	for (int i = 0; i < count; i++)
		pthread_join(threads[i].thread, NULL);
	for (int i = 0; i < count; i++)
		if (threads[i].error)
			fail("pinning a thread to cpu %d: %s", threads[i].cpu,
			     strerror(threads[i].error));
}

/* truth_ip() for each word, parsed as an address of `family`. */
static void run_ip(int family, char **words, int n)
{
	unsigned char address[16];
	int len = family == AF_INET ? 4 : 16;

	for (int i = 0; i < n; i++) {
		if (inet_pton(family, words[i], address) != 1)
			fail("%s: not an IPv%d address", words[i], family == AF_INET ? 4 : 6);
		truth_ip(address, len);
	}
}

static void run(char **words, int n)
{
	const char *command = words[0];

	words++;
	n--;
	if (!strcmp(command, "observe")) {
		for (int i = 0; i < n; i++)
			truth_observe(parse_u64(words[i]));
	} else if (!strcmp(command, "gauge")) {
		if (n != 1)
			fail("gauge takes one value");
		truth_gauge_set(parse_s64(words[0]));
	} else if (!strcmp(command, "pinned")) {
		run_pinned(words, n);
	} else if (!strcmp(command, "string")) {
		for (int i = 0; i < n; i++)
			truth_string(words[i]);
	} else if (!strcmp(command, "ip4")) {
		run_ip(AF_INET, words, n);
	} else if (!strcmp(command, "ip6")) {
		run_ip(AF_INET6, words, n);
	} else {
		fail("unknown command %s (known: observe, gauge, pinned, string, ip4, ip6)", command);
	}
}

int main(void)
{
	char *line = NULL;
	size_t size = 0;
	static char *words[MAX_WORDS];

	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	while (getline(&line, &size, stdin) != -1) {
		int n = 0;

		line_number++;
		for (char *word = strtok(line, " \t\n"); word; word = strtok(NULL, " \t\n")) {
			if (n == MAX_WORDS)
				fail("more than %d words", MAX_WORDS);
			words[n++] = word;
		}
		if (n == 0)
			fail("empty line");
		run(words, n);
		printf("ok\n");
		fflush(stdout);
	}
	free(line);
	return 0;
}
