/*
 * Resolves each NAME with the C library's getaddrinfo (glibc or musl, whichever it was
 * linked with), as an application in a pod would, honouring /etc/resolv.conf.
 *
 * usage: resolve NAME...
 *        resolve --every MS NAME...   resolves the names again every MS milliseconds until
 *                                     killed: a long-lived process, as a pod's application is,
 *                                     that the agent's diagnosis can read (its C library, its
 *                                     resolv.conf) while its lookups go on
 * stdout: one JSON object per name and lookup: {"name":N,"ms":T,"addresses":[...]} or
 *         {"name":N,"ms":T,"error":E}, flushed at once; T is how long getaddrinfo took
 *         (monotonic clock, milliseconds): the stall the application felt
 */
#include "lab-common.h"

#include <netdb.h>
#include <sys/socket.h>
#include <time.h>

static void resolve_all(int first, int argc, char **argv) {
  for (int i = first; i < argc; i++) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
    struct addrinfo *result = NULL;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int rc = getaddrinfo(argv[i], NULL, &hints, &result);
    clock_gettime(CLOCK_MONOTONIC, &end);
    long ms = (end.tv_sec - start.tv_sec) * 1000L + (end.tv_nsec - start.tv_nsec) / 1000000L;
    if (rc != 0) {
      printf("{\"name\":\"%s\",\"ms\":%ld,\"error\":\"%s\"}\n", argv[i], ms,
             gai_strerror(rc));
      continue;
    }
    printf("{\"name\":\"%s\",\"ms\":%ld,\"addresses\":[", argv[i], ms);
    int first = 1;
    for (struct addrinfo *ai = result; ai; ai = ai->ai_next) {
      char text[INET6_ADDRSTRLEN];
      const void *addr = ai->ai_family == AF_INET
                             ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                             : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
      if (!inet_ntop(ai->ai_family, addr, text, sizeof text)) continue;
      printf("%s\"%s\"", first ? "" : ",", text);
      first = 0;
    }
    printf("]}\n");
    freeaddrinfo(result);
  }
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "--every") == 0) {
    long ms = atol(argv[2]);
    struct timespec pause = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    for (;;) {
      resolve_all(3, argc, argv);
      nanosleep(&pause, NULL);
    }
  }
  resolve_all(1, argc, argv);
  return 0;
}
