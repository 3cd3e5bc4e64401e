/*
 * sbx-agent wire protocol constants (see agent/PROTOCOL.md).
 *
 * MIRROR: packages/server/src/runtime/agent/proto.ts must define the same
 * values; a test compares the two files. Change both together.
 */
#ifndef SBX_PROTO_H
#define SBX_PROTO_H

#define SBX_PROTO_VERSION 1
#define SBX_PROTO_FEATURES "exec,stdin,signal,exit-events,user"

/* Frame: u32 BE length (of type + payload), u8 type, fields. */
#define SBX_FRAME_MIN 1u
#define SBX_FRAME_MAX (1024u * 1024u + 4096u)
#define SBX_FIELD_HDR 5u /* u8 tag + u32 BE length */

/* Limits. */
#define SBX_MAX_DIGITS 19       /* decimal numbers */
#define SBX_MAX_ID 64           /* exec id length */
#define SBX_MAX_CWD 4095        /* CWD length (PATH_MAX - 1) */
#define SBX_MAX_ENV 4096        /* ENV fields per EXEC */
#define SBX_STDIN_BUF (1024u * 1024u) /* pending stdin bytes per process */
#define SBX_MAX_CLIENTS 64
#define SBX_MAX_PROCS 256       /* concurrently running tracked processes */
#define SBX_MAX_SIGNAL 64
#define SBX_MAX_UGID 4294967294u /* uid/gid: 0 ..= 2^32 - 2 ((uid_t)-1 is "unchanged") */

/* Request types (client -> agent). */
#define SBX_T_HELLO 1
#define SBX_T_EXEC 2
#define SBX_T_STDIN 3
#define SBX_T_STDIN_CLOSE 4
#define SBX_T_SIGNAL 5

/* Replies and events (agent -> client). */
#define SBX_T_OK 128
#define SBX_T_ERR 129
#define SBX_T_EXIT 130

/* Field tags. */
#define SBX_F_REQ 1
#define SBX_F_ID 2
#define SBX_F_ARG 3
#define SBX_F_ENV 4
#define SBX_F_CWD 5
#define SBX_F_TIMEOUT_MS 6
#define SBX_F_OFFSET 7
#define SBX_F_DATA 8
#define SBX_F_SIGNAL 9
#define SBX_F_CODE 10
#define SBX_F_MSG 11
#define SBX_F_VERSION 12
#define SBX_F_FEATURES 13
#define SBX_F_FLAGS 14
#define SBX_F_PID 15
#define SBX_F_REASON 16
#define SBX_F_UID 17
#define SBX_F_GID 18
#define SBX_F_LAST 18

/* FLAGS bits. */
#define SBX_FLAG_STDOUT_NULL 1
#define SBX_FLAG_STDERR_NULL 2
#define SBX_FLAGS_ALL 3

/* The exec id of the entrypoint given on the command line. */
#define SBX_ENTRY_ID "entry"

#endif
