/*
 * sbx-probe: the in-sandbox half of sbx's security tests (test/security/).
 * Static, so it runs in any image; bind-mounted read-only at /.sbx/bin.
 *
 *   sbx-probe all [--forbid PATH]... [--masked PATH]...
 *       every posture check below; one line per check:
 *         check NAME ok|FAIL detail
 *       then "summary N checks M failed"; exit 1 if any failed.
 *   sbx-probe connect --expect reach|block [--timeout-ms N] HOST:PORT...
 *       one TCP connect per target, all at once; HOST is numeric
 *       ([v6]:port for IPv6). "block" is ok when the connect fails.
 *   sbx-probe listen PORT      accept and close TCP connections on
 *                              0.0.0.0:PORT forever (prints "listening").
 *   sbx-probe whoami           (internal) "euid=N capeff=HEX"
 *
 * Syscalls are made with syscall(2) and arguments that would fail with a
 * different errno (EFAULT, EBADF, EINVAL...) if the call reached the kernel,
 * so EPERM shows the seccomp filter refused it. Nothing here can harm the
 * host if a check fails: destructive calls get invalid arguments, and calls
 * that would change the probe's namespaces run in a throwaway child.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

/* The capability set of oci-spec.ts CAPABILITIES (bits 0,1,3,4,5,6,7,8,10,18,31). */
#define ALLOWED_CAPS 0x800405fbULL

static int nchecks, nfailed;

static void report(const char *name, int ok, const char *fmt, ...)
{
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	for (char *p = detail; *p; p++)
		if (*p == '\n')
			*p = ' ';
	printf("check %s %s %s\n", name, ok ? "ok" : "FAIL", detail);
	fflush(stdout);
	nchecks++;
	if (!ok)
		nfailed++;
}

/* ------------------------------------------------------------ helpers */

static ssize_t read_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t n = 0;
	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	return (ssize_t)n;
}

/* Value of "Name:\t..." in a /proc status file, or NULL. */
static const char *status_field(const char *status, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	for (const char *p = status; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, name, nl) == 0 && p[nl] == ':') {
			p += nl + 1;
			while (*p == ' ' || *p == '\t')
				p++;
			size_t i = 0;
			while (p[i] && p[i] != '\n' && i + 1 < cap) {
				out[i] = p[i];
				i++;
			}
			out[i] = '\0';
			return out;
		}
	}
	return NULL;
}

static void expect_errno(const char *name, long rc, int err, int want)
{
	if (rc == -1 && err == want)
		report(name, 1, "%s", strerrorname_np(err));
	else if (rc == -1)
		report(name, 0, "errno %s, want %s", strerrorname_np(err) ? strerrorname_np(err) : "?",
		       strerrorname_np(want));
	else
		report(name, 0, "succeeded (returned %ld), want %s", rc, strerrorname_np(want));
}

#define SYS_EXPECT(name, want, ...)                                                                \
	do {                                                                                       \
		errno = 0;                                                                         \
		long r_ = syscall(__VA_ARGS__);                                                    \
		int e_ = errno;                                                                    \
		expect_errno(name, r_, e_, want);                                                  \
	} while (0)

/*
 * Runs fn in a child process (so a call that unexpectedly succeeds cannot
 * change the probe's own namespaces) and reports rc/errno from the child.
 */
struct child_result {
	long rc;
	int err;
};
static struct child_result in_child(long (*fn)(long), long arg)
{
	struct child_result res = {-2, 0};
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return res;
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		errno = 0;
		struct child_result r = {fn(arg), 0};
		r.err = errno;
		if (write(p[1], &r, sizeof r) < 0)
			_exit(2);
		_exit(0);
	}
	close(p[1]);
	if (pid > 0) {
		if (read(p[0], &res, sizeof res) != (ssize_t)sizeof res)
			res.rc = -2;
		waitpid(pid, NULL, 0);
	}
	close(p[0]);
	return res;
}

