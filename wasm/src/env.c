// env prints its arguments and environment, then exits 0.
#include <stdio.h>

extern char **environ;

int main(int argc, char **argv) {
	for (int i = 0; i < argc; i++) printf("arg[%d]=%s\n", i, argv[i]);
	for (char **e = environ; e != NULL && *e != NULL; e++) printf("env %s\n", *e);
	fflush(stdout);
	return 0;
}
