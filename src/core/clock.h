/* Wall and monotonic clocks. */
#ifndef MG_CORE_CLOCK_H
#define MG_CORE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic time, for durations and deadlines. */
uint64_t mg_clock_mono_us(void);
/* Wall-clock microseconds since the Unix epoch. */
int64_t mg_clock_wall_us(void);
/* Writes the wall time as an HL7 v2 DTM (YYYYMMDDHHMMSS.ffff+0000, UTC) into
 * out (at least 26 bytes). */
void mg_clock_hl7_now(char *out, size_t size);
/* Writes the wall time as ISO 8601 UTC with milliseconds (at least 25 bytes). */
void mg_clock_iso_now(char *out, size_t size);

#endif