static long do_unshare(long flags) { return syscall(SYS_unshare, flags); }
static long do_setns(long which)
{
	const char *paths[] = {"/proc/1/ns/mnt", "/proc/1/ns/net", "/proc/1/ns/user", "/proc/1/ns/pid"};
	int fd = open(paths[which], O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -3;
	long r = syscall(SYS_setns, fd, 0);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}
static long do_clone(long flags)
{
	long r = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
	if (r == 0)
		_exit(0); /* the clone succeeded: its child leaves at once */
	if (r > 0)
		waitpid((pid_t)r, NULL, 0);
	return r;
}

/* ------------------------------------------------------------ posture */

static void check_status(void)
{
	char st[8192], v[128];
	if (read_file("/proc/self/status", st, sizeof st) < 0) {
		report("status", 0, "cannot read /proc/self/status: %s", strerror(errno));
		return;
	}
	const char *nnp = status_field(st, "NoNewPrivs", v, sizeof v);
	report("no-new-privs", nnp && strcmp(nnp, "1") == 0, "NoNewPrivs=%s", nnp ? nnp : "?");
	const char *sc = status_field(st, "Seccomp", v, sizeof v);
	report("seccomp-mode", sc && strcmp(sc, "2") == 0, "Seccomp=%s", sc ? sc : "?");
	const char *names[] = {"CapEff", "CapPrm", "CapBnd"};
	for (int i = 0; i < 3; i++) {
		const char *c = status_field(st, names[i], v, sizeof v);
		unsigned long long bits = c ? strtoull(c, NULL, 16) : ~0ULL;
		char nm[32];
		snprintf(nm, sizeof nm, "caps-%s", names[i]);
		report(nm, c && (bits & ~ALLOWED_CAPS) == 0, "%s=%s allowed=%016llx", names[i], c ? c : "?",
		       ALLOWED_CAPS);
	}
	const char *zero[] = {"CapInh", "CapAmb"};
	for (int i = 0; i < 2; i++) {
		const char *c = status_field(st, zero[i], v, sizeof v);
		char nm[32];
		snprintf(nm, sizeof nm, "caps-%s", zero[i]);
		report(nm, c && strtoull(c, NULL, 16) == 0, "%s=%s", zero[i], c ? c : "?");
	}
}

static void check_idmap(const char *file, const char *name)
{
	char buf[512];
	if (read_file(file, buf, sizeof buf) < 0) {
		report(name, 0, "cannot read %s", file);
		return;
	}
	unsigned long inside, outside, count;
	int lines = 0;
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			lines++;
	int n = sscanf(buf, "%lu %lu %lu", &inside, &outside, &count);
	int ok = n == 3 && lines == 1 && inside == 0 && outside > 0 && count <= 65536;
	report(name, ok, "map '0 %lu %lu' (%d line%s): host range [%lu, %lu]", n == 3 ? outside : 0,
	       n == 3 ? count : 0, lines, lines == 1 ? "" : "s", n == 3 ? outside : 0,
	       n == 3 ? outside + count - 1 : 0);
}

static void check_rlimits(void)
{
	struct rlimit r;
	getrlimit(RLIMIT_NOFILE, &r);
	report("rlimit-nofile", r.rlim_cur <= 1024 && r.rlim_max <= 1024, "soft=%llu hard=%llu",
	       (unsigned long long)r.rlim_cur, (unsigned long long)r.rlim_max);
}

/* ------------------------------------------------------------ syscalls */

static void check_syscalls(void)
{
	/* Positive controls: the filter lets ordinary calls through. */
	pid_t c = fork();
	if (c == 0)
		_exit(7);
	int ws = 0;
	report("allow-fork", c > 0 && waitpid(c, &ws, 0) == c && WIFEXITED(ws) && WEXITSTATUS(ws) == 7,
	       "fork+wait");
	long q = syscall(SYS_personality, 0xffffffffUL);
	report("allow-personality-query", q >= 0, "personality(0xffffffff)=%ld", q);

	SYS_EXPECT("deny-keyctl", EPERM, SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0);
	SYS_EXPECT("deny-add_key", EPERM, SYS_add_key, "user", "sbx-probe", "x", 1, -2);
	SYS_EXPECT("deny-request_key", EPERM, SYS_request_key, "user", "sbx-probe-none", NULL, 0);
	SYS_EXPECT("deny-bpf", EPERM, SYS_bpf, 0 /* MAP_CREATE */, NULL, 0);
	SYS_EXPECT("deny-perf_event_open", EPERM, SYS_perf_event_open, NULL, 0, -1, -1, 0);
	SYS_EXPECT("deny-userfaultfd", EPERM, SYS_userfaultfd, 0);
	SYS_EXPECT("deny-io_uring_setup", EPERM, SYS_io_uring_setup, 0, NULL);
	SYS_EXPECT("deny-io_uring_enter", EPERM, SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0);
	SYS_EXPECT("deny-io_uring_register", EPERM, SYS_io_uring_register, -1, 0, NULL, 0);
	SYS_EXPECT("deny-mount", EPERM, SYS_mount, NULL, NULL, NULL, 0, NULL);
	SYS_EXPECT("deny-umount2", EPERM, SYS_umount2, NULL, 0);
	SYS_EXPECT("deny-fsopen", EPERM, SYS_fsopen, NULL, 0);
	SYS_EXPECT("deny-fsconfig", EPERM, SYS_fsconfig, -1, 0, NULL, NULL, 0);
	SYS_EXPECT("deny-fsmount", EPERM, SYS_fsmount, -1, 0, 0);
	SYS_EXPECT("deny-fspick", EPERM, SYS_fspick, -1, NULL, 0);
	SYS_EXPECT("deny-move_mount", EPERM, SYS_move_mount, -1, NULL, -1, NULL, 0);
	SYS_EXPECT("deny-open_tree", EPERM, SYS_open_tree, -1, NULL, 0);
	SYS_EXPECT("deny-mount_setattr", EPERM, SYS_mount_setattr, -1, NULL, 0, NULL, 0);
	SYS_EXPECT("deny-pivot_root", EPERM, SYS_pivot_root, NULL, NULL);
	SYS_EXPECT("deny-open_by_handle_at", EPERM, SYS_open_by_handle_at, -1, NULL, 0);
	SYS_EXPECT("deny-init_module", EPERM, SYS_init_module, NULL, 0, NULL);
	SYS_EXPECT("deny-finit_module", EPERM, SYS_finit_module, -1, NULL, 0);
	SYS_EXPECT("deny-delete_module", EPERM, SYS_delete_module, NULL, 0);
	SYS_EXPECT("deny-kexec_load", EPERM, SYS_kexec_load, 0, 0, NULL, 0xffffffffUL);
	SYS_EXPECT("deny-kexec_file_load", EPERM, SYS_kexec_file_load, -1, -1, 0, NULL, 0xffffffffUL);
	SYS_EXPECT("deny-swapon", EPERM, SYS_swapon, NULL, 0);
	SYS_EXPECT("deny-swapoff", EPERM, SYS_swapoff, NULL);
	/* Wrong magic numbers: even unfiltered and privileged this is EINVAL. */
	SYS_EXPECT("deny-reboot", EPERM, SYS_reboot, 0, 0, 0, NULL);
	SYS_EXPECT("deny-clock_settime", EPERM, SYS_clock_settime, CLOCK_REALTIME, NULL);
	SYS_EXPECT("deny-clock_adjtime", EPERM, SYS_clock_adjtime, CLOCK_REALTIME, NULL);
	SYS_EXPECT("deny-settimeofday", EPERM, SYS_settimeofday, NULL, NULL);
	SYS_EXPECT("deny-adjtimex", EPERM, SYS_adjtimex, NULL);
	SYS_EXPECT("deny-personality-addr-no-randomize", EPERM, SYS_personality, ADDR_NO_RANDOMIZE);
	SYS_EXPECT("deny-personality-read-implies-exec", EPERM, SYS_personality, READ_IMPLIES_EXEC);
	SYS_EXPECT("deny-ptrace", EPERM, SYS_ptrace, 3 /* PEEKUSER */, getpid(), 0, 0);
	SYS_EXPECT("deny-process_vm_readv", EPERM, SYS_process_vm_readv, getpid(), NULL, 0, NULL, 0, 0);
	SYS_EXPECT("deny-process_vm_writev", EPERM, SYS_process_vm_writev, getpid(), NULL, 0, NULL, 0, 0);
	SYS_EXPECT("deny-syslog", EPERM, SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0);
	SYS_EXPECT("deny-acct", EPERM, SYS_acct, NULL);
	SYS_EXPECT("deny-quotactl", EPERM, SYS_quotactl, 0, NULL, 0, NULL);
	SYS_EXPECT("deny-iopl", EPERM, SYS_iopl, 0);
	SYS_EXPECT("deny-ioperm", EPERM, SYS_ioperm, 0, 0, 0);
	SYS_EXPECT("deny-kcmp", EPERM, SYS_kcmp, getpid(), getpid(), 0, 0, 0);
	SYS_EXPECT("deny-sethostname", EPERM, SYS_sethostname, NULL, 100000);
	SYS_EXPECT("deny-setdomainname", EPERM, SYS_setdomainname, NULL, 100000);
	SYS_EXPECT("deny-modify_ldt", EPERM, SYS_modify_ldt, 0, NULL, 0);
	SYS_EXPECT("deny-fanotify_init", EPERM, SYS_fanotify_init, 0xffffffffU, 0);
	SYS_EXPECT("deny-memfd_secret", EPERM, SYS_memfd_secret, 0xffffffffU);
	/* clone3 hides its flags from seccomp: ENOSYS makes libc fall back to clone. */
	SYS_EXPECT("deny-clone3", ENOSYS, SYS_clone3, NULL, 0);

	static const struct {
		const char *name;
		long flag;
	} ns[] = {
	    {"newuser", CLONE_NEWUSER}, {"newns", CLONE_NEWNS},   {"newnet", CLONE_NEWNET},
	    {"newpid", CLONE_NEWPID},   {"newuts", CLONE_NEWUTS}, {"newipc", CLONE_NEWIPC},
	    {"newcgroup", CLONE_NEWCGROUP},
	};
	for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
		char nm[64];
		struct child_result r = in_child(do_clone, ns[i].flag);
		snprintf(nm, sizeof nm, "deny-clone-%s", ns[i].name);
		expect_errno(nm, r.rc, r.err, EPERM);
		r = in_child(do_unshare, ns[i].flag);
		snprintf(nm, sizeof nm, "deny-unshare-%s", ns[i].name);
		expect_errno(nm, r.rc, r.err, EPERM);
	}
	const char *setns_names[] = {"mnt", "net", "user", "pid"};
	for (long i = 0; i < 4; i++) {
		char nm[64];
		struct child_result r = in_child(do_setns, i);
		snprintf(nm, sizeof nm, "deny-setns-%s", setns_names[i]);
		expect_errno(nm, r.rc, r.err, EPERM);
	}
}

