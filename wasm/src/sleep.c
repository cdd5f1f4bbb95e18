// sleep sleeps for argv[1] seconds (default forever), then exits 0.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc > 1) {
		int secs = atoi(argv[1]);
		printf("sleeping %d seconds\n", secs);
		fflush(stdout);
		sleep(secs);
		printf("done\n");
		return 0;
	}
	printf("sleeping forever\n");
	fflush(stdout);
	for (;;) sleep(3600);
}
