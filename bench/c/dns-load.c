/*
 * A DNS query load generator: UDP queries (type A, one name) from a few sockets at a target
 * rate for a fixed time, each answer matched to its query by (socket, DNS id).
 * usage: dns-load DST_IP DST_PORT NAME RATE SECONDS SOCKETS WAIT_MS
 *   RATE: queries per second, 0 = as fast as the sockets take them
 *   SOCKETS: 1 to 64 sockets, each bound to its own ephemeral source port
 *   WAIT_MS: after the last query, how long answers are still awaited
 * prints {"sent":N,"answered":N,"unanswered":N,"late":N,"stray":N,"sendErrors":N,
 *         "seconds":S,"rate":R,"sockets":K}
 * seconds: the sending time. unanswered = sent - answered after the wait. stray: datagrams that
 * match no pending query (a second answer, or one from another address).
 *
 * Ids run up from a random start on each socket; a socket never reuses an id within a run
 * unless it sends more than 65,536 queries: such a reuse counts the earlier query unanswered
 * at once (`late` counts them), as a resolver that sends the same id again has given up on it.
 */
#include "../../generators/lab-common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#define MAX_SOCKETS 64
#define BATCH 64

enum { NONE = 0, PENDING = 1 };

struct client {
  int fd;
  uint16_t next_id;
  uint8_t state[65536];
};

static struct client clients[MAX_SOCKETS];

static long parse_long(const char *text, const char *what, long min, long max) {
  char *end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
    fprintf(stderr, "dns-load: %s must be an integer from %ld to %ld (got \"%s\")\n", what, min,
            max, text);
    exit(2);
  }
  return value;
}

static double parse_seconds(const char *text) {
  char *end = NULL;
  double value = strtod(text, &end);
  if (end == text || *end != '\0' || !(value > 0) || value > 3600) {
    fprintf(stderr, "dns-load: SECONDS must be a number above 0 and at most 3600 (got \"%s\")\n",
            text);
    exit(2);
  }
  return value;
}

static double seconds_now(void) { return (double)monotonic_ns() / 1e9; }

static unsigned long long sent, answered, late, stray, send_errors;

/* Reads every datagram waiting on every socket; answers clear their query's pending mark. */
static void drain(int sockets, const struct sockaddr_in *server) {
  uint8_t buf[1500];
  for (int s = 0; s < sockets; s++) {
    for (;;) {
      struct sockaddr_in from;
      socklen_t from_len = sizeof from;
      ssize_t n = recvfrom(clients[s].fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from,
                           &from_len);
      if (n < 0) break;
      uint16_t id = (uint16_t)(buf[0] << 8 | buf[1]);
      int is_answer = n >= 12 && (buf[2] & 0x80) != 0 &&
                      from.sin_addr.s_addr == server->sin_addr.s_addr &&
                      from.sin_port == server->sin_port;
      if (is_answer && clients[s].state[id] == PENDING) {
        clients[s].state[id] = NONE;
        answered++;
      } else {
        stray++;
      }
    }
  }
}