static void check_sockets(void)
{
	static const struct {
		const char *name;
		int family, type, proto, want; /* want 0 = must succeed */
	} s[] = {
	    {"allow-socket-inet-stream", AF_INET, SOCK_STREAM, 0, 0},
	    {"allow-socket-unix", AF_UNIX, SOCK_STREAM, 0, 0},
	    {"allow-socket-netlink-route", AF_NETLINK, SOCK_RAW, 0, 0},
	    {"deny-socket-af_alg", AF_ALG, SOCK_SEQPACKET, 0, EPERM},
	    {"deny-socket-af_vsock", AF_VSOCK, SOCK_STREAM, 0, EPERM},
	    {"deny-socket-packet-raw", AF_PACKET, SOCK_RAW, 0x0300 /* htons(ETH_P_ALL) */, EPERM},
	    {"deny-socket-inet-raw", AF_INET, SOCK_RAW, IPPROTO_RAW, EPERM},
	    {"deny-socket-inet6-raw", AF_INET6, SOCK_RAW, IPPROTO_ICMPV6, EPERM},
	};
	for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
		errno = 0;
		int fd = socket(s[i].family, s[i].type | SOCK_CLOEXEC, s[i].proto);
		int e = errno;
		if (fd >= 0)
			close(fd);
		if (s[i].want == 0)
			report(s[i].name, fd >= 0, "%s", fd >= 0 ? "created" : strerrorname_np(e));
		else
			expect_errno(s[i].name, fd, e, s[i].want);
	}
	errno = 0;
	long r = mknod("/tmp/.sbx-probe-null", S_IFCHR | 0666, makedev(1, 3));
	int e = errno;
	if (r == 0)
		unlink("/tmp/.sbx-probe-null");
	expect_errno("deny-mknod-chardev", r, e, EPERM);
}

