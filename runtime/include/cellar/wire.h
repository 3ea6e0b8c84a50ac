/*
 * wire.h - the Jupyter wire protocol as bytes: splitting a multipart message
 * into its parts, checking and making its HMAC signature, and reading the few
 * JSON fields a relay needs.  Pure: frames in, results out; no sockets, no
 * clocks but the one that dates a composed header.
 *
 * A message on the wire is a list of frames:
 *
 *   ident... <IDS|MSG> signature header parent_header metadata content buffer...
 *
 * The codec never re-serializes a received message: parsing records where the
 * parts are, verification signs the four JSON frames exactly as received, and
 * JSON is decoded only from the frame a caller asks for.  A message that is
 * correctly signed but whose JSON cannot be read (bad JSON, invalid UTF-8, an
 * embedded NUL) is still a valid message to relay: the two verdicts are
 * reported separately.
 */
#ifndef CELLAR_WIRE_H
#define CELLAR_WIRE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cellar/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One frame, borrowed: the codec never frees or keeps `data`. */
typedef struct cellar_wire_frame {
    const void *data;
    size_t size;
} cellar_wire_frame;

/* A received message, as indexes into the caller's frame array (which must
 * outlive it).  `delim` is the index of "<IDS|MSG>"; frames [0, delim) are
 * routing identities; the signature, header, parent header, metadata and
 * content follow it; frames from `delim + 6` on are buffers. */
typedef struct cellar_wire_msg {
    const cellar_wire_frame *frames;
    size_t n_frames;
    size_t delim;
    size_t n_buffers;
} cellar_wire_msg;

/* Which part of a parsed message: offsets from the delimiter. */
enum {
    CELLAR_WIRE_SIGNATURE = 1,
    CELLAR_WIRE_HEADER = 2,
    CELLAR_WIRE_PARENT = 3,
    CELLAR_WIRE_METADATA = 4,
    CELLAR_WIRE_CONTENT = 5,
};

typedef enum cellar_wire_verdict {
    CELLAR_WIRE_OK = 0,
    CELLAR_WIRE_MALFORMED, /* no delimiter, or fewer than five frames after it */
    CELLAR_WIRE_UNSIGNED,  /* a key is set and the signature frame is empty */
    CELLAR_WIRE_BADSIG,    /* the signature does not match (or has the wrong length) */
    CELLAR_WIRE_REPLAYED,  /* a correct signature seen before: a replay */
    CELLAR_WIRE_UNREADABLE /* signed ok (or unsigned session), JSON unreadable */
} cellar_wire_verdict;

/* A short stable name for a verdict ("ok", "malformed", "unsigned", ...):
 * a static string. */
const char *cellar_wire_verdict_name(cellar_wire_verdict v);

/*
 * Finds the delimiter in `frames[0..n)` and fills `*out`.  Returns
 * CELLAR_WIRE_OK or CELLAR_WIRE_MALFORMED.  The first frame equal to
 * "<IDS|MSG>" is the delimiter, as in jupyter_client.  Never reads a frame's
 * bytes beyond its size; `frames` may be NULL when n is 0.
 */
cellar_wire_verdict cellar_wire_parse(const cellar_wire_frame *frames, size_t n,
                                      cellar_wire_msg *out);

/* The frame at `part` (CELLAR_WIRE_SIGNATURE..CELLAR_WIRE_CONTENT) of a parsed
 * message; borrowed from the caller's array. */
const cellar_wire_frame *cellar_wire_part(const cellar_wire_msg *msg, int part);

/* The signer and checker for one session key.  Opaque; one per connection
 * file; not thread-safe (its digest history changes on every verify). */
typedef struct cellar_wire_auth cellar_wire_auth;

/* Digests remembered for replay detection: jupyter_client's default. */
#define CELLAR_WIRE_HISTORY_DEFAULT 65536

/*
 * Makes a signer for `scheme` (only "hmac-sha256" is known; NULL or "" mean
 * it) and the `key_len` bytes of `key` (copied).  An empty key means the
 * session is unsigned: signatures are empty and never checked, as in
 * jupyter_client.  `history` is how many recent signatures are remembered to
 * reject replays (0 disables replay detection); the oldest is forgotten
 * first.  Returns NULL with CELLAR_EINVAL for an unknown scheme, CELLAR_ENOMEM
 * or CELLAR_EIO (the message carries OpenSSL's reason) in `err`.
 * Free with cellar_wire_auth_free.
 */
