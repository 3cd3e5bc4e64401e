/*
 * sbx-agent: PID 1 of every sandbox (see PROTOCOL.md).
 *
 *   sbx-agent [--run-dir DIR] [--user UID:GID] [-- argv...]
 *
 * One thread, one epoll loop. Signals arrive through a signalfd (all signals
 * are blocked), children are reaped in a WNOHANG loop, clients speak framed
 * requests over <run-dir>/agent.sock. Everything read from the socket is
 * treated as hostile: frames are validated by frame.c before anything here
 * looks at them, and every buffer has a fixed cap.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "proto.h"
#include "spawn.h"

#define RBUF_MIN 65536u
#define WBUF_MAX (1024u * 1024u)     /* a client this far behind is dropped */
#define WBUF_HIGH (256u * 1024u)     /* stop reading requests above this */
#define STDIN_TOTAL (64u * 1024u * 1024u) /* all processes' pending stdin */
#define EXIT_STARTUP 125
#define MAX_TIMEOUT ((uint64_t)INT32_MAX * 1000)

enum kind { K_LISTEN = 1, K_SIGNAL, K_CLIENT, K_STDIN, K_STATUS };

struct client {
	int fd; /* -1 = free slot */
	uint32_t gen;
	uint8_t *rbuf;
	size_t rlen, rcap;
	struct sbx_buf out;
	uint32_t events; /* currently registered epoll events */
};

struct proc {
	bool used;
	uint32_t gen;
	char id[SBX_MAX_ID + 1];
	pid_t pid;
	int stdin_fd;  /* write end of the child's stdin; -1 once closed */
	int status_fd; /* read end of the CLOEXEC exec-status pipe; -1 once EOF */
	uint32_t stdin_events;
	uint8_t *ibuf; /* pending stdin: bytes [ipos, ilen) */
	size_t ipos, ilen;
	uint64_t accepted; /* total stdin bytes accepted so far */
	bool close_req;    /* STDIN_CLOSE received */
	bool stdin_dead;   /* the reader went away (EPIPE) */
	int64_t deadline;  /* CLOCK_MONOTONIC ms, 0 = none */
	bool timed_out;
	int exec_errno; /* nonzero: the child reported a failed start */
};

struct agent {
	int epfd, lfd, sfd, procs_fd;
	uint32_t gen;
	int entry; /* proc slot of `entry`, or -1 */
	bool set_user; /* --user given: the default uid:gid of every process */
	uid_t uid;
	gid_t gid;
	size_t stdin_total;
	struct client cl[SBX_MAX_CLIENTS];
	struct proc pr[SBX_MAX_PROCS];
};

static void logmsg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("sbx-agent: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void fatal(const char *what)
{
	logmsg("%s: %s", what, strerror(errno));
	exit(EXIT_STARTUP);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		fatal("clock_gettime");
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t ev_key(enum kind k, int idx, uint32_t gen)
{
	return (uint64_t)k << 56 | (uint64_t)(uint32_t)idx << 32 | gen;
}

/* epoll registration that cannot fail for a valid fd; treat failure as fatal. */
static void ep_ctl(struct agent *a, int op, int fd, uint32_t events, uint64_t key)
{
	struct epoll_event ev = {.events = events, .data.u64 = key};
	if (epoll_ctl(a->epfd, op, fd, &ev) < 0)
		fatal("epoll_ctl");
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd); /* Linux always releases the fd, even on EINTR */
		*fd = -1;
	}
}

/* ---------------------------------------------------------------- clients */

static void client_close(struct agent *a, struct client *c)
{
	if (c->fd < 0)
		return;
	if (epoll_ctl(a->epfd, EPOLL_CTL_DEL, c->fd, NULL) < 0)
		fatal("epoll_ctl del");
	close_fd(&c->fd);
	free(c->rbuf);
	c->rbuf = NULL;
	c->rlen = c->rcap = 0;
	sbx_buf_free(&c->out);
	c->gen = ++a->gen;
}

static void client_update(struct agent *a, struct client *c)
{
	size_t pend = sbx_buf_pending(&c->out);
	uint32_t ev = (pend < WBUF_HIGH ? EPOLLIN : 0) | (pend ? EPOLLOUT : 0);
	if (ev != c->events) {
		ep_ctl(a, EPOLL_CTL_MOD, c->fd, ev, ev_key(K_CLIENT, (int)(c - a->cl), c->gen));
		c->events = ev;
	}
}