/* ------------------------------------------------------------ filesystem */

static void expect_no_write(const char *name, const char *path)
{
	errno = 0;
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK);
	int e = errno;
	if (fd >= 0) {
		close(fd);
		report(name, 0, "%s opened for writing", path);
	} else {
		report(name, 1, "%s: %s", path, strerrorname_np(e));
	}
}

static void expect_readonly_fs(const char *name, const char *path)
{
	struct statvfs sv;
	if (statvfs(path, &sv) < 0) {
		report(name, errno == ENOENT, "%s: %s", path, strerrorname_np(errno));
		return;
	}
	report(name, (sv.f_flag & ST_RDONLY) != 0, "%s %s", path, (sv.f_flag & ST_RDONLY) ? "read-only" : "WRITABLE");
}

static void check_writes(void)
{
	expect_no_write("no-write-core_pattern", "/proc/sys/kernel/core_pattern");
	expect_no_write("no-write-sysrq-trigger", "/proc/sysrq-trigger");
	expect_no_write("no-write-proc-sys-hostname", "/proc/sys/kernel/hostname");
	expect_readonly_fs("ro-sys", "/sys");
	expect_readonly_fs("ro-sys-fs-cgroup", "/sys/fs/cgroup");
	const char *ro[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
	for (size_t i = 0; i < sizeof ro / sizeof ro[0]; i++) {
		char nm[64];
		snprintf(nm, sizeof nm, "ro-%s", ro[i]);
		expect_readonly_fs(nm, ro[i]);
	}
	/* Every cgroup hierarchy: read-only, no release_agent to write, no new groups. */
	DIR *d = opendir("/sys/fs/cgroup");
	int hier = 0, bad = 0;
	char detail[400] = "";
	if (d) {
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			char p[PATH_MAX];
			hier++;
			struct statvfs sv;
			snprintf(p, sizeof p, "/sys/fs/cgroup/%s", de->d_name);
			if (statvfs(p, &sv) == 0 && !(sv.f_flag & ST_RDONLY)) {
				bad++;
				snprintf(detail + strlen(detail), sizeof detail - strlen(detail), " %s:writable", de->d_name);
			}
			snprintf(p, sizeof p, "/sys/fs/cgroup/%s/release_agent", de->d_name);
			int fd = open(p, O_WRONLY | O_CLOEXEC);
			if (fd >= 0) {
				close(fd);
				bad++;
				snprintf(detail + strlen(detail), sizeof detail - strlen(detail), " %s:release_agent", de->d_name);
			}
			snprintf(p, sizeof p, "/sys/fs/cgroup/%s/sbx-probe", de->d_name);
			if (mkdir(p, 0755) == 0) {
				rmdir(p);
				bad++;
				snprintf(detail + strlen(detail), sizeof detail - strlen(detail), " %s:mkdir", de->d_name);
			}
			const char *knobs[] = {"memory.limit_in_bytes", "pids.max", "cgroup.procs", "tasks", "memory.max"};
			for (size_t k = 0; k < sizeof knobs / sizeof knobs[0]; k++) {
				snprintf(p, sizeof p, "/sys/fs/cgroup/%s/%s", de->d_name, knobs[k]);
				fd = open(p, O_WRONLY | O_CLOEXEC);
				if (fd >= 0) {
					close(fd);
					bad++;
					snprintf(detail + strlen(detail), sizeof detail - strlen(detail), " %s/%s", de->d_name, knobs[k]);
				}
			}
		}
		closedir(d);
	}
	report("cgroup-hierarchies-locked", bad == 0, "%d hierarchies;%s", hier, bad ? detail : " none writable");
}

