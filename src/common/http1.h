/* SPDX-License-Identifier: MIT
 * Our own strict, incremental HTTP/1.1 parser for request and response heads,
 * and a chunked-body decoder (RFC 9112; the rules are in docs/http1.md).
 *
 * Head parsing is picohttpparser-shaped: the caller passes the bytes it has
 * so far; the result is >0 (length of the head, which is complete and
 * valid), -2 (incomplete: call again with more bytes) or -1 (invalid: the
 * message says which status to answer with). Nothing is allocated: names,
 * values, method and target are slices into the caller's buffer, valid until
 * it moves or consumes those bytes. The parser remembers how far it scanned,
 * so feeding a head one byte at a time costs O(n), not O(n^2). The verdict
 * does not depend on how the bytes were split; a bad request or status line
 * fails as soon as its CRLF has arrived, without waiting for the head's end.
 *
 * Strictness is deliberate: a proxy that is more lenient than the server
 * behind it is how request smuggling works. Everything ambiguous (CL with TE,
 * duplicate CL, obs-fold, bare CR or LF, whitespace before a colon, TE in
 * HTTP/1.0, unknown codings) is refused. */
#ifndef LLAMALB_HTTP1_H
#define LLAMALB_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slice.h"

#define HTTP1_MAX_HEADERS 128 /* hard cap; the configured limit is lower */

/* Connection options (RFC 9110 §7.6.1) one message may list across all its
 * Connection headers, repeats included (empty list elements and elements
 * that are not a token do not count). Real clients and servers send one to
 * three ("keep-alive", "close", "Upgrade", "TE"); a message listing more is
 * refused (400 for requests, 502 for responses). This bounds the work of
 * the parse and of http1_is_hop_by_hop() whatever the sender writes. */
#define HTTP1_MAX_CONN_OPTS 32

struct http1_limits {
    size_t max_line;      /* request/status line bytes; over it: 414 (requests) */
    size_t max_head;      /* whole head bytes; over it: 431 */
    unsigned max_headers; /* header lines; over it: 431 */
    uint64_t max_body;    /* request Content-Length over it: 413; 0 = unlimited */
};

/* The default limits (docs/http1.md): 8 KiB line, 32 KiB head, 100 headers, 32 MiB body. */
extern const struct http1_limits http1_default_limits;

enum http1_framing {
    HTTP1_BODY_NONE = 0, /* no body */
    HTTP1_BODY_LENGTH,   /* exactly content_length bytes */
    HTTP1_BODY_CHUNKED,  /* chunked transfer coding */
    HTTP1_BODY_CLOSE,    /* responses only: until the connection closes */
};

struct http1_header {
    struct slice name;
    struct slice value; /* without leading and trailing whitespace */
};

/* One parsed head. Zero it (or call http1_msg_reset) before the first call
 * for a new message; keep it between calls for the same message. The struct
 * is small enough to embed in a connection: the header slices live in an
 * array the caller provides, or by default in one scratch array per thread,
 * which the next parse on that thread overwrites (take what you need from
 * the headers right after a parse returns >0). */
