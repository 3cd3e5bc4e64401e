/*
 * sbx-netwire: name a sandbox's network namespace and wire it to the host
 * bridge, in one process, talking rtnetlink directly.
 *
 *   sbx-netwire <netns> <pid>
 *   sbx-netwire <netns> <pid> <host-veth> <bridge> <addr>/<prefix> <gateway>
 *
 * Both forms bind the network namespace of <pid> at /var/run/netns/<netns>,
 * like `ip netns attach` (so `ip netns list/del` work on it). The long form
 * also creates the veth pair <host-veth> (in <bridge>, an isolated port that
 * does not learn, up) <-> eth0 (inside the namespace, with <addr>/<prefix>,
 * up, default route via <gateway>) and brings lo up there.
 *
 * It replaces two `ip -batch` runs: `ip -n NS` alone costs a mount namespace
 * and a sysfs remount per call, which made this the slowest step of wiring.
 *
 * Exit status: 0 on success, 2 on bad arguments, 1 on any other error (one
 * line on stderr naming the failing step). What succeeded before a failure
 * stays: the caller tears it all down by name (veth, `ip netns del`).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

#define NETNS_DIR "/var/run/netns"

static _Noreturn void die(const char *step, const char *what, int err, const char *detail)
{
	fprintf(stderr, "sbx-netwire: %s %s: %s%s%s\n", step, what, strerror(err), detail ? ": " : "",
		detail ? detail : "");
	exit(1);
}

static _Noreturn void usage(const char *why)
{
	fprintf(stderr,
		"sbx-netwire: %s\n"
		"usage: sbx-netwire <netns> <pid> [<host-veth> <bridge> <addr>/<prefix> <gateway>]\n",
		why);
	exit(2);
}

/* ------------------------------------------------------------ netlink */

/* One request at a time; 512 bytes is far more than the largest (add veth). */
static union {
	struct nlmsghdr h;
	char bytes[512];
} req;
static unsigned seq;

static void begin(int type, int flags, const void *hdr, size_t len)
{
	memset(&req, 0, sizeof req);
	req.h.nlmsg_type = type;
	req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	req.h.nlmsg_seq = ++seq;
	req.h.nlmsg_len = NLMSG_LENGTH(len);
	memcpy(NLMSG_DATA(&req.h), hdr, len);
}

static struct rtattr *put(int type, const void *data, size_t len)
{
	size_t at = NLMSG_ALIGN(req.h.nlmsg_len);
	if (at + RTA_SPACE(len) > sizeof req)
		die("build", "request", EMSGSIZE, NULL);
	struct rtattr *a = (struct rtattr *)(req.bytes + at);
	a->rta_type = type;
	a->rta_len = RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(a), data, len);
	req.h.nlmsg_len = at + RTA_SPACE(len);
	return a;
}

static void put_str(int type, const char *s) { put(type, s, strlen(s) + 1); }
static void put_u32(int type, unsigned v) { put(type, &v, sizeof v); }
static void put_u8(int type, unsigned char v) { put(type, &v, 1); }
static struct rtattr *nest(int type) { return put(type, NULL, 0); }
static void end(struct rtattr *a) { a->rta_len = req.bytes + req.h.nlmsg_len - (char *)a; }

static int nl_open(void)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		die("open", "netlink", errno, NULL);
	/* The kernel's own words on a failure (extack), without our request echoed back. */
	int on = 1;
	setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof on);
	setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof on);
	return fd;
}

static const char *ext_msg(const struct nlmsghdr *h)
{
	if (!(h->nlmsg_flags & NLM_F_ACK_TLVS))
		return NULL;
	size_t off = NLMSG_HDRLEN + sizeof(struct nlmsgerr);
	while (off + NLA_HDRLEN <= h->nlmsg_len) {
		const struct nlattr *a = (const void *)((const char *)h + off);
		if (a->nla_len < NLA_HDRLEN || off + a->nla_len > h->nlmsg_len)
			break;
		if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG && a->nla_len > NLA_HDRLEN &&
		    ((const char *)a)[a->nla_len - 1] == '\0')
			return (const char *)a + NLA_HDRLEN;
		off += NLA_ALIGN(a->nla_len);
	}
	return NULL;
}

