/*
 * records.c - encodes and decodes run and node records (formats in
 * records.h).
 *
 * Encoding writes the JSON text directly into one growing buffer: a cached
 * run of thousands of nodes writes its record on every run, and building a
 * jansson tree first cost an allocation per value for nothing.  Strings are
 * escaped as JSON requires and checked as UTF-8 on the way.  Decoding is not
 * on any hot path (the `cellar` command and tests read records), so it parses
 * with jansson and checks every field's type, turning the tree into the
 * record structs with their strings copied out; what does not match format 1
 * is refused with a message naming the field.
 */
#include "cellar/records.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const outcome_names[] = {"computed", "loaded", "in memory", "failed",
                                            "skipped"};
#define NOUTCOMES (sizeof outcome_names / sizeof outcome_names[0])

/* The columns of a format-1 run record's rows, in order. */
static const char *const run_columns[] = {"node",    "status", "key",  "data_version",
                                          "time_ns", "size",   "error"};
enum { COL_NODE, COL_STATUS, COL_KEY, COL_DV, COL_TIME, COL_SIZE, COL_ERROR, NCOLS };

static const char *const source_names[] = {"given", "global", "default"};
#define NSOURCES (sizeof source_names / sizeof source_names[0])

const char *cellar_outcome_name(cellar_outcome outcome)
{
    return (unsigned)outcome < NOUTCOMES ? outcome_names[outcome] : "unknown";
}

const char *cellar_input_source_name(cellar_input_source source)
{
    return (unsigned)source < NSOURCES ? source_names[source] : "unknown";
}

/* ---- writing JSON ---- */

typedef struct writer {
    char *buf;
    size_t len, cap;
    cellar_status failed; /* the first failure; later writes do nothing */
    const char *why;      /* for EINVAL: which value was refused */
} writer;

static bool reserve(writer *o, size_t extra)
{
    if (o->failed)
        return false;
    if (extra <= o->cap - o->len)
        return true;
    size_t cap = o->cap ? o->cap : 256;
    while (cap - o->len < extra) {
        if (cap > SIZE_MAX / 2) {
            o->failed = CELLAR_ENOMEM;
            return false;
        }
        cap *= 2;
    }
    char *buf = realloc(o->buf, cap);
    if (!buf) {
        o->failed = CELLAR_ENOMEM;
        return false;
    }
    o->buf = buf;
    o->cap = cap;
    return true;
}

static void put(writer *o, const char *s, size_t n)
{
    if (reserve(o, n)) {
        memcpy(o->buf + o->len, s, n);
        o->len += n;
    }
}

#define PUT_LIT(o, lit) put((o), (lit), sizeof(lit) - 1)

static void refuse(writer *o, const char *why)
{
    if (!o->failed) {
        o->failed = CELLAR_EINVAL;
        o->why = why;
    }
}

static void put_u64(writer *o, uint64_t v, const char *what)
{
    if (v > INT64_MAX) { /* JSON readers, jansson included, stop at int64 */
        refuse(o, what);
        return;
    }
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v);
    put(o, digits, (size_t)n);
}

static void put_i64(writer *o, int64_t v)
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRId64, v);
    put(o, digits, (size_t)n);
}

