/* The memory and wake-up floor of any libvirt client on this machine, for
 * bench/exporter.sh: connects like guest-exporter does (default event loop,
 * which also makes the daemon ping it; keepalive argv[3] s x argv[4], default
 * 30 x 3 like guest-exporter; one domain listing), then only runs the event
 * loop. Exits by itself after argv[2] seconds (default 900). Build:
 * cc libvirt-floor.c $(pkg-config --cflags --libs libvirt). */
#include <libvirt/libvirt.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s URI [SECONDS [KEEPALIVE_INTERVAL [KEEPALIVE_COUNT]]]\n", argv[0]);
    return 2;
  }
  const long limit = argc > 2 ? atol(argv[2]) : 900;
  const int ka_interval = argc > 3 ? atoi(argv[3]) : 30;
  const unsigned ka_count = argc > 4 ? (unsigned)atoi(argv[4]) : 3;
  if (virEventRegisterDefaultImpl() != 0) return 1;
  virConnectPtr conn = virConnectOpen(argv[1]);
  if (conn == NULL) return 1;
  virConnectSetKeepAlive(conn, ka_interval, ka_count);
  virDomainPtr* domains = NULL;
  const int n = virConnectListAllDomains(conn, &domains, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
  for (int i = 0; i < n; i++) virDomainFree(domains[i]);
  free(domains);
  printf("connected, %d running domain(s)\n", n);
  fflush(stdout);
  const time_t end = time(NULL) + limit;
  while (time(NULL) < end) {
    if (virEventRunDefaultImpl() < 0) break;
  }
  virConnectClose(conn);
  return 0;
}