cellar_wire_auth *cellar_wire_auth_new(const char *scheme, const void *key,
                                       size_t key_len, size_t history, cellar_error *err);
void cellar_wire_auth_free(cellar_wire_auth *auth);

/* True when the session has a key (messages are signed and checked). */
bool cellar_wire_auth_signed(const cellar_wire_auth *auth);

/* Length of a hex HMAC-SHA256 signature, without the NUL. */
#define CELLAR_WIRE_SIGNATURE_HEX 64

/*
 * Writes into `hex` (NUL-terminated) the lowercase hex signature of the four
 * frames header, parent header, metadata and content, in that order.  With no
 * key, writes "".  Returns false only when OpenSSL fails (hex is then "").
 */
bool cellar_wire_sign(const cellar_wire_auth *auth, const cellar_wire_frame parts[4],
                      char hex[CELLAR_WIRE_SIGNATURE_HEX + 1]);

/*
 * Checks a parsed message's signature as jupyter_client's Session.deserialize
 * does: CELLAR_WIRE_UNSIGNED for an empty signature, CELLAR_WIRE_REPLAYED for
 * one already in the digest history, CELLAR_WIRE_BADSIG for a mismatch (the
 * comparison takes constant time and checks the length first); else
 * CELLAR_WIRE_OK, and the signature joins the history.  An unsigned session
 * accepts every message.  Only the signature is checked: JSON is not read.
 */
cellar_wire_verdict cellar_wire_verify(cellar_wire_auth *auth,
                                       const cellar_wire_msg *msg);

/* What a relay reads from a header: copied, NUL-terminated; a field that is
 * missing, not a string or longer than its buffer is "". */
typedef struct cellar_wire_info {
    char msg_type[64];
    char msg_id[128];
    char session[128];
    char subshell_id[128];
    char parent_msg_id[128]; /* from parent_header */
} cellar_wire_info;

/*
 * Reads the header and parent header of a parsed message into `*info`.
 * Returns CELLAR_WIRE_OK, or CELLAR_WIRE_UNREADABLE when the header is not a
 * JSON object (bad JSON, invalid UTF-8, an embedded NUL) or has no msg_type;
 * `*info` is then cleared.  An unreadable parent header only leaves
 * parent_msg_id empty.
 */
cellar_wire_verdict cellar_wire_read_info(const cellar_wire_msg *msg,
                                          cellar_wire_info *info);

/*
 * Decodes one part (CELLAR_WIRE_HEADER..CELLAR_WIRE_CONTENT) as a JSON object.
 * Returns a new reference the caller must json_decref, or NULL when it is not
 * an object or cannot be decoded.
 */
json_t *cellar_wire_read_json(const cellar_wire_msg *msg, int part);

/*
 * A new header object (new reference; NULL when out of memory) for a message
 * the relay makes itself: a random msg_id, `msg_type`, `session`, username
 * "cellar", the current UTC date with microseconds, protocol version 5.4.
 */
json_t *cellar_wire_header_new(const char *msg_type, const char *session);

/* A composed message: the serialized JSON frames and their signature, owned
 * by the struct until cellar_wire_composed_free. */
typedef struct cellar_wire_composed {
    char *json[4]; /* header, parent header, metadata, content */
    size_t json_len[4];
    char signature[CELLAR_WIRE_SIGNATURE_HEX + 1];
} cellar_wire_composed;

/*
 * Serializes header, parent (NULL: {}), metadata (NULL: {}) and content
 * (NULL: {}) compactly and signs them into `*out` (borrowed references; not
 * stolen).  The caller sends its identities, "<IDS|MSG>", out->signature and
 * the four json frames.  Returns CELLAR_OK, CELLAR_ENOMEM, or CELLAR_EIO when
 * signing fails; on failure `*out` holds nothing to free.
 */
cellar_status cellar_wire_compose(const cellar_wire_auth *auth, json_t *header,
                                  json_t *parent, json_t *metadata, json_t *content,
                                  cellar_wire_composed *out);
void cellar_wire_composed_free(cellar_wire_composed *c);

/* The delimiter frame's bytes and length. */
#define CELLAR_WIRE_DELIMITER "<IDS|MSG>"
#define CELLAR_WIRE_DELIMITER_LEN 9

#ifdef __cplusplus
}
#endif

#endif