/* Length of the valid UTF-8 sequence at `p` (at most `n` bytes), 0 if none. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else
        return 0;
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* A JSON string.  Invalid UTF-8 becomes U+FFFD when `lenient`, else EINVAL. */
static void put_str(writer *o, const char *s, bool lenient, const char *what)
{
    static const char hex[] = "0123456789abcdef";
    if (!s) {
        refuse(o, what);
        return;
    }
    size_t n = strlen(s);
    if (!reserve(o, n + 2))
        return;
    o->buf[o->len++] = '"';
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* Copy the longest run that needs no escaping in one go. */
        size_t j = i;
        while (j < n && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\')
            j++;
        put(o, s + i, j - i);
        i = j;
        if (i == n)
            break;
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t len = utf8_len(p + i, n - i);
            if (len) {
                put(o, s + i, len);
                i += len;
            } else if (lenient) {
                PUT_LIT(o, "\\ufffd");
                i++;
            } else {
                refuse(o, what);
                return;
            }
            continue;
        }
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        switch (c) {
        case '"': PUT_LIT(o, "\\\""); break;
        case '\\': PUT_LIT(o, "\\\\"); break;
        case '\n': PUT_LIT(o, "\\n"); break;
        case '\t': PUT_LIT(o, "\\t"); break;
        case '\r': PUT_LIT(o, "\\r"); break;
        default: put(o, esc, sizeof esc); break;
        }
        i++;
    }
    put(o, "\"", 1);
}

static void put_hash(writer *o, const cellar_hash *h)
{
    char hex[CELLAR_HASH_HEX_LEN + 3];
    cellar_hash_to_hex(h, hex + 1);
    hex[0] = '"';
    hex[CELLAR_HASH_HEX_LEN + 1] = '"';
    put(o, hex, CELLAR_HASH_HEX_LEN + 2);
}

static void put_names(writer *o, size_t n, const char *const *names, const char *what)
{
    put(o, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            put(o, ",", 1);
        put_str(o, names[i], false, what);
    }
    put(o, "]", 1);
}

/* Hands the text over, or reports why it could not be written. */
static cellar_status finish(writer *o, const char *record, char **text, size_t *len,
                            cellar_error *err)
{
    put(o, "", 1); /* the NUL */
    if (o->failed) {
        free(o->buf);
        if (o->failed == CELLAR_ENOMEM)
            return cellar_error_set(err, CELLAR_ENOMEM,
                                    "%s record: out of memory encoding it", record);
        return cellar_error_set(err, o->failed, "%s record: cannot encode %s", record,
                                o->why);
    }
    *text = o->buf;
    if (len)
        *len = o->len - 1;
    return CELLAR_OK;
}

cellar_status cellar_run_record_encode(const cellar_run_record *rec, char **text,
                                       size_t *len, cellar_error *err)
{
    if (text)
        *text = NULL;
    if (!rec || !text || (rec->ntargets && !rec->targets) || (rec->nrows && !rec->rows) ||
        (rec->ninputs && !rec->inputs))
        return cellar_error_set(err, CELLAR_EINVAL,
                                "run record: NULL record, output or array");
    writer o = {0};
    /* Most rows take about 150 bytes: one allocation for the common case. */
    reserve(&o, 256 + rec->nrows * 160);
    PUT_LIT(&o, "{\"format\":1,\"started_ns\":");
    put_u64(&o, rec->started_ns, "a start time above INT64_MAX");
    PUT_LIT(&o, ",\"pid\":");
    put_i64(&o, rec->pid);
    PUT_LIT(&o, ",\"targets\":");
    put_names(&o, rec->ntargets, rec->targets, "a NULL or non-UTF-8 target name");
    PUT_LIT(&o, ",\"inputs\":[");
    for (size_t i = 0; i < rec->ninputs && !o.failed; i++) {
        const cellar_run_input *in = &rec->inputs[i];
        if ((unsigned)in->source >= NSOURCES)
            refuse(&o, "an input source outside cellar_input_source");
        if (i)
            put(&o, ",", 1);
        PUT_LIT(&o, "{\"name\":");
        put_str(&o, in->name, false, "a NULL or non-UTF-8 input name");
        PUT_LIT(&o, ",\"source\":");
        put_str(&o, cellar_input_source_name(in->source), false, "an input source");
        PUT_LIT(&o, ",\"data_version\":");
        put_hash(&o, &in->data_version);
        PUT_LIT(&o, ",\"value\":");
        if (in->shown)
            put_str(&o, in->shown, true, "an input's text");
        else
            PUT_LIT(&o, "null");
        put(&o, "}", 1);
    }
    PUT_LIT(&o, "],\"columns\":");
    put_names(&o, NCOLS, run_columns, "a column");
    PUT_LIT(&o, ",\"nodes\":[");
    for (size_t i = 0; i < rec->nrows && !o.failed; i++) {
        const cellar_lineage_row *r = &rec->rows[i];
        if ((unsigned)r->outcome >= NOUTCOMES)
            refuse(&o, "an outcome outside cellar_outcome");
        put(&o, i ? ",[" : "[", i ? 2 : 1);
        put_str(&o, r->node, false, "a NULL or non-UTF-8 node name");
        put(&o, ",", 1);
        put_str(&o, cellar_outcome_name(r->outcome), false, "an outcome");
        put(&o, ",", 1);
        if (r->has_versions) {
            put_hash(&o, &r->key);
            put(&o, ",", 1);
            put_hash(&o, &r->data_version);
        } else {
            PUT_LIT(&o, "null,null");
        }
        put(&o, ",", 1);
        put_u64(&o, r->time_ns, "a time above INT64_MAX");
        put(&o, ",", 1);
        if (r->has_size)
            put_u64(&o, r->size, "a size above INT64_MAX");
        else
            PUT_LIT(&o, "null");
        put(&o, ",", 1);
        if (r->error)
            put_str(&o, r->error, true, "an error text");
        else
            PUT_LIT(&o, "null");
        put(&o, "]", 1);
    }
    PUT_LIT(&o, "]}");
    return finish(&o, "run", text, len, err);
}