/* Write as much pending output as the socket takes. Returns -1 if closed. */
static int client_flush(struct agent *a, struct client *c)
{
	if (c->out.overflow) {
		logmsg("client not reading its replies; closing it");
		client_close(a, c);
		return -1;
	}
	while (sbx_buf_pending(&c->out)) {
		ssize_t n = send(c->fd, c->out.p + c->out.off, sbx_buf_pending(&c->out),
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			client_close(a, c);
			return -1;
		}
		sbx_buf_consume(&c->out, (size_t)n);
	}
	client_update(a, c);
	return 0;
}

static void reply_ok_begin(struct client *c, uint64_t req)
{
	sbx_frame_begin(&c->out, SBX_T_OK);
	sbx_frame_num(&c->out, SBX_F_REQ, req);
}

static void reply_err(struct client *c, uint64_t req, const char *msg)
{
	sbx_frame_begin(&c->out, SBX_T_ERR);
	sbx_frame_num(&c->out, SBX_F_REQ, req);
	sbx_frame_cstr(&c->out, SBX_F_MSG, msg);
	sbx_frame_end(&c->out);
}

static void on_accept(struct agent *a)
{
	for (;;) {
		int fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				logmsg("accept: %s", strerror(errno));
			return;
		}
		int i = 0;
		while (i < SBX_MAX_CLIENTS && a->cl[i].fd >= 0)
			i++;
		if (i == SBX_MAX_CLIENTS) {
			logmsg("too many clients; refusing one");
			close(fd);
			continue;
		}
		struct client *c = &a->cl[i];
		c->fd = fd;
		c->gen = ++a->gen;
		c->events = EPOLLIN;
		sbx_buf_init(&c->out, WBUF_MAX);
		ep_ctl(a, EPOLL_CTL_ADD, fd, EPOLLIN, ev_key(K_CLIENT, i, c->gen));
	}
}

/* ------------------------------------------------------------- processes */

static int proc_find(struct agent *a, struct sbx_str id)
{
	for (int i = 0; i < SBX_MAX_PROCS; i++) {
		struct proc *p = &a->pr[i];
		if (p->used && strlen(p->id) == id.len && memcmp(p->id, id.p, id.len) == 0)
			return i;
	}
	return -1;
}

static int proc_by_pid(struct agent *a, pid_t pid)
{
	for (int i = 0; i < SBX_MAX_PROCS; i++)
		if (a->pr[i].used && a->pr[i].pid == pid)
			return i;
	return -1;
}

/* Signal the process group; before the child's setsid() there is no group yet. */
static int proc_kill(struct proc *p, int sig)
{
	if (kill(-p->pid, sig) == 0)
		return 0;
	if (errno != ESRCH)
		return -1;
	return kill(p->pid, sig);
}

static void stdin_update(struct agent *a, struct proc *p)
{
	if (p->stdin_fd < 0)
		return;
	uint32_t ev = p->ilen > p->ipos ? EPOLLOUT : 0;
	if (ev != p->stdin_events) {
		ep_ctl(a, EPOLL_CTL_MOD, p->stdin_fd, ev,
		       ev_key(K_STDIN, (int)(p - a->pr), p->gen));
		p->stdin_events = ev;
	}
}

static void stdin_drop_buffer(struct agent *a, struct proc *p)
{
	a->stdin_total -= p->ilen - p->ipos;
	free(p->ibuf);
	p->ibuf = NULL;
	p->ipos = p->ilen = 0;
}

static void stdin_close(struct agent *a, struct proc *p)
{
	if (p->stdin_fd >= 0 && epoll_ctl(a->epfd, EPOLL_CTL_DEL, p->stdin_fd, NULL) < 0)
		fatal("epoll_ctl del");
	close_fd(&p->stdin_fd);
	stdin_drop_buffer(a, p);
}

/*
 * Write what the pipe takes now; returns how many bytes went in. A reader
 * that is gone (EPIPE) marks stdin dead and closes it, dropping the buffer.
 */
static size_t stdin_write(struct agent *a, struct proc *p, const uint8_t *d, size_t n)
{
	size_t done = 0;
	while (p->stdin_fd >= 0 && done < n) {
		ssize_t w = write(p->stdin_fd, d + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w <= 0) {
			p->stdin_dead = true;
			stdin_close(a, p);
			break;
		}
		done += (size_t)w;
	}
	return done;
}

