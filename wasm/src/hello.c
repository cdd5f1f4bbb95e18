// hello prints "<GREETING> from <NODE_NAME> #<n>" every second, forever.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
	const char *greeting = getenv("GREETING");
	const char *node = getenv("NODE_NAME");
	if (greeting == NULL || *greeting == '\0') greeting = "hello";
	if (node == NULL || *node == '\0') node = "wasm";
	for (unsigned long n = 1;; n++) {
		printf("%s from %s #%lu\n", greeting, node, n);
		fflush(stdout);
		sleep(1);
	}
	return 0;
}
