/* Address ranges: parsing and matching with inet_pton, nothing else. */
#include "core/cidr.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/error.h"

static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0,
                                            0, 0, 0, 0, 0xff, 0xff};

/* addr's bits past prefix are all zero. */
static bool
host_bits_clear(const unsigned char *addr, size_t len, unsigned prefix)
{
    for (size_t bit = prefix; bit < len * 8; bit++)
        if (addr[bit / 8] & (0x80u >> (bit % 8)))
            return false;
    return true;
}

int
mg_cidr_parse(const char *text, struct mg_cidr *out)
{
    char buf[64];
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : strlen(text);
    unsigned max;
    char *end;
    long prefix;

    memset(out, 0, sizeof(*out));
    if (n == 0 || n >= sizeof(buf))
        return MG_EINVAL;
    memcpy(buf, text, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, out->addr) == 1)
        out->family = AF_INET, max = 32;
    else if (inet_pton(AF_INET6, buf, out->addr) == 1)
        out->family = AF_INET6, max = 128;
    else
        return MG_EINVAL;
    out->prefix = max;
    if (slash != NULL) {
        if (slash[1] < '0' || slash[1] > '9')
            return MG_EINVAL;
        prefix = strtol(slash + 1, &end, 10);
        if (*end != '\0' || prefix < 0 || prefix > (long)max)
            return MG_EINVAL;
        out->prefix = (unsigned)prefix;
    }
    if (!host_bits_clear(out->addr, max / 8, out->prefix))
        return MG_EINVAL;
    /* "::ffff:10.1.2.0/120" is 10.1.2.0/24: a peer is matched as its IPv4
     * address, so the entry must be one too (a shorter prefix would reach
     * outside the IPv4-mapped space: refused). */
    if (out->family == AF_INET6 && memcmp(out->addr, v4_mapped, 12) == 0) {
        if (out->prefix < 96)
            return MG_EINVAL;
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = AF_INET;
        out->prefix -= 96;
    }
    return MG_OK;
}

bool
mg_cidr_match(const struct mg_cidr *c, const char *ip)
{
    struct mg_cidr host; /* an address alone: IPv4-mapped made IPv4 */

    if (ip == NULL || strchr(ip, '/') != NULL ||
        mg_cidr_parse(ip, &host) != MG_OK || host.family != c->family)
        return false;
    for (unsigned bit = 0; bit < c->prefix; bit++)
        if ((host.addr[bit / 8] ^ c->addr[bit / 8]) & (0x80u >> (bit % 8)))
            return false;
    return true;
}