/* Move pending stdin into the pipe; close it when drained and EOF was asked for. */
static void stdin_flush(struct agent *a, struct proc *p)
{
	if (p->ilen > p->ipos) {
		size_t n = stdin_write(a, p, p->ibuf + p->ipos, p->ilen - p->ipos);
		if (p->stdin_fd < 0)
			return; /* closed: stdin_close dropped the buffer */
		p->ipos += n;
		a->stdin_total -= n;
	}
	if (p->ilen == p->ipos) {
		free(p->ibuf);
		p->ibuf = NULL;
		p->ipos = p->ilen = 0;
		if (p->close_req)
			stdin_close(a, p);
	}
	stdin_update(a, p);
}

/*
 * With nothing pending, write what the pipe takes now straight from the
 * frame (no copy into the buffer).
 */
static size_t stdin_write_direct(struct agent *a, struct proc *p, const uint8_t *d, size_t n)
{
	return p->ilen == p->ipos ? stdin_write(a, p, d, n) : 0;
}

/* Append up to n bytes to the pending buffer; returns how many were taken. */
static size_t stdin_append(struct agent *a, struct proc *p, const uint8_t *d, size_t n)
{
	size_t pending = p->ilen - p->ipos;
	size_t room = SBX_STDIN_BUF - pending;
	if (room > STDIN_TOTAL - a->stdin_total)
		room = STDIN_TOTAL - a->stdin_total;
	if (n > room)
		n = room;
	if (n == 0)
		return 0;
	if (p->ipos > 0) {
		memmove(p->ibuf, p->ibuf + p->ipos, pending);
		p->ipos = 0;
		p->ilen = pending;
	}
	uint8_t *b = realloc(p->ibuf, pending + n);
	if (!b)
		return 0; /* the client will retry; OK reports what was accepted */
	memcpy(b + pending, d, n);
	p->ibuf = b;
	p->ilen = pending + n;
	a->stdin_total += n;
	return n;
}

/* The atomic exit record the server reads after a restart. */
static void write_exit_file(struct agent *a, const char *id, int code, const char *reason)
{
	char tmp[SBX_MAX_ID + 16], dst[SBX_MAX_ID + 16], line[32];
	snprintf(tmp, sizeof tmp, "%s/exit.tmp", id);
	snprintf(dst, sizeof dst, "%s/exit", id);
	int len = snprintf(line, sizeof line, "%d %s\n", code, reason);
	int fd = openat(a->procs_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
			0644);
	if (fd < 0) {
		logmsg("open %s: %s", tmp, strerror(errno));
		return;
	}
	/*
	 * No fsync: the file only has to outlive the server, not the host (a host
	 * crash ends the sandbox too), and the page cache survives a server
	 * restart. An fsync here cost a journal commit (~1 ms) on every exit.
	 */
	ssize_t n = write(fd, line, (size_t)len);
	bool ok = n == len;
	if (!ok)
		logmsg("write %s: %s", tmp, n < 0 ? strerror(errno) : "short write");
	close(fd);
	if (ok && renameat(a->procs_fd, tmp, a->procs_fd, dst) < 0)
		logmsg("rename %s: %s", tmp, strerror(errno));
}

/*
 * Drain the exec-status pipe (a failed start writes its errno there; EOF means
 * the exec attempt is over). `reaped`: the child is gone, so whatever it wrote
 * is already readable.
 */
static void status_read(struct agent *a, struct proc *p, bool reaped)
{
	while (p->status_fd >= 0) {
		int e;
		ssize_t n = read(p->status_fd, &e, sizeof e);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN && !reaped)
			return;
		if (n == (ssize_t)sizeof e) {
			p->exec_errno = e ? e : EINVAL;
			continue;
		}
		if (epoll_ctl(a->epfd, EPOLL_CTL_DEL, p->status_fd, NULL) < 0)
			fatal("epoll_ctl del");
		close_fd(&p->status_fd);
	}
}

static void broadcast_exit(struct agent *a, const char *id, int code, const char *reason)
{
	for (int i = 0; i < SBX_MAX_CLIENTS; i++) {
		struct client *c = &a->cl[i];
		if (c->fd < 0)
			continue;
		sbx_frame_begin(&c->out, SBX_T_EXIT);
		sbx_frame_cstr(&c->out, SBX_F_ID, id);
		sbx_frame_num(&c->out, SBX_F_CODE, (uint64_t)code);
		sbx_frame_cstr(&c->out, SBX_F_REASON, reason);
		sbx_frame_end(&c->out);
		client_flush(a, c);
	}
}

