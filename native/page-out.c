/*
 * page-out PID START-END...: asks the kernel to page out (MADV_PAGEOUT) the given address
 * ranges (hexadecimal, as /proc/PID/maps writes them) of process PID, through
 * process_madvise(2), Linux 5.10 and later. Prints the number of bytes advised.
 *
 * The agent runs it once bpftrace has attached its probes, on bpftrace's mappings of LLVM and
 * Clang: bpftrace runs them only to compile its program, and their pages, faulted in by the
 * compile, would otherwise stay resident for the process's life (src/sources/bpftrace/
 * compiler-page-out.ts). Node has no binding for process_madvise, hence this program.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
/* process_madvise takes at most IOV_MAX (1024) ranges per call. */
#define RANGES_PER_CALL 512

static int parse_range(const char *text, struct iovec *range) {
  uintmax_t start, end;
  char extra;
  if (sscanf(text, "%jx-%jx%c", &start, &end, &extra) != 2 || end <= start) return -1;
  range->iov_base = (void *)(uintptr_t)start;
  range->iov_len = (size_t)(end - start);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s PID START-END...\n", argv[0]);
    return 2;
  }
  char *rest;
  errno = 0;
  long pid = strtol(argv[1], &rest, 10);
  if (errno != 0 || *rest != '\0' || pid <= 0) {
    fprintf(stderr, "page-out: not a process id: %s\n", argv[1]);
    return 2;
  }
  size_t count = (size_t)(argc - 2);
  struct iovec *ranges = calloc(count, sizeof *ranges);
  if (ranges == NULL) {
    perror("page-out: calloc");
    return 1;
  }
  for (size_t i = 0; i < count; i++) {
    if (parse_range(argv[i + 2], &ranges[i]) != 0) {
      fprintf(stderr, "page-out: not an address range: %s\n", argv[i + 2]);
      return 2;
    }
  }
  int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
  if (pidfd < 0) {
    fprintf(stderr, "page-out: pidfd_open(%ld): %s\n", pid, strerror(errno));
    return 1;
  }
  uintmax_t advised = 0;
  for (size_t done = 0; done < count; done += RANGES_PER_CALL) {
    size_t batch = count - done < RANGES_PER_CALL ? count - done : RANGES_PER_CALL;
    long bytes = syscall(SYS_process_madvise, pidfd, ranges + done, batch, MADV_PAGEOUT, 0);
    if (bytes < 0) {
      fprintf(stderr, "page-out: process_madvise(%ld): %s\n", pid, strerror(errno));
      return 1;
    }
    advised += (uintmax_t)bytes;
  }
  printf("%ju\n", advised);
  return 0;
}
