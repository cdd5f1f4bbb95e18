// httpd is a tiny HTTP/1.0 server on the first preopened TCP listener
// (fd LISTEN_FDS_START, default 3): for every connection it reads the
// request head and answers 200 with "hello from wasm <GREETING>\n".
//
// The listener and connections are non-blocking and the server sleeps
// between polls: a blocked host call would keep the runtime from stopping
// the module, a sleep is interrupted.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wasi/api.h>

#define POLL_NS 2000000L          // 2 ms between polls
#define REQUEST_TIMEOUT_POLLS 2500 // ~5 s per request

static void nap(void) {
	struct timespec ts = {0, POLL_NS};
	nanosleep(&ts, NULL);
}

// readHead reads until the blank line ending the request head, the buffer
// is full, the peer closes or the time is up. 0 if a head was read.
static int readHead(int fd, char *buf, size_t size) {
	size_t n = 0;
	for (int polls = 0; polls < REQUEST_TIMEOUT_POLLS;) {
		ssize_t r = read(fd, buf + n, size - 1 - n);
		if (r < 0 && errno == EAGAIN) {
			nap();
			polls++;
			continue;
		}
		if (r <= 0) return -1;
		n += (size_t)r;
		buf[n] = '\0';
		if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n") || n == size - 1) return 0;
	}
	return -1;
}

static int writeAll(int fd, const char *p, size_t n) {
	for (int polls = 0; n > 0 && polls < REQUEST_TIMEOUT_POLLS;) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EAGAIN) {
			nap();
			polls++;
			continue;
		}
		if (w <= 0) return -1;
		p += w;
		n -= (size_t)w;
	}
	return n == 0 ? 0 : -1;
}

int main(void) {
	const char *start = getenv("LISTEN_FDS_START");
	const char *count = getenv("LISTEN_FDS");
	const char *greeting = getenv("GREETING");
	if (count == NULL || atoi(count) < 1) {
		fprintf(stderr, "httpd: no listener (LISTEN_FDS unset)\n");
		return 2;
	}
	int lfd = start ? atoi(start) : 3;
	if (greeting == NULL) greeting = "";
	if (fcntl(lfd, F_SETFL, O_NONBLOCK) != 0) {
		fprintf(stderr, "httpd: fd %d non-blocking: %s\n", lfd, strerror(errno));
		return 1;
	}
	char body[256];
	int bodyLen = snprintf(body, sizeof body, "hello from wasm %s\n", greeting);
	char resp[512];
	int respLen = snprintf(resp, sizeof resp,
		"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		bodyLen, body);
	printf("httpd: serving on fd %d\n", lfd);
	fflush(stdout);
	unsigned long served = 0;
	for (;;) {
		__wasi_fd_t conn;
		__wasi_errno_t e = __wasi_sock_accept((__wasi_fd_t)lfd, __WASI_FDFLAGS_NONBLOCK, &conn);
		if (e == __WASI_ERRNO_AGAIN) {
			nap();
			continue;
		}
		if (e != 0) {
			fprintf(stderr, "httpd: accept: %s\n", strerror(e));
			return 1;
		}
		char req[2048];
		if (readHead((int)conn, req, sizeof req) == 0 && writeAll((int)conn, resp, (size_t)respLen) == 0) {
			served++;
			char *eol = strpbrk(req, "\r\n");
			if (eol) *eol = '\0';
			printf("httpd: %lu %s\n", served, req);
			fflush(stdout);
		}
		(void)__wasi_sock_shutdown(conn, __WASI_SDFLAGS_RD | __WASI_SDFLAGS_WR);
		close((int)conn);
	}
}