static void proc_finish(struct agent *a, int idx, int st)
{
	struct proc *p = &a->pr[idx];
	int code = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
	const char *reason = WIFSIGNALED(st) ? "signaled" : "exited";

	/* A failed child wrote its errno before _exit(), so it is already in the pipe. */
	status_read(a, p, true);
	if (p->exec_errno)
		reason = "failed";
	else if (p->timed_out && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
		reason = "timeout";

	char id[SBX_MAX_ID + 1];
	memcpy(id, p->id, sizeof id);
	bool is_entry = idx == a->entry;

	stdin_close(a, p);
	close_fd(&p->status_fd);
	memset(p, 0, sizeof *p);
	p->stdin_fd = p->status_fd = -1;
	p->gen = ++a->gen;

	/*
	 * The file before the event: whoever hears EXIT may read the process's
	 * directory and remove it (the server's host tool runner does), and the
	 * agent must not write into it after that.
	 */
	write_exit_file(a, id, code, reason);
	broadcast_exit(a, id, code, reason);
	if (is_entry)
		exit(code); /* replies were flushed best-effort by broadcast_exit */
}

static void reap_all(struct agent *a)
{
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return; /* 0: none ready; ECHILD: no children */
		int idx = proc_by_pid(a, pid);
		if (idx >= 0)
			proc_finish(a, idx, st);
		/* else: an orphan reparented to us; reaping it is all we owe it */
	}
}

/* ------------------------------------------------------------------ spawn */

