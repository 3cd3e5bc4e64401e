/*
 * Process start-up for sbx-agent. Everything here is either pure (argv/env
 * assembly from an already validated request) or runs in the forked child.
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <limits.h>
#include <grp.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proto.h"

extern char **environ;

/* Report a failed start: message to the stderr file, errno to the agent. */
static __attribute__((noreturn)) void child_fail(int err_fd, int status_fd, int e, int code,
						 const char *fmt, const char *arg)
{
	dprintf(err_fd, fmt, arg, strerror(e));
	(void)!write(status_fd, &e, sizeof e);
	_exit(code);
}

void sbx_child_exec(const struct spawn_req *s, int in_fd, int out_fd, int err_fd, int err_file,
		    int status_fd)
{
	/*
	 * Reset every disposition to SIG_DFL, including ones the agent inherited
	 * as SIG_IGN (exec keeps SIG_IGN). The raw syscall also reaches the
	 * signals glibc reserves (32, 33), which sigaction() refuses. An all-zero
	 * kernel sigaction is SIG_DFL with no flags and an empty mask on every
	 * architecture's layout.
	 */
	uint64_t dfl[8] = {0};
	for (int sig = 1; sig < NSIG; sig++)
		(void)syscall(SYS_rt_sigaction, sig, dfl, NULL, sizeof(uint64_t)); /* EINVAL for KILL/STOP */
	sigset_t none;
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) < 0 || setsid() < 0)
		child_fail(err_file, status_fd, errno, 126, "sbx: cannot start %s: %s\n", s->argv[0]);
	/* The agent keeps fds 0-2 open, so every source fd here is >= 3. */
	if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
		child_fail(err_file, status_fd, errno, 126, "sbx: cannot start %s: %s\n", s->argv[0]);
	/* Belt and braces: nothing but 0-2 may survive exec, even fds we did not open. */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		child_fail(err_file, status_fd, errno, 126, "sbx: cannot start %s: %s\n", s->argv[0]);
	/* Drop to the image's USER (or the EXEC's UID/GID) before chdir, so the
	 * working directory is checked with that user's permissions. */
	if (s->set_user && (setgroups(1, &s->gid) < 0 || setgid(s->gid) < 0 || setuid(s->uid) < 0))
		child_fail(err_file, status_fd, errno, 126, "sbx: cannot switch user for %s: %s\n", s->argv[0]);
	if (s->cwd && chdir(s->cwd) < 0)
		child_fail(err_file, status_fd, errno, 126, "sbx: cannot chdir to %s: %s\n", s->cwd);
	environ = s->envp; /* so execvp searches the PATH the caller asked for */
	execvp(s->argv[0], s->argv);
	int e = errno;
	child_fail(err_file, status_fd, e, e == ENOENT ? 127 : 126, "sbx: cannot execute %s: %s\n",
		   s->argv[0]);
}

struct child_args {
	const struct spawn_req *s;
	int in_fd, out_fd, err_fd, err_file, status_fd;
};

static int child_main(void *arg)
{
	const struct child_args *c = arg;
	sbx_child_exec(c->s, c->in_fd, c->out_fd, c->err_fd, c->err_file, c->status_fd);
}

pid_t sbx_spawn(const struct spawn_req *s, int in_fd, int out_fd, int err_fd, int err_file,
		int status_fd)
{
	/*
	 * The child runs on its own stack. execvp's fallback for a script without
	 * "#!" copies argv onto that stack, so size it by argc like posix_spawn.
	 */
	size_t argc = 0;
	while (s->argv[argc])
		argc++;
	size_t size = (64u << 10) + (argc + 3) * sizeof(char *) + 2 * PATH_MAX;
	size = (size + 15) & ~(size_t)15;
	char *stack = malloc(size);
	if (!stack)
		return -1;
	struct child_args c = {s, in_fd, out_fd, err_fd, err_file, status_fd};
	/* The child sets environ for execvp's PATH search: shared memory, so restore it. */
	char **saved_environ = environ;
	pid_t pid = clone(child_main, stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, &c);
	int e = errno;
	environ = saved_environ;
	free(stack);
	errno = e;
	return pid;
}

