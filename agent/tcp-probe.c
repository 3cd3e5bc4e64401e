/*
 * sbx-tcp-probe PORT [HOST]: exits 0 iff a TCP connection to HOST:PORT
 * (default: 127.0.0.1, then ::1) is accepted within a second. It runs inside
 * the sandbox, in its network namespace, as the readiness probe
 * Probe.withTcp(PORT) (packages/server/src/core/probes.ts). Static, so it works
 * in any image.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TIMEOUT_MS 1000

/* Non-blocking connect bounded by TIMEOUT_MS; 0 when accepted. */
static int try_connect(const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int rc = connect(fd, sa, len);
	if (rc < 0 && errno == EINPROGRESS) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int err = 0;
		socklen_t elen = sizeof err;
		rc = -1;
		if (poll(&p, 1, TIMEOUT_MS) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0)
			rc = 0;
	}
	close(fd);
	return rc;
}

static int parse_port(const char *s)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *s == '\0' || *end != '\0' || v < 1 || v > 65535)
		return -1;
	return (int)v;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: sbx-tcp-probe PORT [HOST]\n");
		return 2;
	}
	int port = parse_port(argv[1]);
	if (port < 0) {
		fprintf(stderr, "sbx-tcp-probe: bad port %s\n", argv[1]);
		return 2;
	}
	struct sockaddr_in v4 = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
	struct sockaddr_in6 v6 = { .sin6_family = AF_INET6, .sin6_port = htons((unsigned short)port) };
	if (argc == 3) {
		if (inet_pton(AF_INET, argv[2], &v4.sin_addr) == 1)
			return try_connect((struct sockaddr *)&v4, sizeof v4) == 0 ? 0 : 1;
		if (inet_pton(AF_INET6, argv[2], &v6.sin6_addr) == 1)
			return try_connect((struct sockaddr *)&v6, sizeof v6) == 0 ? 0 : 1;
		fprintf(stderr, "sbx-tcp-probe: HOST must be an IP address (got %s)\n", argv[2]);
		return 2;
	}
	v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (try_connect((struct sockaddr *)&v4, sizeof v4) == 0)
		return 0;
	v6.sin6_addr = in6addr_loopback;
	return try_connect((struct sockaddr *)&v6, sizeof v6) == 0 ? 0 : 1;
}
