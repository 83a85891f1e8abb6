/*
 * memhog: the benchmark workload. Holds MEM_MIB MiB of resident memory, a mix of
 * random (incompressible) and patterned (compressible) pages set by RANDOM_PCT, and
 * keeps a counter in memory only: prints "count=N" each second and writes N to
 * /www/count for busybox httpd (started by the image's CMD) to serve on :8080/count.
 * After a CRIU restore the counter goes on, and every page is checked intact.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

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
		FILE *f = fopen("/www/count.tmp", "w");
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
