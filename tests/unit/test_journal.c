/*
 * test_journal.c - the session journal: its record codec (round trip, an
 * unknown format, truncated and malformed records, bytes that are not
 * UTF-8), its database (appends read back in time order, per session, the
 * last session before this one, a read-only store refusing appends), its cap
 * (pruning by cells and by bytes, keeping the definition cells recovery and
 * restore need, the limits the environment gives), and the
 * rule for cells that only define (definitions.h), which decides what crash
 * recovery and %cellar restore run again.
 */
#include "store_testlib.h"

#include "cellar/definitions.h"
#include "cellar/journal.h"

#include <lmdb.h>

static cellar_journal_entry sample(const char *session, const char *code, uint64_t start)
{
    return (cellar_journal_entry){.session = session,
                                  .cell_id = "cell-1",
                                  .code = code,
                                  .code_len = strlen(code),
                                  .code_hash = cellar_hash_bytes(code, strlen(code)),
                                  .execution_count = 3,
                                  .start_ns = start,
                                  .duration_ns = 12345,
                                  .outcome = CELLAR_CELL_ERROR,
                                  .ename = "ValueError",
                                  .silent = false};
}

static void test_round_trip(void **state)
{
    (void)state;
    cellar_journal_entry e =
        sample("s1", "def f():\n    return 'é'\n", 1700000000123456789u);
    char *text;
    size_t len;
    assert_int_equal(cellar_journal_encode(&e, &text, &len, NULL), CELLAR_OK);
    assert_int_equal(len, strlen(text));
    cellar_journal_entry *d;
    assert_int_equal(cellar_journal_decode(text, len, &d, NULL), CELLAR_OK);
    assert_string_equal(d->session, "s1");
    assert_string_equal(d->cell_id, "cell-1");
    assert_int_equal(d->code_len, e.code_len);
    assert_memory_equal(d->code, e.code, e.code_len);
    assert_true(cellar_hash_equal(&d->code_hash, &e.code_hash));
    assert_int_equal(d->execution_count, 3);
    assert_true(d->start_ns == e.start_ns);
    assert_int_equal(d->duration_ns, 12345);
    assert_int_equal(d->outcome, CELLAR_CELL_ERROR);
    assert_string_equal(d->ename, "ValueError");
    assert_false(d->silent);
    free(d);
    free(text);
}

static void test_unknown_format_truncated_and_malformed(void **state)
{
    (void)state;
    cellar_journal_entry e = sample("s1", "x = 1", 5);
    char *text;
    size_t len;
    assert_int_equal(cellar_journal_encode(&e, &text, &len, NULL), CELLAR_OK);
    cellar_journal_entry *d = (void *)1;
    cellar_error err;
    /* Every truncation is refused, never read past. */
    for (size_t n = 0; n < len; n++) {
        assert_int_equal(cellar_journal_decode(text, n, &d, &err), CELLAR_ECORRUPT);
        assert_null(d);
    }
    char *newer = strdup(text);
    memcpy(strstr(newer, "\"format\":1"), "\"format\":2", 10);
    assert_int_equal(cellar_journal_decode(newer, len, &d, &err), CELLAR_EVERSION);
    assert_non_null(strstr(err.message, "format 2"));
    const char *bad[] = {
        "[]", "{\"format\":1}", "{\"format\":\"1\"}",
        "{\"format\":1,\"session\":\"s\",\"cell_id\":\"\",\"code\":\"\","
        "\"code_hash\":\"zz\",\"execution_count\":1,\"start_ns\":1,"
        "\"duration_ns\":1,\"outcome\":\"ok\",\"ename\":\"\",\"silent\":false}",
        "{\"format\":1,\"session\":\"s\",\"cell_id\":\"\",\"code\":\"\","
        "\"code_hash\":\"00000000000000000000000000000000\",\"execution_count\":1,"
        "\"start_ns\":1,\"duration_ns\":1,\"outcome\":\"fine\",\"ename\":\"\","
        "\"silent\":false}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(cellar_journal_decode(bad[i], strlen(bad[i]), &d, &err),
                         CELLAR_ECORRUPT);
    free(newer);
    free(text);
}

