/*
 * gm-agent: the project's tiny QEMU guest agent for the end-to-end test guest.
 *
 * It speaks the qemu-guest-agent protocol (JSON commands, answers one JSON
 * object plus "\n" each) on the virtio-serial port named
 * org.qemu.guest_agent.0 and knows only what the test needs:
 *
 *   guest-sync-delimited  {"arguments":{"id":N}} -> 0xFF then {"return":N}
 *   guest-sync            {"arguments":{"id":N}} -> {"return":N}
 *   guest-ping            -> {"return":{}}
 *   guest-info            -> version and supported_commands (all enabled)
 *   guest-get-load        -> {"return":{"load1m":..,"load5m":..,"load15m":..}}
 *                            from /proc/loadavg (qemu-guest-agent >= 10.0)
 *
 * and two TEST-ONLY commands, which no real agent has:
 *
 *   x-gm-burn        {"arguments":{"count":N,"seconds":S}} forks N busy loops
 *                    (nice 19) that run for S seconds -> {"return":{"started":N}}
 *   x-gm-stop-agent  answers {"return":{}} and exits, closing the port
 *
 * Anything else -> {"error":{"class":"CommandNotFound",...}}. Messages are
 * framed by brace depth (strings and escapes respected), so both
 * newline-delimited input and back-to-back objects work; a 0xFF byte from the
 * host resets the framer, as qemu-ga does. The JSON reading is deliberately
 * minimal: it looks up the "execute" string and the numbers in "arguments".
 *
 * Built with: gcc -static -Os -o gm-agent gm-agent.c
 * `gm-agent --stdio` serves stdin/stdout instead of the port (self-test).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME "org.qemu.guest_agent.0"
#define VERSION "kubevirt-guest-metrics-e2e-0.1"
#define MAX_MSG 65536

static int port_fd = -1; /* read side */
static int out_fd = -1;  /* write side: port_fd, or stdout with --stdio */

static const char* commands[] = {"guest-sync-delimited", "guest-sync",     "guest-ping",
                                 "guest-info",           "guest-get-load", "x-gm-burn",
                                 "x-gm-stop-agent"};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void write_all(const char* buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(out_fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        usleep(10000);
        continue;
      }
      return; /* host went away: the reply is lost, as with qemu-ga */
    }
    buf += n;
    len -= (size_t)n;
  }
}

static void reply(const char* json) {
  write_all(json, strlen(json));
  write_all("\n", 1);
}

/* Find the device of the named virtio port: /dev/virtio-ports/NAME when udev
 * made it, else /dev/vportNpM from /sys/class/virtio-ports/vportNpM/name. */
static int find_port(char* path, size_t size) {
  snprintf(path, size, "/dev/virtio-ports/%s", PORT_NAME);
  if (access(path, F_OK) == 0) return 0;
  DIR* d = opendir("/sys/class/virtio-ports");
  if (!d) return -1;
  struct dirent* e;
  int found = -1;
  while (found < 0 && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char namefile[512], name[128] = {0};
    snprintf(namefile, sizeof namefile, "/sys/class/virtio-ports/%s/name", e->d_name);
    FILE* f = fopen(namefile, "r");
    if (!f) continue;
    if (fgets(name, sizeof name, f)) {
      name[strcspn(name, "\n")] = 0;
      if (strcmp(name, PORT_NAME) == 0) {
        snprintf(path, size, "/dev/%s", e->d_name);
        found = 0;
      }
    }
    fclose(f);
  }
  closedir(d);
  return found;
}

/* Pointer just past `"key"` and the following ':' in msg, or NULL. */
static const char* find_key(const char* msg, const char* key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\"", key);
  for (const char* p = strstr(msg, pat); p; p = strstr(p + 1, pat)) {
    const char* q = p + strlen(pat);
    while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n') q++;
    if (*q == ':') {
      q++;
      while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n') q++;
      return q;
    }
  }
  return NULL;
}

/* Copy the JSON number at p (an integer token) into out; 0 on success. */
static int number_token(const char* p, char* out, size_t size) {
  size_t n = 0;
  if (!p) return -1;
  if (*p == '-') out[n++] = *p++;
  while (*p >= '0' && *p <= '9' && n + 1 < size) out[n++] = *p++;
  out[n] = 0;
  return (n == 0 || (n == 1 && out[0] == '-')) ? -1 : 0;
}

static long argument_long(const char* args, const char* key, long dflt) {
  char tok[32];
  if (!args || number_token(find_key(args, key), tok, sizeof tok) != 0) return dflt;
  return strtol(tok, NULL, 10);
}

static void error_reply(const char* cls, const char* desc) {
  char buf[512];
  snprintf(buf, sizeof buf, "{\"error\":{\"class\":\"%s\",\"desc\":\"%s\"}}", cls, desc);
  reply(buf);
}

/* Forks up to count busy loops; returns how many started. The loops run at
 * nice 19: a runnable task counts in the load average whatever its nice
 * value, so the load climbs just the same, while the agent (nice 0) keeps
 * most of the vCPU whenever it has work and answers promptly. */
static long burn(long count, long seconds) {
  long started = 0;
  for (long i = 0; i < count; i++) {
    pid_t pid = fork();
    if (pid < 0) break;
    if (pid > 0) {
      started++;
    } else {
      if (nice(19) == -1) { /* stays at nice 0: the load climbs all the same */
      }
      close(port_fd);
      if (out_fd != port_fd) close(out_fd);
      time_t end = time(NULL) + seconds;
      volatile unsigned long x = 0;
      while (time(NULL) < end)
        for (int k = 0; k < 100000; k++) x += (unsigned long)k;
      _exit(0);
    }
  }
  return started;
}

