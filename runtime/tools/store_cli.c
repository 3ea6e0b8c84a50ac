/*
 * store_cli.c - what the store subcommands of `cellar` share: arguments,
 * opening a store to read it, printing JSON, and the JSON and column
 * helpers that show and log both use.
 *
 * Reading runs in a child.  cellar_store_open checks cheaply what can be
 * checked (meta pages, file size), but the walks that ls, show, log and
 * stats make trust LMDB's leaf and branch pages, and LMDB faults on a damaged
 * one.  So cli_open_reader forks: the child opens its own environment (an
 * LMDB environment must not cross a fork), runs the whole command with its
 * stdout going into a pipe, and exits with the command's status; the parent
 * gathers that output and prints it only if the child exited normally.  A
 * child killed by a signal becomes one line on stderr naming the store and
 * what to run, and exit status 1, never a crash and never half a listing.
 * The child's stderr is the parent's, so its messages arrive as they are.
 *
 * A damaged B-tree can also make LMDB loop instead of fault, so the parent
 * waits at most CELLAR_CLI_TIMEOUT seconds (default 30; 0 waits forever) for
 * the child to finish: then it kills the child, prints none of its output and
 * reports the store as damaged with exit status 2.  CELLAR_CLI_TEST_HANG=1
 * makes the child hang once the store is open, so tests can check that
 * path without a store crafted to loop (LMDB's cursor stack depth and the
 * open's page checks stop the loops that can be crafted deterministically).
 */
#include "store_cli.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_S 30

/* A positive count for --limit, or 0 when `s` is not one. */
static unsigned long parse_count(const char *s)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return 0;
    unsigned long n = strtoul(s, &end, 10);
    return *end ? 0 : n;
}

int cli_parse(int argc, char **argv, const char *usage, int max_pos, unsigned options,
              int usage_status, cli *c)
{
    const char *env = getenv("CELLAR_DIR");
    bool takes_limit = options & CLI_LIMIT;
    *c = (cli){.name = argv[0], .dir = env && *env ? env : "./.cellar"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            c->json = true;
        } else if ((options & CLI_REPAIR) && !strcmp(a, "--repair")) {
            c->repair = true;
        } else if (!strcmp(a, "--dir") && i + 1 < argc) {
            c->dir = argv[++i];
        } else if (!strncmp(a, "--dir=", 6) && a[6]) {
            c->dir = a + 6;
        } else if (takes_limit && !strcmp(a, "--limit") && i + 1 < argc &&
                   (c->limit = parse_count(argv[i + 1]))) {
            i++;
        } else if (takes_limit && !strncmp(a, "--limit=", 8) &&
                   (c->limit = parse_count(a + 8))) {
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "cellar %s: unknown or incomplete option '%s'\n\n%s", c->name,
                    a, usage);
            return usage_status;
        } else if (c->npos < max_pos) {
            c->pos[c->npos++] = a;
        } else {
            fprintf(stderr, "cellar %s: unexpected argument '%s'\n\n%s", c->name, a,
                    usage);
            return usage_status;
        }
    }
    return CLI_GO_ON;
}

int cli_fail(const cli *c, const char *message)
{
    fprintf(stderr, "cellar %s: %s\n", c->name, message);
    return 1;
}

/* In the child: opens the store and begins the reader. */
static int open_here(const cli *c, cellar_store **s, cellar_reader **r)
{
    cellar_store_options o = {.read_only = true};
    cellar_error err;
    if (cellar_store_open(c->dir, &o, s, &err))
        return cli_fail(c, err.message);
    if (cellar_reader_begin(*s, r, &err)) {
        cellar_store_close(*s);
        return cli_fail(c, err.message);
    }
    const char *hang = getenv("CELLAR_CLI_TEST_HANG");
    if (hang && !strcmp(hang, "1"))
        for (;;)
            pause(); /* a reader that loops, for the tests */
    return CLI_GO_ON;
}

/* CELLAR_CLI_TIMEOUT in milliseconds; -1 for no limit.  A value that is
 * not a whole number of seconds is ignored (the default applies). */
static int timeout_ms(void)
{
    const char *v = getenv("CELLAR_CLI_TIMEOUT");
    char *end;
    long t = DEFAULT_TIMEOUT_S;
    if (v && *v >= '0' && *v <= '9') {
        long n = strtol(v, &end, 10);
        if (!*end && n >= 0 && n <= 86400)
            t = n;
    }
    return t == 0 ? -1 : (int)(t * 1000);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum gathered { GATHERED, OUT_OF_MEMORY, TIMED_OUT };

/* All of `fd` into a malloc'd buffer, until its end or `limit_ms` (-1: no
 * limit) have passed.  Out of memory, the rest is still drained so that the
 * child never blocks. */
static enum gathered gather(int fd, int limit_ms, char **out, size_t *len)
{
    size_t cap = 0, n = 0;
    char *buf = NULL, scratch[65536];
    bool ok = true;
    int64_t deadline = limit_ms < 0 ? 0 : now_ms() + limit_ms;
    for (;;) {
        int wait = -1;
        if (limit_ms >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0) {
                *out = buf;
                *len = n;
                return TIMED_OUT;
            }
            wait = (int)left;
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        int ready = poll(&pfd, 1, wait);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready == 0)
            continue; /* the deadline check above ends it */
        ssize_t got = ready < 0 ? -1 : read(fd, scratch, sizeof scratch);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        if (ok && n + (size_t)got > cap) {
            size_t want = cap ? cap : sizeof scratch;
            while (want < n + (size_t)got)
                want *= 2;
            char *grown = realloc(buf, want);
            if (!grown)
                ok = false;
            else {
                buf = grown;
                cap = want;
            }
        }
        if (ok) {
            memcpy(buf + n, scratch, (size_t)got);
            n += (size_t)got;
        }
    }
    *out = buf;
    *len = n;
    return ok ? GATHERED : OUT_OF_MEMORY;
}

