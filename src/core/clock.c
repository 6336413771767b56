/* Clock helpers. */
#include "core/clock.h"

#include <stdio.h>
#include <time.h>

uint64_t
mg_clock_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t
mg_clock_wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Splits the wall clock into broken-down UTC time and microseconds. */
static int
now_utc(struct tm *tm)
{
    int64_t us = mg_clock_wall_us();
    time_t secs = (time_t)(us / 1000000);

    gmtime_r(&secs, tm);
    return (int)(us % 1000000);
}

void
mg_clock_hl7_now(char *out, size_t size)
{
    struct tm tm;
    int us = now_utc(&tm);

    snprintf(out, size, "%04d%02d%02d%02d%02d%02d.%04d+0000", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             us / 100);
}

void
mg_clock_iso_now(char *out, size_t size)
{
    struct tm tm;
    int us = now_utc(&tm);

    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             us / 1000);
}
