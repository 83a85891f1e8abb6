/*
 * memhog: the benchmark workload. Holds MEM_MIB MiB of resident memory, a mix of
 * random (incompressible) and patterned (compressible) pages set by RANDOM_PCT, and
 * keeps a counter in memory only: prints "count=N" each second and writes N to
 * /www/count for busybox httpd (started by the image's CMD) to serve on :8080/count.
 * After a CRIU restore the counter goes on, and every page is checked intact:
 * on SIGUSR1 memhog computes a checksum (64-bit FNV-1a) over all its MEM_MIB MiB,
 * prints "checksum=HEX" and writes HEX to /www/checksum (atomically, by rename),
 * so a test can compare the memory before and after a move.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop, want_checksum;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void on_usr1(int sig) { (void)sig; want_checksum = 1; }

/* FNV-1a over the whole buffer: reads (and so faults in) every page. */
static uint64_t checksum(const unsigned char *mem, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++) {
		h ^= mem[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static void report_checksum(const unsigned char *mem, size_t len)
{
	uint64_t h = checksum(mem, len);
	FILE *f = fopen("/www/checksum.tmp", "w");

	if (f) {
		fprintf(f, "%016llx\n", (unsigned long long)h);
		fclose(f);
		rename("/www/checksum.tmp", "/www/checksum");
	}
	printf("checksum=%016llx\n", (unsigned long long)h);
	fflush(stdout);
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

int main(void)
{
	const char *mib_env = getenv("MEM_MIB"), *pct_env = getenv("RANDOM_PCT");
	size_t mib = mib_env ? strtoul(mib_env, NULL, 10) : 16;
	unsigned pct = pct_env ? (unsigned)strtoul(pct_env, NULL, 10) : 50;
	size_t page = 4096, pages = mib * 1024 * 1024 / page;
	unsigned char *mem = malloc(pages * page);
	uint64_t seed = 0x9E3779B97F4A7C15ull;
	unsigned long n;

	if (!mem) {
		fprintf(stderr, "memhog: cannot allocate %zu MiB\n", mib);
		return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGUSR1, on_usr1);
	for (size_t i = 0; i < pages; i++) {
		unsigned char *p = mem + i * page;
		if ((i * 100 / (pages ? pages : 1)) < pct) {
			for (size_t j = 0; j < page; j += 8) {
				uint64_t v = xorshift(&seed);
				memcpy(p + j, &v, 8);
			}
		} else {
			memset(p, (int)(i & 0xff), page);
		}
	}
	printf("ready mem_mib=%zu random_pct=%u\n", mib, pct);
	fflush(stdout);
	for (n = 1; !stop; n++) {
		FILE *f;

		if (want_checksum) {
			want_checksum = 0;
			report_checksum(mem, pages * page);
		}
		f = fopen("/www/count.tmp", "w");
		if (f) {
			fprintf(f, "%lu\n", n);
			fclose(f);
			rename("/www/count.tmp", "/www/count");
		}
		printf("count=%lu\n", n);
		fflush(stdout);
		sleep(1);
	}
	return 0;
}
