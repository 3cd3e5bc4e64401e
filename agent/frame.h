/* Frame parsing and building for the sbx-agent protocol (see PROTOCOL.md). */
#ifndef SBX_FRAME_H
#define SBX_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sbx_str {
	const uint8_t *p; /* points into the frame; NOT NUL-terminated */
	uint32_t len;
};

/* A validated request. Pointers borrow from the frame buffer. */
struct sbx_req {
	uint8_t type;
	uint32_t seen; /* bit (1 << tag) for each tag present */
	uint64_t req, timeout_ms, offset, signal, flags, uid, gid;
	struct sbx_str id, cwd, data;
	uint32_t nargs, nenv;
	size_t args_bytes, env_bytes; /* sum of ARG / ENV lengths */
	const uint8_t *payload;       /* for sbx_next_field() */
	uint32_t payload_len;
};

/*
 * Parse and strictly validate one request frame body (type byte + payload,
 * without the u32 length prefix). Returns 0, or -1 with *why set to a static
 * description of the first violation.
 */
int sbx_parse_request(const uint8_t *body, uint32_t len, struct sbx_req *r, const char **why);

/* Iterate over fields with the given tag; *pos starts at 0. Returns false at the end. */
bool sbx_next_field(const struct sbx_req *r, uint32_t *pos, uint8_t tag, struct sbx_str *out);

bool sbx_valid_id(const uint8_t *p, size_t len);

/*
 * Growable output buffer with a hard cap. Bytes [off, len) are pending.
 * Any append past `max` sets `overflow` and is dropped; the owner must then
 * give up on the peer (it is not reading).
 */
struct sbx_buf {
	uint8_t *p;
	size_t off, len, cap, max;
	size_t frame_start;
	bool overflow;
};

void sbx_buf_init(struct sbx_buf *b, size_t max);
void sbx_buf_free(struct sbx_buf *b);
size_t sbx_buf_pending(const struct sbx_buf *b);
void sbx_buf_consume(struct sbx_buf *b, size_t n);

void sbx_frame_begin(struct sbx_buf *b, uint8_t type);
void sbx_frame_str(struct sbx_buf *b, uint8_t tag, const void *p, size_t len);
void sbx_frame_cstr(struct sbx_buf *b, uint8_t tag, const char *s);
void sbx_frame_num(struct sbx_buf *b, uint8_t tag, uint64_t v);
void sbx_frame_end(struct sbx_buf *b);

#endif
