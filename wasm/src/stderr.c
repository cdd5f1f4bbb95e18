// stderr writes argv[1] lines (default 3) to stderr and one line to stdout, then exits 0.
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 3;
	printf("to stdout\n");
	fflush(stdout);
	for (int i = 1; i <= n; i++) fprintf(stderr, "error line %d\n", i);
	return 0;
}