static void test_code_that_is_not_utf8_is_kept_lossily(void **state)
{
    (void)state;
    const char code[] = "s = '\xff\xfe'\n";
    cellar_journal_entry e = sample("s1", code, 5);
    char *text;
    assert_int_equal(cellar_journal_encode(&e, &text, NULL, NULL), CELLAR_OK);
    cellar_journal_entry *d;
    assert_int_equal(cellar_journal_decode(text, strlen(text), &d, NULL), CELLAR_OK);
    assert_string_equal(d->code, "s = '\xEF\xBF\xBD\xEF\xBF\xBD'\n");
    free(d);
    free(text);
    e.session = "\xff";
    assert_int_equal(cellar_journal_encode(&e, &text, NULL, NULL), CELLAR_EINVAL);
    assert_null(text);
}

typedef struct seen {
    char codes[8][32];
    size_t n;
} seen;

static int collect(void *ctx, const cellar_journal_entry *e)
{
    seen *s = ctx;
    if (s->n < 8)
        snprintf(s->codes[s->n++], 32, "%s:%s", e->session, e->code);
    return 0;
}

static void test_append_and_walk_in_time_order(void **state)
{
    fixture *f = *state;
    cellar_store *s;
    assert_int_equal(cellar_store_open(f->dir, NULL, &s, NULL), CELLAR_OK);
    cellar_journal_entry a = sample("old", "a = 1", 300), b = sample("old", "b = 2", 100),
                         c = sample("new", "c = 3", 500);
    const cellar_journal_entry *first[] = {&a, &b};
    const cellar_journal_entry *second[] = {&c};
    assert_int_equal(cellar_journal_append(s, first, 2, NULL), CELLAR_OK);
    assert_int_equal(cellar_journal_append(s, second, 1, NULL), CELLAR_OK);
    cellar_reader *r;
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    seen all = {0}, old = {0};
    assert_int_equal(cellar_journal_each(r, NULL, collect, &all, NULL), CELLAR_OK);
    assert_int_equal(all.n, 3);
    assert_string_equal(all.codes[0], "old:b = 2");
    assert_string_equal(all.codes[1], "old:a = 1");
    assert_string_equal(all.codes[2], "new:c = 3");
    assert_int_equal(cellar_journal_each(r, "old", collect, &old, NULL), CELLAR_OK);
    assert_int_equal(old.n, 2);
    char last[64];
    assert_int_equal(
        cellar_journal_last_session(r, NULL, UINT64_MAX, last, sizeof last, NULL),
        CELLAR_OK);
    assert_string_equal(last, "new");
    assert_int_equal(
        cellar_journal_last_session(r, "new", UINT64_MAX, last, sizeof last, NULL),
        CELLAR_OK);
    assert_string_equal(last, "old");
    assert_int_equal(cellar_journal_last_session(r, NULL, 500, last, sizeof last, NULL),
                     CELLAR_OK);
    assert_string_equal(last, "old"); /* "new" started at 500, not before */
    assert_int_equal(cellar_journal_last_session(r, NULL, 100, last, sizeof last, NULL),
                     CELLAR_ENOTFOUND);
    cellar_error err;
    assert_int_equal(cellar_journal_last_session(r, "other", UINT64_MAX, last, 2, &err),
                     CELLAR_EINVAL);
    cellar_reader_end(r);
    cellar_store_close(s);

    /* Read-only: the journal reads, and refuses appends. */
    cellar_store_options ro = {.read_only = true};
    assert_int_equal(cellar_store_open(f->dir, &ro, &s, NULL), CELLAR_OK);
    assert_int_equal(cellar_journal_append(s, second, 1, &err), CELLAR_EREADONLY);
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    seen again = {0};
    assert_int_equal(cellar_journal_each(r, NULL, collect, &again, NULL), CELLAR_OK);
    assert_int_equal(again.n, 3);
    cellar_reader_end(r);
    cellar_store_close(s);
}

static void test_empty_journal_has_no_last_session(void **state)
{
    fixture *f = *state;
    cellar_store *s;
    assert_int_equal(cellar_store_open(f->dir, NULL, &s, NULL), CELLAR_OK);
    cellar_reader *r;
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    char last[64];
    assert_int_equal(
        cellar_journal_last_session(r, NULL, UINT64_MAX, last, sizeof last, NULL),
        CELLAR_ENOTFOUND);
    cellar_reader_end(r);
    cellar_store_close(s);
}