static const char *const MASKED[] = {
    "/proc/acpi",      "/proc/asound",      "/proc/interrupts", "/proc/kcore",     "/proc/keys",
    "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi",   "/proc/timer_list", "/proc/timer_stats",
    "/sys/firmware",   "/sys/devices/virtual/powercap",
};

static void check_masked(const char *path)
{
	char nm[300];
	snprintf(nm, sizeof nm, "masked-%s", path);
	struct stat st;
	if (lstat(path, &st) < 0) {
		report(nm, errno == ENOENT, "%s", strerrorname_np(errno));
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		int n = 0;
		if (d) {
			struct dirent *de;
			while ((de = readdir(d)))
				if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
					n++;
			closedir(d);
		}
		struct statvfs sv;
		int ro = statvfs(path, &sv) == 0 && (sv.f_flag & ST_RDONLY);
		report(nm, d && n == 0 && ro, "directory with %d entries, %s", n, ro ? "read-only" : "writable");
		return;
	}
	char buf[64];
	ssize_t n = read_file(path, buf, sizeof buf);
	report(nm, n == 0, "reads %zd bytes", n);
}

static int dev_allowed(const struct stat *st)
{
	if (!S_ISCHR(st->st_mode))
		return 0;
	unsigned ma = major(st->st_rdev), mi = minor(st->st_rdev);
	if (ma == 1)
		return mi == 3 || mi == 5 || mi == 7 || mi == 8 || mi == 9;
	if (ma == 5)
		return mi == 0 || mi == 2;
	return ma == 136;
}