cellar_status cellar_node_record_encode(const cellar_node_record *rec, char **text,
                                        size_t *len, cellar_error *err)
{
    if (text)
        *text = NULL;
    if (!rec || !text || (rec->nparams && !rec->params))
        return cellar_error_set(err, CELLAR_EINVAL,
                                "node record: NULL record, output or array");
    writer o = {0};
    PUT_LIT(&o, "{\"format\":1,\"name\":");
    put_str(&o, rec->name, false, "a NULL or non-UTF-8 node name");
    PUT_LIT(&o, ",\"params\":");
    put_names(&o, rec->nparams, rec->params, "a NULL or non-UTF-8 parameter name");
    PUT_LIT(&o, ",\"cell_id\":");
    if (rec->cell_id)
        put_str(&o, rec->cell_id, false, "a non-UTF-8 cell id");
    else
        PUT_LIT(&o, "null");
    PUT_LIT(&o, ",\"code_version\":");
    put_hash(&o, &rec->code_version);
    PUT_LIT(&o, ",\"key\":");
    put_hash(&o, &rec->key);
    PUT_LIT(&o, ",\"data_version\":");
    put_hash(&o, &rec->data_version);
    PUT_LIT(&o, ",\"updated_ns\":");
    put_u64(&o, rec->updated_ns, "an update time above INT64_MAX");
    put(&o, "}", 1);
    return finish(&o, "node", text, len, err);
}

/* ---- reading ---- */

/* Parses `text` and checks its format; the caller owns `*doc` on CELLAR_OK. */
static cellar_status load(const char *text, size_t len, const char *record, json_t **doc,
                          cellar_error *err)
{
    if (!text)
        return cellar_error_set(err, CELLAR_EINVAL, "%s record: NULL text", record);
    json_error_t jerr;
    json_t *d = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!d)
        return cellar_error_set(err, CELLAR_ECORRUPT,
                                "%s record: not JSON (%s at byte %d of %zu)", record,
                                jerr.text, jerr.position, len);
    if (!json_is_object(d)) {
        json_decref(d);
        return cellar_error_set(err, CELLAR_ECORRUPT, "%s record: not a JSON object",
                                record);
    }
    json_t *format = json_object_get(d, "format");
    if (format && !json_is_integer(format)) {
        json_decref(d);
        return cellar_error_set(err, CELLAR_ECORRUPT,
                                "%s record: \"format\" is not an integer", record);
    }
    /* No "format": written before records carried one, in format 1's layout. */
    json_int_t v = format ? json_integer_value(format) : CELLAR_RECORD_FORMAT;
    if (v != CELLAR_RECORD_FORMAT) {
        json_decref(d);
        return cellar_error_set(
            err, CELLAR_EVERSION,
            "%s record: format %lld, but this cellar reads only "
            "format %d (%s)",
            record, (long long)v, CELLAR_RECORD_FORMAT,
            v > CELLAR_RECORD_FORMAT
                ? "it was written by a newer cellar: upgrade to read it"
                : "no cellar writes it");
    }
    *doc = d;
    return CELLAR_OK;
}

