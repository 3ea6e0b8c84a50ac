/*
 * records.h - the formats of the records a store keeps about runs and nodes:
 * one codec, used by the extension that writes them, the `cellar` command
 * that reads them, and the tests.
 *
 * A run record is one run's lineage: when it started, which process ran it,
 * its targets, the inputs its nodes read (each input's name, where its value
 * came from, its data version and a short text of it), and one row per node
 * of the plan (the node, its outcome, its key and data version, its time and
 * size, and why it failed or was skipped).  A node record describes a node as it was last
 * computed: its parameters, its cell, its code version, key and data version.  The store
 * keeps both as opaque bytes (store.h: cellar_batch_add_run,
 * cellar_batch_put_node); this module is the only one that knows what is in
 * them.
 *
 * Both are JSON objects carrying "format": CELLAR_RECORD_FORMAT.  A run
 * record's rows are arrays under the column names of "columns" (an object per
 * row would cost a hash table each, and a run has thousands of rows).
 * Records written before the field existed have no "format" and the layout of
 * format 1, and read as format 1; a run record written before "inputs"
 * existed reads with no inputs (readers ignore fields they do not know, so
 * an older cellar reads the newer records too).  A reader refuses any other format with
 * CELLAR_EVERSION, and input that does not parse or lacks a field with
 * CELLAR_ECORRUPT; the error's message says which record, what and where.
 *
 * Every function here sets `err` (which may be NULL) whenever it returns a
 * status other than CELLAR_OK, keeps no state, and is safe from any thread.
 */
#ifndef CELLAR_RECORDS_H
#define CELLAR_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cellar/error.h"
#include "cellar/fingerprint.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The format this build writes, and the only one it reads. */
#define CELLAR_RECORD_FORMAT 1

/* What happened to a node in a run. */
typedef enum cellar_outcome {
    CELLAR_OUTCOME_COMPUTED,  /* its body ran */
    CELLAR_OUTCOME_LOADED,    /* read from the store */
    CELLAR_OUTCOME_IN_MEMORY, /* reused from the kernel session */
    CELLAR_OUTCOME_FAILED,    /* its body raised, or an input was missing */
    CELLAR_OUTCOME_SKIPPED,   /* something it needs failed */
} cellar_outcome;

/* "computed", "loaded", "in memory", "failed", "skipped": the words of the
 * report and of the record; "unknown" for a value outside the enum.  A static
 * string. */
const char *cellar_outcome_name(cellar_outcome outcome);

/* One node's row in a run record.  Strings are NUL-terminated UTF-8. */
typedef struct cellar_lineage_row {
    const char *node;
    const char *error;             /* why it failed or was skipped; NULL when neither */
    uint64_t time_ns;              /* compute or load time; 0 when none */
    uint64_t size;                 /* bytes of the serialized value */
    cellar_hash key, data_version; /* when has_versions */
    cellar_outcome outcome;
    bool has_versions; /* false for failed and skipped nodes, which have neither */
    bool has_size;     /* false for a value that could not be serialized */
} cellar_lineage_row;

/* Where a run found an input's value (the order in which it looks). */
typedef enum cellar_input_source {
    CELLAR_INPUT_GIVEN,   /* --input, or a keyword of cellar.run */
    CELLAR_INPUT_GLOBAL,  /* a global of the notebook */
    CELLAR_INPUT_DEFAULT, /* the parameter's default */
} cellar_input_source;

/* "given", "global", "default"; "unknown" outside the enum.  A static string. */
const char *cellar_input_source_name(cellar_input_source source);

/* An input (a parameter that no node produces) that a run's nodes read. */
typedef struct cellar_run_input {
    const char *name;
    const char *shown; /* a short text of the value ("3", "'data.parquet'",
                          "DataFrame"), or NULL; invalid UTF-8 is written as U+FFFD */
    cellar_hash data_version;
    cellar_input_source source;
} cellar_run_input;

typedef struct cellar_run_record {
    uint64_t started_ns; /* wall clock, ns since the epoch */
    int64_t pid;
    size_t ntargets;
    const char *const *targets;
    size_t nrows;
    const cellar_lineage_row *rows; /* in the order the run planned them */
    size_t ninputs;
    const cellar_run_input *inputs; /* in the order the run first read them */
} cellar_run_record;

typedef struct cellar_node_record {
    const char *name;
    size_t nparams;
    const char *const *params; /* parameter names, in order */
    const char *cell_id;       /* NULL when the defining cell had no id */
    cellar_hash code_version, key, data_version;
    uint64_t updated_ns; /* wall clock of the run that wrote it */
} cellar_node_record;

/*
 * Encodes `rec` as a run record.  On CELLAR_OK `*out` is a new NUL-terminated
 * buffer of `*len` bytes (the NUL not counted; `len` may be NULL), owned by
 * the caller, who frees it with free().  Integers above INT64_MAX, a NULL
 * node name, target or input name, a source outside cellar_input_source and
 * NULL arrays with a non-zero count are CELLAR_EINVAL;
 * CELLAR_ENOMEM when out of memory.  On failure `*out` is NULL.  Bytes that
 * are not valid UTF-8 in an error text or an input's text are written as
 * U+FFFD, so a strange exception message never costs the run its record; in
 * names they are CELLAR_EINVAL.
 */
cellar_status cellar_run_record_encode(const cellar_run_record *rec, char **out,
                                       size_t *len, cellar_error *err);

/*
 * Decodes the `len` bytes at `text` (no NUL needed).  On CELLAR_OK `*out` is
 * a new record owned by the caller (cellar_run_record_free); every string and
 * array in it belongs to it and lives as long as it.  CELLAR_EVERSION for a
 * format other than CELLAR_RECORD_FORMAT, CELLAR_ECORRUPT for anything that is
 * not a well-formed run record, CELLAR_EINVAL for NULL arguments, CELLAR_ENOMEM.
 * On failure `*out` is NULL.
 */
cellar_status cellar_run_record_decode(const char *text, size_t len,
                                       cellar_run_record **out, cellar_error *err);

/* Frees a record returned by cellar_run_record_decode (and nothing else);
 * NULL is ignored. */
void cellar_run_record_free(cellar_run_record *rec);

/* The row of `node` in `rec`, or NULL; points into `rec`. */
const cellar_lineage_row *cellar_run_record_find(const cellar_run_record *rec,
                                                 const char *node);

/* As cellar_run_record_encode, for a node record (cell_id may be NULL). */
cellar_status cellar_node_record_encode(const cellar_node_record *rec, char **out,
                                        size_t *len, cellar_error *err);

/* As cellar_run_record_decode, for a node record. */
cellar_status cellar_node_record_decode(const char *text, size_t len,
                                        cellar_node_record **out, cellar_error *err);

/* Frees a record returned by cellar_node_record_decode; NULL is ignored. */
void cellar_node_record_free(cellar_node_record *rec);

#ifdef __cplusplus
}
#endif

#endif