struct http1_msg {
    /* request */
    struct slice method;
    struct slice target;
    /* response */
    int status;
    struct slice reason;
    /* both */
    int minor;                /* HTTP/1.<minor>: 0 or 1 */
    unsigned nheaders;
    struct http1_header *headers; /* HTTP1_MAX_HEADERS entries; NULL = this thread's scratch array */
    enum http1_framing framing;
    uint64_t content_length;  /* valid when framing == HTTP1_BODY_LENGTH */
    bool keep_alive;          /* per version and Connection; false for CLOSE / CL+TE responses */
    bool expect_continue;     /* request: Expect: 100-continue */
    bool cl_and_te;           /* response carried both CL and TE (TE won): do not reuse */
    /* The options of all Connection headers, collected once per message:
     * case-insensitively distinct (the first spelling kept), in first-seen
     * order, OWS trimmed, empty elements and non-tokens skipped. Slices into
     * the buffer, with the same lifetime as the header slices. */
    unsigned nconn_opts;
    struct slice conn_opts[HTTP1_MAX_CONN_OPTS];
    /* on error */
    int error;                /* status to answer: 400 413 414 417 431 501 505 (requests), 502 (responses) */
    const char *error_reason; /* static text for logs and tests */
    /* incremental scan state (private) */
    size_t _scanned;          /* bytes already checked for the end of the head */
    size_t _line_start;       /* start of the line being scanned */
    unsigned _lines;          /* complete lines seen */
    uint32_t _conn_hash[HTTP1_MAX_CONN_OPTS]; /* case-folded hash of each conn_opts[] entry */
    uint64_t _conn_bloom;     /* one bit per option hash: most names miss without a probe */
};

void http1_msg_reset(struct http1_msg *m);

/* Parses a request head from <buf>/<len>. See the file comment for returns. */
int http1_parse_request(const char *buf, size_t len, struct http1_msg *m,
                        const struct http1_limits *lim);

/* Parses a response head. <req_method_head> says the request was HEAD, so the
 * response has no body whatever its headers say. 1xx responses parse as
 * complete heads with framing NONE; the caller skips them. Errors are 502. */
int http1_parse_response(const char *buf, size_t len, struct http1_msg *m,
                         const struct http1_limits *lim, bool req_method_head);

/* Case-insensitive lookup of the first header named <name>; NULL if absent. */
const struct http1_header *http1_find(const struct http1_msg *m, const char *name);

/* True if the comma-separated token list <list> contains <token> (case-insensitive). */
bool http1_list_has(struct slice list, const char *token);

/* True for the hop-by-hop headers a proxy must not forward (Connection,
 * Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade), and for any
 * header named in the message's Connection headers (case-insensitive;
 * <name> is a field name, so a list element that is not a token never
 * matches). It
 * reads the options the parse collected in conn_opts[], never the header
 * values, so one call costs O(name length + HTTP1_MAX_CONN_OPTS) however
 * long the Connection lists are: a proxy calling it for every header of a
 * head does linear work. <m> must come from a successful parse. */
bool http1_is_hop_by_hop(const struct http1_msg *m, struct slice name);

/* Test hook: probes of a message's Connection option set made on this
 * thread, by the parse and by http1_is_hop_by_hop() (one per stored option
 * looked at). Unit tests read it to prove the work is bounded without
 * timing anything; nothing else does. */
extern _Thread_local unsigned long http1_conn_cmps;

/* ---------------------------------------------------------------- chunked */

enum http1_chunk_rc {
    HTTP1_CHUNK_MORE = 0, /* all input consumed; need more */
    HTTP1_CHUNK_DATA,     /* <data> holds body bytes (inside the input) */
    HTTP1_CHUNK_DONE,     /* the last chunk and trailers ended; stop here */
    HTTP1_CHUNK_ERROR,    /* invalid framing: 400 for requests, 502 for responses */
};

/* Chunked decoder state. Zero it before the first call. */
struct http1_chunked {
    uint64_t _remaining;  /* data bytes left in the current chunk */
    unsigned _state;
    unsigned _digits;     /* hex digits in the current size */
    size_t _linelen;      /* bytes of the current ext or trailer line */
    size_t _trailer_bytes;
    const char *error_reason;
};

/* Decodes from <buf>/<len>. Sets <*consumed> to the bytes used (all of them
 * for MORE, through the data for DATA, through the final CRLF for DONE).
 * The caller loops: on DATA it takes <*data> and calls again with the rest. */
enum http1_chunk_rc http1_chunked_decode(struct http1_chunked *d, const char *buf, size_t len,
                                         size_t *consumed, struct slice *data);

/* The reason phrase for <status>, "Unknown" for a code it does not list. */
const char *http1_reason(int status);

#endif
