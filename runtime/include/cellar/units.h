/*
 * units.h - the one way cellar prints sizes and durations, in the notebook
 * report, the `%load_ext` summary and the `cellar` command alike.
 *
 * Sizes are in IEC binary units: whole bytes below 1 KiB ("0 B", "1023 B"),
 * then the largest unit of KiB, MiB, GiB, TiB, PiB, EiB in which the value is
 * at least 1, with one decimal below 100 and none from 100 on ("1.0 KiB",
 * "12.3 MiB", "412 MiB").  A value that would round up to 1024 of a unit is
 * shown in the next one ("1.0 MiB", never "1024 KiB").
 *
 * Durations keep three significant digits in ns, µs (the micro sign U+00B5,
 * in UTF-8), ms or s: whole nanoseconds below 1 µs ("850 ns"), then two
 * decimals below 10, one below 100, none from 100 on ("1.25 µs", "41.2 ms",
 * "412 µs", "9.04 s", "1234 s").  A value that would round up to 1000 of a
 * unit is shown in the next one ("1.00 ms", never "1000 µs").
 *
 * Moments (when a run started, when a result was last used) are local time
 * to the second, "2026-12-02 14:05:09", and "-" for none.
 *
 * The functions write a NUL-terminated string into a caller-owned buffer of
 * CELLAR_UNITS_BUFSIZE bytes and return that buffer; they cannot fail, keep no
 * state and are safe from any thread.
 */
#ifndef CELLAR_UNITS_H
#define CELLAR_UNITS_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Room for the longest output ("18446744074 s", "1023 B", "16.0 EiB"). */
#define CELLAR_UNITS_BUFSIZE 32

/* `bytes` as a size, e.g. "1.0 GiB".  Returns `buf`. */
char *cellar_units_size(uint64_t bytes, char buf[CELLAR_UNITS_BUFSIZE]);

/*
 * Parses a size as a person types it: a number (decimals allowed) and an
 * optional unit, IEC ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB") or its short
 * form ("K", "M", "G", "T", "P", "E", also "KB" ... read as binary, the way
 * cellar prints them), or "B" / none for bytes; case and a space between are
 * free ("10GiB", "1.5 g", "512").  True and `*out` set on success; false for
 * anything else (no number, an unknown unit, a value above 2^64 - 1).
 */
bool cellar_units_parse_size(const char *text, uint64_t *out);

/* `ns` nanoseconds as a duration, e.g. "412 µs".  Returns `buf`. */
char *cellar_units_duration(uint64_t ns, char buf[CELLAR_UNITS_BUFSIZE]);

/* The wall-clock moment `ns` nanoseconds after the epoch, in local time, e.g.
 * "2026-12-02 14:05:09"; "-" when `ns` is 0 (never recorded).  Returns `buf`. */
char *cellar_units_moment(uint64_t ns, char buf[CELLAR_UNITS_BUFSIZE]);

#ifdef __cplusplus
}
#endif

#endif