/* A store written before the journal existed: the database dropped with LMDB
 * itself.  Opened read-only it has an empty journal, and verify is clean. */
static void test_a_store_from_before_the_journal(void **state)
{
    fixture *f = *state;
    cellar_store *s;
    assert_int_equal(cellar_store_open(f->dir, NULL, &s, NULL), CELLAR_OK);
    cellar_journal_entry a = sample("old", "a = 1", 300);
    const cellar_journal_entry *one[] = {&a};
    assert_int_equal(cellar_journal_append(s, one, 1, NULL), CELLAR_OK);
    cellar_store_close(s);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, f->dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "journal", 0, &dbi), 0);
    assert_int_equal(mdb_drop(txn, dbi, 1), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    cellar_store_options ro = {.read_only = true};
    assert_int_equal(cellar_store_open(f->dir, &ro, &s, NULL), CELLAR_OK);
    cellar_reader *r;
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    seen none = {0};
    assert_int_equal(cellar_journal_each(r, NULL, collect, &none, NULL), CELLAR_OK);
    assert_int_equal(none.n, 0);
    char last[64];
    assert_int_equal(
        cellar_journal_last_session(r, NULL, UINT64_MAX, last, sizeof last, NULL),
        CELLAR_ENOTFOUND);
    cellar_reader_end(r);
    cellar_verify_counts counts;
    assert_int_equal(cellar_store_verify(s, false, NULL, NULL, &counts, NULL), CELLAR_OK);
    assert_int_equal(counts.problems, 0);
    assert_int_equal(cellar_journal_append(s, one, 1, NULL), CELLAR_EREADONLY);
    cellar_store_close(s);
    /* Opened for writing, it gets the database back. */
    assert_int_equal(cellar_store_open(f->dir, NULL, &s, NULL), CELLAR_OK);
    assert_int_equal(cellar_journal_append(s, one, 1, NULL), CELLAR_OK);
    cellar_store_close(s);
}

/* A journal record that does not parse is a record problem for verify, and
 * --repair removes it. */
static void test_verify_checks_journal_records(void **state)
{
    fixture *f = *state;
    cellar_store *s;
    assert_int_equal(cellar_store_open(f->dir, NULL, &s, NULL), CELLAR_OK);
    cellar_store_close(s);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, f->dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "journal", 0, &dbi), 0);
    uint8_t key[16] = {1};
    MDB_val k = {sizeof key, key}, v = {7, "garbage"};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_int_equal(cellar_store_open(f->dir, NULL, &s, NULL), CELLAR_OK);
    cellar_verify_counts counts;
    assert_int_equal(cellar_store_verify(s, false, NULL, NULL, &counts, NULL), CELLAR_OK);
    assert_int_equal(counts.problems, 1);
    assert_int_equal(cellar_store_verify(s, true, NULL, NULL, &counts, NULL), CELLAR_OK);
    assert_int_equal(cellar_store_verify(s, false, NULL, NULL, &counts, NULL), CELLAR_OK);
    assert_int_equal(counts.problems, 0);
    cellar_store_close(s);
}

/* ---- the journal's cap ---- */

typedef struct listed {
    char codes[64][48];
    size_t n;
} listed;

static int list_codes(void *ctx, const cellar_journal_entry *e)
{
    listed *l = ctx;
    if (l->n < 64)
        snprintf(l->codes[l->n++], sizeof l->codes[0], "%s:%s", e->session, e->code);
    return 0;
}

static listed read_all(cellar_store *s)
{
    listed l = {0};
    cellar_reader *r;
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    assert_int_equal(cellar_journal_each(r, NULL, list_codes, &l, NULL), CELLAR_OK);
    cellar_reader_end(r);
    return l;
}

static bool has(const listed *l, const char *code)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->codes[i], code))
            return true;
    return false;
}

/* Appends one ok cell (or an error) of `session` starting at `start`. */
static void add(cellar_store *s, const char *session, const char *code, uint64_t start,
                bool ok)
{
    cellar_journal_entry e = sample(session, code, start);
    e.outcome = ok ? CELLAR_CELL_OK : CELLAR_CELL_ERROR;
    e.ename = ok ? "" : "ValueError";
    const cellar_journal_entry *one[] = {&e};
    assert_int_equal(cellar_journal_append(s, one, 1, NULL), CELLAR_OK);
}

