/*
 * DNAT clash: one connected UDP socket, two threads sending at the same instant (what glibc
 * and musl do with the A and AAAA queries of one lookup) to a ClusterIP that the node DNATs
 * at random over two backends. Both packets create an unconfirmed entry for the same
 * original tuple; the kernel resolves the clash (clash_resolve) rather than dropping.
 *
 * usage: dnat-clash NS DST_IP DST_PORT ROUNDS (DST_IP of either family)
 * stdout: {"rounds":R,"sent":S,"sendErrors":E}
 */
#include "lab-common.h"

#include <pthread.h>
#include <stdatomic.h>

struct sender {
  pthread_t thread;
  int cpu;
  uint16_t qtype;
};

static pthread_barrier_t go, done;
static volatile uint64_t start_ns;
static volatile int current_fd = -1;
static volatile int finished;
static atomic_long sent, send_errors;

static void *run_sender(void *arg) {
  struct sender *self = arg;
  pin_to_cpu(self->cpu);
  uint8_t query[512];
  size_t query_len =
      dns_build_query(query, sizeof query, (uint16_t)(0x1000 + self->qtype), "clash.example.test", self->qtype);
  for (;;) {
    pthread_barrier_wait(&go);
    if (finished) return NULL;
    spin_until(start_ns);
    if (send(current_fd, query, query_len, 0) == (ssize_t)query_len)
      atomic_fetch_add(&sent, 1);
    else
      atomic_fetch_add(&send_errors, 1);
    pthread_barrier_wait(&done);
  }
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s NS DST_IP DST_PORT ROUNDS\n", argv[0]);
    return 2;
  }
  exit_with_parent();
  enter_netns(argv[1]);
  /* IPv4 or IPv6 (a ClusterIP of either family of a dual-stack Service). */
  struct sockaddr_storage destination = {0};
  socklen_t destination_len;
  uint16_t destination_port = htons((uint16_t)atoi(argv[3]));
  struct sockaddr_in *v4 = (struct sockaddr_in *)&destination;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&destination;
  if (inet_pton(AF_INET, argv[2], &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = destination_port;
    destination_len = sizeof *v4;
  } else if (inet_pton(AF_INET6, argv[2], &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = destination_port;
    destination_len = sizeof *v6;
  } else {
    fprintf(stderr, "bad address %s\n", argv[2]);
    return 2;
  }
  long rounds = atol(argv[4]);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  struct sender senders[2] = {{.cpu = 0, .qtype = 1}, {.cpu = cpus > 1 ? 1 : 0, .qtype = 28}};
  pthread_barrier_init(&go, NULL, 3);
  pthread_barrier_init(&done, NULL, 3);
  for (int i = 0; i < 2; i++)
    if (pthread_create(&senders[i].thread, NULL, run_sender, &senders[i]) != 0) die("pthread_create");

  long round;
  for (round = 0; round < rounds; round++) {
    /* A fresh socket per round: a new source port, so a new conntrack entry to race on. */
    int fd = socket(destination.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&destination, destination_len) != 0) die("connect");
    current_fd = fd;
    start_ns = monotonic_ns() + 100000;
    pthread_barrier_wait(&go);
    pthread_barrier_wait(&done);
    close(fd);
  }
  finished = 1;
  pthread_barrier_wait(&go);
  for (int i = 0; i < 2; i++) pthread_join(senders[i].thread, NULL);
  printf("{\"rounds\":%ld,\"sent\":%ld,\"sendErrors\":%ld}\n", round, atomic_load(&sent),
         atomic_load(&send_errors));
  return 0;
}