/* Sends the socket's next query; 0 when its send buffer is full (EAGAIN) or the send failed. */
static int send_one(int s, const struct sockaddr_in *server, const char *name) {
  struct client *c = &clients[s];
  uint16_t id = c->next_id++;
  if (c->state[id] == PENDING) late++; /* reused: the earlier query went unanswered */
  uint8_t query[300];
  size_t len = dns_build_query(query, sizeof query, id, name, 1 /* A */);
  if (sendto(c->fd, query, len, 0, (const struct sockaddr *)server, sizeof *server) ==
      (ssize_t)len) {
    c->state[id] = PENDING;
    sent++;
    return 1;
  }
  /* Not sent: the id is free again (a query that never left cannot be answered). */
  if (errno != EAGAIN && errno != EWOULDBLOCK) send_errors++;
  c->state[id] = NONE;
  c->next_id--;
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: %s DST_IP DST_PORT NAME RATE SECONDS SOCKETS WAIT_MS\n", argv[0]);
    return 2;
  }
  exit_with_parent();
  struct sockaddr_in server = {.sin_family = AF_INET};
  if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) {
    fprintf(stderr, "dns-load: DST_IP must be an IPv4 address (got \"%s\")\n", argv[1]);
    return 2;
  }
  server.sin_port = htons((uint16_t)parse_long(argv[2], "DST_PORT", 1, 65535));
  const char *name = argv[3];
  if (strlen(name) == 0 || strlen(name) > 253) {
    fprintf(stderr, "dns-load: NAME must have 1 to 253 characters\n");
    return 2;
  }
  long rate = parse_long(argv[4], "RATE", 0, 10000000);
  double seconds = parse_seconds(argv[5]);
  int sockets = (int)parse_long(argv[6], "SOCKETS", 1, MAX_SOCKETS);
  long wait_ms = parse_long(argv[7], "WAIT_MS", 0, 60000);

  srand((unsigned)monotonic_ns());
  struct pollfd fds[MAX_SOCKETS];
  for (int s = 0; s < sockets; s++) {
    clients[s].fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (clients[s].fd < 0) die("socket");
    struct sockaddr_in any = {.sin_family = AF_INET};
    if (bind(clients[s].fd, (struct sockaddr *)&any, sizeof any) != 0) die("bind");
    clients[s].next_id = (uint16_t)rand();
    fds[s] = (struct pollfd){.fd = clients[s].fd, .events = POLLIN};
  }

  double start = seconds_now(), end = start + seconds, now = start;
  int next_socket = 0;
  while (now < end) {
    /* Queries due by now (all of a batch when unpaced), spread over the sockets in turn. */
    unsigned long long due = rate > 0 ? (unsigned long long)((now - start) * (double)rate) : sent + BATCH;
    int full = 0;
    while (sent < due && full < sockets) {
      /* A socket whose buffer is full is passed over; all of them full ends the burst. */
      full = send_one(next_socket, &server, name) ? 0 : full + 1;
      next_socket = (next_socket + 1) % sockets;
    }
    drain(sockets, &server);
    if (rate > 0) {
      /*
       * Sleep until the next query is due, but at least half a millisecond: queries leave in
       * small bursts rather than waking the sender for each one (it shares the CPUs with the
       * server it measures). An answer arriving wakes it earlier.
       */
      double next_due = start + (double)(sent + 1) / (double)rate;
      double wait_s = next_due - seconds_now();
      if (wait_s < 0.0005) wait_s = 0.0005;
      struct timespec timeout = {.tv_sec = 0, .tv_nsec = (long)(wait_s * 1e9)};
      if (wait_s >= 1) timeout = (struct timespec){.tv_sec = 1, .tv_nsec = 0};
      ppoll(fds, (nfds_t)sockets, &timeout, NULL);
    } else if (full == sockets) {
      /* The sockets' send buffers are full: wait until one takes more, or an answer comes. */
      for (int s = 0; s < sockets; s++) fds[s].events = POLLIN | POLLOUT;
      poll(fds, (nfds_t)sockets, 10);
      for (int s = 0; s < sockets; s++) fds[s].events = POLLIN;
    }
    now = seconds_now();
  }
  double sending = now - start;
  double wait_end = now + (double)wait_ms / 1000.0;
  while (answered + late < sent && (now = seconds_now()) < wait_end) {
    int remaining_ms = (int)((wait_end - now) * 1000) + 1;
    poll(fds, (nfds_t)sockets, remaining_ms < 50 ? remaining_ms : 50);
    drain(sockets, &server);
  }
  printf("{\"sent\":%llu,\"answered\":%llu,\"unanswered\":%llu,\"late\":%llu,\"stray\":%llu,"
         "\"sendErrors\":%llu,\"seconds\":%.6f,\"rate\":%ld,\"sockets\":%d}\n",
         sent, answered, sent - answered, late, stray, send_errors, sending, rate, sockets);
  return 0;
}