/* Sends the request and waits for its ack; any error is fatal. */
static void talk(int fd, const char *step, const char *what)
{
	if (send(fd, &req, req.h.nlmsg_len, 0) < 0)
		die(step, what, errno, NULL);
	static union {
		struct nlmsghdr h;
		char bytes[8192];
	} buf;
	for (;;) {
		ssize_t n = recv(fd, &buf, sizeof buf, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die(step, what, errno, NULL);
		size_t off = 0;
		while (off + NLMSG_HDRLEN <= (size_t)n) {
			const struct nlmsghdr *h = (const void *)(buf.bytes + off);
			if (h->nlmsg_len < NLMSG_HDRLEN || off + h->nlmsg_len > (size_t)n)
				break;
			if (h->nlmsg_type == NLMSG_ERROR && h->nlmsg_seq == req.h.nlmsg_seq) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				if (e->error)
					die(step, what, -e->error, ext_msg(h));
				return;
			}
			off += NLMSG_ALIGN(h->nlmsg_len);
		}
	}
}

/* Brings a link up by name, optionally with bridge port settings. */
static void link_up(int fd, const char *name, int port_settings, const char *step)
{
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_flags = IFF_UP, .ifi_change = IFF_UP };
	begin(RTM_NEWLINK, 0, &ifi, sizeof ifi);
	put_str(IFLA_IFNAME, name);
	if (port_settings) {
		/* Applied before the flags change; the port also has no carrier until eth0 is up. */
		struct rtattr *info = nest(IFLA_LINKINFO);
		put_str(IFLA_INFO_SLAVE_KIND, "bridge");
		struct rtattr *data = nest(IFLA_INFO_SLAVE_DATA);
		put_u8(IFLA_BRPORT_ISOLATED, 1);
		put_u8(IFLA_BRPORT_LEARNING, 0);
		end(data);
		end(info);
	}
	talk(fd, step, name);
}

/* ------------------------------------------------------------ steps */

/* `ip netns attach`: a bind mount of the namespace on a file in a shared mount. */
static void attach(const char *name, int nsfd)
{
	char path[sizeof NETNS_DIR + NAME_MAX + 1], src[64];
	snprintf(path, sizeof path, "%s/%s", NETNS_DIR, name);
	if (mkdir(NETNS_DIR, 0755) < 0 && errno != EEXIST)
		die("attach netns: mkdir", NETNS_DIR, errno, NULL);
	/*
	 * Shared, so the binds made here show up in every mount namespace that
	 * has a copy of the directory (and `ip netns del` is seen everywhere).
	 * The first time the directory is not a mount point yet: make it one.
	 */
	if (mount("", NETNS_DIR, "none", MS_SHARED | MS_REC, NULL) < 0) {
		if (errno != EINVAL || mount(NETNS_DIR, NETNS_DIR, "none", MS_BIND | MS_REC, NULL) < 0 ||
		    mount("", NETNS_DIR, "none", MS_SHARED | MS_REC, NULL) < 0)
			die("attach netns: share", NETNS_DIR, errno, NULL);
	}
	int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0)
		die("attach netns", name, errno, NULL);
	close(fd);
	/* The fd, not /proc/<pid>/ns/net again: the pid may have died and been reused. */
	snprintf(src, sizeof src, "/proc/self/fd/%d", nsfd);
	if (mount(src, path, "none", MS_BIND, NULL) < 0) {
		int err = errno;
		unlink(path); /* an empty file would make `ip netns` list a dead name */
		die("attach netns", name, err, NULL);
	}
}