static void walk_dev(const char *dir, int *count, int *bad, char *detail, size_t cap)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char p[PATH_MAX];
		snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
		struct stat st;
		if (lstat(p, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			walk_dev(p, count, bad, detail, cap);
		} else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
			(*count)++;
			if (!dev_allowed(&st)) {
				(*bad)++;
				snprintf(detail + strlen(detail), cap - strlen(detail), " %s(%c %u:%u)", p,
					 S_ISBLK(st.st_mode) ? 'b' : 'c', major(st.st_rdev), minor(st.st_rdev));
			}
		}
	}
	closedir(d);
}

static void check_devices(void)
{
	int count = 0, bad = 0;
	char detail[400] = "";
	walk_dev("/dev", &count, &bad, detail, sizeof detail);
	report("devices-standard-only", bad == 0 && count > 0, "%d device nodes;%s", count, bad ? detail : " all standard");
}

static void check_processes(void)
{
	char comm[64] = "";
	read_file("/proc/1/comm", comm, sizeof comm);
	comm[strcspn(comm, "\n")] = '\0';
	report("pid1-is-agent", strcmp(comm, "sbx-agent") == 0, "pid 1 is %s", comm);
	DIR *d = opendir("/proc");
	int n = 0;
	char list[400] = "";
	if (d) {
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] < '0' || de->d_name[0] > '9')
				continue;
			n++;
			char p[300], c[64] = "";
			snprintf(p, sizeof p, "/proc/%s/comm", de->d_name);
			read_file(p, c, sizeof c);
			c[strcspn(c, "\n")] = '\0';
			snprintf(list + strlen(list), sizeof list - strlen(list), " %s:%s", de->d_name, c);
		}
		closedir(d);
	}
	/* The host runs hundreds; a fresh sandbox running the probe has a handful. */
	report("only-sandbox-processes", n > 0 && n <= 32, "%d visible:%s", n, list);
}

static void check_forbidden_path(const char *path)
{
	char nm[300];
	snprintf(nm, sizeof nm, "absent-%s", path);
	struct stat st;
	int r = lstat(path, &st);
	report(nm, r < 0 && errno == ENOENT, "%s", r == 0 ? "EXISTS" : strerrorname_np(errno));
}

