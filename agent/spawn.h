/* Process start-up helpers for sbx-agent: argv/env assembly and the forked child. */
#ifndef SBX_SPAWN_H
#define SBX_SPAWN_H

#include <stdbool.h>
#include <sys/types.h>

#include "frame.h"

struct spawn_req {
	const char *id;
	char **argv, **envp;
	const char *cwd; /* NULL: inherit the agent's cwd */
	uint64_t timeout_ms;
	unsigned flags;
	bool set_user; /* run as uid:gid (supplementary groups: gid only) */
	uid_t uid;
	gid_t gid;
};

/* Build a NULL-terminated argv from the request's ARG fields (one allocation, free()). */
char **sbx_build_argv(const struct sbx_req *r);

/* The agent's environment plus the request's ENV fields (one allocation, free()). */
char **sbx_build_envp(const struct sbx_req *r);

/*
 * In the forked child: reset signals, setsid, wire fds 0-2, chdir, exec.
 * On failure writes a message to err_file, errno to status_fd, and exits
 * 127 (ENOENT) or 126. Never returns.
 */
__attribute__((noreturn)) void sbx_child_exec(const struct spawn_req *s, int in_fd, int out_fd,
					      int err_fd, int err_file, int status_fd);

/*
 * Start sbx_child_exec in a child that shares the agent's memory until it
 * calls execve (CLONE_VM | CLONE_VFORK): no page tables are copied and no
 * copy-on-write faults are taken, which is most of a fork's cost. The agent
 * is suspended meanwhile; it resumes once the child has exec'd or exited.
 * Returns the pid, or -1 with errno set.
 */
pid_t sbx_spawn(const struct spawn_req *s, int in_fd, int out_fd, int err_fd, int err_file,
		int status_fd);

#endif
