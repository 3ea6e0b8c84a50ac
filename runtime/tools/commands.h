/*
 * commands.h - the `cellar` command's subcommands.  Each takes the arguments
 * after its own name (argv[0] is the subcommand), prints data to stdout and
 * problems to stderr, and returns the process exit status.
 */
#ifndef CELLAR_TOOLS_COMMANDS_H
#define CELLAR_TOOLS_COMMANDS_H

/* cellar scan FILE|-: 0 clean, 1 source has errors (JSON still printed), 2 usage. */
int cellar_cmd_scan(int argc, char **argv);

/* Store commands; each accepts --dir PATH (default: $CELLAR_DIR, else ./.cellar),
 * --json where it prints data, and --help.  0 ok, 1 failure, 2 usage. */
int cellar_cmd_ls(int argc, char **argv);
int cellar_cmd_show(int argc, char **argv);
int cellar_cmd_log(int argc, char **argv);
int cellar_cmd_stats(int argc, char **argv);
int cellar_cmd_verify(int argc, char **argv);

#endif
