/*
 * cellar.c - the `cellar` command: looks at cell source and at a store from
 * the shell.  This file dispatches to the subcommands in commands.h and then
 * makes sure their output really got out: stdout is buffered, so a full disk
 * or a closed pipe shows up only when it is flushed, and a command that
 * printed into the void must not exit 0.  Each subcommand checks its own
 * reads; this is the one place that checks the writes.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const char usage[] =
    "usage: cellar COMMAND [ARGS]\n"
    "\n"
    "Inspect Python cell source and cellar stores.\n"
    "\n"
    "commands:\n"
    "  scan FILE|-        print the top-level functions of Python/IPython source as "
    "JSON\n"
    "  ls                 list the cached entries of a store\n"
    "  show NODE|KEY      a node's metadata and history, or one cache key\n"
    "  log                the runs recorded in a store, newest first\n"
    "  stats              counts and sizes of a store\n"
    "  journal            the cells the cellar kernel ran, oldest first\n"
    "  verify [--repair]  check the whole store (structure, records, checksums,\n"
    "                     blobs); --repair drops what is damaged\n"
    "  forget NODE ...    drop the named nodes' cached results\n"
    "  gc                 keep recent code versions, evict above --max-size\n"
    "  compact            rewrite the index without free pages (store not in use)\n"
    "  install-kernel     install a Jupyter kernelspec for cellar-kernel\n"
    "\n"
    "Store commands take --dir PATH (default: $CELLAR_DIR, else ./.cellar)\n"
    "and --json. Run 'cellar COMMAND --help' for details.\n"
    "\n"
    "exit status: 0 ok; 1 a failure (for verify: problems found, or left after\n"
    "--repair; a repair that leaves the store clean exits 0); 2 usage (for verify\n"
    "also: the check could not run).  A store command never crashes on a damaged\n"
    "store: it fails with status 1 and says so, or with status 2 when reading did\n"
    "not finish within $CELLAR_CLI_TIMEOUT seconds (default 30, 0: no limit).\n";

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    int failed; /* its exit status for a failure (scan keeps 1 for bad source) */
};

static const struct command commands[] = {
    {"scan", cellar_cmd_scan, 2},
    {"ls", cellar_cmd_ls, 1},
    {"show", cellar_cmd_show, 1},
    {"log", cellar_cmd_log, 1},
    {"stats", cellar_cmd_stats, 1},
    {"verify", cellar_cmd_verify, 2},
    {"forget", cellar_cmd_forget, 1},
    {"gc", cellar_cmd_gc, 1},
    {"compact", cellar_cmd_compact, 1},
    {"journal", cellar_cmd_journal, 1},
    {"install-kernel", cellar_cmd_install_kernel, 1},
};

/* `status`, or `failed` when stdout could not be written (said on stderr):
 * a usage error (2) stays one. */
static int finish(const char *name, int status, int failed)
{
    errno = 0;
    bool flushed = fflush(stdout) == 0;
    int e = errno;
    if (flushed && !ferror(stdout))
        return status;
    fprintf(stderr, "cellar%s%s: cannot write the output: %s\n", name ? " " : "",
            name ? name : "", e ? strerror(e) : "a write to stdout failed");
    return status > failed ? status : failed;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(usage, stdout);
        return finish(NULL, 0, 1);
    }
    if (!strcmp(argv[1], "--version")) {
        puts("cellar 0.1.0");
        return finish(NULL, 0, 1);
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return finish(commands[i].name, commands[i].run(argc - 1, argv + 1),
                          commands[i].failed);
    fprintf(stderr, "cellar: unknown command '%s'\n\n%s", argv[1], usage);
    return 2;
}