static uint64_t journal_cells(cellar_store *s, uint64_t *bytes)
{
    cellar_reader *r;
    uint64_t cells;
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    assert_int_equal(cellar_journal_size(r, &cells, bytes, NULL), CELLAR_OK);
    cellar_reader_end(r);
    return cells;
}

/* Four sessions of 30 cells against a cap of 20: the oldest go, down to 18 (90%),
 * except the definition cells of the writer's session and of the two newest other
 * sessions; the oldest session's definition cell goes like the rest. */
static void test_prune_keeps_the_newest_cells_and_the_definitions(void **state)
{
    fixture *f = *state;
    cellar_store *s;
    assert_int_equal(cellar_store_open(f->dir, NULL, &s, NULL), CELLAR_OK);
    const char *sessions[] = {"s1", "s2", "s3"};
    const char *defs[] = {"def f1():\n    pass\n", "A = 1\n", "import os\n"};
    char code[32];
    for (int i = 0; i < 3; i++) {
        add(s, sessions[i], defs[i], 100 * (i + 1), true);
        for (int k = 0; k < 5; k++) {
            snprintf(code, sizeof code, "print(%d)", i * 10 + k);
            add(s, sessions[i], code, 100 * (i + 1) + 10 + k, true);
        }
    }
    add(s, "cur", "def g():\n    return 1\n", 400, true);
    add(s, "cur", "B = 2\n", 405, false); /* a definition that ended in an error */
    for (int k = 0; k < 10; k++) {
        snprintf(code, sizeof code, "print(%d)", 100 + k);
        add(s, "cur", code, 410 + k, true);
    }
    assert_int_equal(journal_cells(s, NULL), 30);

    /* Within the cap: nothing goes. */
    cellar_journal_limits limits = {.max_cells = 30, .keep_session = "cur"};
    uint64_t removed = 99;
    assert_int_equal(cellar_journal_prune(s, &limits, &removed, NULL), CELLAR_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(journal_cells(s, NULL), 30);

    limits.max_cells = 20;
    assert_int_equal(cellar_journal_prune(s, &limits, &removed, NULL), CELLAR_OK);
    assert_int_equal(removed, 12);
    listed l = read_all(s);
    assert_int_equal(l.n, 18);
    assert_false(has(&l, "s1:def f1():\n    pass\n")); /* a third session back */
    assert_false(has(&l, "s1:print(0)"));
    assert_false(has(&l, "s2:print(14)"));
    assert_false(has(&l, "s3:print(20)")); /* the oldest computing cell left */
    assert_true(has(&l, "s2:A = 1\n"));
    assert_true(has(&l, "s3:import os\n"));
    assert_true(has(&l, "s3:print(21)"));
    assert_true(has(&l, "cur:def g():\n    return 1\n"));
    assert_true(has(&l, "cur:B = 2\n"));
    assert_true(has(&l, "cur:print(109)"));
    /* In time order still, and the last session is found as before. */
    assert_string_equal(l.codes[0], "s2:A = 1\n");
    assert_string_equal(l.codes[17], "cur:print(109)");

    /* At 18 of 20 the next prune does nothing: pruning is by batches. */
    assert_int_equal(cellar_journal_prune(s, &limits, &removed, NULL), CELLAR_OK);
    assert_int_equal(removed, 0);

    /* A cap below the kept definitions: everything else goes (the definition
     * that ended in an error too: restore would skip it), they stay. */
    limits.max_cells = 1;
    assert_int_equal(cellar_journal_prune(s, &limits, &removed, NULL), CELLAR_OK);
    assert_int_equal(removed, 15);
    l = read_all(s);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.codes[0], "s2:A = 1\n");
    assert_string_equal(l.codes[1], "s3:import os\n");
    assert_string_equal(l.codes[2], "cur:def g():\n    return 1\n");
    /* Without a session of its own (cellar journal --prune): the two newest. */
    limits.keep_session = NULL;
    assert_int_equal(cellar_journal_prune(s, &limits, &removed, NULL), CELLAR_OK);
    assert_int_equal(removed, 1);
    l = read_all(s);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.codes[0], "s3:import os\n");
    cellar_store_close(s);

    /* Read-only: refused, nothing removed. */
    cellar_store_options ro = {.read_only = true};
    assert_int_equal(cellar_store_open(f->dir, &ro, &s, NULL), CELLAR_OK);
    cellar_error err;
    assert_int_equal(cellar_journal_prune(s, &limits, &removed, &err), CELLAR_EREADONLY);
    assert_int_equal(journal_cells(s, NULL), 2);
    cellar_store_close(s);
}