/* argv/env blocks are one allocation each: pointer array then the strings. */
char **sbx_build_argv(const struct sbx_req *r)
{
	size_t ptrs = ((size_t)r->nargs + 1) * sizeof(char *);
	char **v = malloc(ptrs + r->args_bytes + r->nargs);
	if (!v)
		return NULL;
	char *s = (char *)v + ptrs;
	uint32_t pos = 0, i = 0;
	struct sbx_str f;
	while (sbx_next_field(r, &pos, SBX_F_ARG, &f)) {
		v[i++] = s;
		memcpy(s, f.p, f.len);
		s[f.len] = '\0';
		s += f.len + 1;
	}
	v[i] = NULL;
	return v;
}

struct env_ent {
	const char *s;
	size_t klen, idx;
	bool wins; /* the last ENV entry with its key */
};

static size_t key_len(const char *s)
{
	const char *eq = strchr(s, '=');
	return eq ? (size_t)(eq - s) : strlen(s);
}

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	return c ? c : (alen > blen) - (alen < blen);
}

static int env_ent_cmp(const void *x, const void *y)
{
	const struct env_ent *a = x, *b = y;
	int c = key_cmp(a->s, a->klen, b->s, b->klen);
	return c ? c : (a->idx > b->idx) - (a->idx < b->idx);
}

static int env_idx_cmp(const void *x, const void *y)
{
	const struct env_ent *a = x, *b = y;
	return (a->idx > b->idx) - (a->idx < b->idx);
}

static int env_key_search(const void *key, const void *elem)
{
	const struct env_ent *k = key, *e = elem;
	return key_cmp(k->s, k->klen, e->s, e->klen);
}

/*
 * The agent's environment with the request's ENV entries added; a later ENV
 * entry wins over an earlier one with the same key. Sorting keeps this
 * O(n log n): ENV count and sizes come from the peer.
 */
char **sbx_build_envp(const struct sbx_req *r)
{
	size_t nbase = 0;
	while (environ && environ[nbase])
		nbase++;
	size_t ptrs = (nbase + r->nenv + 1) * sizeof(char *);
	char **v = malloc(ptrs + r->env_bytes + r->nenv);
	struct env_ent *ents = calloc(r->nenv ? r->nenv : 1, sizeof *ents);
	if (!v || !ents) {
		free(v);
		free(ents);
		return NULL;
	}
	char *s = (char *)v + ptrs;
	size_t n = 0, out = 0;
	uint32_t pos = 0;
	struct sbx_str f;
	while (sbx_next_field(r, &pos, SBX_F_ENV, &f)) {
		memcpy(s, f.p, f.len);
		s[f.len] = '\0';
		ents[n] = (struct env_ent){.s = s, .klen = key_len(s), .idx = n};
		n++;
		s += f.len + 1;
	}
	qsort(ents, n, sizeof *ents, env_ent_cmp);
	for (size_t i = 0; i < n; i++)
		ents[i].wins = i + 1 == n || env_key_search(&ents[i], &ents[i + 1]) != 0;

	for (size_t i = 0; i < nbase; i++) {
		struct env_ent key = {.s = environ[i], .klen = key_len(environ[i])};
		if (!bsearch(&key, ents, n, sizeof *ents, env_key_search))
			v[out++] = environ[i];
	}
	qsort(ents, n, sizeof *ents, env_idx_cmp); /* back to request order */
	size_t nwin = 0;
	for (size_t i = 0; i < n; i++)
		if (ents[i].wins)
			v[out + nwin++] = (char *)ents[i].s;
	v[out + nwin] = NULL;
	free(ents);
	return v;
}