/* Field readers: a value of the wrong type marks the check bad and names the
 * field; once bad, the readers do nothing, so a decoder reads every field and
 * looks once at the end. */
typedef struct check {
    const char *field; /* the field being read, for the message */
    bool bad;
} check;

static const char *get_string(check *c, json_t *v, const char *field, bool nullable)
{
    if (c->bad)
        return NULL;
    if (nullable && (!v || json_is_null(v)))
        return NULL;
    if (!json_is_string(v)) {
        c->bad = true;
        c->field = field;
        return NULL;
    }
    return json_string_value(v);
}

static uint64_t get_u64(check *c, json_t *v, const char *field)
{
    if (c->bad)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        c->bad = true;
        c->field = field;
        return 0;
    }
    return (uint64_t)json_integer_value(v);
}

static void get_hash(check *c, json_t *v, const char *field, cellar_hash *out)
{
    const char *hex = get_string(c, v, field, false);
    if (hex && !cellar_hash_from_hex(hex, out)) {
        c->bad = true;
        c->field = field;
    }
}

/* Copies the strings of JSON array `arr` into a new array (NULL-safe count). */
static char **get_names(check *c, json_t *arr, const char *field, size_t *n, bool *oom)
{
    if (c->bad)
        return NULL;
    if (!json_is_array(arr)) {
        c->bad = true;
        c->field = field;
        return NULL;
    }
    *n = json_array_size(arr);
    char **names = calloc(*n ? *n : 1, sizeof *names);
    if (!names) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; i < *n; i++) {
        const char *s = get_string(c, json_array_get(arr, i), field, false);
        if (!s)
            break;
        if (!(names[i] = strdup(s))) {
            *oom = true;
            break;
        }
    }
    return names;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

static cellar_status check_result(const check *c, bool oom, const char *record,
                                  cellar_error *err)
{
    if (oom)
        return cellar_error_set(err, CELLAR_ENOMEM,
                                "%s record: out of memory decoding it", record);
    if (c->bad)
        return cellar_error_set(err, CELLAR_ECORRUPT,
                                "%s record: \"%s\" is missing or has the wrong type",
                                record, c->field);
    return CELLAR_OK;
}

/* One row of a run record's "nodes", its strings copied into `r`. */
static void get_row(check *c, json_t *row, cellar_lineage_row *r, bool *oom)
{
    if (!json_is_array(row) || json_array_size(row) != NCOLS) {
        c->bad = true;
        c->field = "nodes";
        return;
    }
    const char *node = get_string(c, json_array_get(row, COL_NODE), "node", false);
    r->time_ns = get_u64(c, json_array_get(row, COL_TIME), "time_ns");
    const char *status = get_string(c, json_array_get(row, COL_STATUS), "status", false);
    size_t k = 0;
    while (status && k < NOUTCOMES && strcmp(status, outcome_names[k]) != 0)
        k++;
    if (status && k == NOUTCOMES) {
        c->bad = true;
        c->field = "status";
    }
    r->outcome = (cellar_outcome)k;
    json_t *key = json_array_get(row, COL_KEY), *dv = json_array_get(row, COL_DV);
    r->has_versions = !json_is_null(key) || !json_is_null(dv);
    if (r->has_versions) {
        get_hash(c, key, "key", &r->key);
        get_hash(c, dv, "data_version", &r->data_version);
    }
    json_t *size = json_array_get(row, COL_SIZE);
    r->has_size = !json_is_null(size);
    if (r->has_size)
        r->size = get_u64(c, size, "size");
    const char *error = get_string(c, json_array_get(row, COL_ERROR), "error", true);
    if (!c->bad) {
        r->node = dup_or_null(node, oom);
        r->error = dup_or_null(error, oom);
    }
}