/* The byte cap counts the database's pages: 40 cells of 64 KiB (overflow pages)
 * against 1 MiB leave at most 0.9 MiB, the newest cells. */
static void test_prune_by_bytes(void **state)
{
    fixture *f = *state;
    cellar_store *s;
    assert_int_equal(cellar_store_open(f->dir, NULL, &s, NULL), CELLAR_OK);
    size_t big = 64 << 10;
    char *code = malloc(big + 1);
    for (int i = 0; i < 40; i++) {
        int n = snprintf(code, big + 1, "print(%d)\n#", i);
        memset(code + n, 'x', big - (size_t)n);
        code[big] = '\0';
        add(s, "cur", code, 1000 + (uint64_t)i, true);
    }
    free(code);
    uint64_t bytes;
    assert_int_equal(journal_cells(s, &bytes), 40);
    assert_true(bytes > (2u << 20));
    cellar_journal_limits limits = {.max_bytes = 1u << 20, .keep_session = "cur"};
    uint64_t removed;
    assert_int_equal(cellar_journal_prune(s, &limits, &removed, NULL), CELLAR_OK);
    uint64_t cells = journal_cells(s, &bytes);
    assert_true(bytes <= (1u << 20) - (1u << 20) / 10);
    assert_true(cells > 5 && cells < 40);
    assert_int_equal(removed, 40 - cells);
    listed l = read_all(s);
    char newest[32];
    snprintf(newest, sizeof newest, "cur:print(39)\n#xxxxxx");
    assert_int_equal(strncmp(l.codes[l.n - 1], newest, strlen(newest)), 0);
    snprintf(newest, sizeof newest, "cur:print(%d)\n", (int)(40 - cells));
    assert_int_equal(strncmp(l.codes[0], newest, strlen(newest)), 0);
    cellar_store_close(s);
}

/* Replayable: ended ok and only defines; otherwise the reason restore prints. */
static void test_replayable_and_why_not(void **state)
{
    (void)state;
    char why[CELLAR_JOURNAL_WHY_MAX];
    cellar_journal_entry e = sample("s", "N = 1\n", 1);
    e.outcome = CELLAR_CELL_OK;
    assert_true(cellar_journal_replayable(&e, why));
    assert_string_equal(why, "");
    e.outcome = CELLAR_CELL_ERROR;
    assert_false(cellar_journal_replayable(&e, why));
    assert_string_equal(why, "it ended with an error (ValueError)");
    e.outcome = CELLAR_CELL_ABORTED;
    e.ename = "";
    assert_false(cellar_journal_replayable(&e, why));
    assert_string_equal(why, "it ended aborted");
    cellar_journal_entry c = sample("s", "print(1)\n", 1);
    c.outcome = CELLAR_CELL_OK;
    assert_false(cellar_journal_replayable(&c, why));
    assert_string_equal(why, "line 1 calls a function (`print(1)`)");
    assert_false(cellar_journal_replayable(&c, NULL));
}

/* The environment's limits: defaults, numbers, sizes, 0 for none, junk ignored. */
static void test_limits_from_the_environment(void **state)
{
    (void)state;
    unsetenv("CELLAR_JOURNAL_MAX_CELLS");
    unsetenv("CELLAR_JOURNAL_MAX_BYTES");
    cellar_journal_limits l = cellar_journal_limits_from_env();
    assert_int_equal(l.max_cells, CELLAR_JOURNAL_MAX_CELLS_DEFAULT);
    assert_true(l.max_bytes == CELLAR_JOURNAL_MAX_BYTES_DEFAULT);
    assert_null(l.keep_session);
    setenv("CELLAR_JOURNAL_MAX_CELLS", "250", 1);
    setenv("CELLAR_JOURNAL_MAX_BYTES", "2MiB", 1);
    l = cellar_journal_limits_from_env();
    assert_int_equal(l.max_cells, 250);
    assert_int_equal(l.max_bytes, 2u << 20);
    setenv("CELLAR_JOURNAL_MAX_CELLS", "0", 1);
    setenv("CELLAR_JOURNAL_MAX_BYTES", "lots", 1);
    l = cellar_journal_limits_from_env();
    assert_int_equal(l.max_cells, 0);
    assert_true(l.max_bytes == CELLAR_JOURNAL_MAX_BYTES_DEFAULT);
    setenv("CELLAR_JOURNAL_MAX_CELLS", "-5", 1);
    l = cellar_journal_limits_from_env();
    assert_int_equal(l.max_cells, CELLAR_JOURNAL_MAX_CELLS_DEFAULT);
    unsetenv("CELLAR_JOURNAL_MAX_CELLS");
    unsetenv("CELLAR_JOURNAL_MAX_BYTES");
}