/* The store as the message about a crash names it. */
static void store_name(const cli *c, char *out, size_t len)
{
    char *abs = realpath(c->dir, NULL);
    snprintf(out, len, "%s", abs ? abs : c->dir);
    free(abs);
}

int cli_open_reader(const cli *c, cellar_store **s, cellar_reader **r)
{
    *s = NULL;
    *r = NULL;
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "cellar %s: cannot make a pipe: %s\n", c->name, strerror(errno));
        return 1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "cellar %s: cannot start the reader process: %s\n", c->name,
                strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return 1;
    }
    if (pid == 0) {
        close(fds[0]);
        if (dup2(fds[1], STDOUT_FILENO) < 0)
            _exit(1);
        close(fds[1]);
        return open_here(c, s, r); /* the command goes on here, then exits */
    }
    close(fds[1]);
    char *out;
    size_t len;
    int limit = timeout_ms();
    enum gathered got = gather(fds[0], limit, &out, &len);
    if (got == TIMED_OUT)
        kill(pid, SIGKILL);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    int rc;
    if (got == TIMED_OUT) {
        char where[PATH_MAX + 1];
        store_name(c, where, sizeof where);
        fprintf(stderr,
                "cellar %s: the store %s may be damaged: reading it did not finish "
                "within %d s (CELLAR_CLI_TIMEOUT; LMDB can loop on a damaged B-tree), "
                "so the reader was stopped; 'cellar verify --dir %s' says what is "
                "damaged, and 'cellar verify --repair' sets the store aside\n",
                c->name, where, limit / 1000, where);
        rc = 2;
    } else if (WIFSIGNALED(status)) {
        char where[PATH_MAX + 1];
        store_name(c, where, sizeof where);
        fprintf(stderr,
                "cellar %s: the store %s is damaged: reading it crashed LMDB (signal "
                "%d, %s); 'cellar verify --dir %s' says what is damaged, and "
                "'cellar verify --repair' sets the store aside\n",
                c->name, where, WTERMSIG(status), strsignal(WTERMSIG(status)), where);
        rc = 1;
    } else if (got == OUT_OF_MEMORY) {
        rc = cli_fail(c, "out of memory gathering the output");
    } else {
        rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        if (len && fwrite(out, 1, len, stdout) != len)
            rc = rc ? rc : 1; /* cellar.c says why, when it flushes stdout */
    }
    free(out);
    return rc;
}

void cli_close_reader(cellar_store *s, cellar_reader *r)
{
    cellar_reader_end(r);
    cellar_store_close(s);
}

int cli_print_json(const cli *c, json_t *doc)
{
    if (!doc)
        return cli_fail(c, "out of memory building JSON");
    int rc = json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    putchar('\n');
    return rc ? cli_fail(c, "cannot write JSON") : 0;
}

/* ---- pieces the store commands share ---- */

/* The printf width that right-aligns `s` in `columns` terminal columns:
 * "µs" is two bytes and one column. */
int cli_width_of(const char *s, int columns)
{
    for (; *s; s++)
        columns += ((unsigned char)*s & 0xC0) == 0x80;
    return columns;
}

/* {"count", "first_run", "first"} for records that cannot be read, or NULL
 * (the key left out) when there are none. */
json_t *cli_unreadable_json(size_t count, uint64_t first_run, const char *why)
{
    if (!count)
        return NULL;
    return json_pack("{s:I, s:I, s:s}", "count", (json_int_t)count, "first_run",
                     (json_int_t)first_run, "first", why);
}

json_t *cli_hex_json(bool have, const cellar_hash *h)
{
    char hex[CELLAR_HASH_HEX_LEN + 1];
    if (!have)
        return json_null();
    cellar_hash_to_hex(h, hex);
    return json_string(hex);
}

/* One node's lineage row as the JSON object `show --json` prints. */
json_t *cli_lineage_row_json(const cellar_lineage_row *row)
{
    return json_pack("{s:s, s:s, s:o, s:o, s:I, s:o, s:s?}", "node", row->node, "status",
                     cellar_outcome_name(row->outcome), "key",
                     cli_hex_json(row->has_versions, &row->key), "data_version",
                     cli_hex_json(row->has_versions, &row->data_version), "time_ns",
                     (json_int_t)row->time_ns, "size",
                     row->has_size ? json_integer((json_int_t)row->size) : json_null(),
                     "error", row->error);
}
