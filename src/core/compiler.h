/* Compiler attributes used across medgate (STYLE.md section 3). */
#ifndef MG_CORE_COMPILER_H
#define MG_CORE_COMPILER_H

#define MG_MUST_CHECK __attribute__((warn_unused_result))
#define MG_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define MG_UNUSED __attribute__((unused))
#define MG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MG_MAX(a, b) ((a) > (b) ? (a) : (b))
/* The struct that holds member m at address p (like the kernel's). */
#define MG_CONTAINER_OF(p, type, m) ((type *)((char *)(p)-offsetof(type, m)))

#endif
