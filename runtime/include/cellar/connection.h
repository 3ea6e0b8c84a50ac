/*
 * connection.h - Jupyter connection files: the JSON that tells a kernel where
 * to bind its five sockets and which key signs its messages.  The proxy reads
 * the one the frontend wrote and writes a private one for its child.
 */
#ifndef CELLAR_CONNECTION_H
#define CELLAR_CONNECTION_H

#include <stddef.h>

#include "cellar/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The five channels, in the order of cellar_connection.ports. */
typedef enum cellar_channel {
    CELLAR_CHANNEL_SHELL = 0,
    CELLAR_CHANNEL_IOPUB,
    CELLAR_CHANNEL_STDIN,
    CELLAR_CHANNEL_CONTROL,
    CELLAR_CHANNEL_HB,
    CELLAR_CHANNEL_COUNT
} cellar_channel;

/* The connection-file key of a channel's port ("shell_port", ...): static. */
const char *cellar_channel_port_key(cellar_channel ch);

#define CELLAR_CONNECTION_TEXT_MAX 256
#define CELLAR_CONNECTION_KEY_MAX 1024

typedef struct cellar_connection {
    char transport[16];                  /* "tcp" or "ipc" */
    char ip[CELLAR_CONNECTION_TEXT_MAX]; /* an address, or an ipc path prefix */
    int ports[CELLAR_CHANNEL_COUNT];     /* ipc: the suffix after "-" */
    char scheme[32];                     /* "hmac-sha256" */
    unsigned char key[CELLAR_CONNECTION_KEY_MAX];
    size_t key_len; /* 0: unsigned session */
} cellar_connection;

/*
 * Reads the connection file at `path` into `*out`.  Returns CELLAR_OK;
 * CELLAR_EIO when it cannot be read; CELLAR_ECORRUPT when it is not JSON;
 * CELLAR_EINVAL for a missing or bad field (the message names it), an
 * unknown transport, or a port outside 1..65535.  "signature_scheme" defaults
 * to "hmac-sha256", "key" to "" and "ip" to 127.0.0.1.
 */
cellar_status cellar_connection_read(const char *path, cellar_connection *out,
                                     cellar_error *err);

/*
 * Writes `conn` as a connection file at `path`, created with mode 0600 (an
 * existing file is replaced), plus "kernel_name": `kernel_name`.  Returns
 * CELLAR_OK, CELLAR_EIO or CELLAR_ENOMEM.
 */
cellar_status cellar_connection_write(const char *path, const cellar_connection *conn,
                                      const char *kernel_name, cellar_error *err);

/*
 * Writes the ZeroMQ endpoint of channel `ch` into `buf` ("tcp://IP:PORT" or
 * "ipc://PATH-PORT").  Returns CELLAR_OK, or CELLAR_EINVAL when it does not
 * fit in `cap` bytes.
 */
cellar_status cellar_connection_endpoint(const cellar_connection *conn, cellar_channel ch,
                                         char *buf, size_t cap, cellar_error *err);

#ifdef __cplusplus
}
#endif

#endif
