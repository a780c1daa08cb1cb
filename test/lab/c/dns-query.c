/*
 * Sends COUNT DNS queries for NAME, each from its own socket (so each is a new flow with its
 * own conntrack entry), then waits up to TIMEOUT_MS for the answers.
 *
 * usage: dns-query DST_IP DST_PORT COUNT NAME TIMEOUT_MS (DST_IP: IPv4 or IPv6)
 * stdout: {"sent":S,"answered":A,"sendErrors":E}
 */
#include "lab-common.h"

#include <poll.h>

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s DST_IP DST_PORT COUNT NAME TIMEOUT_MS\n", argv[0]);
    return 2;
  }
  exit_with_parent();
  /* DST_IP of either family: an IPv6 destination is sent to from an IPv6 socket. */
  struct sockaddr_storage destination = {0};
  socklen_t destination_len;
  struct sockaddr_in *v4 = (struct sockaddr_in *)&destination;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&destination;
  uint16_t port = htons((uint16_t)atoi(argv[2]));
  if (inet_pton(AF_INET, argv[1], &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = port;
    destination_len = sizeof *v4;
  } else if (inet_pton(AF_INET6, argv[1], &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = port;
    destination_len = sizeof *v6;
  } else {
    fprintf(stderr, "bad address %s\n", argv[1]);
    return 2;
  }
  int count = atoi(argv[3]);
  int timeout_ms = atoi(argv[5]);
  if (count < 0 || count > 4096) {
    fprintf(stderr, "count out of range\n");
    return 2;
  }
  struct pollfd *fds = calloc((size_t)count + 1, sizeof *fds);
  if (!fds) die("calloc");
  long sent = 0, send_errors = 0, answered = 0;
  uint8_t query[512];
  for (int i = 0; i < count; i++) {
    int fd = socket(destination.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket");
    size_t len = dns_build_query(query, sizeof query, (uint16_t)i, argv[4], 1);
    if (sendto(fd, query, len, 0, (struct sockaddr *)&destination, destination_len) == (ssize_t)len)
      sent++;
    else
      send_errors++;
    fds[i].fd = fd;
    fds[i].events = POLLIN;
  }
  uint64_t deadline = monotonic_ns() + (uint64_t)timeout_ms * 1000000ull;
  int pending = count;
  while (pending > 0) {
    uint64_t now = monotonic_ns();
    if (now >= deadline) break;
    int ready = poll(fds, (nfds_t)count, (int)((deadline - now) / 1000000ull) + 1);
    if (ready <= 0) break;
    for (int i = 0; i < count; i++) {
      if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLERR))) {
        uint8_t answer[1500];
        if (recv(fds[i].fd, answer, sizeof answer, 0) > 0) answered++;
        close(fds[i].fd);
        fds[i].fd = -1;
        pending--;
      }
    }
  }
  printf("{\"sent\":%ld,\"answered\":%ld,\"sendErrors\":%ld}\n", sent, answered, send_errors);
  return 0;
}