static int open_output(struct agent *a, const char *id, const char *name)
{
	char path[SBX_MAX_ID + 16];
	snprintf(path, sizeof path, "%s/%s", id, name);
	return openat(a->procs_fd, path,
		      O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
}

/* Undo the per-exec directory when we fail before anything ran, so the id can be retried. */
static void remove_proc_dir(struct agent *a, const char *id)
{
	char path[SBX_MAX_ID + 16];
	snprintf(path, sizeof path, "%s/stdout", id);
	(void)unlinkat(a->procs_fd, path, 0);
	snprintf(path, sizeof path, "%s/stderr", id);
	(void)unlinkat(a->procs_fd, path, 0);
	(void)unlinkat(a->procs_fd, id, AT_REMOVEDIR);
}

/*
 * Start a tracked process. Returns its slot, or -1 with a message in msg.
 * All fds are created CLOEXEC; the child's ends are closed here after fork.
 */
static int spawn(struct agent *a, const struct spawn_req *s, char *msg, size_t msglen)
{
	int slot = 0;
	while (slot < SBX_MAX_PROCS && a->pr[slot].used)
		slot++;
	if (slot == SBX_MAX_PROCS)
		return snprintf(msg, msglen, "too many processes"), -1;
	if (mkdirat(a->procs_fd, s->id, 0755) < 0) {
		if (errno == EEXIST)
			return snprintf(msg, msglen, "exec id already used"), -1;
		return snprintf(msg, msglen, "mkdir: %s", strerror(errno)), -1;
	}

	int out = -1, err = -1, nul = -1, inp[2] = {-1, -1}, stp[2] = {-1, -1};
	const char *step = "create stdout";
	if ((out = open_output(a, s->id, "stdout")) < 0)
		goto fail;
	step = "create stderr";
	if ((err = open_output(a, s->id, "stderr")) < 0)
		goto fail;
	step = "open /dev/null";
	if (s->flags && (nul = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0)
		goto fail;
	step = "pipe";
	if (pipe2(inp, O_CLOEXEC) < 0 || pipe2(stp, O_CLOEXEC) < 0)
		goto fail;
	if (fcntl(inp[1], F_SETFL, O_NONBLOCK) < 0 || fcntl(stp[0], F_SETFL, O_NONBLOCK) < 0)
		goto fail;
	/*
	 * A stdin pipe as large as an unprivileged process may make it (1 MiB by
	 * default): a reader wakes once per MiB instead of once per 64 KiB, and a
	 * STDIN frame mostly goes straight into the pipe. Best effort.
	 */
	(void)fcntl(inp[1], F_SETPIPE_SZ, (int)SBX_STDIN_BUF);
	step = "clone";
	pid_t pid = sbx_spawn(s, inp[0], s->flags & SBX_FLAG_STDOUT_NULL ? nul : out,
			      s->flags & SBX_FLAG_STDERR_NULL ? nul : err, err, stp[1]);
	if (pid < 0)
		goto fail;

	close(out);
	close(err);
	close_fd(&nul);
	close(inp[0]);
	close(stp[1]);
	struct proc *p = &a->pr[slot];
	p->used = true;
	p->gen = ++a->gen;
	snprintf(p->id, sizeof p->id, "%s", s->id);
	p->pid = pid;
	p->stdin_fd = inp[1];
	p->status_fd = stp[0];
	if (s->timeout_ms) /* capped at ~68 years so the sum cannot overflow */
		p->deadline = now_ms() + (int64_t)(s->timeout_ms < MAX_TIMEOUT ? s->timeout_ms
									: MAX_TIMEOUT);
	ep_ctl(a, EPOLL_CTL_ADD, p->stdin_fd, 0, ev_key(K_STDIN, slot, p->gen));
	ep_ctl(a, EPOLL_CTL_ADD, p->status_fd, EPOLLIN, ev_key(K_STATUS, slot, p->gen));
	return slot;

fail:
	snprintf(msg, msglen, "%s: %s", step, strerror(errno));
	close_fd(&out);
	close_fd(&err);
	close_fd(&nul);
	for (int i = 0; i < 2; i++) {
		close_fd(&inp[i]);
		close_fd(&stp[i]);
	}
	remove_proc_dir(a, s->id);
	return -1;
}

/* ---------------------------------------------------------------- requests */

static void do_hello(struct client *c, const struct sbx_req *r)
{
	reply_ok_begin(c, r->req);
	sbx_frame_num(&c->out, SBX_F_VERSION, SBX_PROTO_VERSION);
	sbx_frame_cstr(&c->out, SBX_F_FEATURES, SBX_PROTO_FEATURES);
	sbx_frame_end(&c->out);
}

static void do_exec(struct agent *a, struct client *c, const struct sbx_req *r)
{
	char id[SBX_MAX_ID + 1], cwd[SBX_MAX_CWD + 1], msg[128];
	memcpy(id, r->id.p, r->id.len);
	id[r->id.len] = '\0';
	if (r->cwd.len) {
		memcpy(cwd, r->cwd.p, r->cwd.len);
		cwd[r->cwd.len] = '\0';
	}
	struct spawn_req s = {.id = id,
			      .argv = sbx_build_argv(r),
			      .envp = sbx_build_envp(r),
			      .cwd = r->cwd.len ? cwd : NULL,
			      .timeout_ms = r->timeout_ms,
			      .flags = (unsigned)r->flags,
			      .set_user = a->set_user,
			      .uid = a->uid,
			      .gid = a->gid};
	if (r->seen & (1u << SBX_F_UID)) { /* frame.c: UID and GID come together */
		s.set_user = true;
		s.uid = (uid_t)r->uid;
		s.gid = (gid_t)r->gid;
	}
	int slot = -1;
	if (!s.argv || !s.envp)
		snprintf(msg, sizeof msg, "out of memory");
	else
		slot = spawn(a, &s, msg, sizeof msg);
	free(s.argv);
	free(s.envp);
	if (slot < 0) {
		reply_err(c, r->req, msg);
		return;
	}
	/*
	 * Answer at once: the child is forked and will exec or report why it
	 * could not (an EXIT with reason "failed"). Waiting for execve here would
	 * put the image's exec time on every caller's round trip.
	 */
	reply_ok_begin(c, r->req);
	sbx_frame_num(&c->out, SBX_F_PID, (uint64_t)a->pr[slot].pid);
	sbx_frame_end(&c->out);
	client_flush(a, c);
}

/* For requests naming an id that is not running: has it run before? */
static const char *gone_msg(struct agent *a, struct sbx_str id)
{
	char name[SBX_MAX_ID + 1];
	memcpy(name, id.p, id.len);
	name[id.len] = '\0';
	if (faccessat(a->procs_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return "process has exited";
	return "no such process";
}

static void do_stdin(struct agent *a, struct client *c, const struct sbx_req *r)
{
	int idx = proc_find(a, r->id);
	if (idx < 0)
		return reply_err(c, r->req, gone_msg(a, r->id));
	struct proc *p = &a->pr[idx];
	if (r->offset > p->accepted)
		return reply_err(c, r->req, "offset beyond accepted stdin");
	uint64_t skip = p->accepted - r->offset; /* a retry of bytes we already have */
	size_t fresh = skip < r->data.len ? r->data.len - (size_t)skip : 0;
	if (fresh) {
		if (p->stdin_dead)
			return reply_err(c, r->req, "stdin closed by the process");
		if (p->close_req)
			return reply_err(c, r->req, "stdin is closed");
		const uint8_t *d = r->data.p + skip;
		size_t direct = stdin_write_direct(a, p, d, fresh);
		p->accepted += direct;
		if (p->stdin_dead) /* as when a buffered write meets EPIPE: the rest is dropped */
			p->accepted += fresh - direct;
		else if (direct < fresh)
			p->accepted += stdin_append(a, p, d + direct, fresh - direct);
		stdin_flush(a, p);
	}
	reply_ok_begin(c, r->req);
	sbx_frame_num(&c->out, SBX_F_OFFSET, p->accepted);
	sbx_frame_end(&c->out);
}

static void do_stdin_close(struct agent *a, struct client *c, const struct sbx_req *r)
{
	int idx = proc_find(a, r->id);
	if (idx < 0) {
		const char *m = gone_msg(a, r->id);
		if (strcmp(m, "process has exited") != 0)
			return reply_err(c, r->req, m);
	} else {
		a->pr[idx].close_req = true;
		stdin_flush(a, &a->pr[idx]);
	}
	reply_ok_begin(c, r->req);
	sbx_frame_end(&c->out);
}

static void do_signal(struct agent *a, struct client *c, const struct sbx_req *r)
{
	int idx = proc_find(a, r->id);
	if (idx < 0)
		return reply_err(c, r->req, gone_msg(a, r->id));
	if (proc_kill(&a->pr[idx], (int)r->signal) < 0)
		return reply_err(c, r->req, strerror(errno));
	reply_ok_begin(c, r->req);
	sbx_frame_end(&c->out);
}

/* Returns -1 if the client must be dropped (bad frame). */
static int handle_frame(struct agent *a, struct client *c, const uint8_t *body, uint32_t len)
{
	struct sbx_req r;
	const char *why;
	if (sbx_parse_request(body, len, &r, &why) < 0) {
		logmsg("bad frame from client %d: %s", (int)(c - a->cl), why);
		return -1;
	}
	switch (r.type) {
	case SBX_T_HELLO: do_hello(c, &r); break;
	case SBX_T_EXEC: do_exec(a, c, &r); break;
	case SBX_T_STDIN: do_stdin(a, c, &r); break;
	case SBX_T_STDIN_CLOSE: do_stdin_close(a, c, &r); break;
	case SBX_T_SIGNAL: do_signal(a, c, &r); break;
	}
	return 0;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Handle complete frames in rbuf while the client keeps up with its replies.
 * Returns -1 if the client was closed. *need is the buffer size the next
 * frame requires.
 */
static int client_process(struct agent *a, struct client *c, size_t *need)
{
	size_t pos = 0;
	*need = 4;
	while (c->rlen - pos >= 4 && sbx_buf_pending(&c->out) < WBUF_HIGH) {
		uint32_t len = be32(c->rbuf + pos);
		if (len < SBX_FRAME_MIN || len > SBX_FRAME_MAX) {
			logmsg("bad frame length %u from client %d", len, (int)(c - a->cl));
			client_close(a, c);
			return -1;
		}
		*need = 4 + (size_t)len;
		if (c->rlen - pos < *need)
			break;
		if (handle_frame(a, c, c->rbuf + pos + 4, len) < 0) {
			client_close(a, c);
			return -1;
		}
		pos += *need;
		*need = 4;
	}
	if (pos) {
		memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
		c->rlen -= pos;
	}
	return client_flush(a, c);
}

static void on_client_readable(struct agent *a, struct client *c)
{
	size_t need;
	if (client_process(a, c, &need) < 0)
		return;
	if (sbx_buf_pending(&c->out) >= WBUF_HIGH)
		return; /* backpressure: read more once replies drain */
	size_t want = need > RBUF_MIN ? need : RBUF_MIN;
	/*
	 * Grow only: a client that sent one large frame (a stdin chunk) usually
	 * sends more, and re-growing a freed buffer costs a page fault per 4 KiB
	 * (most of the agent's time in the stdin benchmark). At most
	 * SBX_FRAME_MAX per connection, counted against the sandbox's memory.
	 */
	if (c->rcap < want) {
		uint8_t *b = realloc(c->rbuf, want);
		if (!b) {
			logmsg("out of memory for client buffer");
			client_close(a, c);
			return;
		}
		c->rbuf = b;
		c->rcap = want;
	}
	if (c->rlen == c->rcap)
		return; /* cannot happen: a full buffer holds a complete frame */
	ssize_t n = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		client_close(a, c);
		return;
	}
	c->rlen += (size_t)n;
	client_process(a, c, &need);
}

/* ---------------------------------------------------------------- signals */

static void on_signals(struct agent *a)
{
	struct signalfd_siginfo si;
	for (;;) {
		ssize_t n = read(a->sfd, &si, sizeof si);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof si)
			return;
		int sig = (int)si.ssi_signo;
		if (sig == SIGCHLD)
			reap_all(a);
		else if ((sig == SIGTERM || sig == SIGINT || sig == SIGHUP) && a->entry >= 0 &&
			 a->pr[a->entry].used)
			(void)proc_kill(&a->pr[a->entry], sig);
		/* everything else (SIGPIPE included) is deliberately ignored */
	}
}

/* Kill expired processes; returns the epoll timeout until the next deadline. */
static int check_timeouts(struct agent *a)
{
	int64_t now = now_ms(), next = -1;
	for (int i = 0; i < SBX_MAX_PROCS; i++) {
		struct proc *p = &a->pr[i];
		if (!p->used || !p->deadline)
			continue;
		if (p->deadline <= now) {
			p->deadline = 0;
			p->timed_out = true;
			if (proc_kill(p, SIGKILL) < 0)
				logmsg("kill %d: %s", (int)p->pid, strerror(errno));
		} else if (next < 0 || p->deadline - now < next) {
			next = p->deadline - now;
		}
	}
	return next > INT_MAX ? INT_MAX : (int)next;
}

static void dispatch(struct agent *a, uint64_t key, uint32_t events)
{
	enum kind k = (enum kind)(key >> 56);
	int idx = (int)((key >> 32) & 0xffffff);
	uint32_t gen = (uint32_t)key;
	if (k == K_LISTEN) {
		on_accept(a);
	} else if (k == K_SIGNAL) {
		on_signals(a);
	} else if (k == K_CLIENT && idx < SBX_MAX_CLIENTS) {
		struct client *c = &a->cl[idx];
		if (c->fd < 0 || c->gen != gen) /* stale event for a closed slot */
			return;
		if ((events & EPOLLOUT) && client_flush(a, c) < 0)
			return;
		if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			on_client_readable(a, c);
		else
			client_process(a, c, &(size_t){0}); /* replies drained: resume */
	} else if ((k == K_STDIN || k == K_STATUS) && idx < SBX_MAX_PROCS) {
		struct proc *p = &a->pr[idx];
		if (!p->used || p->gen != gen)
			return;
		if (k == K_STDIN)
			stdin_flush(a, p);
		else
			status_read(a, p, false);
	}
}

/* -------------------------------------------------------------- startup */

static void ensure_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		int n = open("/dev/null", O_RDWR);
		if (n < 0)
			fatal("open /dev/null");
		if (n != fd) {
			if (dup2(n, fd) < 0)
				fatal("dup2");
			close(n);
		}
	}
}

static int open_listener(int run_fd, const char *run_dir)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (snprintf(sa.sun_path, sizeof sa.sun_path, "%s/agent.sock", run_dir) >=
	    (int)sizeof sa.sun_path) {
		errno = ENAMETOOLONG;
		fatal("socket path");
	}
	if (unlinkat(run_fd, "agent.sock", 0) < 0 && errno != ENOENT)
		fatal("unlink stale agent.sock");
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fatal("socket");
	mode_t old = umask(0177); /* the socket must never exist with a looser mode */
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	if (rc < 0)
		fatal("bind agent.sock");
	if (fchmodat(run_fd, "agent.sock", 0600, 0) < 0)
		fatal("chmod agent.sock");
	if (listen(fd, 128) < 0)
		fatal("listen");
	return fd;
}

