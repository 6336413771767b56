/* medgate entry point (placeholder until the serve loop lands). */
#include <stdio.h>
#include <string.h>

int
main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "version") == 0) {
        puts("medgate 0.1.0");
        return 0;
    }
    fprintf(stderr, "usage: medgate version\n");
    return 2;
}
