/*
 * httpload: a single-threaded epoll HTTP/1.1 load generator for bench/asgi.py.
 *
 *   httpload --port P [--path /items/7?q=x] [--conns 64] [--warmup 2] [--duration 5] [--pid N]
 *
 * C keep-alive connections each send one GET, wait for its whole response, and send the
 * next (no pipelining: what browsers and HTTP clients do). Responses must carry a
 * Content-Length (a chunked or close-delimited one counts as an error: the benchmark's app
 * answers small JSON). After the warm-up, it counts the responses of the measured window,
 * their round-trip latency, non-2xx statuses, and with --pid the server's CPU time over
 * exactly that window (utime+stime from /proc). One JSON object on stdout at the end.
 *
 * It must never be the slower party: one read buffer for every connection, responses
 * parsed in place, no allocation per request.
 *
 * Build: cc -O2 -o httpload httpload.c -lm   (bench/asgi.py does this and caches by mtime).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RESP_MAX (256 * 1024)

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double proc_cpu(int pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long utime = 0, stime = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* latency histogram: log-linear buckets of 1/16 octave from 1 us */
#define HBUCKETS (64 * 16)
static uint64_t hist[HBUCKETS];

static int hindex(uint64_t ns) {
    double us = ns / 1000.0;
    if (us < 1) return 0;
    int idx = (int)(log2(us) * 16);
    return idx >= HBUCKETS ? HBUCKETS - 1 : idx;
}

static double quantile_us(double q) {
    uint64_t total = 0, seen = 0;
    for (int i = 0; i < HBUCKETS; i++) total += hist[i];
    if (!total) return 0;
    for (int i = 0; i < HBUCKETS; i++) {
        seen += hist[i];
        if (seen >= q * total) return pow(2.0, (i + 1) / 16.0);
    }
    return 0;
}

typedef struct {
    int fd;
    uint64_t sent_at;
    size_t have;            /* bytes of the current response read so far */
    size_t need;            /* its total length once the head is parsed, else 0 */
    char buf[RESP_MAX];
} conn;

static const char *cfg_path = "/";
static int cfg_port = 0, cfg_conns = 64, cfg_pid = 0;
static double cfg_warmup = 2.0, cfg_duration = 5.0;
static char request[2048];
static size_t request_len;
static uint64_t errors, non2xx, measured, measuring;

static int send_request(conn *c) {
    c->have = c->need = 0;
    c->sent_at = now_ns();
    ssize_t n = send(c->fd, request, request_len, MSG_NOSIGNAL);
    return n == (ssize_t)request_len ? 0 : -1;
}

/* Content-Length of a complete head, or -1 when it has none. */
static long content_length(const char *head, size_t len) {
    const char *p = head, *end = head + len;
    while (p < end) {
        const char *eol = memmem(p, end - p, "\r\n", 2);
        if (!eol) break;
        if (eol - p > 15 && strncasecmp(p, "content-length:", 15) == 0)
            return strtol(p + 15, NULL, 10);
        p = eol + 2;
    }
    return -1;
}

static int on_readable(conn *c) {
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->have, RESP_MAX - c->have, 0);
        if (n == 0) return -1;
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        c->have += n;
        while (1) {
            if (!c->need) {
                char *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
                if (!end) {
                    if (c->have == RESP_MAX) return -1;
                    break;
                }
                size_t head = end - c->buf + 4;
                long body = content_length(c->buf, head);
                if (body < 0 || head + body > RESP_MAX) return -1;
                c->need = head + body;
                int status = atoi(c->buf + 9);
                if (status < 200 || status > 299) non2xx++;
            }
            if (c->have < c->need) break;
            uint64_t t = now_ns();
            if (measuring) {
                measured++;
                hist[hindex(t - c->sent_at)]++;
            }
            size_t extra = c->have - c->need;
            if (extra) return -1;       /* nothing was pipelined: nothing may follow */
            if (send_request(c)) return -1;
            break;
        }
    }
}

int main(int argc, char **argv) {
    static struct option opts[] = {
        {"port", 1, 0, 'p'}, {"path", 1, 0, 'a'}, {"conns", 1, 0, 'c'}, {"warmup", 1, 0, 'w'},
        {"duration", 1, 0, 'd'}, {"pid", 1, 0, 'P'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'p': cfg_port = atoi(optarg); break;
        case 'a': cfg_path = optarg; break;
        case 'c': cfg_conns = atoi(optarg); break;
        case 'w': cfg_warmup = atof(optarg); break;
        case 'd': cfg_duration = atof(optarg); break;
        case 'P': cfg_pid = atoi(optarg); break;
        default: fprintf(stderr, "usage: httpload --port P [--path ...]\n"); return 2;
        }
    }
    if (!cfg_port || cfg_conns < 1) { fprintf(stderr, "httpload: --port is required\n"); return 2; }
    request_len = snprintf(request, sizeof request,
                           "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: httpload\r\n"
                           "Accept: */*\r\n\r\n", cfg_path, cfg_port);

    int ep = epoll_create1(0);
    conn *conns = calloc(cfg_conns, sizeof(conn));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(cfg_port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    for (int i = 0; i < cfg_conns; i++) {
        conn *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr)) {
            printf("{\"error\": \"connect: %s\"}\n", strerror(errno));
            return 1;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        if (send_request(c)) { errors++; }
    }

    uint64_t t0 = now_ns();
    uint64_t t_start = t0 + (uint64_t)(cfg_warmup * 1e9);
    uint64_t t_end = t_start + (uint64_t)(cfg_duration * 1e9);
    double cpu0 = 0, cpu1 = 0;
    struct epoll_event events[256];
    int alive = cfg_conns;
    while (alive > 0) {
        uint64_t t = now_ns();
        if (!measuring && t >= t_start && t < t_end) {
            measuring = 1;
            if (cfg_pid) cpu0 = proc_cpu(cfg_pid);
        }
        if (t >= t_end) {
            if (cfg_pid) cpu1 = proc_cpu(cfg_pid);
            break;
        }
        int n = epoll_wait(ep, events, 256, 10);
        for (int i = 0; i < n; i++) {
            conn *c = events[i].data.ptr;
            if (on_readable(c)) {
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                alive--;
            }
        }
    }
    double secs = cfg_duration;
    printf("{\"requests\": %llu, \"req_per_s\": %.1f, \"errors\": %llu, \"non2xx\": %llu, "
           "\"latency_us\": {\"p50\": %.1f, \"p99\": %.1f}",
           (unsigned long long)measured, measured / secs, (unsigned long long)errors,
           (unsigned long long)non2xx, quantile_us(0.5), quantile_us(0.99));
    if (cfg_pid && measured)
        printf(", \"server_cpu_s\": %.3f, \"cpu_us_per_req\": %.3f", cpu1 - cpu0,
               (cpu1 - cpu0) * 1e6 / measured);
    printf("}\n");
    return 0;
}
