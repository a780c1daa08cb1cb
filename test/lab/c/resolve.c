/*
 * Resolves each NAME with the C library's getaddrinfo (glibc or musl, whichever it was
 * linked with), as an application in a pod would, honouring /etc/resolv.conf.
 *
 * usage: resolve NAME...
 * stdout: one JSON object per name: {"name":N,"addresses":[...]} or {"name":N,"error":E}
 */
#include "lab-common.h"

#include <netdb.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
    struct addrinfo *result = NULL;
    int rc = getaddrinfo(argv[i], NULL, &hints, &result);
    if (rc != 0) {
      printf("{\"name\":\"%s\",\"error\":\"%s\"}\n", argv[i], gai_strerror(rc));
      continue;
    }
    printf("{\"name\":\"%s\",\"addresses\":[", argv[i]);
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
  return 0;
}