static void walk_sockets(const char *dir, int depth, int *found, char *detail, size_t cap)
{
	if (depth > 24)
		return;
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char p[PATH_MAX];
		snprintf(p, sizeof p, "%s/%s", strcmp(dir, "/") ? dir : "", de->d_name);
		if (!strcmp(p, "/proc") || !strcmp(p, "/sys") || !strcmp(p, "/dev"))
			continue;
		struct stat st;
		if (lstat(p, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			walk_sockets(p, depth + 1, found, detail, cap);
		else if (S_ISSOCK(st.st_mode) && strcmp(p, "/.sbx/agent.sock") != 0) {
			(*found)++;
			snprintf(detail + strlen(detail), cap - strlen(detail), " %s", p);
		}
	}
	closedir(d);
}

static void check_env_of(const char *name, const char *file)
{
	char buf[65536];
	ssize_t n = read_file(file, buf, sizeof buf);
	if (n < 0) {
		report(name, 0, "cannot read %s: %s", file, strerrorname_np(errno));
		return;
	}
	char found[300] = "";
	for (char *p = buf; p < buf + n; p += strlen(p) + 1) {
		if (strncmp(p, "SBX_", 4) == 0 || strstr(p, "TOKEN=")) {
			char *eq = strchr(p, '=');
			snprintf(found + strlen(found), sizeof found - strlen(found), " %.*s",
				 eq ? (int)(eq - p) : 40, p);
		}
	}
	report(name, found[0] == '\0', "%s", found[0] ? found : "no SBX_* or *TOKEN variables");
}

static void check_secrets(char **forbid, int nforbid)
{
	static const char *const defaults[] = {
	    "/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock",
	    "/var/run/crio/crio.sock", "/run/podman/podman.sock", "/run/sbx", "/var/run/netns",
	    "/root/.config/sbx", "/.sbx/bin/sbx-idmap-state",
	};
	for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
		check_forbidden_path(defaults[i]);
	for (int i = 0; i < nforbid; i++)
		check_forbidden_path(forbid[i]);
	int found = 0;
	char detail[400] = "";
	walk_sockets("/", 0, &found, detail, sizeof detail);
	report("no-foreign-sockets", found == 0, "%d unix socket files besides /.sbx/agent.sock;%s", found, detail);
	check_env_of("env-pid1", "/proc/1/environ");
	check_env_of("env-self", "/proc/self/environ");
}

/* setuid-root copy of this binary, run as uid 1000: no_new_privs keeps it 1000. */
static void check_setuid(const char *self)
{
	const char *copy = "/usr/local/bin/.sbx-probe-suid";
	char path[PATH_MAX];
	ssize_t pl = readlink("/proc/self/exe", path, sizeof path - 1);
	if (pl < 0) {
		report("setuid-gains-nothing", 0, "readlink /proc/self/exe: %s", strerror(errno));
		return;
	}
	path[pl] = '\0';
	(void)self;
	mkdir("/usr/local", 0755);
	mkdir("/usr/local/bin", 0755);
	int in = open(path, O_RDONLY | O_CLOEXEC);
	int out = open(copy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (in < 0 || out < 0) {
		report("setuid-gains-nothing", 0, "copy to %s: %s", copy, strerror(errno));
		if (in >= 0)
			close(in);
		if (out >= 0)
			close(out);
		return;
	}
	char buf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, (size_t)n) != n)
			break;
	close(in);
	if (fchown(out, 0, 0) < 0 || fchmod(out, 04755) < 0) {
		report("setuid-gains-nothing", 0, "chmod u+s: %s", strerror(errno));
		close(out);
		unlink(copy);
		return;
	}
	close(out);
	struct stat st;
	struct statvfs sv;
	int suid_set = stat(copy, &st) == 0 && (st.st_mode & S_ISUID) && st.st_uid == 0;
	int nosuid = statvfs(copy, &sv) == 0 && (sv.f_flag & ST_NOSUID);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		if (setgroups(0, NULL) < 0 || setresgid(1000, 1000, 1000) < 0 || setresuid(1000, 1000, 1000) < 0)
			_exit(3);
		execl(copy, copy, "whoami", (char *)NULL);
		_exit(4);
	}
	close(p[1]);
	char res[200] = "";
	ssize_t rn = read(p[0], res, sizeof res - 1);
	res[rn > 0 ? rn : 0] = '\0';
	res[strcspn(res, "\n")] = '\0';
	close(p[0]);
	int ws = 0;
	waitpid(pid, &ws, 0);
	unlink(copy);
	int ok = suid_set && strncmp(res, "euid=1000 ", 10) == 0 && strstr(res, "capeff=0000000000000000");
	report("setuid-gains-nothing", ok, "setuid-root copy (%s, mount %s) run by uid 1000 reports: %s", suid_set ? "mode u+s" : "NOT u+s",
	       nosuid ? "nosuid" : "suid allowed", res[0] ? res : "(nothing)");
}

static int cmd_whoami(void)
{
	char st[8192], v[64];
	read_file("/proc/self/status", st, sizeof st);
	const char *c = status_field(st, "CapEff", v, sizeof v);
	printf("euid=%u capeff=%s\n", geteuid(), c ? c : "?");
	return 0;
}

static int cmd_all(int argc, char **argv)
{
	char *forbid[64], *masked[256];
	int nforbid = 0, nmasked = 0;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--forbid") && i + 1 < argc && nforbid < 64)
			forbid[nforbid++] = argv[++i];
		else if (!strcmp(argv[i], "--masked") && i + 1 < argc && nmasked < 256)
			masked[nmasked++] = argv[++i];
		else {
			fprintf(stderr, "sbx-probe all: bad argument %s\n", argv[i]);
			return 2;
		}
	}
	check_status();
	check_idmap("/proc/self/uid_map", "uid-map");
	check_idmap("/proc/self/gid_map", "gid-map");
	check_rlimits();
	check_syscalls();
	check_sockets();
	check_writes();
	for (size_t i = 0; i < sizeof MASKED / sizeof MASKED[0]; i++)
		check_masked(MASKED[i]);
	for (int i = 0; i < nmasked; i++)
		check_masked(masked[i]);
	check_devices();
	check_processes();
	check_secrets(forbid, nforbid);
	check_setuid(argv[0]);
	printf("summary %d checks %d failed\n", nchecks, nfailed);
	return nfailed ? 1 : 0;
}

