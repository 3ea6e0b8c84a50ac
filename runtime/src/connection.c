/*
 * connection.c - reading and writing Jupyter connection files (see
 * connection.h) with jansson.  Ports are validated so that a bad file fails
 * here with the field's name rather than later as an obscure bind error; the
 * child's file is written 0600 from the start (O_CREAT with the mode, never a
 * chmod afterwards) because it holds the session key.
 */
#include "cellar/connection.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const port_keys[CELLAR_CHANNEL_COUNT] = {
    "shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"};

const char *cellar_channel_port_key(cellar_channel ch)
{
    return (unsigned)ch < CELLAR_CHANNEL_COUNT ? port_keys[ch] : "?";
}

/* Copies string field `name` (or `fallback` when absent) into dst[cap]. */
static cellar_status text_field(json_t *root, const char *name, const char *fallback,
                                char *dst, size_t cap, cellar_error *err)
{
    json_t *v = json_object_get(root, name);
    const char *s = fallback;
    size_t n = fallback ? strlen(fallback) : 0;
    if (v) {
        if (!json_is_string(v))
            return cellar_error_set(err, CELLAR_EINVAL,
                                    "connection file: '%s' is not a string", name);
        s = json_string_value(v);
        n = json_string_length(v);
    }
    if (!s)
        return cellar_error_set(err, CELLAR_EINVAL, "connection file: '%s' is missing",
                                name);
    if (n >= cap || memchr(s, '\0', n))
        return cellar_error_set(err, CELLAR_EINVAL,
                                "connection file: '%s' is too long or holds a NUL", name);
    memcpy(dst, s, n);
    dst[n] = '\0';
    return CELLAR_OK;
}

cellar_status cellar_connection_read(const char *path, cellar_connection *out,
                                     cellar_error *err)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        bool unreadable = json_error_code(&je) == json_error_cannot_open_file;
        return cellar_error_set(err, unreadable ? CELLAR_EIO : CELLAR_ECORRUPT,
                                "connection file %s: %s", path, je.text);
    }
    cellar_status st = CELLAR_EINVAL;
    if (!json_is_object(root)) {
        cellar_error_set(err, st, "connection file %s is not a JSON object", path);
        goto done;
    }
    char key[CELLAR_CONNECTION_KEY_MAX];
    if ((st = text_field(root, "transport", "tcp", out->transport, sizeof out->transport,
                         err)) ||
        (st = text_field(root, "ip", "127.0.0.1", out->ip, sizeof out->ip, err)) ||
        (st = text_field(root, "signature_scheme", "hmac-sha256", out->scheme,
                         sizeof out->scheme, err)) ||
        (st = text_field(root, "key", "", key, sizeof key, err)))
        goto done;
    st = CELLAR_EINVAL;
    if (strcmp(out->transport, "tcp") != 0 && strcmp(out->transport, "ipc") != 0) {
        cellar_error_set(err, st, "connection file: transport '%s' is not tcp or ipc",
                         out->transport);
        goto done;
    }
    for (int ch = 0; ch < CELLAR_CHANNEL_COUNT; ch++) {
        json_t *p = json_object_get(root, port_keys[ch]);
        if (!json_is_integer(p) || json_integer_value(p) < 1 ||
            json_integer_value(p) > 65535) {
            cellar_error_set(err, st, "connection file: '%s' is not a port in 1..65535",
                             port_keys[ch]);
            goto done;
        }
        out->ports[ch] = (int)json_integer_value(p);
    }
    out->key_len = strlen(key);
    memcpy(out->key, key, out->key_len);
    st = CELLAR_OK;
done:
    json_decref(root);
    return st;
}

cellar_status cellar_connection_write(const char *path, const cellar_connection *conn,
                                      const char *kernel_name, cellar_error *err)
{
    json_t *root = json_pack("{s:s, s:s, s:s, s:s%, s:s}", "transport", conn->transport,
                             "ip", conn->ip, "signature_scheme", conn->scheme, "key",
                             (const char *)conn->key, conn->key_len, "kernel_name",
                             kernel_name ? kernel_name : "");
    for (int ch = 0; root && ch < CELLAR_CHANNEL_COUNT; ch++)
        if (json_object_set_new(root, port_keys[ch], json_integer(conn->ports[ch]))) {
            json_decref(root);
            root = NULL;
        }
    char *text = root ? json_dumps(root, JSON_INDENT(1)) : NULL;
    json_decref(root);
    if (!text)
        return cellar_error_set(err, CELLAR_ENOMEM, "out of memory for %s", path);
    cellar_status st = CELLAR_OK;
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    size_t len = strlen(text), off = 0;
    while (fd >= 0 && off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    if (fd < 0 || off < len || close(fd) != 0)
        st = cellar_error_set(err, CELLAR_EIO, "cannot write %s: %s", path,
                              strerror(errno));
    free(text);
    return st;
}

cellar_status cellar_connection_endpoint(const cellar_connection *conn, cellar_channel ch,
                                         char *buf, size_t cap, cellar_error *err)
{
    int n = !strcmp(conn->transport, "ipc")
                ? snprintf(buf, cap, "ipc://%s-%d", conn->ip, conn->ports[ch])
                : snprintf(buf, cap, "tcp://%s:%d", conn->ip, conn->ports[ch]);
    if (n < 0 || (size_t)n >= cap)
        return cellar_error_set(err, CELLAR_EINVAL, "endpoint for %s is too long",
                                port_keys[ch]);
    return CELLAR_OK;
}
