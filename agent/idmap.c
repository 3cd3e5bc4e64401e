/*
 * sbx-idmap: create read-only idmapped bind mounts.
 *
 *   sbx-idmap <host-uid-base> <count> <src-dir> <dst-dir> [<src-dir> <dst-dir> ...]
 *             [--overlay <target> <options>]
 *
 * One on-disk layer cache (owned by host uid 0..) must serve sandboxes that
 * run in different host uid ranges. An idmapped mount shows every file of
 * <src-dir> owned by uid/gid N as owned by <host-uid-base>+N under <dst-dir>,
 * without copying or chowning anything. The resulting mounts are read-only
 * and are meant to be used as overlayfs lowerdirs.
 *
 * The mapping is carried by a user namespace: a short-lived child unshares
 * one, we (root in the initial namespace) write its uid_map/gid_map as
 * "0 <base> <count>", keep an fd to it, and let the child exit. The mounts
 * keep the namespace alive for as long as they exist.
 *
 * --overlay then mounts an overlayfs at <target> with <options> (relative
 * paths in them resolve against our cwd): a sandbox's rootfs over the lowers
 * just made. It is here, not a `mount` of its own, because one spawn is
 * several ms on a loaded host and util-linux's mount adds a few more.
 *
 * Exit status: 0 on success, 1 on any error (message names the failing step).
 * On error, mounts already moved into place for earlier pairs stay mounted;
 * the caller unmounts them by path.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOUNT_ATTR_SIZE_VER0
struct mount_attr {
	uint64_t attr_set;
	uint64_t attr_clr;
	uint64_t propagation;
	uint64_t userns_fd;
};
#endif

/* Highest id + 1 that a uid_map line may cover (uid_t is 32-bit, -1 is invalid). */
#define ID_LIMIT 4294967295ULL

static void die(const char *step, const char *arg)
{
	int e = errno;
	if (arg)
		fprintf(stderr, "sbx-idmap: %s %s: %s (errno %d)\n", step, arg, strerror(e), e);
	else
		fprintf(stderr, "sbx-idmap: %s: %s (errno %d)\n", step, strerror(e), e);
	exit(1);
}

static void usage(void)
{
	fprintf(stderr, "usage: sbx-idmap <host-uid-base> <count> [--rw] <src-dir> <dst-dir> "
			"[[--rw] <src-dir> <dst-dir> ...] [--overlay <target> <options>]\n"
			"  each pair is a read-only idmapped bind unless preceded by --rw;\n"
			"  --overlay mounts an overlayfs over them afterwards\n");
	exit(1);
}

/* Strict decimal parse: digits only, no sign, no overflow. */
static int parse_u64(const char *s, unsigned long long *out)
{
	unsigned long long v = 0;
	if (!*s || strlen(s) > 19)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long long)(*s - '0');
	}
	*out = v;
	return 0;
}

static void write_proc_file(pid_t pid, const char *name, const char *text)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		die("open", path);
	size_t len = strlen(text);
	ssize_t n = write(fd, text, len);
	if (n < 0 || (size_t)n != len)
		die("write", path);
	if (close(fd) < 0)
		die("close", path);
}

/*
 * Child side: unshare a user namespace, tell the parent, then block until the
 * parent closes the other pipe (it has opened our ns fd by then).
 */
static void userns_child(int ready_w, int hold_r)
{
	char c = 0;
	if (unshare(CLONE_NEWUSER) < 0) {
		c = 1;
		(void)!write(ready_w, &c, 1);
		_exit(1);
	}
	if (write(ready_w, &c, 1) != 1)
		_exit(1);
	while (read(hold_r, &c, 1) < 0 && errno == EINTR)
		;
	_exit(0);
}

/* Returns an O_CLOEXEC fd to a user namespace mapping 0..count-1 -> base..base+count-1. */
static int make_userns(unsigned long long base, unsigned long long count)
{
	int ready[2], hold[2];
	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(hold, O_CLOEXEC) < 0)
		die("pipe2", NULL);

	pid_t pid = fork();
	if (pid < 0)
		die("fork", NULL);
	if (pid == 0) {
		close(ready[0]);
		close(hold[1]);
		userns_child(ready[1], hold[0]);
	}
	close(ready[1]);
	close(hold[0]);

	char c;
	ssize_t n;
	do
		n = read(ready[0], &c, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1 || c != 0) {
		errno = n < 0 ? errno : EPERM;
		die("unshare(CLONE_NEWUSER) in child", NULL);
	}

	/*
	 * We hold CAP_SETUID/CAP_SETGID in the parent namespace, so gid_map may
	 * be written without first writing "deny" to setgroups (that is only
	 * required for unprivileged writers).
	 */
	char map[96];
	snprintf(map, sizeof map, "0 %llu %llu\n", base, count);
	write_proc_file(pid, "uid_map", map);
	write_proc_file(pid, "gid_map", map);

	char path[64];
	snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
	int nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0)
		die("open", path);

	close(hold[1]); /* releases the child */
	close(ready[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			die("waitpid", NULL);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		errno = ECHILD;
		die("userns child exited abnormally", NULL);
	}
	return nsfd;
}

static void idmap_one(int nsfd, const char *src, const char *dst, int writable)
{
	int tfd = (int)syscall(SYS_open_tree, AT_FDCWD, src,
			       (unsigned)(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
	if (tfd < 0)
		die("open_tree", src);

	struct mount_attr attr;
	memset(&attr, 0, sizeof attr);
	/* Image layers are read-only; volumes (--rw) are written through the map,
	 * so sandbox root's files land on disk owned by uid 0. */
	attr.attr_set = MOUNT_ATTR_IDMAP | (writable ? 0 : MOUNT_ATTR_RDONLY);
	attr.userns_fd = (uint64_t)nsfd;
	if (syscall(SYS_mount_setattr, tfd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
		die("mount_setattr(MOUNT_ATTR_IDMAP)", src);

	if (syscall(SYS_move_mount, tfd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die("move_mount to", dst);
	if (close(tfd) < 0)
		die("close tree fd for", src);
}

int main(int argc, char **argv)
{
	unsigned long long base, count;
	if (argc < 5)
		usage();
	if (parse_u64(argv[1], &base) < 0 || parse_u64(argv[2], &count) < 0)
		usage();
	if (count == 0 || base >= ID_LIMIT || count > ID_LIMIT - base) {
		fprintf(stderr, "sbx-idmap: uid range %s+%s out of bounds\n", argv[1], argv[2]);
		return 1;
	}

	/* Check the whole argument list before making any mount. */
	const char *overlay_target = NULL, *overlay_opts = NULL;
	if (argc >= 6 && strcmp(argv[argc - 3], "--overlay") == 0) {
		overlay_target = argv[argc - 2];
		overlay_opts = argv[argc - 1];
		argc -= 3;
	}
	for (int i = 3; i < argc; i += 2) {
		if (strcmp(argv[i], "--rw") == 0)
			i++;
		if (i + 1 >= argc)
			usage();
	}
	int nsfd = make_userns(base, count);
	for (int i = 3; i < argc; i += 2) {
		int writable = strcmp(argv[i], "--rw") == 0;
		if (writable)
			i++;
		idmap_one(nsfd, argv[i], argv[i + 1], writable);
	}
	close(nsfd);
	if (overlay_target && mount("overlay", overlay_target, "overlay", 0, overlay_opts) < 0)
		die("mount overlay at", overlay_target);
	return 0;
}
