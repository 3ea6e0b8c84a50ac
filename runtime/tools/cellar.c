/*
 * cellar.c - the `cellar` command: looks at cell source and at a store from
 * the shell.  This file only dispatches to the subcommands in commands.h.
 */
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
    "  stats              counts and sizes of a store\n"
    "  verify             check every stored result's checksum\n"
    "\n"
    "Store commands take --dir PATH (default: $CELLAR_DIR, else ./.cellar)\n"
    "and --json. Run 'cellar COMMAND --help' for details.\n";

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
    {"scan", cellar_cmd_scan},   {"ls", cellar_cmd_ls},         {"show", cellar_cmd_show},
    {"stats", cellar_cmd_stats}, {"verify", cellar_cmd_verify},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        puts("cellar 0.1.0");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "cellar: unknown command '%s'\n\n%s", argv[1], usage);
    return 2;
}
