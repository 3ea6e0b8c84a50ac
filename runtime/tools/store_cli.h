/*
 * store_cli.h - what the store subcommands of `cellar` share: their argument
 * parsing, opening a store for reading with the walk guarded by a child
 * process, and printing a JSON document.  Private to runtime/tools.
 */
#ifndef CELLAR_TOOLS_STORE_CLI_H
#define CELLAR_TOOLS_STORE_CLI_H

#include <jansson.h>
#include <stdbool.h>

#include "cellar/records.h"
#include "cellar/store.h"

typedef struct cli {
    const char *name; /* the subcommand, for messages */
    const char *dir;  /* --dir, else $CELLAR_DIR, else ./.cellar */
    bool json;
    bool repair; /* --repair, for commands that take it */
    int npos;
    const char *pos[2];
    unsigned long limit; /* --limit N, for commands that take it; 0: no limit */
} cli;

/* What cli_parse and cli_open_reader return when the command should go on;
 * any other value is the exit status the command is done with. */
enum { CLI_GO_ON = -1 };

/* Options a command accepts beyond --dir, --json and --help. */
enum { CLI_LIMIT = 1, CLI_REPAIR = 2 };

/* Parses argv (argv[0] is the subcommand) into `*c`: CLI_GO_ON, 0 after
 * printing `usage` for --help, or `usage_status` after a usage error (said
 * on stderr with the usage).  At most `max_pos` positional arguments. */
int cli_parse(int argc, char **argv, const char *usage, int max_pos, unsigned options,
              int usage_status, cli *c);

/* Prints "cellar NAME: message" on stderr; returns 1. */
int cli_fail(const cli *c, const char *message);

/*
 * Opens the store read-only and begins a reader, in a child process: the
 * walks of ls, show, log and stats trust LMDB's leaf pages, and on a damaged
 * page LMDB may fault, so the command runs in a forked child whose stdout is
 * collected by this process.  Returns CLI_GO_ON in the child (with `*s` and
 * `*r` set), or, in the parent, the exit status once the child is done: its
 * own, after its output has been copied to stdout, or 1 with a message (and
 * none of its output) when it died of a signal, or 2 with a message (and
 * none of its output) when it did not finish within CELLAR_CLI_TIMEOUT
 * seconds (default 30, 0 for no limit) and was killed.  Also returns 1 (said
 * on stderr) when the store cannot be opened or the child cannot be started.
 */
int cli_open_reader(const cli *c, cellar_store **s, cellar_reader **r);

/* Ends the reader and closes the store. */
void cli_close_reader(cellar_store *s, cellar_reader *r);

/* Prints `doc` (taking its reference; NULL means it could not be built) on
 * its own line; returns 0, or 1 after saying why. */
int cli_print_json(const cli *c, json_t *doc);

/* The printf width that right-aligns the UTF-8 text `s` in `columns` terminal
 * columns ("µs" is two bytes and one column). */
int cli_width_of(const char *s, int columns);

/* {"count", "first_run", "first"} for records that cannot be read, or NULL
 * (the key left out) when `count` is 0.  New reference. */
json_t *cli_unreadable_json(size_t count, uint64_t first_run, const char *why);

/* The hex of `h`, or JSON null when not `have`.  New reference. */
json_t *cli_hex_json(bool have, const cellar_hash *h);

/* One node's lineage row as `show --json` and `log --json` print it.  New
 * reference. */
json_t *cli_lineage_row_json(const cellar_lineage_row *row);

#endif
