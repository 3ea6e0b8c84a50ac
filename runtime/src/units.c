/*
 * units.c - sizes and durations as people read them (the convention is in
 * units.h).  A value is scaled into the largest unit where it is at least 1,
 * printed with the decimals its magnitude allows, and moved one unit up when
 * the printed form would reach the next unit's threshold: the decision is
 * made on the rounded value, so "1024 KiB" or "1000 µs" never appear.
 */
#include "cellar/units.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

/* The decimals for a scaled value `v`: `most` below 10 (two for durations,
 * one for sizes), one below 100, none from 100 on, judged on the rounded
 * value so that 9.996 prints "10.0", not "10.00". */
static int decimals(double v, int most)
{
    if (most >= 2 && v + 0.005 < 10)
        return 2;
    if (most >= 1 && v + 0.05 < 100)
        return 1;
    return 0;
}

/* `v` printed with `prec` decimals reaches `limit` (e.g. 999.96 -> "1000.0"). */
static int rounds_to(double v, int prec, double limit)
{
    static const double half[] = {0.5, 0.05, 0.005};
    return v + half[prec] >= limit;
}

char *cellar_units_size(uint64_t bytes, char buf[CELLAR_UNITS_BUFSIZE])
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buf, CELLAR_UNITS_BUFSIZE, "%" PRIu64 " B", bytes);
        return buf;
    }
    double v = (double)bytes / 1024;
    size_t u = 0;
    while (u + 1 < sizeof units / sizeof units[0] &&
           (v >= 1024 || rounds_to(v, decimals(v, 1), 1024))) {
        v /= 1024;
        u++;
    }
    snprintf(buf, CELLAR_UNITS_BUFSIZE, "%.*f %s", decimals(v, 1), v, units[u]);
    return buf;
}

char *cellar_units_duration(uint64_t ns, char buf[CELLAR_UNITS_BUFSIZE])
{
    static const char *const units[] = {"\xc2\xb5s", "ms", "s"};
    if (ns < 1000) {
        snprintf(buf, CELLAR_UNITS_BUFSIZE, "%" PRIu64 " ns", ns);
        return buf;
    }
    double v = (double)ns / 1000;
    size_t u = 0;
    while (u + 1 < sizeof units / sizeof units[0] &&
           (v >= 1000 || rounds_to(v, decimals(v, 2), 1000))) {
        v /= 1000;
        u++;
    }
    snprintf(buf, CELLAR_UNITS_BUFSIZE, "%.*f %s", decimals(v, 2), v, units[u]);
    return buf;
}

char *cellar_units_moment(uint64_t ns, char buf[CELLAR_UNITS_BUFSIZE])
{
    time_t t = (time_t)(ns / 1000000000u);
    struct tm tm;
    if (!ns || !localtime_r(&t, &tm) ||
        !strftime(buf, CELLAR_UNITS_BUFSIZE, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, CELLAR_UNITS_BUFSIZE, "-");
    return buf;
}

bool cellar_units_parse_size(const char *text, uint64_t *out)
{
    static const char letters[] = "KMGTPE";
    if (!text || !out)
        return false;
    while (isspace((unsigned char)*text))
        text++;
    if (!isdigit((unsigned char)*text) && *text != '.')
        return false;
    char *end;
    double v = strtod(text, &end);
    if (end == text || !isfinite(v) || v < 0)
        return false;
    while (isspace((unsigned char)*end))
        end++;
    double scale = 1;
    if (*end && *end != 'b' && *end != 'B') {
        const char *at = strchr(letters, toupper((unsigned char)*end));
        if (!at)
            return false;
        for (const char *p = letters; p <= at; p++)
            scale *= 1024;
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
    } else if (*end) {
        end++; /* "B" */
    }
    while (isspace((unsigned char)*end))
        end++;
    if (*end)
        return false;
    double bytes = v * scale;
    if (bytes >= 18446744073709551616.0)
        return false;
    *out = (uint64_t)(bytes + 0.5);
    return true;
}
