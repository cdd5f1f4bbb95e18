// membomb allocates and touches 1 MiB chunks until malloc fails, reports how
// much it got, then aborts.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (1024 * 1024)

// head keeps every chunk reachable so the compiler cannot elide the allocations.
static void *volatile head;

int main(void) {
	unsigned long mib = 0;
	for (;;) {
		void **p = malloc(CHUNK);
		if (p == NULL) break;
		memset(p, 0xab, CHUNK);
		*p = head;
		head = p;
		mib++;
	}
	printf("allocated %lu MiB before malloc failed\n", mib);
	fflush(stdout);
	abort();
}
