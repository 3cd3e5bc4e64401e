/*
 * Frame parsing and building. Every byte handed to sbx_parse_request() comes
 * from an untrusted peer: all lengths are checked against the remaining
 * buffer before use, and nothing here allocates based on peer input.
 */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define BIT(tag) (1u << (tag))

/* Which fields each request type requires / allows. */
struct req_rule {
	uint32_t required, allowed;
};

static const struct req_rule *rule_for(uint8_t type)
{
	static const struct req_rule hello = {BIT(SBX_F_REQ), BIT(SBX_F_REQ)};
	static const struct req_rule exec = {
		BIT(SBX_F_REQ) | BIT(SBX_F_ID) | BIT(SBX_F_ARG),
		BIT(SBX_F_REQ) | BIT(SBX_F_ID) | BIT(SBX_F_ARG) | BIT(SBX_F_ENV) | BIT(SBX_F_CWD) |
			BIT(SBX_F_TIMEOUT_MS) | BIT(SBX_F_FLAGS) | BIT(SBX_F_UID) | BIT(SBX_F_GID)};
	static const struct req_rule in = {
		BIT(SBX_F_REQ) | BIT(SBX_F_ID) | BIT(SBX_F_OFFSET) | BIT(SBX_F_DATA),
		BIT(SBX_F_REQ) | BIT(SBX_F_ID) | BIT(SBX_F_OFFSET) | BIT(SBX_F_DATA)};
	static const struct req_rule in_close = {BIT(SBX_F_REQ) | BIT(SBX_F_ID),
						 BIT(SBX_F_REQ) | BIT(SBX_F_ID)};
	static const struct req_rule sig = {BIT(SBX_F_REQ) | BIT(SBX_F_ID) | BIT(SBX_F_SIGNAL),
					    BIT(SBX_F_REQ) | BIT(SBX_F_ID) | BIT(SBX_F_SIGNAL)};
	switch (type) {
	case SBX_T_HELLO: return &hello;
	case SBX_T_EXEC: return &exec;
	case SBX_T_STDIN: return &in;
	case SBX_T_STDIN_CLOSE: return &in_close;
	case SBX_T_SIGNAL: return &sig;
	default: return NULL;
	}
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * ASCII decimal, 1..19 digits, no sign, no leading zeros (so the REQ we echo
 * is byte-identical to the one received). 19 digits always fit in uint64_t.
 */
static int parse_num(struct sbx_str s, uint64_t *out)
{
	uint64_t v = 0;
	if (s.len == 0 || s.len > SBX_MAX_DIGITS || (s.len > 1 && s.p[0] == '0'))
		return -1;
	for (uint32_t i = 0; i < s.len; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s.p[i] - '0');
	}
	*out = v;
	return 0;
}

static bool has_nul(struct sbx_str s)
{
	return s.len && memchr(s.p, 0, s.len) != NULL;
}