static void add_veth(int fd, const char *veth, unsigned bridge, int nsfd)
{
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
	begin(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
	put_str(IFLA_IFNAME, veth);
	put_u32(IFLA_MASTER, bridge);
	struct rtattr *info = nest(IFLA_LINKINFO);
	put_str(IFLA_INFO_KIND, "veth");
	struct rtattr *data = nest(IFLA_INFO_DATA);
	/* The peer is created straight in the sandbox's namespace: no rename or move. */
	struct rtattr *peer = put(VETH_INFO_PEER, &ifi, sizeof ifi);
	put_str(IFLA_IFNAME, "eth0");
	put_u32(IFLA_NET_NS_FD, nsfd);
	end(peer);
	end(data);
	end(info);
	talk(fd, "add veth", veth);
}

static void add_addr(int fd, unsigned index, struct in_addr a, int prefix)
{
	struct ifaddrmsg ifa = { .ifa_family = AF_INET, .ifa_prefixlen = prefix, .ifa_index = index };
	begin(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof ifa);
	put(IFA_LOCAL, &a, sizeof a);
	put(IFA_ADDRESS, &a, sizeof a);
	talk(fd, "add address on", "eth0");
}

static void add_default_route(int fd, unsigned index, struct in_addr gw)
{
	struct rtmsg rt = {
		.rtm_family = AF_INET,
		.rtm_table = RT_TABLE_MAIN,
		.rtm_protocol = RTPROT_BOOT,
		.rtm_scope = RT_SCOPE_UNIVERSE,
		.rtm_type = RTN_UNICAST,
	};
	begin(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rt, sizeof rt);
	put(RTA_GATEWAY, &gw, sizeof gw);
	put_u32(RTA_OIF, index);
	talk(fd, "add default route via", inet_ntoa(gw));
}

/* ------------------------------------------------------------ arguments */

/* What the kernel accepts as an interface name (dev_valid_name). */
static void check_ifname(const char *s)
{
	size_t n = strlen(s);
	int ok = n > 0 && n < IFNAMSIZ && strcmp(s, ".") && strcmp(s, "..");
	for (const char *p = s; ok && *p; p++)
		ok = *p != '/' && *p != ':' && !isspace((unsigned char)*p);
	if (!ok)
		usage("bad interface name");
}

static void check_ipv4(const char *s, struct in_addr *a)
{
	if (inet_pton(AF_INET, s, a) != 1)
		usage("bad IPv4 address");
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 7)
		usage("wrong number of arguments");
	const char *ns = argv[1];
	if (!*ns || strlen(ns) > NAME_MAX || strchr(ns, '/') || !strcmp(ns, ".") || !strcmp(ns, ".."))
		usage("bad netns name");
	char *endp;
	errno = 0;
	long pid = strtol(argv[2], &endp, 10);
	if (!isdigit((unsigned char)argv[2][0]) || *endp || errno || pid <= 1 || pid > INT_MAX)
		usage("bad pid");

	const char *veth = NULL, *bridge = NULL;
	struct in_addr addr, gw;
	long prefix = 0;
	if (argc == 7) {
		veth = argv[3], bridge = argv[4];
		check_ifname(veth);
		check_ifname(bridge);
		if (!strcmp(veth, "eth0"))
			usage("the host veth cannot be eth0");
		char a[INET_ADDRSTRLEN], *slash = strchr(argv[5], '/');
		if (!slash || slash - argv[5] >= (long)sizeof a || !isdigit((unsigned char)slash[1]))
			usage("bad address, want <addr>/<prefix>");
		memcpy(a, argv[5], slash - argv[5]);
		a[slash - argv[5]] = '\0';
		check_ipv4(a, &addr);
		prefix = strtol(slash + 1, &endp, 10);
		if (*endp || prefix > 32)
			usage("bad prefix length");
		check_ipv4(argv[6], &gw);
	}

	char nspath[64];
	snprintf(nspath, sizeof nspath, "/proc/%ld/ns/net", pid);
	int nsfd = open(nspath, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0)
		die("open", nspath, errno, NULL);
	/* Wiring our own namespace would put eth0 and a default route on the host. */
	struct stat theirs, ours;
	if (fstat(nsfd, &theirs) < 0 || stat("/proc/self/ns/net", &ours) < 0)
		die("stat", nspath, errno, NULL);
	if (theirs.st_dev == ours.st_dev && theirs.st_ino == ours.st_ino)
		die("refusing", "the host's own network namespace", EINVAL, NULL);

	attach(ns, nsfd);
	if (argc == 3)
		return 0;

	int nl = nl_open();
	unsigned br = if_nametoindex(bridge);
	if (!br)
		die("find bridge", bridge, errno, NULL);
	add_veth(nl, veth, br, nsfd);
	link_up(nl, veth, 1, "set bridge port");
	close(nl);

	/* Host root may enter it although the sandbox's user namespace owns it. */
	if (setns(nsfd, CLONE_NEWNET) < 0)
		die("enter netns of pid", argv[2], errno, NULL);
	nl = nl_open(); /* a netlink socket speaks for the namespace it was made in */
	link_up(nl, "lo", 0, "bring up");
	unsigned eth0 = if_nametoindex("eth0");
	if (!eth0)
		die("find", "eth0", errno, NULL);
	add_addr(nl, eth0, addr, (int)prefix);
	link_up(nl, "eth0", 0, "bring up");
	add_default_route(nl, eth0, gw);
	return 0;
}
