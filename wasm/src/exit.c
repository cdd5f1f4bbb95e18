// exit prints a line, then exits with the code given as its first argument (default 0).
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
	int code = argc > 1 ? atoi(argv[1]) : 0;
	printf("exiting with code %d\n", code);
	fflush(stdout);
	return code;
}
