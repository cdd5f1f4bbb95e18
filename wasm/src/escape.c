// escape tries to reach outside its sandbox. Each argument is one step:
//   read:PATH         open PATH and print its first line
//   ls:PATH           list the directory PATH
//   symlink:TARGET:LINK  create the symbolic link LINK pointing to TARGET
//   write:PATH        create PATH and write a line to it
//   env               print the environment
// It prints one line per step ("<step>: ok ..." or "<step>: error: ...")
// and exits 0.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static void readfile(const char *step, const char *path) {
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		printf("%s: error: %s\n", step, strerror(errno));
		return;
	}
	char line[256] = "";
	if (fgets(line, sizeof line, f) == NULL) line[0] = 0;
	fclose(f);
	line[strcspn(line, "\n")] = 0;
	printf("%s: ok %s\n", step, line);
}

static void list(const char *step, const char *path) {
	DIR *d = opendir(path);
	if (d == NULL) {
		printf("%s: error: %s\n", step, strerror(errno));
		return;
	}
	printf("%s: ok", step);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
		printf(" %s", e->d_name);
	}
	printf("\n");
	closedir(d);
}

int main(int argc, char **argv) {
	for (int i = 1; i < argc; i++) {
		const char *step = argv[i];
		if (strncmp(step, "read:", 5) == 0) {
			readfile(step, step + 5);
		} else if (strncmp(step, "ls:", 3) == 0) {
			list(step, step + 3);
		} else if (strncmp(step, "symlink:", 8) == 0) {
			char target[1024];
			snprintf(target, sizeof target, "%s", step + 8);
			char *link = strchr(target, ':');
			if (link == NULL) {
				printf("%s: error: want symlink:TARGET:LINK\n", step);
				continue;
			}
			*link++ = 0;
			if (symlink(target, link) != 0) {
				printf("%s: error: %s\n", step, strerror(errno));
			} else {
				printf("%s: ok\n", step);
			}
		} else if (strncmp(step, "write:", 6) == 0) {
			FILE *f = fopen(step + 6, "w");
			if (f == NULL || fprintf(f, "written by wasm\n") < 0 || fclose(f) != 0) {
				printf("%s: error: %s\n", step, strerror(errno));
			} else {
				printf("%s: ok\n", step);
			}
		} else if (strcmp(step, "env") == 0) {
			for (char **e = environ; e != NULL && *e != NULL; e++) printf("env: %s\n", *e);
		} else {
			printf("%s: error: unknown step\n", step);
		}
	}
	fflush(stdout);
	return 0;
}
