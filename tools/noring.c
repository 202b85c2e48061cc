/* noring — run a command with io_uring refused, as Docker's default seccomp
 * profile does: io_uring_setup, io_uring_enter and io_uring_register fail
 * with EPERM (or the errno given by -e). For the fallback specs.
 *   noring [-e ENOSYS|EPERM|ENOMEM] command [args...] */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int err = EPERM, i = 1;
  if (argc > 2 && strcmp(argv[1], "-e") == 0) {
    if (strcmp(argv[2], "ENOSYS") == 0) err = ENOSYS;
    else if (strcmp(argv[2], "ENOMEM") == 0) err = ENOMEM;
    else if (strcmp(argv[2], "EPERM") != 0) {
      fprintf(stderr, "noring: unknown errno %s\n", argv[2]);
      return 2;
    }
    i = 3;
  }
  if (i >= argc) {
    fprintf(stderr, "usage: noring [-e ENOSYS|EPERM|ENOMEM] command [args...]\n");
    return 2;
  }
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 1, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof filter / sizeof *filter, filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
    perror("noring: seccomp");
    return 1;
  }
  execvp(argv[i], argv + i);
  perror("noring: exec");
  return 127;
}