/* The optional "inputs" of a run record (absent in records written before
 * it existed), their strings copied out. */
static cellar_run_input *get_inputs(check *c, json_t *arr, size_t *n, bool *oom)
{
    *n = 0;
    if (c->bad || !arr)
        return NULL;
    if (!json_is_array(arr)) {
        c->bad = true;
        c->field = "inputs";
        return NULL;
    }
    size_t count = json_array_size(arr);
    cellar_run_input *inputs = calloc(count ? count : 1, sizeof *inputs);
    if (!inputs) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; i < count && !c->bad && !*oom; i++) {
        json_t *obj = json_array_get(arr, i);
        if (!json_is_object(obj)) {
            c->bad = true;
            c->field = "inputs";
            break;
        }
        cellar_run_input *in = &inputs[i];
        const char *name =
            get_string(c, json_object_get(obj, "name"), "inputs.name", false);
        const char *source =
            get_string(c, json_object_get(obj, "source"), "inputs.source", false);
        get_hash(c, json_object_get(obj, "data_version"), "inputs.data_version",
                 &in->data_version);
        const char *shown =
            get_string(c, json_object_get(obj, "value"), "inputs.value", true);
        size_t k = 0;
        while (source && k < NSOURCES && strcmp(source, source_names[k]) != 0)
            k++;
        if (source && k == NSOURCES) {
            c->bad = true;
            c->field = "inputs.source";
        }
        in->source = (cellar_input_source)k;
        if (c->bad)
            break;
        in->name = dup_or_null(name, oom);
        in->shown = dup_or_null(shown, oom);
        *n = i + 1;
    }
    return inputs;
}

static void free_inputs(cellar_run_input *inputs, size_t n)
{
    for (size_t i = 0; inputs && i < n; i++) {
        free((char *)inputs[i].name);
        free((char *)inputs[i].shown);
    }
    free(inputs);
}

static bool columns_match(json_t *columns)
{
    if (!json_is_array(columns) || json_array_size(columns) != NCOLS)
        return false;
    for (size_t i = 0; i < NCOLS; i++) {
        const char *s = json_string_value(json_array_get(columns, i));
        if (!s || strcmp(s, run_columns[i]) != 0)
            return false;
    }
    return true;
}