static bool defines(const char *code, char *why)
{
    return cellar_definitions_only(code, strlen(code), why);
}

static void test_cells_that_only_define(void **state)
{
    (void)state;
    const char *yes[] = {
        "import os\nfrom math import (sqrt,\n    pi)\n",
        "%load_ext cellar\n",
        ("def f(x, y=2, *a, k: int = -1, **kw) -> dict[str, int]:\n"
         "    print(x)\n    return g(x)\n"),
        "@functools.lru_cache(maxsize=None)\ndef f():\n    return 1\n",
        "async def f():\n    await g()\n",
        ("class A(Base, metaclass=Meta):\n    '''doc'''\n    X = 1\n    y: int = 0\n"
         "    def m(self):\n        return compute()\n    class Inner:\n        pass\n"),
        "N = 10\nA = B = 'x'\nlo, hi = 0.1, -0.9\nP: dict = {'k': [1, 2], 'n': None}\n",
        "# only a comment\nx = 1  # and a literal\n",
        "\"\"\"a docstring\"\"\"\nclass B: pass\n",
        "x = 1; y = (2, 3)\n",
        "%cellar restore\n",
    };
    char why[CELLAR_DEFINITIONS_WHY_MAX];
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        bool ok = defines(yes[i], why);
        if (!ok)
            print_error("expected a definition cell: %s\n  because: %s\n", yes[i], why);
        assert_true(ok);
    }
    struct {
        const char *code, *says;
    } no[] = {
        {"print('hi')\n", "line 1 calls a function"},
        {"import os\nx = load()\n", "line 2 assigns the result of a call"},
        {"_log('c')\n", "calls a function"},
        {"x = y\n", "not a literal"},
        {"x += 1\n", "is not a definition"},
        {"obj.attr = 1\n", "other than names"},
        {"d['k'] = 1\n", "other than names"},
        {"for i in range(3):\n    pass\n", "runs code"},
        {"def f(x=compute()):\n    pass\n", "computes a default"},
        {"@register(make())\ndef f():\n    pass\n", "decorator"},
        {"class A(make_base()):\n    pass\n", "computes its bases"},
        {"class A:\n    data = load()\n", "call"},
        {"%cellar run c\n", "magic"},
        {"!pip install x\n", "magic"},
        {"%%bash\necho hi\n", "cell magic"},
        {"x = f'{y}'\n", "not a literal"},
        {"x = [0] * 10\n", "not a literal"},
        {"", "defines nothing"},
        {"# nothing\n", "defines nothing"},
        {"def f(:\n", ""},
        {"x = 'unterminated\n", ""},
    };
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
        bool ok = defines(no[i].code, why);
        if (ok || !strstr(why, no[i].says))
            print_error("cell %zu: %s\n  why: %s (wanted: %s)\n", i, no[i].code, why,
                        no[i].says);
        assert_false(ok);
        assert_non_null(strstr(why, no[i].says));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_unknown_format_truncated_and_malformed),
        cmocka_unit_test(test_code_that_is_not_utf8_is_kept_lossily),
        cmocka_unit_test_setup_teardown(test_append_and_walk_in_time_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_empty_journal_has_no_last_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_store_from_before_the_journal, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_verify_checks_journal_records, setup,
                                        teardown),
        cmocka_unit_test(test_cells_that_only_define),
        cmocka_unit_test_setup_teardown(
            test_prune_keeps_the_newest_cells_and_the_definitions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_by_bytes, setup, teardown),
        cmocka_unit_test(test_limits_from_the_environment),
        cmocka_unit_test(test_replayable_and_why_not),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
