/* Lab 10's probe: tries what container root may not do, and the two calls that create a
 * directory. Prints name=0 when a call succeeds, name=ERRNO when it fails; then ready=1, and
 * waits until its input closes so that the host can look at it meanwhile.
 * Run it only in a container: every attempt is harmless, but it is root's to make.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void report(const char *name, long result) {
    printf("%s=%d\n", name, result < 0 ? errno : 0);
}

int main(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    /* A tmpfs over the container's own /tmp, in its own mount namespace. */
    report("mount", mount("lab10", "/tmp", "tmpfs", 0, NULL));
    if (umount2("/tmp", MNT_DETACH) == 0)
        printf("unmounted=1\n");
    /* The clock set to the time it already has. */
    report("clock", clock_settime(CLOCK_REALTIME, &now));
    /* An empty module image, which the kernel would refuse to load anyway. */
    report("module", syscall(SYS_init_module, NULL, 0UL, ""));
    /* The system calls themselves, not libc's wrappers, which may pick either. */
    report("mkdir", syscall(SYS_mkdir, "/tmp/lab10-mkdir", 0700));
    report("mkdirat", syscall(SYS_mkdirat, AT_FDCWD, "/tmp/lab10-mkdirat", 0700));
    rmdir("/tmp/lab10-mkdir");
    rmdir("/tmp/lab10-mkdirat");
    report("getpid", syscall(SYS_getpid));
    printf("ready=1\n");
    fflush(stdout);
    while (getchar() != EOF) {
    }
    return 0;
}