static void handle(const char* msg) {
  char name[64] = {0}, id[32], buf[2048];
  const char* p = find_key(msg, "execute");
  if (!p || *p != '"') {
    error_reply("GenericError", "Expected 'execute' in QMP input");
    return;
  }
  size_t n = 0;
  for (p++; *p && *p != '"' && n + 1 < sizeof name; p++) {
    if (*p == '\\' || *p < 0x20) break; /* command names never need escapes */
    name[n++] = *p;
  }
  name[n] = 0;
  const char* args = find_key(msg, "arguments");

  if (strcmp(name, "guest-sync-delimited") == 0 || strcmp(name, "guest-sync") == 0) {
    if (!args || number_token(find_key(args, "id"), id, sizeof id) != 0) {
      error_reply("GenericError", "Parameter 'id' is missing");
      return;
    }
    if (strcmp(name, "guest-sync-delimited") == 0) write_all("\xff", 1);
    snprintf(buf, sizeof buf, "{\"return\":%s}", id);
    reply(buf);
  } else if (strcmp(name, "guest-ping") == 0) {
    reply("{\"return\":{}}");
  } else if (strcmp(name, "guest-info") == 0) {
    int off = snprintf(buf, sizeof buf, "{\"return\":{\"version\":\"%s\",\"supported_commands\":[",
                       VERSION);
    for (size_t i = 0; i < NCOMMANDS; i++)
      off += snprintf(buf + off, sizeof buf - (size_t)off,
                      "%s{\"enabled\":true,\"name\":\"%s\",\"success-response\":true}",
                      i ? "," : "", commands[i]);
    snprintf(buf + off, sizeof buf - (size_t)off, "]}}");
    reply(buf);
  } else if (strcmp(name, "guest-get-load") == 0) {
    char l1[32], l5[32], l15[32];
    FILE* f = fopen("/proc/loadavg", "r");
    int ok = f && fscanf(f, "%31s %31s %31s", l1, l5, l15) == 3;
    if (f) fclose(f);
    if (!ok) {
      error_reply("GenericError", "cannot read /proc/loadavg");
      return;
    }
    snprintf(buf, sizeof buf, "{\"return\":{\"load1m\":%s,\"load5m\":%s,\"load15m\":%s}}", l1, l5,
             l15);
    reply(buf);
  } else if (strcmp(name, "x-gm-burn") == 0) {
    long count = argument_long(args, "count", 1), seconds = argument_long(args, "seconds", 60);
    if (count < 1 || count > 256 || seconds < 1 || seconds > 3600) {
      error_reply("GenericError", "x-gm-burn wants 1 <= count <= 256 and 1 <= seconds <= 3600");
      return;
    }
    long started = burn(count, seconds);
    if (started == 0) {
      error_reply("GenericError", "x-gm-burn: fork failed");
      return;
    }
    snprintf(buf, sizeof buf, "{\"return\":{\"started\":%ld}}", started);
    reply(buf);
  } else if (strcmp(name, "x-gm-stop-agent") == 0) {
    reply("{\"return\":{}}");
    fprintf(stderr, "gm-agent: stopping on request\n");
    exit(0);
  } else {
    snprintf(buf, sizeof buf, "The command %s has not been found", name);
    error_reply("CommandNotFound", buf);
  }
}

int main(int argc, char** argv) {
  char path[512];
  signal(SIGCHLD, SIG_IGN); /* burners are reaped by the kernel */
  signal(SIGPIPE, SIG_IGN);
  if (argc > 1 && strcmp(argv[1], "--stdio") == 0) { /* host-side self-test */
    port_fd = 0, out_fd = 1;
    goto serve;
  }
  for (int tries = 0; find_port(path, sizeof path) != 0; tries++) {
    if (tries == 300) {
      fprintf(stderr, "gm-agent: no virtio port named %s\n", PORT_NAME);
      return 1;
    }
    usleep(100000);
  }
  while ((port_fd = open(path, O_RDWR | O_CLOEXEC)) < 0) {
    if (errno != ENOENT && errno != ENXIO) {
      fprintf(stderr, "gm-agent: open %s: %s\n", path, strerror(errno));
      return 1;
    }
    usleep(100000);
  }
  out_fd = port_fd;
  fprintf(stderr, "gm-agent: listening on %s\n", path);

serve:;

  static char msg[MAX_MSG];
  size_t len = 0;
  int depth = 0, in_string = 0, escaped = 0, overflow = 0;
  char chunk[4096];
  for (;;) {
    ssize_t got = read(port_fd, chunk, sizeof chunk);
    if (got < 0 && errno == EINTR) continue;
    if (got == 0 && out_fd != port_fd) return 0; /* --stdio: end of input */
    if (got <= 0) { /* host side not connected (read gives EOF): wait for it */
      usleep(200000);
      continue;
    }
    for (ssize_t i = 0; i < got; i++) {
      unsigned char c = (unsigned char)chunk[i];
      if (c == 0xff) { /* host-sent delimiter: drop any partial message */
        len = 0, depth = 0, in_string = 0, escaped = 0, overflow = 0;
        continue;
      }
      if (depth == 0 && c != '{') continue; /* whitespace/newlines between messages */
      if (len + 1 < sizeof msg)
        msg[len++] = (char)c;
      else
        overflow = 1;
      if (in_string) {
        if (escaped)
          escaped = 0;
        else if (c == '\\')
          escaped = 1;
        else if (c == '"')
          in_string = 0;
      } else if (c == '"') {
        in_string = 1;
      } else if (c == '{' || c == '[') {
        depth++;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) {
          msg[len] = 0;
          if (overflow)
            error_reply("GenericError", "message too long");
          else
            handle(msg);
          len = 0, overflow = 0;
        }
      }
    }
  }
}
