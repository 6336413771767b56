/* Where something went wrong, for HL7 ERR segments and FHIR
 * OperationOutcome: the error code says what failed, the diag says where
 * (STYLE.md section 4). */
#ifndef MG_CORE_DIAG_H
#define MG_CORE_DIAG_H

#include <stdarg.h>
#include <stddef.h>

#include "core/compiler.h"

/* HL7 table 0357 message error condition codes. */
enum mg_hl7_err {
    MG_HL7_ERR_OK = 0,
    MG_HL7_ERR_SEGMENT_SEQUENCE = 100,
    MG_HL7_ERR_REQUIRED_MISSING = 101,
    MG_HL7_ERR_DATA_TYPE = 102,
    MG_HL7_ERR_TABLE_VALUE = 103,
    MG_HL7_ERR_UNSUPPORTED_TYPE = 200,
    MG_HL7_ERR_UNSUPPORTED_EVENT = 201,
    MG_HL7_ERR_UNSUPPORTED_PROCESSING_ID = 202,
    MG_HL7_ERR_UNSUPPORTED_VERSION = 203,
    MG_HL7_ERR_UNKNOWN_KEY = 204,
    MG_HL7_ERR_DUPLICATE_KEY = 205,
    MG_HL7_ERR_RECORD_LOCKED = 206,
    MG_HL7_ERR_INTERNAL = 207,
};

struct mg_diag {
    char segment[4]; /* "PID"; "" when not about a segment */
    int seq;         /* 1-based occurrence of the segment, 0 = unknown */
    int field;       /* 1-based, 0 = whole segment */
    int rep;         /* 1-based, 0 = unknown */
    int comp;        /* 1-based, 0 = whole field */
    int sub;         /* 1-based, 0 = whole component */
    int code;        /* enum mg_hl7_err */
    char path[128];  /* FHIRPath or mapping target, "" if none */
    char text[256];  /* human-readable, no PHI */
};

void mg_diag_clear(struct mg_diag *d);
/* Sets code and a formatted text; keeps the location fields as they are. */
void mg_diag_set(struct mg_diag *d, int code, const char *fmt, ...)
    MG_PRINTF(3, 4);
/* Sets the HL7 location (segment id, occurrence, field, component). */
void mg_diag_at(struct mg_diag *d, const char *segment, int seq, int field,
                int comp);

#endif
