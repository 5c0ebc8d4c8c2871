/* Lab 14's escape attempts, each against a thing the lab set up and owns:
 *   escapes disk MAJOR:MINOR   make a node for the lab's "host disk" (a read-only loop
 *                              device), open it, mount it read-only on /tmp, read /tmp/secret
 *   escapes socket NAME        connect to the lab's service on the abstract Unix socket NAME
 *   escapes fd                 look for an inherited directory descriptor and read "secret"
 *                              through it
 *   escapes exe                open /proc/self/exe for writing (and write nothing)
 *   escapes serve NAME TOKEN   the lab's "host service": answers TOKEN to every connection
 * Each attempt prints KEY=VALUE lines: how far it got (`*_step`), the errno that stopped it
 * (`*_errno`, 0 when nothing did), and what it obtained.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

static int fail(const char *what, const char *step) {
    printf("%s_step=%s\n%s_errno=%d\n", what, step, what, errno);
    return 0;
}

/* The first line of a file, without its newline; an empty string when unreadable. */
static void first_line(int fd, char *out, size_t size) {
    ssize_t n = read(fd, out, size - 1);
    out[n > 0 ? n : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
}

static int disk(const char *device) {
    unsigned major_nr, minor_nr;
    char secret[128];
    if (sscanf(device, "%u:%u", &major_nr, &minor_nr) != 2) {
        fprintf(stderr, "expected MAJOR:MINOR, got %s\n", device);
        return 2;
    }
    unlink("/dev/lab14-disk");
    if (mknod("/dev/lab14-disk", S_IFBLK | 0600, makedev(major_nr, minor_nr)) != 0)
        return fail("disk", "mknod");
    int fd = open("/dev/lab14-disk", O_RDONLY);
    if (fd < 0)
        return fail("disk", "open");
    close(fd);
    if (mount("/dev/lab14-disk", "/tmp", "ext2", MS_RDONLY, NULL) != 0)
        return fail("disk", "mount");
    fd = open("/tmp/secret", O_RDONLY);
    if (fd < 0) {
        fail("disk", "read");
    } else {
        first_line(fd, secret, sizeof secret);
        close(fd);
        printf("disk_step=done\ndisk_errno=0\ndisk_secret=%s\n", secret);
    }
    umount2("/tmp", MNT_DETACH);
    return 0;
}

/* An abstract socket's address: a leading NUL, then the name. */
static socklen_t abstract(struct sockaddr_un *addr, const char *name) {
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    strncpy(addr->sun_path + 1, name, sizeof addr->sun_path - 2);
    return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(addr->sun_path + 1);
}

static int socket_attempt(const char *name) {
    struct sockaddr_un addr;
    char reply[128];
    socklen_t len = abstract(&addr, name);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return fail("socket", "socket");
    if (connect(fd, (struct sockaddr *)&addr, len) != 0)
        return fail("socket", "connect");
    first_line(fd, reply, sizeof reply);
    printf("socket_step=done\nsocket_errno=0\nsocket_reply=%s\n", reply);
    close(fd);
    return 0;
}

static int serve(const char *name, const char *token) {
    struct sockaddr_un addr;
    socklen_t len = abstract(&addr, name);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, len) != 0 || listen(fd, 16) != 0) {
        perror("serve");
        return 1;
    }
    for (;;) {
        int peer = accept(fd, NULL, NULL);
        if (peer < 0)
            continue;
        dprintf(peer, "%s\n", token);
        close(peer);
    }
}

static int fd_attempt(void) {
    char secret[128];
    for (int fd = 3; fd < 256; fd++) {
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        int file = openat(fd, "secret", O_RDONLY);
        if (file < 0)
            return fail("fd", "openat");
        first_line(file, secret, sizeof secret);
        close(file);
        printf("fd_step=done\nfd_errno=0\nfd_number=%d\nfd_secret=%s\n", fd, secret);
        return 0;
    }
    errno = EBADF;
    return fail("fd", "find");
}

static int exe(void) {
    int fd = open("/proc/self/exe", O_WRONLY);
    if (fd < 0)
        return fail("exe", "open");
    close(fd);
    printf("exe_step=done\nexe_errno=0\n");
    return 0;
}

int main(int argc, char **argv) {
    int status = 2;
    if (argc == 3 && strcmp(argv[1], "disk") == 0)
        status = disk(argv[2]);
    else if (argc == 3 && strcmp(argv[1], "socket") == 0)
        status = socket_attempt(argv[2]);
    else if (argc == 2 && strcmp(argv[1], "fd") == 0)
        status = fd_attempt();
    else if (argc == 2 && strcmp(argv[1], "exe") == 0)
        status = exe();
    else if (argc == 4 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2], argv[3]);
    else
        fprintf(stderr, "usage: %s disk MAJOR:MINOR | socket NAME | fd | exe | serve NAME TOKEN\n", argv[0]);
    fflush(stdout);
    return status;
}
