/*
 * Calls getppid() in a tight loop for a fixed time: a syscall tracepoint driven as hard as
 * one thread can.
 * usage: getppid-loop SECONDS
 * prints {"calls":N,"seconds":S}
 */
/* The lab's helpers: die(), exit_with_parent(), monotonic_ns(). */
#include "../../generators/lab-common.h"
#include <sys/syscall.h>

static double seconds_now(void) { return (double)monotonic_ns() / 1e9; }

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s SECONDS\n", argv[0]);
    return 2;
  }
  exit_with_parent();
  double seconds = atof(argv[1]);
  unsigned long long calls = 0;
  double start = seconds_now(), end = start + seconds, now = start;
  while (now < end) {
    for (int i = 0; i < 1024; i++) syscall(SYS_getppid);
    calls += 1024;
    now = seconds_now();
  }
  printf("{\"calls\":%llu,\"seconds\":%.6f}\n", calls, now - start);
  return 0;
}
