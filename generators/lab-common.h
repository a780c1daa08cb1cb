/* Helpers shared by the lab's traffic generators: namespace entry, CPU pinning, DNS wire format. */
#ifndef LAB_COMMON_H
#define LAB_COMMON_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static inline void die(const char *what) {
  fprintf(stderr, "%s: %s\n", what, strerror(errno));
  exit(1);
}

/* Die with the parent: a generator must never outlive the lab that started it. */
static inline void exit_with_parent(void) {
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) die("prctl");
  if (getppid() == 1) exit(1);
}

/* setns() on CLONE_NEWNET applies to the calling thread only, so one process can
   drive senders in several namespaces, one thread each. */
static inline void enter_netns(const char *name) {
  char path[256];
  snprintf(path, sizeof path, "/run/netns/%s", name);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die(path);
  if (setns(fd, CLONE_NEWNET) != 0) die("setns");
  close(fd);
}

static inline void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

static inline uint64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Busy-wait rather than sleep: a sleeping thread wakes with tens of microseconds of
   jitter, far wider than the race window we aim at. */
static inline void spin_until(uint64_t deadline_ns) {
  while (monotonic_ns() < deadline_ns) {
  }
}

/* Writes a standard recursive query for NAME/QTYPE into BUF; returns its length. */
static inline size_t dns_build_query(uint8_t *buf, size_t cap, uint16_t id, const char *name,
                                     uint16_t qtype) {
  size_t n = 0;
  if (cap < 12 + strlen(name) + 2 + 4) return 0;
  buf[n++] = id >> 8;
  buf[n++] = id & 0xff;
  buf[n++] = 0x01; /* RD */
  buf[n++] = 0x00;
  buf[n++] = 0; buf[n++] = 1; /* QDCOUNT */
  buf[n++] = 0; buf[n++] = 0;
  buf[n++] = 0; buf[n++] = 0;
  buf[n++] = 0; buf[n++] = 0;
  const char *label = name;
  while (*label) {
    const char *dot = strchr(label, '.');
    size_t len = dot ? (size_t)(dot - label) : strlen(label);
    buf[n++] = (uint8_t)len;
    memcpy(buf + n, label, len);
    n += len;
    label += len;
    if (*label == '.') label++;
  }
  buf[n++] = 0;
  buf[n++] = qtype >> 8;
  buf[n++] = qtype & 0xff;
  buf[n++] = 0;
  buf[n++] = 1; /* IN */
  return n;
}

#endif
