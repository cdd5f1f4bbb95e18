// files lists each directory given as an argument, then tries to write
// <dir>/written-by-wasm.txt in it. It prints one line per step and exits 1 if
// any directory could not be listed, 2 if any write failed, else 0.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		const char *dir = argv[i];
		DIR *d = opendir(dir);
		if (d == NULL) {
			printf("list %s: error: %s\n", dir, strerror(errno));
			rc = 1;
			continue;
		}
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
			printf("list %s: %s\n", dir, e->d_name);
		}
		closedir(d);

		char path[4096];
		snprintf(path, sizeof path, "%s/written-by-wasm.txt", dir);
		FILE *f = fopen(path, "w");
		if (f == NULL) {
			printf("write %s: error: %s\n", path, strerror(errno));
			if (rc == 0) rc = 2;
			continue;
		}
		if (fprintf(f, "hello from wasm\n") < 0 || fclose(f) != 0) {
			printf("write %s: error: %s\n", path, strerror(errno));
			if (rc == 0) rc = 2;
			continue;
		}
		printf("write %s: ok\n", path);
	}
	fflush(stdout);
	return rc;
}