cellar_status cellar_run_record_decode(const char *text, size_t len,
                                       cellar_run_record **out, cellar_error *err)
{
    if (!out)
        return cellar_error_set(err, CELLAR_EINVAL, "run record: NULL output");
    *out = NULL;
    json_t *doc = NULL;
    cellar_status st = load(text, len, "run", &doc, err);
    if (st != CELLAR_OK)
        return st;
    check c = {0};
    bool oom = false;
    cellar_run_record *rec = calloc(1, sizeof *rec);
    if (!rec) {
        json_decref(doc);
        return cellar_error_set(err, CELLAR_ENOMEM, "run record: out of memory");
    }
    rec->started_ns = get_u64(&c, json_object_get(doc, "started_ns"), "started_ns");
    json_t *pid = json_object_get(doc, "pid");
    if (!json_is_integer(pid) && !c.bad) {
        c.bad = true;
        c.field = "pid";
    }
    rec->pid = (int64_t)json_integer_value(pid);
    rec->targets = (const char *const *)get_names(&c, json_object_get(doc, "targets"),
                                                  "targets", &rec->ntargets, &oom);
    rec->inputs = get_inputs(&c, json_object_get(doc, "inputs"), &rec->ninputs, &oom);
    if (!c.bad && !columns_match(json_object_get(doc, "columns"))) {
        c.bad = true;
        c.field = "columns";
    }
    json_t *nodes = json_object_get(doc, "nodes");
    if (!c.bad && !json_is_array(nodes)) {
        c.bad = true;
        c.field = "nodes";
    }
    if (!c.bad && !oom) {
        size_t n = json_array_size(nodes);
        cellar_lineage_row *rows = calloc(n ? n : 1, sizeof *rows);
        rec->rows = rows;
        if (!rows)
            oom = true;
        for (size_t i = 0; rows && i < n && !c.bad && !oom; i++) {
            get_row(&c, json_array_get(nodes, i), &rows[i], &oom);
            rec->nrows = i + 1;
        }
    }
    json_decref(doc);
    st = check_result(&c, oom, "run", err);
    if (st != CELLAR_OK) {
        cellar_run_record_free(rec);
        return st;
    }
    *out = rec;
    return CELLAR_OK;
}

void cellar_run_record_free(cellar_run_record *rec)
{
    if (!rec)
        return;
    free_names((char **)rec->targets, rec->ntargets);
    free_inputs((cellar_run_input *)rec->inputs, rec->ninputs);
    for (size_t i = 0; rec->rows && i < rec->nrows; i++) {
        free((char *)rec->rows[i].node);
        free((char *)rec->rows[i].error);
    }
    free((cellar_lineage_row *)rec->rows);
    free(rec);
}

const cellar_lineage_row *cellar_run_record_find(const cellar_run_record *rec,
                                                 const char *node)
{
    for (size_t i = 0; rec && node && i < rec->nrows; i++)
        if (rec->rows[i].node && strcmp(rec->rows[i].node, node) == 0)
            return &rec->rows[i];
    return NULL;
}

cellar_status cellar_node_record_decode(const char *text, size_t len,
                                        cellar_node_record **out, cellar_error *err)
{
    if (!out)
        return cellar_error_set(err, CELLAR_EINVAL, "node record: NULL output");
    *out = NULL;
    json_t *doc = NULL;
    cellar_status st = load(text, len, "node", &doc, err);
    if (st != CELLAR_OK)
        return st;
    check c = {0};
    bool oom = false;
    cellar_node_record *rec = calloc(1, sizeof *rec);
    if (!rec) {
        json_decref(doc);
        return cellar_error_set(err, CELLAR_ENOMEM, "node record: out of memory");
    }
    const char *name = get_string(&c, json_object_get(doc, "name"), "name", false);
    rec->params = (const char *const *)get_names(&c, json_object_get(doc, "params"),
                                                 "params", &rec->nparams, &oom);
    const char *cell = get_string(&c, json_object_get(doc, "cell_id"), "cell_id", true);
    get_hash(&c, json_object_get(doc, "code_version"), "code_version",
             &rec->code_version);
    get_hash(&c, json_object_get(doc, "key"), "key", &rec->key);
    get_hash(&c, json_object_get(doc, "data_version"), "data_version",
             &rec->data_version);
    rec->updated_ns = get_u64(&c, json_object_get(doc, "updated_ns"), "updated_ns");
    if (!c.bad) {
        rec->name = dup_or_null(name, &oom);
        rec->cell_id = dup_or_null(cell, &oom);
    }
    json_decref(doc);
    st = check_result(&c, oom, "node", err);
    if (st != CELLAR_OK) {
        cellar_node_record_free(rec);
        return st;
    }
    *out = rec;
    return CELLAR_OK;
}

void cellar_node_record_free(cellar_node_record *rec)
{
    if (!rec)
        return;
    free((char *)rec->name);
    free((char *)rec->cell_id);
    free_names((char **)rec->params, rec->nparams);
    free(rec);
}
