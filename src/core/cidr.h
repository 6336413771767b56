/* Address ranges for allow-lists: "10.1.2.0/24", "192.0.2.7",
 * "2001:db8::/32". Pure: no I/O. */
#ifndef MG_CORE_CIDR_H
#define MG_CORE_CIDR_H

#include <stdbool.h>

#include "core/compiler.h"

struct mg_cidr {
    int family;              /* AF_INET or AF_INET6 */
    unsigned char addr[16];  /* network byte order; 4 used for AF_INET */
    unsigned prefix;         /* leading bits that must match */
};

/* Parses an address with an optional "/prefix" (an address alone is a
 * whole one: /32 or /128). Bits past the prefix must be zero, so that
 * "10.1.2.3/24" (a typo for an address or for 10.1.2.0/24) is refused.
 * MG_OK or MG_EINVAL. */
MG_MUST_CHECK int mg_cidr_parse(const char *text, struct mg_cidr *out);

/* Whether ip ("192.0.2.7", "2001:db8::1"; an IPv4-mapped IPv6 address
 * counts as its IPv4 one) is in range c. False when ip does not parse. */
bool mg_cidr_match(const struct mg_cidr *c, const char *ip);

#endif