static void setup(struct agent *a, const char *run_dir, pid_t host_parent)
{
	memset(a, 0, sizeof *a);
	a->entry = -1;
	for (int i = 0; i < SBX_MAX_CLIENTS; i++)
		a->cl[i].fd = -1;
	for (int i = 0; i < SBX_MAX_PROCS; i++)
		a->pr[i].stdin_fd = a->pr[i].status_fd = -1;

	ensure_std_fds();
	/* An inherited SIG_IGN for SIGCHLD would make the kernel auto-reap our
	 * children and hide their exit statuses. */
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	if (sigaction(SIGCHLD, &dfl, NULL) < 0)
		fatal("sigaction(SIGCHLD)");
	sigset_t all;
	sigfillset(&all);
	if (sigprocmask(SIG_SETMASK, &all, NULL) < 0)
		fatal("sigprocmask");
	if ((a->sfd = signalfd(-1, &all, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
		fatal("signalfd");
	if (host_parent > 0) {
		/*
		 * The server's spawner on the host: it dies with the server, and the
		 * orphans of what it starts (runc's container init) are not its own.
		 */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
			fatal("prctl(PR_SET_PDEATHSIG)");
		if (getppid() != host_parent)
			exit(EXIT_STARTUP); /* the server is already gone */
	} else if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
		/* Outside a pid namespace, orphans of our processes must still come to us. */
		fatal("prctl(PR_SET_CHILD_SUBREAPER)");
	}

	if (mkdir(run_dir, 0755) < 0 && errno != EEXIST)
		fatal("mkdir run dir");
	int run_fd = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (run_fd < 0)
		fatal("open run dir");
	if (mkdirat(run_fd, "procs", 0755) < 0 && errno != EEXIST)
		fatal("mkdir procs");
	a->procs_fd = openat(run_fd, "procs", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (a->procs_fd < 0)
		fatal("open procs");
	a->lfd = open_listener(run_fd, run_dir);
	close(run_fd);

	if ((a->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		fatal("epoll_create1");
	ep_ctl(a, EPOLL_CTL_ADD, a->lfd, EPOLLIN, ev_key(K_LISTEN, 0, 0));
	ep_ctl(a, EPOLL_CTL_ADD, a->sfd, EPOLLIN, ev_key(K_SIGNAL, 0, 0));
}

/* "UID:GID", both decimal, each at most SBX_MAX_UGID. */
static int parse_user(const char *s, uid_t *uid, gid_t *gid)
{
	char *end;
	errno = 0;
	if (*s < '0' || *s > '9')
		return -1;
	unsigned long long u = strtoull(s, &end, 10);
	if (errno || *end != ':' || u > SBX_MAX_UGID || end[1] < '0' || end[1] > '9')
		return -1;
	unsigned long long g = strtoull(end + 1, &end, 10);
	if (errno || *end != '\0' || g > SBX_MAX_UGID)
		return -1;
	*uid = (uid_t)u;
	*gid = (gid_t)g;
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: sbx-agent [--run-dir DIR] [--user UID:GID] [--host-spawner PPID] [-- argv...]\n");
	exit(EXIT_STARTUP);
}

int main(int argc, char **argv)
{
	const char *run_dir = "/.sbx";
	char **entry_argv = NULL;
	bool set_user = false;
	uid_t uid = 0;
	gid_t gid = 0;
	pid_t host_parent = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--run-dir") == 0 && i + 1 < argc) {
			run_dir = argv[++i];
		} else if (strcmp(argv[i], "--host-spawner") == 0 && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end != '\0' || v <= 1 || v > INT_MAX)
				usage();
			host_parent = (pid_t)v;
		} else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc) {
			if (parse_user(argv[++i], &uid, &gid) < 0)
				usage();
			set_user = true;
		} else if (strcmp(argv[i], "--") == 0) {
			if (i + 1 < argc)
				entry_argv = &argv[i + 1];
			break;
		} else {
			usage();
		}
	}

	static struct agent agent; /* large: keep it off the stack */
	struct agent *a = &agent;
	setup(a, run_dir, host_parent);
	a->set_user = set_user;
	a->uid = uid;
	a->gid = gid;

	if (entry_argv) {
		struct spawn_req s = {.id = SBX_ENTRY_ID,
				      .argv = entry_argv,
				      .envp = environ,
				      .set_user = a->set_user,
				      .uid = a->uid,
				      .gid = a->gid};
		char msg[128];
		a->entry = spawn(a, &s, msg, sizeof msg);
		if (a->entry < 0) {
			logmsg("cannot start entrypoint: %s", msg);
			return EXIT_STARTUP;
		}
	}

	for (;;) {
		struct epoll_event evs[64];
		int timeout = check_timeouts(a);
		int n = epoll_wait(a->epfd, evs, 64, timeout);
		if (n < 0 && errno != EINTR)
			fatal("epoll_wait");
		for (int i = 0; i < n; i++)
			dispatch(a, evs[i].data.u64, evs[i].events);
	}
}