/* ------------------------------------------------------------ network */

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int parse_target(const char *t, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[128];
	const char *colon = strrchr(t, ':');
	if (!colon || colon == t || (size_t)(colon - t) >= sizeof host)
		return -1;
	memcpy(host, t, (size_t)(colon - t));
	host[colon - t] = '\0';
	int port = atoi(colon + 1);
	if (port < 1 || port > 65535)
		return -1;
	memset(ss, 0, sizeof *ss);
	if (host[0] == '[') {
		size_t hl = strlen(host);
		if (hl < 3 || host[hl - 1] != ']')
			return -1;
		host[hl - 1] = '\0';
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
			return -1;
		*len = sizeof *s6;
		return 0;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
		return -1;
	*len = sizeof *s4;
	return 0;
}

static int cmd_connect(int argc, char **argv)
{
	int expect_reach = -1;
	long timeout = 1500;
	int i = 0;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--expect") && i + 1 < argc) {
			i++;
			expect_reach = !strcmp(argv[i], "reach") ? 1 : !strcmp(argv[i], "block") ? 0 : -1;
		} else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc) {
			timeout = atol(argv[++i]);
		} else {
			break;
		}
	}
	if (expect_reach < 0 || i >= argc || argc - i > 256) {
		fprintf(stderr, "usage: sbx-probe connect --expect reach|block [--timeout-ms N] HOST:PORT...\n");
		return 2;
	}
	int n = argc - i;
	struct pollfd pf[256];
	const char *state[256];
	for (int k = 0; k < n; k++) {
		struct sockaddr_storage ss;
		socklen_t len;
		pf[k].fd = -1;
		pf[k].events = POLLOUT;
		state[k] = "bad-target";
		if (parse_target(argv[i + k], &ss, &len) < 0)
			continue;
		int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			state[k] = strerrorname_np(errno);
			continue;
		}
		if (connect(fd, (struct sockaddr *)&ss, len) == 0) {
			state[k] = "connected";
			close(fd);
		} else if (errno == EINPROGRESS) {
			pf[k].fd = fd;
			state[k] = "timeout";
		} else {
			state[k] = strerrorname_np(errno);
			close(fd);
		}
	}
	long deadline = now_ms() + timeout;
	for (;;) {
		int pending = 0;
		for (int k = 0; k < n; k++)
			pending += pf[k].fd >= 0;
		long left = deadline - now_ms();
		if (!pending || left <= 0)
			break;
		int r = poll(pf, (nfds_t)n, (int)left);
		if (r < 0 && errno != EINTR)
			break;
		for (int k = 0; k < n; k++) {
			if (pf[k].fd < 0 || !pf[k].revents)
				continue;
			int err = 0;
			socklen_t el = sizeof err;
			getsockopt(pf[k].fd, SOL_SOCKET, SO_ERROR, &err, &el);
			state[k] = err == 0 ? "connected" : strerrorname_np(err);
			close(pf[k].fd);
			pf[k].fd = -1;
		}
	}
	for (int k = 0; k < n; k++) {
		if (pf[k].fd >= 0)
			close(pf[k].fd);
		char nm[300];
		snprintf(nm, sizeof nm, "connect:%s", argv[i + k]);
		int connected = !strcmp(state[k], "connected");
		int bad = !strcmp(state[k], "bad-target");
		report(nm, !bad && connected == expect_reach, "%s (expected %s)", state[k],
		       expect_reach ? "reach" : "block");
	}
	printf("summary %d checks %d failed\n", nchecks, nfailed);
	return nfailed ? 1 : 0;
}

static int cmd_listen(const char *port_s)
{
	int port = atoi(port_s);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (fd < 0 || port < 1 || port > 65535 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0) {
		fprintf(stderr, "sbx-probe listen %s: %s\n", port_s, strerror(errno));
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	for (;;) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c >= 0)
			close(c);
	}
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "all"))
		return cmd_all(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "connect"))
		return cmd_connect(argc - 2, argv + 2);
	if (argc == 3 && !strcmp(argv[1], "listen"))
		return cmd_listen(argv[2]);
	if (argc == 2 && !strcmp(argv[1], "whoami"))
		return cmd_whoami();
	fprintf(stderr, "usage: sbx-probe all [--forbid PATH]... [--masked PATH]...\n"
			"       sbx-probe connect --expect reach|block [--timeout-ms N] HOST:PORT...\n"
			"       sbx-probe listen PORT\n");
	return 2;
}
