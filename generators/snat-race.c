/*
 * SNAT race: two pods send one UDP datagram each, from the SAME source port, to the same
 * upstream address at the same instant, each sender on its own CPU. The node masquerades
 * both to its own address; while neither entry is confirmed, both pick the same reply
 * tuple and the second to reach confirmation is dropped (insert_failed).
 *
 * usage: snat-race NS_A NS_B DST_IP DST_PORT BASE_PORT PORT_SPAN ROUNDS INTERVAL_US
 *   DST_IP is IPv4 or IPv6 (the senders use the family of the address they are given).
 *   ROUNDS 0 runs until SIGTERM/SIGINT and prints one line per round.
 * stdout: {"rounds":R,"sent":S,"sendErrors":E,"firstPort":P,"lastPort":Q}
 */
#include "lab-common.h"

#include <pthread.h>
#include <stdatomic.h>

struct sender {
  pthread_t thread;
  const char *netns;
  int cpu;
};

static pthread_barrier_t go, done;
static atomic_int stop_requested;
static volatile uint64_t start_ns;
static volatile uint16_t source_port;
static volatile int finished;
/* IPv4 or IPv6, whichever DST_IP is; family 0 until parsed. */
static struct sockaddr_storage destination;
static socklen_t destination_len;
static atomic_long sent, send_errors;

static void on_signal(int sig) {
  (void)sig;
  atomic_store(&stop_requested, 1);
}

static void *run_sender(void *arg) {
  struct sender *self = arg;
  enter_netns(self->netns);
  pin_to_cpu(self->cpu);
  uint8_t query[512];
  size_t query_len = dns_build_query(query, sizeof query, 0x5ace, "race.example.test", 1);
  for (;;) {
    pthread_barrier_wait(&go);
    if (finished) return NULL;
    int fd = socket(destination.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    struct sockaddr_storage local = {.ss_family = destination.ss_family};
    if (destination.ss_family == AF_INET6)
      ((struct sockaddr_in6 *)&local)->sin6_port = htons(source_port);
    else
      ((struct sockaddr_in *)&local)->sin_port = htons(source_port);
    if (bind(fd, (struct sockaddr *)&local, destination_len) != 0) die("bind");
    spin_until(start_ns);
    if (sendto(fd, query, query_len, 0, (struct sockaddr *)&destination, destination_len) ==
        (ssize_t)query_len)
      atomic_fetch_add(&sent, 1);
    else
      atomic_fetch_add(&send_errors, 1);
    pthread_barrier_wait(&done);
    close(fd);
  }
}

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr,
            "usage: %s NS_A NS_B DST_IP DST_PORT BASE_PORT PORT_SPAN ROUNDS INTERVAL_US\n",
            argv[0]);
    return 2;
  }
  exit_with_parent();
  uint16_t destination_port = htons((uint16_t)atoi(argv[4]));
  struct sockaddr_in *v4 = (struct sockaddr_in *)&destination;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&destination;
  if (inet_pton(AF_INET, argv[3], &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = destination_port;
    destination_len = sizeof *v4;
  } else if (inet_pton(AF_INET6, argv[3], &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = destination_port;
    destination_len = sizeof *v6;
  } else {
    fprintf(stderr, "bad address %s\n", argv[3]);
    return 2;
  }
  int base_port = atoi(argv[5]);
  int port_span = atoi(argv[6]);
  long rounds = atol(argv[7]);
  long interval_us = atol(argv[8]);
  if (base_port < 1 || port_span < 1 || base_port + port_span > 65536 || rounds < 0) {
    fprintf(stderr, "bad port range or rounds\n");
    return 2;
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);

  /* After a pause the senders' CPUs may be idle and slow to wake: give them longer to get
     to the starting line, or one sends before the other is there. */
  uint64_t lead_ns = interval_us > 0 ? 2000000 : 300000;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  struct sender senders[2] = {{.netns = argv[1], .cpu = 0}, {.netns = argv[2], .cpu = cpus > 1 ? 1 : 0}};
  pthread_barrier_init(&go, NULL, 3);
  pthread_barrier_init(&done, NULL, 3);
  for (int i = 0; i < 2; i++)
    if (pthread_create(&senders[i].thread, NULL, run_sender, &senders[i]) != 0) die("pthread_create");

  long round = 0;
  int first_port = base_port, last_port = base_port;
  while ((rounds == 0 || round < rounds) && !atomic_load(&stop_requested)) {
    last_port = base_port + (int)(round % port_span);
    source_port = (uint16_t)last_port;
    /* Far enough ahead for both threads to wake and bind, close enough to stay cheap. */
    start_ns = monotonic_ns() + lead_ns;
    pthread_barrier_wait(&go);
    pthread_barrier_wait(&done);
    round++;
    if (rounds == 0) {
      printf("{\"round\":%ld,\"sourcePort\":%d}\n", round, last_port);
      fflush(stdout);
    }
    if (interval_us > 0) usleep((useconds_t)interval_us);
  }
  finished = 1;
  pthread_barrier_wait(&go);
  for (int i = 0; i < 2; i++) pthread_join(senders[i].thread, NULL);
  printf("{\"rounds\":%ld,\"sent\":%ld,\"sendErrors\":%ld,\"firstPort\":%d,\"lastPort\":%d}\n", round,
         atomic_load(&sent), atomic_load(&send_errors), first_port, last_port);
  return 0;
}