bool sbx_valid_id(const uint8_t *p, size_t len)
{
	if (len < 1 || len > SBX_MAX_ID)
		return false;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = p[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* Validate one field's contents and store it in the request. */
static int take_field(struct sbx_req *r, uint8_t tag, struct sbx_str v, const char **why)
{
	switch (tag) {
	case SBX_F_REQ:
		if (parse_num(v, &r->req) < 0)
			return *why = "bad REQ", -1;
		return 0;
	case SBX_F_ID:
		if (!sbx_valid_id(v.p, v.len))
			return *why = "bad ID", -1;
		r->id = v;
		return 0;
	case SBX_F_ARG:
		if (has_nul(v))
			return *why = "NUL in ARG", -1;
		r->nargs++;
		r->args_bytes += v.len;
		return 0;
	case SBX_F_ENV: {
		const uint8_t *eq = v.len ? memchr(v.p, '=', v.len) : NULL;
		if (has_nul(v) || eq == NULL || eq == v.p)
			return *why = "bad ENV", -1;
		if (++r->nenv > SBX_MAX_ENV)
			return *why = "too many ENV", -1;
		r->env_bytes += v.len;
		return 0;
	}
	case SBX_F_CWD:
		if (v.len == 0 || v.len > SBX_MAX_CWD || v.p[0] != '/' || has_nul(v))
			return *why = "bad CWD", -1;
		r->cwd = v;
		return 0;
	case SBX_F_TIMEOUT_MS:
		if (parse_num(v, &r->timeout_ms) < 0)
			return *why = "bad TIMEOUT_MS", -1;
		return 0;
	case SBX_F_OFFSET:
		if (parse_num(v, &r->offset) < 0)
			return *why = "bad OFFSET", -1;
		return 0;
	case SBX_F_DATA:
		r->data = v;
		return 0;
	case SBX_F_SIGNAL:
		if (parse_num(v, &r->signal) < 0 || r->signal < 1 || r->signal > SBX_MAX_SIGNAL)
			return *why = "bad SIGNAL", -1;
		return 0;
	case SBX_F_FLAGS:
		if (parse_num(v, &r->flags) < 0 || (r->flags & ~(uint64_t)SBX_FLAGS_ALL))
			return *why = "bad FLAGS", -1;
		return 0;
	case SBX_F_UID:
		if (parse_num(v, &r->uid) < 0 || r->uid > SBX_MAX_UGID)
			return *why = "bad UID", -1;
		return 0;
	case SBX_F_GID:
		if (parse_num(v, &r->gid) < 0 || r->gid > SBX_MAX_UGID)
			return *why = "bad GID", -1;
		return 0;
	default:
		return *why = "field not allowed", -1;
	}
}

int sbx_parse_request(const uint8_t *body, uint32_t len, struct sbx_req *r, const char **why)
{
	memset(r, 0, sizeof *r);
	if (len < SBX_FRAME_MIN || len > SBX_FRAME_MAX)
		return *why = "bad frame length", -1;
	r->type = body[0];
	const struct req_rule *rule = rule_for(r->type);
	if (!rule)
		return *why = "unknown frame type", -1;
	r->payload = body + 1;
	r->payload_len = len - 1;

	uint32_t pos = 0;
	while (pos < r->payload_len) {
		if (r->payload_len - pos < SBX_FIELD_HDR)
			return *why = "truncated field header", -1;
		uint8_t tag = r->payload[pos];
		uint32_t flen = be32(r->payload + pos + 1);
		pos += SBX_FIELD_HDR;
		if (flen > r->payload_len - pos)
			return *why = "truncated field", -1;
		if (tag == 0 || tag > SBX_F_LAST || !(rule->allowed & BIT(tag)))
			return *why = "unknown or unexpected tag", -1;
		bool repeats = tag == SBX_F_ARG || tag == SBX_F_ENV;
		if (!repeats && (r->seen & BIT(tag)))
			return *why = "duplicate field", -1;
		r->seen |= BIT(tag);
		struct sbx_str v = {r->payload + pos, flen};
		if (take_field(r, tag, v, why) < 0)
			return -1;
		pos += flen;
	}
	if ((r->seen & rule->required) != rule->required)
		return *why = "missing required field", -1;
	if (!(r->seen & BIT(SBX_F_UID)) != !(r->seen & BIT(SBX_F_GID)))
		return *why = "UID and GID go together", -1;
	return 0;
}

bool sbx_next_field(const struct sbx_req *r, uint32_t *pos, uint8_t tag, struct sbx_str *out)
{
	/* The payload was validated by sbx_parse_request(), so headers are in bounds. */
	while (*pos + SBX_FIELD_HDR <= r->payload_len) {
		uint8_t t = r->payload[*pos];
		uint32_t flen = be32(r->payload + *pos + 1);
		const uint8_t *p = r->payload + *pos + SBX_FIELD_HDR;
		*pos += SBX_FIELD_HDR + flen;
		if (t == tag) {
			out->p = p;
			out->len = flen;
			return true;
		}
	}
	return false;
}

/* ---- output ---- */

void sbx_buf_init(struct sbx_buf *b, size_t max)
{
	memset(b, 0, sizeof *b);
	b->max = max;
}

void sbx_buf_free(struct sbx_buf *b)
{
	free(b->p);
	sbx_buf_init(b, b->max);
}

size_t sbx_buf_pending(const struct sbx_buf *b)
{
	return b->len - b->off;
}

void sbx_buf_consume(struct sbx_buf *b, size_t n)
{
	b->off += n;
	if (b->off == b->len) {
		b->off = b->len = 0;
		/* Give back memory after a burst; replies are small. */
		if (b->cap > 65536) {
			free(b->p);
			b->p = NULL;
			b->cap = 0;
		}
	}
}

static bool reserve(struct sbx_buf *b, size_t n)
{
	if (b->overflow)
		return false;
	if (b->len - b->off + n > b->max) {
		b->overflow = true;
		return false;
	}
	if (b->off > 0 && b->len + n > b->cap) {
		/* Compact before growing. Only safe between frames. */
		if (b->frame_start >= b->off)
			b->frame_start -= b->off;
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len + n <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + n)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p) {
		b->overflow = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void sbx_frame_begin(struct sbx_buf *b, uint8_t type)
{
	if (!reserve(b, 5))
		return;
	b->frame_start = b->len;
	b->p[b->len + 4] = type;
	b->len += 5;
}

void sbx_frame_str(struct sbx_buf *b, uint8_t tag, const void *p, size_t len)
{
	if (len > SBX_FRAME_MAX || !reserve(b, SBX_FIELD_HDR + len)) {
		b->overflow = true;
		return;
	}
	b->p[b->len] = tag;
	put_be32(b->p + b->len + 1, (uint32_t)len);
	if (len)
		memcpy(b->p + b->len + SBX_FIELD_HDR, p, len);
	b->len += SBX_FIELD_HDR + len;
}

void sbx_frame_cstr(struct sbx_buf *b, uint8_t tag, const char *s)
{
	sbx_frame_str(b, tag, s, strlen(s));
}

void sbx_frame_num(struct sbx_buf *b, uint8_t tag, uint64_t v)
{
	char tmp[24];
	int i = (int)sizeof tmp;
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sbx_frame_str(b, tag, tmp + i, sizeof tmp - (size_t)i);
}

void sbx_frame_end(struct sbx_buf *b)
{
	if (b->overflow)
		return;
	size_t flen = b->len - b->frame_start - 4;
	if (flen > SBX_FRAME_MAX) {
		b->overflow = true;
		return;
	}
	put_be32(b->p + b->frame_start, (uint32_t)flen);
}
