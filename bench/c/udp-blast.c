/*
 * Sends small UDP datagrams as fast as one socket can for a fixed time.
 * usage: udp-blast DST_IP DST_PORT SECONDS PAYLOAD_BYTES
 * prints {"sent":N,"errors":N,"seconds":S,"cpu_seconds":C}: C is the CPU time this thread ran
 * (the softirq work its sends cause in its own context included), for bench/sender-cpu.ts.
 *
 * Unconnected sendto(): an ICMP port-unreachable coming back (the drop variant) is then not
 * reported as ECONNREFUSED on the next send, so every datagram leaves.
 */
/* The lab's helpers: die(), exit_with_parent(), monotonic_ns(). */
#include "../../generators/lab-common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static double seconds_now(void) { return (double)monotonic_ns() / 1e9; }

static double thread_cpu_seconds(void) {
  struct timespec now;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now) != 0) die("clock_gettime");
  return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s DST_IP DST_PORT SECONDS PAYLOAD_BYTES\n", argv[0]);
    return 2;
  }
  exit_with_parent();
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
  if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) die("inet_pton");
  double seconds = atof(argv[3]);
  size_t size = (size_t)atoi(argv[4]);
  char payload[1500];
  if (size > sizeof payload) size = sizeof payload;
  memset(payload, 'x', sizeof payload);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) die("socket");
  unsigned long long sent = 0, errors = 0;
  double cpu_start = thread_cpu_seconds();
  double start = seconds_now(), end = start + seconds, now = start;
  while (now < end) {
    for (int i = 0; i < 256; i++) {
      if (sendto(fd, payload, size, 0, (struct sockaddr *)&dst, sizeof dst) == (ssize_t)size)
        sent++;
      else
        errors++;
    }
    now = seconds_now();
  }
  printf("{\"sent\":%llu,\"errors\":%llu,\"seconds\":%.6f,\"cpu_seconds\":%.6f}\n", sent, errors,
         now - start, thread_cpu_seconds() - cpu_start);
  return 0;
}
