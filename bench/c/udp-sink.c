/*
 * Counts the UDP datagrams received on one address until SIGTERM or SIGINT.
 * usage: udp-sink BIND_IP PORT
 * prints {"event":"listening"} once bound, then {"received":N,"bytes":N} on exit.
 */
/* The lab's helpers: die(), exit_with_parent(), monotonic_ns(). */
#include "../../generators/lab-common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static volatile sig_atomic_t stopping = 0;
static void on_stop(int sig) { (void)sig; stopping = 1; }

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s BIND_IP PORT\n", argv[0]);
    return 2;
  }
  exit_with_parent();
  struct sigaction action = {.sa_handler = on_stop};
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGINT, &action, NULL);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
  if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) die("inet_pton");
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) die("socket");
  /* Wake up now and then to notice the stop signal even when nothing arrives. */
  struct timeval timeout = {.tv_sec = 0, .tv_usec = 100000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  int buffer = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("bind");
  printf("{\"event\":\"listening\"}\n");
  fflush(stdout);
  unsigned long long received = 0, bytes = 0;
  char datagram[2048];
  while (!stopping) {
    ssize_t n = recv(fd, datagram, sizeof datagram, 0);
    if (n >= 0) {
      received++;
      bytes += (unsigned long long)n;
    }
  }
  printf("{\"received\":%llu,\"bytes\":%llu}\n", received, bytes);
  return 0;
}
