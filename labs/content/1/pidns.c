/* Lab 1: a child process in a new PID namespace, by hand.
 *
 * Build and run:  gcc -Wall -o pidns pidns.c && ./pidns   (Ctrl-D ends it)
 * The child prints `pid=` and `procs=` lines, then waits until its input closes, so that
 * you (and `isolab lab check 1`) can look at it from the host meanwhile.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

static char child_stack[1024 * 1024];

/* The processes this process can see: the numeric entries of /proc. */
static int visible_processes(void) {
    DIR *proc = opendir("/proc");
    struct dirent *entry;
    int n = 0;
    if (proc == NULL)
        return -1;
    while ((entry = readdir(proc)) != NULL)
        if (isdigit((unsigned char)entry->d_name[0]))
            n++;
    closedir(proc);
    return n;
}

static int child(void *arg) {
    (void)arg;
    /* TODO (step 3): give the child its own /proc. */
    printf("pid=%d\n", getpid());
    printf("procs=%d\n", visible_processes());
    fflush(stdout);
    while (getchar() != EOF) {
    }
    return 0;
}

int main(void) {
    /* TODO (step 2): the flags that give the child new namespaces. */
    int flags = SIGCHLD;
    pid_t pid = clone(child, child_stack + sizeof child_stack, flags, NULL);
    if (pid < 0) {
        perror("clone");
        return 1;
    }
    fprintf(stderr, "parent: my child is pid %d in my namespace\n", pid);
    int status;
    if (waitpid(pid, &status, 0) < 0) {
        perror("waitpid");
        return 1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
