/*
 * loadgen: a single-threaded epoll WebSocket load generator for bench/compare.py.
 *
 * It is the client side of the server comparison: it must never be the slower party,
 * so it does no per-message allocation, parses server frames in place from one shared
 * read buffer, and batches every reply a read produces into one send() per connection.
 *
 * Modes (one JSON object on stdout at the end; diagnostics on stderr):
 *   echo    C connections to /echo, each keeping P messages of S bytes in flight.
 *           Measures msg/s and per-message round-trip latency.
 *   fanout  R receivers + 1 publisher on /fanout. The publisher keeps W messages in
 *           flight; payload = [u64 seq][u64 publish time ns][padding]. A message leaves
 *           the window once all R receivers have it (or after --stall seconds, counted).
 *           Every frame a receiver gets is counted; lost = expected - received after a
 *           drain period; latency is publish -> receipt.
 *           With --churn R, it also opens R new connections per second (paced; at most
 *           --churn-max in progress), times each from connect() to the 101, and resets
 *           it: how fast new users get in while the established ones are busy.
 *           --recv-ports P,Q: receivers connect round-robin to these ports (other nodes of a
 *           cluster) while the publisher stays on --port; --pids A,B: more processes whose
 *           CPU time over the measured window is reported ("pids_cpu_s"), e.g. the other
 *           nodes and redis-server.
 *           --group K: small rooms. The receivers form rooms of K (path --path + the
 *           room's number, e.g. --path /room/g gives /room/g0, /room/g1, ...), each with a
 *           publisher of its own on --port keeping W messages in flight; with --recv-ports
 *           P,Q the members of every room alternate between the ports (rooms split over
 *           nodes). A message leaves its publisher's window when its K receivers have it.
 *           --chat: JSON chat, the shape of the seed's chat example. The publisher sends
 *           text frames {"type":"message","content":"<16 hex seq><16 hex time><padding>"}
 *           (--size: bytes of the content, at least 32); every connection's path gets
 *           ?user=<name> (receivers u<i>, publishers p<k>). The server is expected to answer
 *           with a JSON object of its own, {"user":..,"message":"<the content>",
 *           "timestamp":..}: receivers find its "message" field, read seq and time from
 *           it, check the padding byte for byte and that "user" is their room's
 *           publisher; anything else is counted "corrupt".
 *           Works alone (one room, --path) and with --group.
 *           --eio: speak Engine.IO v4 / Socket.IO over the WebSocket (--path
 *           /socket.io/?EIO=4&transport=websocket): answer the "0{...}" open packet with
 *           "40", count a connection open at the server's "40", answer pings "2" with
 *           "3"; the publisher emits 42["p","<hex seq><hex time>..."], receivers read the
 *           same out of 42["m","..."] events.
 *   idle    N connections held open. Prints {"event":"holding",...} once all are open
 *           and waits for a line (or EOF) on stdin before closing, so the harness can
 *           read the server's RSS while they are held.
 *
 * Fan-out options for the compression benchmark:
 *   --json     messages are S-byte JSON chat texts (text frames) instead of binary:
 *              {"seq":"<16 hex>","ts":"<16 hex>","type":"chat",...,"text":"<words>"},
 *              one of 64 pre-made texts per sequence number, so every receiver checks
 *              every byte of every message it gets (counted as "corrupt" otherwise).
 *   --deflate  every connection offers permessage-deflate (RFC 7692; --offer sets the
 *              header value, default what browsers send). Compressed frames (RSV1) are
 *              inflated with zlib, with or without context takeover as the server's
 *              answer says; the publisher compresses its messages too, each on its own.
 *   Every fan-out run reports the bytes of the delivered frames (headers included),
 *   so compressed and plain runs compare on bytes on the wire per delivered message.
 *
 * --v1: clients that speak the fastws.v1 subprotocol (docs/protocol.md), as the
 *   recovering clients do, so fan-out figures are for them. Every connection offers
 *   "Sec-WebSocket-Protocol: fastws.v1"; a 101 that does not answer fastws.v1 stops the
 *   run with an error (the server does not speak it). Receivers read every text frame
 *   as a JSON object (in place, in their message buffer): fastws.welcome, fastws.joined,
 *   fastws.heartbeat, fastws.sent, fastws.left and unknown fastws.* frames are counted
 *   "v1_control_frames" and nothing else (a joined frame's epoch and offset, when
 *   present, are where the receiver's offsets start); each fastws.message is one
 *   message. Its position is checked per receiver: within one epoch the offset must be
 *   the previous one + 1 (a violation counts one "v1_gaps"), a new epoch counts
 *   "v1_epochs_changed", a message without offset (the room keeps no history: start the
 *   bench server with BENCH_HISTORY=N) counts "v1_unpositioned"; all over the whole
 *   run, probes included. Then its payload is checked as without --v1: the binary
 *   payload arrives as base64 in "bytes" (the first 24 characters decoded for seq and
 *   time, the rest compared with the padding's base64), --chat's object as the value of
 *   "data" (the same checks of "user", "timestamp" and "message"); any other frame or
 *   payload counts "corrupt". Works with plain fan-out, --group and --chat, and idle
 *   (connections just held); not with echo (direct messages, which fastws.v1 leaves
 *   as they are), --json (its text would arrive JSON-escaped in "text"), --deflate or
 *   --eio: those are refused. The publishers' frames (welcome, joined, and the
 *   fastws.sent answering each broadcast when the room keeps history) are counted in
 *   "publisher_frames", as everything a publisher gets.
 *
 * With --pid, the server's CPU time (utime+stime from /proc/PID/stat) is read at the
 * exact boundaries of the measured phase, so CPU per delivered message covers the very
 * same window as the message count.
 *
 * Build: cc -O2 -DWITH_ZLIB -o loadgen loadgen.c -lz   (bench/compare.py does this and caches
 * by mtime). Without -DWITH_ZLIB it builds with no zlib at all, and --deflate is refused.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef WITH_ZLIB
#include <zlib.h>
#endif

/* ------------------------------------------------------------------ utilities */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg) {
    printf("{\"error\": \"%s\"}\n", msg);
    fflush(stdout);
    exit(2);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void) {
    /* xorshift64*: mask keys only need to vary, not to be secret, in a benchmark. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* ---------------------------------------------------------- SHA-1 and base64 */
/* Only used to check Sec-WebSocket-Accept, i.e. on messages of about 60 bytes. */

static uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const uint8_t *blk) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)blk[4 * i] << 24 | (uint32_t)blk[4 * i + 1] << 16 |
               (uint32_t)blk[4 * i + 2] << 8 | (uint32_t)blk[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
        else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
        else { f = b ^ c ^ d; k = 0xCA62C1D6; }
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d; d = c; c = rol32(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

static void sha1(const uint8_t *msg, size_t len, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t full = len / 64 * 64;
    for (size_t i = 0; i < full; i += 64) sha1_block(h, msg + i);
    uint8_t tail[128] = {0};
    size_t rest = len - full;
    memcpy(tail, msg + full, rest);
    tail[rest] = 0x80;
    size_t tlen = rest < 56 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) tail[tlen - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t i = 0; i < tlen; i += 64) sha1_block(h, tail + i);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = h[i] >> 24; out[4 * i + 1] = h[i] >> 16;
        out[4 * i + 2] = h[i] >> 8; out[4 * i + 3] = h[i];
    }
}

static void base64(const uint8_t *in, size_t len, char *out) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len) v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = 0;
}

/* -------------------------------------------------------- latency histogram */
/* Log-linear buckets over nanoseconds: 64 sub-buckets per power of two (~1.6% error). */

#define HIST_SUB 64
#define HIST_BUCKETS (HIST_SUB + 58 * HIST_SUB)

typedef struct {
    uint64_t count[HIST_BUCKETS];
    uint64_t total, max;
} histogram;

static histogram hist;                           /* message latency */
static histogram hs_hist;                        /* --churn: connect() to 101 */

static int hist_index(uint64_t v) {
    if (v < HIST_SUB) return (int)v;
    int e = 63 - __builtin_clzll(v);             /* >= 6 */
    int sub = (int)((v >> (e - 6)) & (HIST_SUB - 1));
    return HIST_SUB + (e - 6) * HIST_SUB + sub;
}

static uint64_t hist_value(int idx) {
    if (idx < HIST_SUB) return (uint64_t)idx;
    int e = (idx - HIST_SUB) / HIST_SUB + 6;
    uint64_t sub = (uint64_t)((idx - HIST_SUB) % HIST_SUB);
    uint64_t lo = (1ull << e) | (sub << (e - 6));
    return lo + (1ull << (e - 6)) / 2;           /* bucket midpoint */
}

static void hist_add_to(histogram *h, uint64_t v) {
    h->count[hist_index(v)]++;
    h->total++;
    if (v > h->max) h->max = v;
}

static void hist_add(uint64_t v) { hist_add_to(&hist, v); }

static double quantile_us(const histogram *h, double q) {
    if (!h->total) return 0.0;
    uint64_t want = (uint64_t)(q * (double)h->total);
    if (want >= h->total) want = h->total - 1;
    uint64_t cum = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        cum += h->count[i];
        if (cum > want) return (double)hist_value(i) / 1000.0;
    }
    return (double)h->max / 1000.0;
}

static double hist_quantile_us(double q) { return quantile_us(&hist, q); }

/* ------------------------------------------------------------- server CPU */

static double proc_cpu_seconds(int pid) {
    if (pid <= 0) return -1.0;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1.0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1.0;
    buf[n] = 0;
    /* The command name may contain spaces and parentheses: fields start after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p) return -1.0;
    p += 2;                                      /* now at field 3 (state) */
    unsigned long long utime = 0, stime = 0;
    for (int field = 3; field <= 15 && *p; field++) {
        char *end = strchr(p, ' ');
        if (field == 14) utime = strtoull(p, NULL, 10);
        if (field == 15) stime = strtoull(p, NULL, 10);
        if (!end) break;
        p = end + 1;
    }
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ------------------------------------------------------------- connections */

enum { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };
enum { ROLE_ECHO, ROLE_RECEIVER, ROLE_PUBLISHER, ROLE_IDLE, ROLE_CHURN };

typedef struct conn {
    int fd;
    uint64_t t_start;                            /* --churn: when connect() was called */
    uint8_t state, role, want_out;
    /* handshake */
    char *hs_buf;
    int hs_len;
    char accept[32];
    /* frame parser state */
    uint8_t in_frame, masked, opcode, fin;
    uint8_t hdr[14];
    uint8_t hlen, hneed;
    uint8_t mask[4];
    uint64_t remaining, frame_pos, frame_len;
    /* message being assembled (binary mode: only its first 16 bytes matter) */
    uint8_t msg_opcode, msg_headlen, rsv1, msg_compressed, msg_overflow;
    uint8_t msg_head[48];                        /* --eio needs 8 + 32 bytes */
    uint8_t eio;                                 /* --eio: 0 before "0{", 1 before "40", 2 open */
    uint16_t port;                               /* the server port this connection uses */
    uint64_t msg_len;
    uint64_t msg_wire;                           /* frame bytes of this message, headers too */
    /* --json: the whole message (inflated when compressed), cfg_size bytes expected */
    uint8_t *msg;
    size_t msg_out;
    uint8_t *zbuf;                               /* compressed bytes, no context takeover */
    size_t zlen;
    /* permessage-deflate as the server's answer set it */
    uint8_t pmd, srv_nct;
    uint8_t cli_bits;                            /* our deflate window; 0 = 15 */
    void *inflater;                              /* zlib stream, made at the first compressed message */
    /* control frame payload (<= 125 bytes), kept to answer pings */
    uint8_t ctl[125];
    uint8_t ctl_len;
    /* output */
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    /* echo: send times of the messages in flight, in order */
    uint64_t *fifo;
    uint32_t fifo_head, fifo_count;
    /* fan-out receiver bookkeeping */
    uint8_t probe_seen, seq_started;
    uint64_t next_expected;
    uint64_t got_measured;
    /* --v1: the receiver's position in its room (epoch as a hash of its text) */
    uint8_t v1_pos;
    uint64_t v1_epoch, v1_offset;
} conn;

/* configuration */
static const char *cfg_mode = "echo";
static const char *cfg_host = "127.0.0.1";
static int cfg_port = 0;
static const char *cfg_path = NULL;
static int cfg_conns = 64;
static int cfg_inflight = 4;
static int cfg_size = 32;
static int cfg_window = 16;
static double cfg_warmup = 2.0;
static double cfg_duration = 5.0;
static double cfg_drain = 5.0;
static double cfg_stall = 5.0;
static double cfg_setup_timeout = 120.0;
static double cfg_hold_max = 120.0;
static int cfg_pid = 0;
static int cfg_max_pending = 256;
static int cfg_json = 0;
static int cfg_chat = 0;                         /* fanout: JSON chat events, see the header */
static int cfg_deflate = 0;
static const char *cfg_offer = "permessage-deflate; client_max_window_bits";
static double cfg_churn_rate = 0;                /* echo: new upgrades per second, paced */
static int cfg_churn_max = 256;                  /* ... at most this many in progress */
static int cfg_eio = 0;                          /* Engine.IO v4 / Socket.IO framing */
static int cfg_group = 0;                        /* fanout: rooms of this many receivers */
static int cfg_v1 = 0;                           /* speak the fastws.v1 subprotocol */
static int n_pubs = 1;                           /* publishers: 1, or one per room */
static uint32_t *ring_pub;                       /* --group: which publisher sent a seq */
static int *pub_inflight;                        /* --group: messages in flight per publisher */
static int recv_ports[16], n_recv_ports = 0;     /* fanout receivers' ports (default --port) */
static int extra_pids[16], n_extra_pids = 0;     /* more processes to charge CPU to */
static double extra_cpu_start[16], extra_cpu_end[16];

/* global state */
static int ep;
static int churn_ep = -1;                        /* --churn sockets: polled apart, often */
static conn *conns;
static int nconns;
static int next_to_connect, pending, opened;
static uint64_t connect_errors, handshake_errors, server_closed, bad_frames;
static struct sockaddr_in server_addr;
static uint8_t *payload_pattern;
static uint8_t rbuf[256 * 1024];
/* --churn: connections opened, upgraded, timed and reset over and over */
static conn *churn;
static int *churn_free, churn_nfree;
static uint64_t t_churn0, churn_due, churn_started, churn_ok, churn_failed, churn_skipped;
static uint64_t churn_measured_ok, churn_measured_failed;
static volatile sig_atomic_t interrupted;

enum { PH_SETUP, PH_PROBE, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_HOLD, PH_DONE };
static int phase = PH_SETUP;
static uint64_t t_phase_end;                     /* end of warm-up / measure / drain */
static uint64_t t_measure_start, t_measure_end;
static double cpu_server_start, cpu_server_end, cpu_self_start, cpu_self_end;
static uint64_t measured_msgs;                   /* echo replies or fan-out frames in window */
static uint64_t publisher_frames;                /* frames the server sent back to the publisher */
static uint64_t measured_wire;                   /* frame bytes of the measured messages */
static uint64_t measured_compressed;             /* measured messages that came with RSV1 */
static uint64_t corrupt;                         /* --json messages with wrong length or bytes */
static uint64_t deflate_accepted;                /* handshakes that agreed on permessage-deflate */
static char first_extension[160];                /* the first answer's extension header */
static uint64_t v1_gaps, v1_epochs_changed, v1_unpositioned, v1_control_frames;
static char *v1_b64_expected;                    /* --v1: base64 of the binary payload */
static size_t v1_b64_len;

/* fan-out window */
#define RING (1u << 16)
static uint32_t *ring_count;
static uint64_t *ring_time;
static uint64_t next_seq = 1, oldest_seq = 1;
static uint64_t first_measured_seq, last_measured_seq;
static uint64_t stalls, out_of_order, gaps, probes_ready;
static uint64_t t_last_probe;
static uint64_t *room_probe_t;                   /* --group: each room's last probe */
static int receivers;

static void out_reserve(conn *c, size_t extra) {
    if (c->out_len + extra <= c->out_cap) return;
    if (c->out_off) {                            /* compact before growing */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + extra <= c->out_cap) return;
    }
    size_t cap = c->out_cap ? c->out_cap : 256;
    while (cap < c->out_len + extra) cap *= 2;
    c->out = realloc(c->out, cap);
    if (!c->out) die("out of memory");
    c->out_cap = cap;
}

/* Append one masked client frame (rsv1: a permessage-deflate compressed message). */
static void append_frame_rsv(conn *c, int opcode, int rsv1, const uint8_t *data, size_t len) {
    out_reserve(c, len + 14);
    uint8_t *p = c->out + c->out_len;
    *p++ = 0x80 | (rsv1 ? 0x40 : 0) | (uint8_t)opcode;
    if (len < 126) {
        *p++ = 0x80 | (uint8_t)len;
    } else if (len < 65536) {
        *p++ = 0x80 | 126;
        *p++ = (uint8_t)(len >> 8);
        *p++ = (uint8_t)len;
    } else {
        *p++ = 0x80 | 127;
        for (int i = 7; i >= 0; i--) *p++ = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint32_t key = (uint32_t)rng_next();
    uint8_t m[4];
    memcpy(m, &key, 4);
    memcpy(p, m, 4);
    p += 4;
    size_t i = 0;
    uint64_t m8;
    uint8_t mm[8] = {m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]};
    memcpy(&m8, mm, 8);
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, data + i, 8);
        v ^= m8;
        memcpy(p + i, &v, 8);
    }
    for (; i < len; i++) p[i] = data[i] ^ m[i & 3];
    p += len;
    c->out_len = (size_t)(p - c->out);
}

static void append_frame(conn *c, int opcode, const uint8_t *data, size_t len) {
    append_frame_rsv(c, opcode, 0, data, len);
}

/* ------------------------------------------------------- --json chat messages */
/* 64 texts of exactly cfg_size bytes, made once from the seeded generator:
 *   {"seq":"<16 hex>","ts":"<16 hex>","type":"chat","room":"general","user":"..",
 *    "id":"<16 hex>","text":"<words from a small vocabulary>"}
 * The first JSON_HEAD bytes (sequence number and publish time) are written per
 * message; the rest identifies the text, so a receiver checks every byte. Word salad
 * over ~90 common words compresses about as well as real chat (to ~45%). */

#define JSON_VARIANTS 64
#define ZBUF_CAP ((size_t)cfg_size * 2 + 64)        /* deflate never grows text this much */
#define JSON_HEAD 48                             /* {"seq":"<16>","ts":"<16> */
static uint8_t *json_text[JSON_VARIANTS];

static const char *const json_words[] = {
    "the", "meeting", "moved", "to", "thursday", "so", "we", "can", "review", "release",
    "notes", "and", "load", "test", "results", "before", "ship", "anything", "new",
    "production", "please", "check", "your", "calendar", "tell", "me", "if", "that", "time",
    "does", "not", "work", "for", "you", "I", "will", "book", "large", "room", "again",
    "bring", "coffee", "everyone", "who", "joins", "early", "deploy", "friday", "never",
    "on", "a", "is", "it", "broken", "fixed", "now", "thanks", "great", "idea", "let's",
    "ask", "ops", "about", "latency", "graph", "looks", "weird", "since", "yesterday",
    "maybe", "cache", "lunch", "at", "noon", "ok", "sounds", "good", "see", "tomorrow",
    "ping", "when", "done", "lgtm", "merged", "main", "branch", "ticket", "customer", "bug",
};
static const char *const json_users[] = {
    "ada", "grace", "linus", "margaret", "ken", "barbara", "dennis", "frances", "alan", "edsger",
};

static void json_make_texts(void) {
    int nw = (int)(sizeof json_words / sizeof *json_words);
    int nu = (int)(sizeof json_users / sizeof *json_users);
    for (int v = 0; v < JSON_VARIANTS; v++) {
        uint8_t *m = malloc((size_t)cfg_size + 1);
        if (!m) die("out of memory");
        int n = snprintf((char *)m, (size_t)cfg_size + 1,
                         "{\"seq\":\"%016x\",\"ts\":\"%016x\",\"type\":\"chat\","
                         "\"room\":\"general\",\"user\":\"%s\",\"id\":\"%016llx\",\"text\":\"",
                         0, 0, json_users[rng_next() % (uint64_t)nu],
                         (unsigned long long)rng_next());
        int text_end = cfg_size - 2;             /* room for the closing "} */
        while (n < text_end) {
            const char *w = json_words[rng_next() % (uint64_t)nw];
            char num[24];
            if (rng_next() % 16 == 0) {          /* now and then a number, as chat has */
                snprintf(num, sizeof num, "%u", (unsigned)(rng_next() % 10000));
                w = num;
            }
            for (const char *q = w; *q && n < text_end; q++) m[n++] = (uint8_t)*q;
            if (n < text_end) m[n++] = ' ';
        }
        m[n++] = '"';
        m[n++] = '}';
        json_text[v] = m;
    }
}

static void put_hex16(uint8_t *p, uint64_t v) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) { p[i] = (uint8_t)hex[v & 15]; v >>= 4; }
}

static int get_hex16(const uint8_t *p, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        uint8_t ch = p[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0) return 0;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 1;
}

/* The publisher's message seq, sent at t, into buf (cfg_size bytes). */
static void json_fill(uint8_t *buf, uint64_t seq, uint64_t t) {
    memcpy(buf, json_text[seq % JSON_VARIANTS], (size_t)cfg_size);
    put_hex16(buf + 8, seq);
    put_hex16(buf + 32, t);
}

/* ------------------------------------------------------------ --chat messages */
/* The publisher's frame is {"type":"message","content":"<16 hex seq><16 hex time><pad>"}:
 * made once, with the 32 hex digits written per message. The pad is payload_pattern's
 * letters, which no JSON encoder escapes, so a receiver can compare it byte for byte. */

#define CHAT_PREFIX "{\"type\":\"message\",\"content\":\""
#define CHAT_PREFIX_LEN (sizeof CHAT_PREFIX - 1)
/* A reply holds the content plus the user, a time stamp, keys and whatever spacing the
 * server's encoder picks; this much over the content is plenty. */
#define CHAT_SLACK 1024
/* --v1: the wrapper around a room message's payload (type, room, epoch, offset). */
#define V1_SLACK 512
static uint8_t *chat_frame;
static size_t chat_frame_len;
static size_t msg_cap;                           /* --json / --chat: a receiver's message buffer */

static void chat_make_frame(void) {
    chat_frame_len = CHAT_PREFIX_LEN + (size_t)cfg_size + 2;
    chat_frame = malloc(chat_frame_len);
    if (!chat_frame) die("out of memory");
    memcpy(chat_frame, CHAT_PREFIX, CHAT_PREFIX_LEN);
    memcpy(chat_frame + CHAT_PREFIX_LEN, payload_pattern, (size_t)cfg_size);
    memcpy(chat_frame + CHAT_PREFIX_LEN + cfg_size, "\"}", 2);
}

static void chat_fill(uint64_t seq, uint64_t t) {
    put_hex16(chat_frame + CHAT_PREFIX_LEN, seq);
    put_hex16(chat_frame + CHAT_PREFIX_LEN + 16, t);
}

static const uint8_t *skip_space(const uint8_t *p, const uint8_t *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* Where the value of `key` (quotes included) starts in the object m[0..len), or NULL.
 * The key must be followed by a colon, so the same word as a string value does not count. */
static const uint8_t *json_value_of(const uint8_t *m, size_t len, const char *key) {
    size_t klen = strlen(key);
    const uint8_t *p = m, *end = m + len;
    while (p < end && (p = memmem(p, (size_t)(end - p), key, klen)) != NULL) {
        const uint8_t *q = skip_space(p + klen, end);
        if (q < end && *q == ':') return skip_space(q + 1, end);
        p += klen;
    }
    return NULL;
}

/* --chat: the server's object m[0..len) (the whole message, or with --v1 the value of
 * "data") must have "timestamp", "user" naming c's room's publisher ("p<room>") and
 * "message" holding the content as sent; returns its seq and send time. */
static int chat_check(const conn *c, const uint8_t *m, size_t len, uint64_t *seq,
                      uint64_t *sent) {
    const uint8_t *end = m + len;
    if (len < 2 || m[0] != '{' || end[-1] != '}') return 0;
    if (!json_value_of(m, len, "\"timestamp\"")) return 0;
    const uint8_t *u = json_value_of(m, len, "\"user\"");
    if (!u || end - u < 4 || u[0] != '"' || u[1] != 'p') return 0;
    long room = 0;
    const uint8_t *digits = u + 2;
    for (u = digits; u < end && u - digits < 9 && *u >= '0' && *u <= '9'; u++)
        room = room * 10 + (*u - '0');
    long mine = cfg_group ? (long)(c - conns) / cfg_group : 0;
    if (u == digits || u >= end || *u != '"' || room != mine) return 0;
    const uint8_t *v = json_value_of(m, len, "\"message\"");
    if (!v || end - v < (ptrdiff_t)cfg_size + 2 || *v != '"') return 0;
    v++;
    if (!get_hex16(v, seq) || !get_hex16(v + 16, sent)) return 0;
    if (memcmp(v + 32, payload_pattern + 32, (size_t)cfg_size - 32)) return 0;
    return v[cfg_size] == '"';
}

/* --chat: the receiver's message is complete: a text frame holding the object. */
static int chat_message_done(conn *c, uint64_t *seq, uint64_t *sent) {
    if (c->msg_overflow || c->msg_opcode != 1) return 0;
    return chat_check(c, c->msg, c->msg_out, seq, sent);
}

/* ------------------------------------------------------------------- zlib */
/* The publisher compresses each message on its own (deflateReset), which is valid
 * whatever context takeover was agreed, within the client window the server allowed.
 * Receivers inflate into their message buffer, one zlib stream each. */

static uint8_t *deflate_buf;

#ifdef WITH_ZLIB
static z_stream pub_deflater;
static int pub_deflater_bits;
static size_t deflate_cap;

static size_t deflate_message(int bits, const uint8_t *data, size_t len) {
    if (bits < 9) bits = 9;                      /* zlib cannot deflate with 8; 9 stays inside it */
    if (pub_deflater_bits != bits) {
        if (pub_deflater_bits) deflateEnd(&pub_deflater);
        memset(&pub_deflater, 0, sizeof pub_deflater);
        if (deflateInit2(&pub_deflater, 6, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            die("deflateInit2 failed");
        pub_deflater_bits = bits;
    }
    size_t need = deflateBound(&pub_deflater, (uLong)len) + 16;
    if (need > deflate_cap) {
        deflate_buf = realloc(deflate_buf, need);
        if (!deflate_buf) die("out of memory");
        deflate_cap = need;
    }
    deflateReset(&pub_deflater);
    pub_deflater.next_in = (Bytef *)data;
    pub_deflater.avail_in = (uInt)len;
    pub_deflater.next_out = deflate_buf;
    pub_deflater.avail_out = (uInt)deflate_cap;
    if (deflate(&pub_deflater, Z_SYNC_FLUSH) != Z_OK || pub_deflater.avail_in)
        die("deflate failed");
    size_t out = deflate_cap - pub_deflater.avail_out;
    return out >= 4 ? out - 4 : out;             /* RFC 7692 7.2.1: drop 00 00 ff ff */
}

static void *inflater_new(void) {
    z_stream *z = calloc(1, sizeof(z_stream));
    if (!z || inflateInit2(z, -15) != Z_OK) die("inflateInit2 failed");
    return z;
}

static void inflater_reset(void *z) { inflateReset((z_stream *)z); }

/* Inflate p[0..take) into out[*used..cap); 0 when the data is bad or does not fit. */
static int inflate_into(void *zs, const uint8_t *p, size_t take, uint8_t *out, size_t cap,
                        size_t *used) {
    z_stream *z = zs;
    z->next_in = (Bytef *)p;
    z->avail_in = (uInt)take;
    while (z->avail_in) {
        uInt before = z->avail_in;
        z->next_out = out + *used;
        z->avail_out = (uInt)(cap + 1 - *used);  /* one spare byte tells "too long" */
        int rc = inflate(z, Z_SYNC_FLUSH);
        *used = cap + 1 - z->avail_out;
        if (rc == Z_STREAM_END) {
            /* The sender ended its DEFLATE stream (BFINAL); what follows starts anew. */
            inflateReset(z);
            continue;
        }
        if (*used > cap || (rc != Z_OK && rc != Z_BUF_ERROR) || z->avail_in == before)
            return 0;
    }
    return 1;
}
#else
#define NO_ZLIB "loadgen was built without zlib: cc -O2 -DWITH_ZLIB -o loadgen loadgen.c -lz"
static size_t deflate_message(int bits, const uint8_t *data, size_t len) {
    (void)bits; (void)data; (void)len;
    die(NO_ZLIB);
    return 0;
}
static void *inflater_new(void) { die(NO_ZLIB); return NULL; }
static void inflater_reset(void *z) { (void)z; }
static int inflate_into(void *zs, const uint8_t *p, size_t take, uint8_t *out, size_t cap,
                        size_t *used) {
    (void)zs; (void)p; (void)take; (void)out; (void)cap; (void)used;
    return 0;
}
#endif

static void conn_close(conn *c, int counted) {
    if (c->state == ST_CLOSED) return;
    if (c->role == ROLE_CHURN) {
        /* Reset, not FIN: thousands of upgrades must not leave TIME_WAIT behind. */
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        churn_free[churn_nfree++] = (int)(c - churn);
    } else if (c->state == ST_CONNECTING || c->state == ST_HANDSHAKE) pending--;
    else if (cfg_eio && c->state == ST_OPEN && c->eio < 2) pending--;   /* before its "40" */
    else if (c->state == ST_OPEN && counted) server_closed++;
    epoll_ctl(c->role == ROLE_CHURN ? churn_ep : ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = ST_CLOSED;
    free(c->hs_buf);
    c->hs_buf = NULL;
}

/* A failed connect or handshake: churn attempts are counted apart. */
static void count_failure(conn *c, uint64_t *counter) {
    if (c->role == ROLE_CHURN) {
        churn_failed++;
        if (phase == PH_MEASURE) churn_measured_failed++;
    } else {
        (*counter)++;
    }
}

static void set_want_out(conn *c, int want) {
    if (c->want_out == want) return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(c->role == ROLE_CHURN ? churn_ep : ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = (uint8_t)want;
}

static void flush_out(conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_want_out(c, 1);
            return;
        }
        if (n < 0 && errno == EINTR) continue;
        conn_close(c, 1);
        return;
    }
    c->out_off = c->out_len = 0;
    if (c->want_out) set_want_out(c, 0);
}

/* ------------------------------------------------------------ mode behaviour */

static void echo_send(conn *c, uint64_t t) {
    c->fifo[(c->fifo_head + c->fifo_count) % (uint32_t)cfg_inflight] = t;
    c->fifo_count++;
    append_frame(c, 2, payload_pattern, (size_t)cfg_size);
}

static void put_hex16(uint8_t *p, uint64_t v);

static void publish(conn *pub, uint64_t seq, uint64_t t) {
    uint8_t *p = payload_pattern;
    if (cfg_eio) {
        /* 42["p","<16 hex seq><16 hex time><padding>"]: cfg_size bytes of data */
        static uint8_t ev[65536 + 16];
        size_t n = 0;
        memcpy(ev, "42[\"p\",\"", 8);
        n = 8;
        put_hex16(ev + n, seq);
        put_hex16(ev + n + 16, t);
        n += 32;
        for (int i = 32; i < cfg_size; i++) ev[n++] = (uint8_t)('a' + i % 26);
        memcpy(ev + n, "\"]", 2);
        n += 2;
        append_frame(pub, 1, ev, n);
    } else if (cfg_chat) {
        chat_fill(seq, t);
        append_frame(pub, 1, chat_frame, chat_frame_len);
    } else if (cfg_json) {
        json_fill(p, seq, t);
        if (pub->pmd) {
            size_t n = deflate_message(pub->cli_bits ? pub->cli_bits : 15, p, (size_t)cfg_size);
            append_frame_rsv(pub, 1, 1, deflate_buf, n);
        } else {
            append_frame(pub, 1, p, (size_t)cfg_size);
        }
    } else {
        put_u64(p, seq);
        put_u64(p + 8, t);
        append_frame(pub, 2, p, (size_t)cfg_size);
    }
    if (seq) {
        ring_count[seq & (RING - 1)] = 0;
        ring_time[seq & (RING - 1)] = t;
        if (cfg_group) {
            uint32_t k = (uint32_t)(pub - conns) - (uint32_t)receivers;
            ring_pub[seq & (RING - 1)] = k;
            pub_inflight[k]++;
        }
    }
}

static void on_open(conn *c, uint64_t t) {
    if ((cfg_json || cfg_chat || cfg_v1) && c->role == ROLE_RECEIVER) {
        c->msg = malloc(msg_cap + 1);
        c->zbuf = c->srv_nct ? malloc(ZBUF_CAP) : NULL;
        if (!c->msg || (c->srv_nct && !c->zbuf)) die("out of memory");
    }
    if (c->role == ROLE_ECHO) {
        c->fifo = calloc((size_t)cfg_inflight, sizeof(uint64_t));
        if (!c->fifo) die("out of memory");
        for (int i = 0; i < cfg_inflight; i++) echo_send(c, t);
    }
}

/* --json, --chat: one more piece of a receiver's message (server frames are not masked). */
static void json_payload(conn *c, const uint8_t *p, size_t take) {
    size_t cap = msg_cap;
    if (c->msg_overflow) return;
    if (!c->msg_compressed) {
        if (take > cap - c->msg_out) { c->msg_overflow = 1; return; }
        memcpy(c->msg + c->msg_out, p, take);
        c->msg_out += take;
        return;
    }
    if (c->srv_nct) {                            /* kept whole, see json_message_done */
        if (take > ZBUF_CAP - c->zlen) { c->msg_overflow = 1; return; }
        memcpy(c->zbuf + c->zlen, p, take);
        c->zlen += take;
        return;
    }
    if (!inflate_into(c->inflater, p, take, c->msg, cap, &c->msg_out)) c->msg_overflow = 1;
}

/* Checked messages by their compressed bytes. Without server context takeover a
 * message's compressed form depends on nothing before it, so equal bytes inflate to
 * equal text: a receiver whose bytes match an entry gets that entry's verdict (the
 * bytes compared in full) instead of inflating again. Servers that compress once per
 * broadcast send every receiver the same bytes; without this the load generator,
 * inflating 1,000 copies of each message, would set the pace instead of the server. */
#define ZCACHE 256
typedef struct {
    uint64_t hash, seq, sent;
    size_t len;
    int ok;
    uint8_t *data;
} zentry;
static zentry zcache[ZCACHE];
static uint64_t zcache_hits;

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) h = (h ^ get_u64(p + i)) * 0x100000001B3ull, h ^= h >> 29;
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h ^ (h >> 32);
}

static int json_check(const uint8_t *m, size_t len, uint64_t *seq, uint64_t *sent) {
    if (len != (size_t)cfg_size) return 0;
    if (memcmp(m, "{\"seq\":\"", 8) || memcmp(m + 24, "\",\"ts\":\"", 8) ||
        !get_hex16(m + 8, seq) || !get_hex16(m + 32, sent))
        return 0;
    const uint8_t *want = json_text[*seq % JSON_VARIANTS];
    return memcmp(m + JSON_HEAD, want + JSON_HEAD, (size_t)cfg_size - JSON_HEAD) == 0;
}

/* --json: the message is complete; check every byte, return its seq and send time. */
static int json_message_done(conn *c, uint64_t *seq, uint64_t *sent) {
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    if (c->msg_overflow) return 0;
    if (c->msg_compressed && c->srv_nct) {
        uint64_t h = hash_bytes(c->zbuf, c->zlen);
        zentry *e = &zcache[h & (ZCACHE - 1)];
        if (e->data && e->hash == h && e->len == c->zlen && !memcmp(e->data, c->zbuf, c->zlen)) {
            zcache_hits++;
            *seq = e->seq;
            *sent = e->sent;
            return e->ok;
        }
        inflater_reset(c->inflater);             /* each message stands alone */
        c->msg_out = 0;
        int ok = inflate_into(c->inflater, c->zbuf, c->zlen, c->msg, (size_t)cfg_size,
                              &c->msg_out) &&
                 inflate_into(c->inflater, tail, 4, c->msg, (size_t)cfg_size, &c->msg_out) &&
                 json_check(c->msg, c->msg_out, seq, sent);
        if (!e->data && !(e->data = malloc(ZBUF_CAP))) die("out of memory");
        memcpy(e->data, c->zbuf, c->zlen);
        e->len = c->zlen;
        e->hash = h;
        e->seq = ok ? *seq : 0;
        e->sent = ok ? *sent : 0;
        e->ok = ok;
        return ok;
    }
    if (c->msg_compressed) {
        json_payload(c, tail, 4);                /* RFC 7692 7.2.2: put the tail back */
        if (c->msg_overflow) return 0;
    }
    return json_check(c->msg, c->msg_out, seq, sent);
}

static int get_hex16(const uint8_t *p, uint64_t *out);

/* --eio: Engine.IO packets that are not our events. Returns 1 when handled. */
static int eio_control(conn *c, uint64_t t) {
    const uint8_t *h = c->msg_head;
    if (c->msg_opcode != 1 || c->msg_headlen < 1) return 1;
    if (c->eio == 0 && h[0] == '0') {            /* open packet: connect to namespace / */
        append_frame(c, 1, (const uint8_t *)"40", 2);
        c->eio = 1;
        return 1;
    }
    if (c->eio == 1 && c->msg_headlen >= 2 && h[0] == '4' && h[1] == '0') {
        c->eio = 2;
        pending--;
        opened++;
        on_open(c, t);
        return 1;
    }
    if (c->msg_len == 1 && h[0] == '2') {        /* ping */
        append_frame(c, 1, (const uint8_t *)"3", 1);
        return 1;
    }
    if (c->eio == 2 && c->msg_headlen >= 40 && !memcmp(h, "42[\"m\",\"", 8)) return 0;
    return 1;                                    /* anything else: not ours */
}

/* ------------------------------------------------------------ --v1 frames */
/* A receiver's text frame is a JSON object; its top-level fields are found in place,
 * each value skipped whole (strings by memchr, so a payload costs little more than a
 * scan for its quotes), whatever their order or spacing. */

typedef struct {
    const uint8_t *type, *epoch, *offset, *payload;  /* values, quotes included; NULL: absent */
    size_t type_len, epoch_len, offset_len, payload_len;
    char kind;                                   /* the payload's field: 'd'ata, 't'ext, 'b'ytes */
} v1_frame;

/* p at an opening quote: just past the closing one, or NULL. */
static const uint8_t *json_skip_string(const uint8_t *p, const uint8_t *end) {
    const uint8_t *q = p + 1;
    while (q < end && (q = memchr(q, '"', (size_t)(end - q))) != NULL) {
        const uint8_t *b = q;
        while (b > p + 1 && b[-1] == '\\') b--;
        if (((q - b) & 1) == 0) return q + 1;    /* not escaped */
        q++;
    }
    return NULL;
}

/* Just past the JSON value starting at p, or NULL. Numbers and literals are not
 * validated: they run to the next delimiter. */
static const uint8_t *json_skip_value(const uint8_t *p, const uint8_t *end) {
    if (p >= end) return NULL;
    if (*p == '"') return json_skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            uint8_t ch = *p;
            if (ch == '"') {
                if (!(p = json_skip_string(p, end))) return NULL;
                continue;
            }
            if (ch == '{' || ch == '[') depth++;
            else if ((ch == '}' || ch == ']') && --depth == 0) return p + 1;
            p++;
        }
        return NULL;
    }
    const uint8_t *q = p;
    while (q < end && *q != ',' && *q != '}' && *q != ']' && *q != ' ' && *q != '\t' &&
           *q != '\n' && *q != '\r')
        q++;
    return q > p ? q : NULL;
}

#define KEY_IS(k, n, lit) ((n) == sizeof(lit) - 1 && !memcmp((k), (lit), sizeof(lit) - 1))

/* 1 when m[0..len) is one JSON object; its fields of interest in f. */
static int v1_parse(const uint8_t *m, size_t len, v1_frame *f) {
    const uint8_t *end = m + len, *p = skip_space(m, end);
    memset(f, 0, sizeof *f);
    if (p >= end || *p != '{') return 0;
    p = skip_space(p + 1, end);
    if (p < end && *p == '}') return skip_space(p + 1, end) == end;
    for (;;) {
        if (p >= end || *p != '"') return 0;
        const uint8_t *k = p + 1, *ke = json_skip_string(p, end);
        if (!ke) return 0;
        size_t klen = (size_t)(ke - 1 - k);
        p = skip_space(ke, end);
        if (p >= end || *p != ':') return 0;
        const uint8_t *v = skip_space(p + 1, end), *ve = json_skip_value(v, end);
        if (!ve) return 0;
        size_t vlen = (size_t)(ve - v);
        if (KEY_IS(k, klen, "type")) { f->type = v; f->type_len = vlen; }
        else if (KEY_IS(k, klen, "epoch")) { f->epoch = v; f->epoch_len = vlen; }
        else if (KEY_IS(k, klen, "offset")) { f->offset = v; f->offset_len = vlen; }
        else if (KEY_IS(k, klen, "data") || KEY_IS(k, klen, "text") || KEY_IS(k, klen, "bytes")) {
            if (f->payload) return 0;            /* exactly one payload field */
            f->payload = v;
            f->payload_len = vlen;
            f->kind = *k;
        }
        p = skip_space(ve, end);
        if (p < end && *p == ',') {
            p = skip_space(p + 1, end);
            continue;
        }
        return p < end && *p == '}' && skip_space(p + 1, end) == end;
    }
}

/* A position's epoch (a JSON string) and offset (a non-negative integer); 0 if bad. */
static int v1_position(const v1_frame *f, uint64_t *epoch, uint64_t *offset) {
    if (!f->epoch || f->epoch_len < 2 || f->epoch[0] != '"' || f->offset_len < 1 ||
        f->offset_len > 19)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < f->offset_len; i++) {
        if (f->offset[i] < '0' || f->offset[i] > '9') return 0;
        v = v * 10 + (uint64_t)(f->offset[i] - '0');
    }
    *epoch = hash_bytes(f->epoch, f->epoch_len);
    *offset = v;
    return 1;
}

static int b64_digit(uint8_t ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

/* The binary payload as "bytes" (v, quotes included): [u64 seq][u64 time][padding].
 * The first 24 characters (18 bytes) are decoded; from there on base64 depends on the
 * padding alone, so the rest is compared with the padding's base64, made once. */
static int v1_bytes_check(const uint8_t *v, size_t len, uint64_t *seq, uint64_t *sent) {
    if (len != v1_b64_len + 2 || v[0] != '"' || v[len - 1] != '"') return 0;
    v++;
    uint8_t head[18];
    size_t got = 0, hchars = v1_b64_len < 24 ? v1_b64_len : 24;
    for (size_t i = 0; i < hchars; i += 4) {
        uint32_t acc = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            int d = v[i + j] == '=' ? (pad++, 0) : pad ? -1 : b64_digit(v[i + j]);
            if (d < 0) return 0;
            acc = acc << 6 | (uint32_t)d;
        }
        if (pad > 2) return 0;
        head[got++] = (uint8_t)(acc >> 16);
        if (pad < 2) head[got++] = (uint8_t)(acc >> 8);
        if (pad < 1) head[got++] = (uint8_t)acc;
    }
    if (got < 16 || memcmp(head + 16, payload_pattern + 16, got - 16)) return 0;
    if (v1_b64_len > 24 && memcmp(v + 24, v1_b64_expected + 24, v1_b64_len - 24)) return 0;
    *seq = get_u64(head);
    *sent = get_u64(head + 8);
    return 1;
}

/* --v1: a receiver's message is complete. 1: a room message, its payload checked, seq
 * and send time out; 0: a fastws.* frame of another type (skipped); -1: anything else
 * (counted corrupt). Checks the message's position first. */
static int v1_message_done(conn *c, uint64_t *seq, uint64_t *sent) {
    v1_frame f;
    if (c->msg_overflow || c->msg_opcode != 1 || !v1_parse(c->msg, c->msg_out, &f) ||
        !f.type || f.type_len < 9 || memcmp(f.type, "\"fastws.", 8))
        return -1;                               /* not ours: a direct message, or garbage */
    uint64_t epoch, offset;
    if (!KEY_IS(f.type, f.type_len, "\"fastws.message\"")) {
        v1_control_frames++;
        if (KEY_IS(f.type, f.type_len, "\"fastws.joined\"") && f.offset &&
            v1_position(&f, &epoch, &offset)) {
            if (c->v1_pos && epoch != c->v1_epoch) v1_epochs_changed++;
            c->v1_pos = 1;
            c->v1_epoch = epoch;
            c->v1_offset = offset;
        } else if (KEY_IS(f.type, f.type_len, "\"fastws.left\"")) {
            c->v1_pos = 0;
        }
        return 0;
    }
    if (!f.offset) {
        v1_unpositioned++;
    } else if (!v1_position(&f, &epoch, &offset)) {
        return -1;
    } else {
        if (c->v1_pos && epoch != c->v1_epoch) v1_epochs_changed++;
        else if (c->v1_pos && offset != c->v1_offset + 1) v1_gaps++;
        c->v1_pos = 1;
        c->v1_epoch = epoch;
        c->v1_offset = offset;
    }
    if (!f.payload) return -1;
    if (cfg_chat)
        return f.kind == 'd' && chat_check(c, f.payload, f.payload_len, seq, sent) ? 1 : -1;
    return f.kind == 'b' && v1_bytes_check(f.payload, f.payload_len, seq, sent) ? 1 : -1;
}

static void on_message(conn *c, uint64_t t) {
    if (cfg_eio && eio_control(c, t)) return;
    if (c->role == ROLE_ECHO) {
        if (c->fifo_count == 0 || c->msg_len != (uint64_t)cfg_size) {
            bad_frames++;
            return;
        }
        uint64_t sent = c->fifo[c->fifo_head];
        c->fifo_head = (c->fifo_head + 1) % (uint32_t)cfg_inflight;
        c->fifo_count--;
        if (phase == PH_MEASURE) {
            measured_msgs++;
            hist_add(t - sent);
        }
        if (phase <= PH_MEASURE) echo_send(c, t);
        return;
    }
    if (c->role == ROLE_PUBLISHER) {
        publisher_frames++;
        return;
    }
    if (c->role != ROLE_RECEIVER) return;
    uint64_t seq, sent;
    if (cfg_v1) {
        int r = v1_message_done(c, &seq, &sent);
        if (r <= 0) {
            if (r < 0) corrupt++;
            return;
        }
    } else if (cfg_json || cfg_chat) {
        if (!(cfg_chat ? chat_message_done(c, &seq, &sent) : json_message_done(c, &seq, &sent))) {
            corrupt++;
            return;
        }
    } else if (cfg_eio) {
        if (!get_hex16(c->msg_head + 8, &seq) || !get_hex16(c->msg_head + 24, &sent)) {
            bad_frames++;
            return;
        }
    } else {
        if (c->msg_headlen < 16) {
            bad_frames++;
            return;
        }
        seq = get_u64(c->msg_head);
        sent = get_u64(c->msg_head + 8);
    }
    if (phase == PH_MEASURE) {
        measured_msgs++;
        measured_wire += c->msg_wire;
        measured_compressed += c->msg_compressed;
    }
    if (seq == 0) {                              /* readiness probe */
        if (!c->probe_seen) {
            c->probe_seen = 1;
            probes_ready++;
        }
        return;
    }
    if (cfg_group) {
        /* one publisher per room: its seqs rise but are not contiguous */
        if (c->seq_started && seq < c->next_expected) out_of_order++;
        c->seq_started = 1;
        c->next_expected = seq + 1;
        if (first_measured_seq && seq >= first_measured_seq &&
            (!last_measured_seq || seq <= last_measured_seq)) {
            c->got_measured++;
            hist_add(t - sent);
        }
        if (++ring_count[seq & (RING - 1)] == (uint32_t)cfg_group)
            pub_inflight[ring_pub[seq & (RING - 1)]]--;
        return;
    }
    if (!c->seq_started) {
        c->seq_started = 1;
        c->next_expected = seq;
    }
    if (seq == c->next_expected) c->next_expected = seq + 1;
    else if (seq > c->next_expected) { gaps += seq - c->next_expected; c->next_expected = seq + 1; }
    else out_of_order++;
    if (first_measured_seq && seq >= first_measured_seq &&
        (!last_measured_seq || seq <= last_measured_seq)) {
        c->got_measured++;
        hist_add(t - sent);
    }
    if (seq >= oldest_seq && seq < next_seq) ring_count[seq & (RING - 1)]++;
}

static void frame_done(conn *c, uint64_t t) {
    int op = c->opcode;
    if (op >= 8) {
        if (op == 9) {                           /* ping: answer with the same payload */
            append_frame(c, 10, c->ctl, c->ctl_len);
        } else if (op == 8 && c->state == ST_OPEN) {
            append_frame(c, 8, c->ctl, c->ctl_len >= 2 ? 2 : 0);
            flush_out(c);
            conn_close(c, 1);
        }
        return;
    }
    c->msg_len += c->frame_len;
    if (c->fin) on_message(c, t);
}

static void capture_payload(conn *c, const uint8_t *p, size_t take) {
    if (c->opcode >= 8) {
        for (size_t i = 0; i < take && c->ctl_len < sizeof c->ctl; i++)
            c->ctl[c->ctl_len++] = p[i] ^ (c->masked ? c->mask[(c->frame_pos + i) & 3] : 0);
        return;
    }
    for (size_t i = 0; i < take && c->msg_headlen < sizeof c->msg_head; i++)
        c->msg_head[c->msg_headlen++] =
            p[i] ^ (c->masked ? c->mask[(c->frame_pos + i) & 3] : 0);
}

/* Decode a complete header in h (hneed bytes). */
static void start_frame(conn *c, const uint8_t *h, int hs) {
    c->fin = h[0] >> 7;
    c->rsv1 = (h[0] >> 6) & 1;
    c->opcode = h[0] & 15;
    c->masked = h[1] >> 7;
    uint64_t len = h[1] & 127;
    int off = 2;
    if (len == 126) { len = (uint64_t)h[2] << 8 | h[3]; off = 4; }
    else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
        off = 10;
    }
    if (c->masked) memcpy(c->mask, h + off, 4);
    c->frame_len = c->remaining = len;
    c->frame_pos = 0;
    c->in_frame = 1;
    if (c->opcode >= 8) {
        c->ctl_len = 0;
    } else if (c->opcode != 0) {                 /* first frame of a new message */
        c->msg_opcode = c->opcode;
        c->msg_len = 0;
        c->msg_headlen = 0;
        c->msg_wire = 0;
        c->msg_out = 0;
        c->zlen = 0;
        c->msg_overflow = 0;
        c->msg_compressed = c->rsv1 && c->pmd;
        if (c->rsv1 && !c->pmd) bad_frames++;    /* RSV1 without the extension agreed */
        if (c->rsv1 && c->pmd && cfg_json && c->role == ROLE_RECEIVER && !c->inflater)
            c->inflater = inflater_new();
    } else if (c->rsv1) {
        bad_frames++;                            /* RSV1 only on a message's first frame */
    }
    if (c->opcode < 8) c->msg_wire += (uint64_t)hs + len;
}

static int header_size(const uint8_t *h) {
    int len7 = h[1] & 127;
    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((h[1] & 0x80) ? 4 : 0);
}

static void feed(conn *c, const uint8_t *p, size_t n, uint64_t t) {
    while (n > 0 && c->state == ST_OPEN) {
        if (!c->in_frame) {
            if (c->hlen == 0 && n >= 2 && n >= (size_t)header_size(p)) {
                int hs = header_size(p);
                start_frame(c, p, hs);
                p += hs;
                n -= (size_t)hs;
            } else {
                c->hdr[c->hlen++] = *p++;
                n--;
                if (c->hlen == 2) c->hneed = (uint8_t)header_size(c->hdr);
                if (c->hlen < 2 || c->hlen < c->hneed) continue;
                start_frame(c, c->hdr, c->hneed);
                c->hlen = 0;
            }
            if (c->remaining == 0) {
                c->in_frame = 0;
                frame_done(c, t);
            }
            continue;
        }
        size_t take = c->remaining < n ? (size_t)c->remaining : n;
        if ((cfg_json || cfg_chat || cfg_v1) && c->opcode < 8 && c->role == ROLE_RECEIVER)
            json_payload(c, p, take);
        else if (c->opcode >= 8 || c->msg_headlen < sizeof c->msg_head)
            capture_payload(c, p, take);
        c->frame_pos += take;
        c->remaining -= take;
        p += take;
        n -= take;
        if (c->remaining == 0) {
            c->in_frame = 0;
            frame_done(c, t);
        }
    }
}

/* ------------------------------------------------------- connecting, handshake */

static void start_connect(conn *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket() failed (file descriptor limit?)");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = ST_CONNECTING;
    c->t_start = now_ns();
    if (c->role != ROLE_CHURN) pending++;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    c->want_out = 1;
    if (epoll_ctl(c->role == ROLE_CHURN ? churn_ep : ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl failed");
    struct sockaddr_in addr = server_addr;
    if (c->port) addr.sin_port = htons(c->port);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 &&
        errno != EINPROGRESS) {
        count_failure(c, &connect_errors);
        conn_close(c, 0);
    }
}

static void connector_tick(void) {
    while (next_to_connect < nconns && pending < cfg_max_pending) {
        conn *c = &conns[next_to_connect++];
        start_connect(c);
    }
}

static void send_handshake(conn *c) {
    uint8_t raw[16];
    for (int i = 0; i < 16; i += 8) { uint64_t r = rng_next(); memcpy(raw + i, &r, 8); }
    char key[32];
    base64(raw, 16, key);
    char cat[128];
    int clen = snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    uint8_t dig[20];
    sha1((const uint8_t *)cat, (size_t)clen, dig);
    base64(dig, 20, c->accept);
    char req[1024];
    char ext[320] = "";
    if (cfg_deflate) snprintf(ext, sizeof ext, "Sec-WebSocket-Extensions: %s\r\n", cfg_offer);
    const char *proto = cfg_v1 ? "Sec-WebSocket-Protocol: fastws.v1\r\n" : "";
    char path[512];
    int i = (int)(c - conns);
    int n_path;
    if (cfg_group) {
        n_path = snprintf(path, sizeof path, "%s%d", cfg_path,
                          i < receivers ? i / cfg_group : i - receivers);
    } else {
        n_path = snprintf(path, sizeof path, "%s", cfg_path);
    }
    if (cfg_chat && n_path > 0 && (size_t)n_path < sizeof path) {
        /* who is talking: receivers u<i>, publishers p<room> (what receivers check) */
        const char *sep = strchr(path, '?') ? "&" : "?";
        if (c->role == ROLE_PUBLISHER)
            snprintf(path + n_path, sizeof path - (size_t)n_path, "%suser=p%d", sep,
                     cfg_group ? i - receivers : 0);
        else
            snprintf(path + n_path, sizeof path - (size_t)n_path, "%suser=u%d", sep, i);
    }
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%sUser-Agent: fastws-loadgen\r\n\r\n",
                     path, cfg_host, c->port ? c->port : cfg_port, key, ext, proto);
    out_reserve(c, (size_t)n);
    memcpy(c->out + c->out_len, req, (size_t)n);
    c->out_len += (size_t)n;
    c->state = ST_HANDSHAKE;
    c->hs_buf = malloc(4096);
    if (!c->hs_buf) die("out of memory");
    c->hs_len = 0;
    flush_out(c);
}

/* Read the server's Sec-WebSocket-Extensions answer (one line, up to its CRLF). */
static void read_extensions(conn *c, const char *v) {
    const char *end = strstr(v, "\r\n");
    size_t len = end ? (size_t)(end - v) : strlen(v);
    char val[256];
    if (len >= sizeof val) len = sizeof val - 1;
    for (size_t i = 0; i < len; i++) val[i] = (char)tolower((unsigned char)v[i]);
    val[len] = 0;
    if (!strstr(val, "permessage-deflate")) return;
    c->pmd = 1;
    c->srv_nct = strstr(val, "server_no_context_takeover") != NULL;
    const char *bits = strstr(val, "client_max_window_bits=");
    if (bits) c->cli_bits = (uint8_t)atoi(bits + 23);
    if (!deflate_accepted++) {
        size_t k = 0;
        for (size_t i = 0; i < len && k < sizeof first_extension - 1; i++) {
            char ch = v[i];                      /* keep it printable inside a JSON string */
            if (ch == '"' || ch == '\\' || (unsigned char)ch < 0x20) ch = ' ';
            first_extension[k++] = ch;
        }
        first_extension[k] = 0;
    }
}

/* 1 when the response is a 101 whose Sec-WebSocket-Accept matches our key. */
static int check_response(conn *c, const char *resp) {
    if (strncmp(resp, "HTTP/1.1 101", 12) != 0) return 0;
    int accepted = 0, v1 = 0;
    const char *line = strstr(resp, "\r\n");
    while (line && line[2] != '\r') {
        line += 2;
        if (strncasecmp(line, "Sec-WebSocket-Accept:", 21) == 0) {
            const char *v = line + 21;
            while (*v == ' ' || *v == '\t') v++;
            size_t alen = strlen(c->accept);
            accepted = strncmp(v, c->accept, alen) == 0;
        } else if (strncasecmp(line, "Sec-WebSocket-Extensions:", 25) == 0) {
            const char *v = line + 25;
            while (*v == ' ' || *v == '\t') v++;
            read_extensions(c, v);
        } else if (strncasecmp(line, "Sec-WebSocket-Protocol:", 23) == 0) {
            const char *v = line + 23, *e = strstr(v, "\r\n");
            if (!e) e = v + strlen(v);
            while (*v == ' ' || *v == '\t') v++;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
            v1 = e - v == 9 && !strncmp(v, "fastws.v1", 9);
        }
        line = strstr(line, "\r\n");
    }
    if (accepted && cfg_v1 && !v1) {
        /* Our handshake offers fastws.v1 and nothing else: any other answer means the
         * server does not speak it, and every frame would be a plain message. */
        const char *h = strcasestr(resp, "\r\nSec-WebSocket-Protocol:");
        const char *e = h ? strstr(h + 2, "\r\n") : NULL;
        if (h && e)
            fprintf(stderr, "loadgen: --v1: the server answered %.*s\n", (int)(e - h - 2), h + 2);
        else
            fprintf(stderr, "loadgen: --v1: the server answered no Sec-WebSocket-Protocol\n");
        die("--v1: the server did not answer Sec-WebSocket-Protocol: fastws.v1 "
            "(it does not speak the fastws.v1 protocol)");
    }
    return accepted;
}

static void handshake_read(conn *c, uint64_t t) {
    for (;;) {
        ssize_t n = recv(c->fd, c->hs_buf + c->hs_len, 4095 - (size_t)c->hs_len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            count_failure(c, &handshake_errors);
            conn_close(c, 0);
            return;
        }
        c->hs_len += (int)n;
        c->hs_buf[c->hs_len] = 0;
        char *end = strstr(c->hs_buf, "\r\n\r\n");
        if (!end) {
            if (c->hs_len >= 4095) { count_failure(c, &handshake_errors); conn_close(c, 0); }
            continue;
        }
        if (!check_response(c, c->hs_buf)) {
            if (handshake_errors == 0 && churn_failed == 0) {
                char *nl = strstr(c->hs_buf, "\r\n");
                if (nl) *nl = 0;
                fprintf(stderr, "loadgen: handshake refused: %s\n", c->hs_buf);
            }
            count_failure(c, &handshake_errors);
            conn_close(c, 0);
            return;
        }
        if (c->role == ROLE_CHURN) {             /* timed: that is all it was for */
            churn_ok++;
            if (phase == PH_MEASURE) {
                churn_measured_ok++;
                hist_add_to(&hs_hist, t - c->t_start);
            }
            conn_close(c, 0);
            return;
        }
        size_t used = (size_t)(end + 4 - c->hs_buf);
        size_t extra = (size_t)c->hs_len - used;
        uint8_t leftover[4096];
        memcpy(leftover, c->hs_buf + used, extra);
        free(c->hs_buf);
        c->hs_buf = NULL;
        c->state = ST_OPEN;
        if (cfg_eio) {
            c->eio = 0;                          /* open (and no longer pending) at "40" */
        } else {
            pending--;
            opened++;
            on_open(c, t);
        }
        if (extra) feed(c, leftover, extra, t);
        if (c->state == ST_OPEN) flush_out(c);
        return;
    }
}

static void handle_event(conn *c, uint32_t events) {
    uint64_t t = now_ns();
    if (c->state == ST_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err) {
                count_failure(c, &connect_errors);
                conn_close(c, 0);
                return;
            }
            send_handshake(c);
        }
        return;
    }
    if (c->state == ST_HANDSHAKE) {
        if (events & EPOLLOUT) flush_out(c);
        if (c->state == ST_HANDSHAKE && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
            handshake_read(c, t);
        return;
    }
    if (c->state != ST_OPEN) return;
    if (events & EPOLLOUT) flush_out(c);
    if (c->state != ST_OPEN) return;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        /* A few reads per wake-up at most, so one busy socket cannot starve the others. */
        for (int round = 0; round < 4 && c->state == ST_OPEN; round++) {
            ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
            if (n > 0) {
                feed(c, rbuf, (size_t)n, t);
                if ((size_t)n < sizeof rbuf) break;
                t = now_ns();
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (n < 0 && errno == EINTR) continue;
            conn_close(c, phase < PH_DONE);
            return;
        }
        if (c->state == ST_OPEN && c->out_len > c->out_off) flush_out(c);
    }
}

/* ------------------------------------------------------------------ phases */

static void measure_begin(uint64_t t) {
    phase = PH_MEASURE;
    t_measure_start = t;
    t_phase_end = t + (uint64_t)(cfg_duration * 1e9);
    cpu_server_start = proc_cpu_seconds(cfg_pid);
    for (int i = 0; i < n_extra_pids; i++) extra_cpu_start[i] = proc_cpu_seconds(extra_pids[i]);
    cpu_self_start = self_cpu_seconds();
    measured_msgs = 0;
}

static void measure_end(uint64_t t) {
    t_measure_end = t;
    cpu_server_end = proc_cpu_seconds(cfg_pid);
    for (int i = 0; i < n_extra_pids; i++) extra_cpu_end[i] = proc_cpu_seconds(extra_pids[i]);
    cpu_self_end = self_cpu_seconds();
}

static void publisher_fill(conn *pub, uint64_t t) {
    if (pub->state != ST_OPEN) return;
    while (oldest_seq < next_seq && ring_count[oldest_seq & (RING - 1)] >= (uint32_t)receivers)
        oldest_seq++;
    /* A message some receiver never gets would freeze the window: give up on it. */
    while (oldest_seq < next_seq &&
           t - ring_time[oldest_seq & (RING - 1)] > (uint64_t)(cfg_stall * 1e9)) {
        oldest_seq++;
        stalls++;
    }
    if (phase == PH_WARMUP || phase == PH_MEASURE) {
        while (next_seq - oldest_seq < (uint64_t)cfg_window) publish(pub, next_seq++, t);
    }
    if (pub->out_len > pub->out_off) flush_out(pub);
}

static int groups_idle(void) {
    for (int k = 0; k < n_pubs; k++) if (pub_inflight[k] > 0) return 0;
    return 1;
}

static void groups_fill(uint64_t t) {
    for (int k = 0; k < n_pubs; k++) {
        conn *pub = &conns[receivers + k];
        if (pub->state != ST_OPEN) continue;
        if (phase == PH_WARMUP || phase == PH_MEASURE)
            while (pub_inflight[k] < cfg_window) publish(pub, next_seq++, t);
        if (pub->out_len > pub->out_off) flush_out(pub);
    }
}

static void fanout_tick(uint64_t t) {
    conn *pub = &conns[nconns - 1];
    switch (phase) {
    case PH_PROBE:
        if (probes_ready >= (uint64_t)receivers) {
            phase = PH_WARMUP;
            t_phase_end = t + (uint64_t)(cfg_warmup * 1e9);
        } else if (cfg_group && t - t_last_probe > 50000000ull) {
            /* Thousands of rooms: probe again only the rooms still waiting, and each at
             * most once a second, or a slow server's backlog of repeated probes would
             * still be draining when the measurement starts. */
            for (int k = 0; k < n_pubs; k++) {
                conn *p = &conns[receivers + k];
                if (p->state != ST_OPEN || t - room_probe_t[k] < 1000000000ull) continue;
                int ready = 1;
                for (int i = k * cfg_group; i < (k + 1) * cfg_group && ready; i++)
                    ready = conns[i].probe_seen;
                if (ready) continue;
                publish(p, 0, t);
                flush_out(p);
                room_probe_t[k] = t;
            }
            t_last_probe = t;
        } else if (t - t_last_probe > 50000000ull && pub->state == ST_OPEN) {
            for (int k = 0; k < n_pubs; k++) {
                conn *p = &conns[receivers + k];
                if (p->state != ST_OPEN) continue;
                publish(p, 0, t);
                flush_out(p);
            }
            t_last_probe = t;
        }
        break;
    case PH_WARMUP:
        if (t >= t_phase_end) {
            measure_begin(t);
            first_measured_seq = next_seq;
        }
        break;
    case PH_MEASURE:
        if (t >= t_phase_end) {
            measure_end(t);
            last_measured_seq = next_seq - 1;
            phase = PH_DRAIN;
            t_phase_end = t + (uint64_t)(cfg_drain * 1e9);
        }
        break;
    case PH_DRAIN:
        if ((cfg_group ? groups_idle() : oldest_seq >= next_seq) || t >= t_phase_end) phase = PH_DONE;
        break;
    }
    if (phase == PH_WARMUP || phase == PH_MEASURE || phase == PH_DRAIN) {
        if (cfg_group) groups_fill(t);
        else publisher_fill(pub, t);
    }
}

/* Start the churn attempts that are due by now; a due attempt with no free slot
 * (the server is not keeping up) is counted as skipped. */
static void churn_tick(uint64_t t) {
    if (cfg_churn_rate <= 0 || phase > PH_MEASURE) return;
    if (!t_churn0) t_churn0 = t;
    uint64_t due = (uint64_t)((double)(t - t_churn0) / 1e9 * cfg_churn_rate);
    while (churn_due < due) {
        churn_due++;
        if (!churn_nfree) { churn_skipped++; continue; }
        conn *c = &churn[churn_free[--churn_nfree]];
        churn_started++;
        start_connect(c);
    }
}

/* The churn sockets' events, handled between slices of the echo load, so that
 * the time a handshake waits on this side stays small next to the server's. */
static void churn_poll(void) {
    if (churn_ep < 0) return;
    struct epoll_event cevs[256];
    int n = epoll_wait(churn_ep, cevs, 256, 0);
    for (int i = 0; i < n; i++) handle_event(cevs[i].data.ptr, cevs[i].events);
}

static void echo_tick(uint64_t t) {
    if (phase == PH_WARMUP && t >= t_phase_end) measure_begin(t);
    else if (phase == PH_MEASURE && t >= t_phase_end) {
        measure_end(t);
        phase = PH_DONE;
    }
}

static int open_count(void) {
    int n = 0;
    for (int i = 0; i < nconns; i++) n += conns[i].state == ST_OPEN;
    return n;
}

static void close_all(void) {
    /* Abortive close (RST): no TIME_WAIT left behind to eat loopback ports. */
    struct linger lg = {1, 0};
    for (int i = 0; i < nconns; i++) {
        if (conns[i].state == ST_CLOSED) continue;
        setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        conn_close(&conns[i], 0);
    }
    for (int i = 0; i < cfg_churn_max; i++) conn_close(&churn[i], 0);
}

/* ------------------------------------------------------------------ output */

static void print_common(double setup_s) {
    double secs = (double)(t_measure_end - t_measure_start) / 1e9;
    double cpu_srv = (cpu_server_start >= 0 && cpu_server_end >= 0)
                         ? cpu_server_end - cpu_server_start : -1.0;
    printf("\"mode\": \"%s\", \"connections\": %d, \"setup_s\": %.3f, "
           "\"duration_s\": %.3f, \"messages\": %llu, \"msg_per_s\": %.1f, "
           "\"latency_us\": {\"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f, \"samples\": %llu}, "
           "\"server_cpu_s\": %.3f, \"server_cpu_us_per_msg\": %.4f, "
           "\"loadgen_cpu_pct\": %.1f, \"connect_errors\": %llu, \"handshake_errors\": %llu, "
           "\"server_closed\": %llu, \"bad_frames\": %llu",
           cfg_mode, nconns, setup_s, secs, (unsigned long long)measured_msgs,
           secs > 0 ? (double)measured_msgs / secs : 0.0,
           hist_quantile_us(0.50), hist_quantile_us(0.99), (double)hist.max / 1000.0,
           (unsigned long long)hist.total, cpu_srv,
           (cpu_srv >= 0 && measured_msgs) ? cpu_srv * 1e6 / (double)measured_msgs : -1.0,
           secs > 0 ? 100.0 * (cpu_self_end - cpu_self_start) / secs : 0.0,
           (unsigned long long)connect_errors, (unsigned long long)handshake_errors,
           (unsigned long long)server_closed, (unsigned long long)bad_frames);
    printf(", \"pids_cpu_s\": [");
    for (int i = 0; i < n_extra_pids; i++)
        printf("%s%.3f", i ? ", " : "", extra_cpu_end[i] - extra_cpu_start[i]);
    printf("]");
}

/* ------------------------------------------------------------------- main */

static void on_signal(int sig) { (void)sig; interrupted = 1; }

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen MODE --port N [options]\n"
            "  MODE: echo | fanout | idle\n"
            "  --host A (127.0.0.1)  --path P (/echo or /fanout)  --pid SERVER_PID\n"
            "  --conns C (echo/idle)  --inflight P  --size S (bytes)\n"
            "  --receivers R --window W (fanout)  --warmup s --duration s --drain s\n"
            "  --stall s  --setup-timeout s  --hold-max s  --max-pending N\n"
            "  --json (fanout: JSON chat text messages, every byte checked)\n"
            "  --deflate [--offer EXT] (offer permessage-deflate; inflate RSV1 frames)\n"
            "  --churn R [--churn-max N] (echo: also open, upgrade, time and reset R new\n"
            "            connections per second, at most N in progress)\n"
            "  --recv-ports P,Q (fanout: receivers on these ports)  --pids A,B (more CPU to read)\n"
            "  --eio (fanout: Engine.IO v4 / Socket.IO events over the WebSocket)\n"
            "  --group K (fanout: rooms of K receivers, one publisher each; --path prefix)\n"
            "  --chat (fanout: JSON chat events in, {user, message, timestamp} objects out;\n"
            "          --size = bytes of the content, 32 to 65536; with or without --group)\n"
            "  --v1 (fanout, idle: speak the fastws.v1 subprotocol; receivers unwrap\n"
            "        fastws.message frames and check their offsets; not with --json,\n"
            "        --eio or --deflate)\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    cfg_mode = argv[1];
    static struct option opts[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"path", 1, 0, 'P'},
        {"conns", 1, 0, 'c'}, {"receivers", 1, 0, 'r'}, {"inflight", 1, 0, 'i'},
        {"size", 1, 0, 's'}, {"window", 1, 0, 'w'}, {"warmup", 1, 0, 'W'},
        {"duration", 1, 0, 'd'}, {"drain", 1, 0, 'D'}, {"stall", 1, 0, 'S'},
        {"setup-timeout", 1, 0, 'T'}, {"hold-max", 1, 0, 'H'}, {"pid", 1, 0, 'x'},
        {"max-pending", 1, 0, 'm'}, {"json", 0, 0, 'j'}, {"deflate", 0, 0, 'z'},
        {"offer", 1, 0, 'o'}, {"churn", 1, 0, 'C'}, {"churn-max", 1, 0, 'M'},
        {"eio", 0, 0, 'e'}, {"recv-ports", 1, 0, 'R'}, {"pids", 1, 0, 'X'},
        {"group", 1, 0, 'g'}, {"chat", 0, 0, 'q'}, {"v1", 0, 0, '1'}, {0, 0, 0, 0}};
    int o;
    optind = 2;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'h': cfg_host = optarg; break;
        case 'p': cfg_port = atoi(optarg); break;
        case 'P': cfg_path = optarg; break;
        case 'c': case 'r': cfg_conns = atoi(optarg); break;
        case 'i': cfg_inflight = atoi(optarg); break;
        case 's': cfg_size = atoi(optarg); break;
        case 'w': cfg_window = atoi(optarg); break;
        case 'W': cfg_warmup = atof(optarg); break;
        case 'd': cfg_duration = atof(optarg); break;
        case 'D': cfg_drain = atof(optarg); break;
        case 'S': cfg_stall = atof(optarg); break;
        case 'T': cfg_setup_timeout = atof(optarg); break;
        case 'H': cfg_hold_max = atof(optarg); break;
        case 'x': cfg_pid = atoi(optarg); break;
        case 'm': cfg_max_pending = atoi(optarg); break;
        case 'j': cfg_json = 1; break;
        case 'q': cfg_chat = 1; break;
        case '1': cfg_v1 = 1; break;
        case 'z': cfg_deflate = 1; break;
        case 'o': cfg_offer = optarg; break;
        case 'C': cfg_churn_rate = atof(optarg); break;
        case 'M': cfg_churn_max = atoi(optarg); break;
        case 'e': cfg_eio = 1; break;
        case 'g': cfg_group = atoi(optarg); break;
        case 'R': case 'X': {
            int *list = o == 'R' ? recv_ports : extra_pids;
            int *count = o == 'R' ? &n_recv_ports : &n_extra_pids;
            for (char *tok = strtok(optarg, ","); tok && *count < 16; tok = strtok(NULL, ","))
                list[(*count)++] = atoi(tok);
            break;
        }
        default: usage();
        }
    }
    int is_echo = !strcmp(cfg_mode, "echo"), is_fan = !strcmp(cfg_mode, "fanout"),
        is_idle = !strcmp(cfg_mode, "idle");
    if (!(is_echo || is_fan || is_idle) || cfg_port <= 0 || cfg_conns <= 0) usage();
    if (is_echo && (cfg_inflight <= 0 || cfg_size < 0)) usage();
    if (is_fan && (cfg_size < 16 || cfg_window <= 0 || cfg_window > (int)(RING / 4)))
        die("fanout needs --size >= 16 and 0 < --window <= 16384");
    if (cfg_json && (!is_fan || cfg_size < 192))
        die("--json is a fanout option and needs --size >= 192");
    /* Only --json messages are checked whole; a binary probe could not be inflated. */
    if (cfg_deflate && !cfg_json) die("--deflate needs --json (fanout)");
    if (cfg_chat && (!is_fan || cfg_json || cfg_eio || cfg_size < 32 || cfg_size > 65536))
        die("--chat is a fanout option (not with --json or --eio), content of 32 to 65536 bytes");
    if (cfg_v1 && is_echo)
        die("--v1 is not for echo: /echo answers with direct messages, which fastws.v1 "
            "leaves as they are");
    if (cfg_v1 && (cfg_json || cfg_eio || cfg_deflate))
        die("--v1 does not go with --json, --eio or --deflate (see loadgen.c's header)");
    msg_cap = cfg_chat ? (size_t)cfg_size + CHAT_SLACK : (size_t)cfg_size;
    /* --v1 wraps the payload (binary as base64) in {"type":..,"room":..,"epoch":..,..} */
    if (cfg_v1) msg_cap = (cfg_chat ? msg_cap : ((size_t)cfg_size + 2) / 3 * 4) + V1_SLACK;
#ifndef WITH_ZLIB
    if (cfg_deflate) die(NO_ZLIB);
#endif
    if (strlen(cfg_offer) > 256 || strpbrk(cfg_offer, "\r\n")) die("bad --offer");
    if (!cfg_path) cfg_path = is_fan ? "/fanout" : "/echo";

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    rng_state ^= now_ns() ^ ((uint64_t)getpid() << 32);

    /* 10k sockets need more than the usual soft limit of 1024 descriptors. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    receivers = is_fan ? cfg_conns : 0;
    if (cfg_group) {
        if (!is_fan || cfg_group < 1 || cfg_conns % cfg_group || cfg_eio || cfg_json)
            die("--group K is a plain fanout option and --receivers must be a multiple of K");
        n_pubs = cfg_conns / cfg_group;
        if ((long)n_pubs * cfg_window > (long)(RING / 4)) die("--group: rooms x window too large");
    }
    nconns = cfg_conns + (is_fan ? n_pubs : 0);
    if (cfg_churn_rate > 0 && !is_echo) die("--churn is an echo option");
    if (cfg_churn_rate <= 0) cfg_churn_max = 0;
    if ((rlim_t)nconns + (rlim_t)cfg_churn_max + 16 > rl.rlim_cur)
        die("RLIMIT_NOFILE too low for this many connections");

    memset(&server_addr, 0, sizeof server_addr);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)cfg_port);
    if (inet_pton(AF_INET, cfg_host, &server_addr.sin_addr) != 1) die("bad --host");

    conns = calloc((size_t)nconns, sizeof(conn));
    payload_pattern = malloc((size_t)cfg_size + 16);
    if (!conns || !payload_pattern) die("out of memory");
    for (int i = 0; i < cfg_size; i++) payload_pattern[i] = (uint8_t)('a' + i % 26);
    if (cfg_json) json_make_texts();
    if (cfg_chat) chat_make_frame();
    if (cfg_v1 && !cfg_chat) {
        v1_b64_len = ((size_t)cfg_size + 2) / 3 * 4;
        v1_b64_expected = malloc(v1_b64_len + 1);
        if (!v1_b64_expected) die("out of memory");
        base64(payload_pattern, (size_t)cfg_size, v1_b64_expected);
    }
    for (int i = 0; i < nconns; i++) {
        conns[i].role = is_echo ? ROLE_ECHO : is_idle ? ROLE_IDLE : ROLE_RECEIVER;
        conns[i].state = ST_CLOSED;
        conns[i].fd = -1;
    }
    if (cfg_churn_max > 0) {
        churn_ep = epoll_create1(EPOLL_CLOEXEC);
        if (churn_ep < 0) die("epoll_create1 failed");
        churn = calloc((size_t)cfg_churn_max, sizeof(conn));
        churn_free = calloc((size_t)cfg_churn_max, sizeof(int));
        if (!churn || !churn_free) die("out of memory");
        for (int i = 0; i < cfg_churn_max; i++) {
            churn[i].role = ROLE_CHURN;
            churn[i].state = ST_CLOSED;
            churn[i].fd = -1;
            churn_free[churn_nfree++] = cfg_churn_max - 1 - i;
        }
    }
    if (cfg_eio && (!is_fan || cfg_json || cfg_deflate || cfg_size < 32 || cfg_size > 65536))
        die("--eio is a fanout option for plain events of 32 to 65536 bytes");
    for (int i = 0; is_fan && n_recv_ports && i < cfg_conns; i++)
        conns[i].port = (uint16_t)recv_ports[(cfg_group ? i % cfg_group : i) % n_recv_ports];
    if (cfg_group) {
        pub_inflight = calloc((size_t)n_pubs, sizeof(int));
        ring_pub = calloc(RING, sizeof(uint32_t));
        room_probe_t = calloc((size_t)n_pubs, sizeof(uint64_t));
        if (!pub_inflight || !ring_pub || !room_probe_t) die("out of memory");
        for (int k = 0; k < n_pubs; k++) conns[receivers + k].role = ROLE_PUBLISHER;
    }
    if (is_fan) {
        conns[nconns - 1].role = ROLE_PUBLISHER;
        ring_count = calloc(RING, sizeof(uint32_t));
        ring_time = calloc(RING, sizeof(uint64_t));
        if (!ring_count || !ring_time) die("out of memory");
    }

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1 failed");
    if (churn_ep >= 0) {                         /* so a quiet echo load still wakes for churn */
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &churn_ep};
        epoll_ctl(ep, EPOLL_CTL_ADD, churn_ep, &ev);
    }
    if (is_idle) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    }

    uint64_t t0 = now_ns();
    uint64_t setup_deadline = t0 + (uint64_t)(cfg_setup_timeout * 1e9);
    uint64_t hold_deadline = 0;
    double setup_s = 0;
    int stdin_done = 0;
    static struct epoll_event evs[1024];

    while (phase != PH_DONE && !interrupted) {
        if (phase == PH_SETUP) connector_tick();
        int n = epoll_wait(ep, evs, 1024, 5);
        for (int i = 0; i < n; i++) {
            if ((i & 127) == 0) churn_poll();
            conn *c = evs[i].data.ptr;
            if (c == (conn *)&churn_ep) continue;    /* the churn set woke us: polled above */
            if (!c) {                            /* stdin: the harness is done with us */
                char tmp[256];
                ssize_t r = read(0, tmp, sizeof tmp);
                (void)r;
                stdin_done = 1;
                epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);
                continue;
            }
            handle_event(c, evs[i].events);
        }
        uint64_t t = now_ns();
        if (phase == PH_SETUP) {
            if (opened == nconns) {
                setup_s = (double)(t - t0) / 1e9;
                if (is_echo) {
                    phase = PH_WARMUP;
                    t_phase_end = t + (uint64_t)(cfg_warmup * 1e9);
                } else if (is_fan) {
                    phase = PH_PROBE;
                    t_phase_end = t + (uint64_t)(cfg_setup_timeout * 1e9);
                } else {
                    phase = PH_HOLD;
                    hold_deadline = t + (uint64_t)(cfg_hold_max * 1e9);
                    printf("{\"event\": \"holding\", \"connections\": %d, \"setup_s\": %.3f}\n",
                           nconns, setup_s);
                    fflush(stdout);
                }
            } else if (next_to_connect == nconns && pending == 0) {
                break;                           /* every attempt finished, some failed */
            } else if (t > setup_deadline) {
                break;
            }
            continue;
        }
        if (is_echo) {
            churn_tick(t);
            echo_tick(t);
        }
        else if (is_fan) {
            if (phase == PH_PROBE && t > t_phase_end) break;
            fanout_tick(t);
        } else if (phase == PH_HOLD && (stdin_done || t > hold_deadline)) {
            phase = PH_DONE;
        }
    }

    int still_open = open_count();
    close_all();
    if (phase != PH_DONE) {
        printf("{\"error\": \"%s\", \"mode\": \"%s\", \"opened\": %d, \"wanted\": %d, "
               "\"connect_errors\": %llu, \"handshake_errors\": %llu, "
               "\"server_closed\": %llu, \"probes_ready\": %llu, \"corrupt\": %llu, "
               "\"v1\": %s, \"v1_control_frames\": %llu}\n",
               interrupted ? "interrupted"
               : phase == PH_SETUP ? "could not open every connection"
               : phase == PH_PROBE ? (corrupt ? "not every receiver got a probe (replies corrupt)"
                                            : "not every receiver got a probe (room join missing?)")
                                   : "stopped early",
               cfg_mode, opened, nconns, (unsigned long long)connect_errors,
               (unsigned long long)handshake_errors, (unsigned long long)server_closed,
               (unsigned long long)probes_ready, (unsigned long long)corrupt,
               cfg_v1 ? "true" : "false", (unsigned long long)v1_control_frames);
        return 3;
    }
    printf("{");
    if (is_idle) {
        printf("\"mode\": \"idle\", \"connections\": %d, \"setup_s\": %.3f, \"still_open\": %d, "
               "\"connect_errors\": %llu, \"handshake_errors\": %llu, \"server_closed\": %llu",
               nconns, setup_s, still_open, (unsigned long long)connect_errors,
               (unsigned long long)handshake_errors, (unsigned long long)server_closed);
        printf(", \"v1\": %s", cfg_v1 ? "true" : "false");
    } else {
        print_common(setup_s);
        if (is_echo) {
            double secs = (double)(t_measure_end - t_measure_start) / 1e9;
            printf(", \"inflight\": %d, \"size\": %d", cfg_inflight, cfg_size);
            if (cfg_churn_rate > 0)
                printf(", \"churn\": {\"rate\": %.1f, \"max_in_progress\": %d, \"started\": %llu, "
                       "\"ok\": %llu, \"failed\": %llu, \"skipped\": %llu, \"measured_ok\": %llu, "
                       "\"measured_failed\": %llu, \"upgrades_per_s\": %.1f, "
                       "\"handshake_us\": {\"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f}}",
                       cfg_churn_rate, cfg_churn_max, (unsigned long long)churn_started,
                       (unsigned long long)churn_ok, (unsigned long long)churn_failed,
                       (unsigned long long)churn_skipped, (unsigned long long)churn_measured_ok,
                       (unsigned long long)churn_measured_failed,
                       secs > 0 ? (double)churn_measured_ok / secs : 0.0,
                       quantile_us(&hs_hist, 0.50), quantile_us(&hs_hist, 0.99),
                       (double)hs_hist.max / 1000.0);
        } else {
            uint64_t published = last_measured_seq >= first_measured_seq
                                     ? last_measured_seq - first_measured_seq + 1 : 0;
            uint64_t received = 0;
            for (int i = 0; i < receivers; i++) received += conns[i].got_measured;
            uint64_t expected = published * (uint64_t)(cfg_group ? cfg_group : receivers);
            printf(", \"receivers\": %d, \"window\": %d, \"size\": %d, \"published\": %llu, "
                   "\"expected\": %llu, \"received\": %llu, \"lost\": %lld, \"gaps\": %llu, "
                   "\"out_of_order\": %llu, \"stalls\": %llu, \"publisher_frames\": %llu, "
                   "\"json\": %s, \"chat\": %s, \"deflate_offered\": %s, "
                   "\"deflate_accepted\": %llu, "
                   "\"extension\": \"%s\", \"wire_bytes\": %llu, \"wire_bytes_per_msg\": %.1f, "
                   "\"compressed\": %llu, \"corrupt\": %llu, \"inflate_cache_hits\": %llu",
                   receivers, cfg_window, cfg_size, (unsigned long long)published,
                   (unsigned long long)expected, (unsigned long long)received,
                   (long long)(expected - received), (unsigned long long)gaps,
                   (unsigned long long)out_of_order, (unsigned long long)stalls,
                   (unsigned long long)publisher_frames, cfg_json ? "true" : "false",
                   cfg_chat ? "true" : "false",
                   cfg_deflate ? "true" : "false", (unsigned long long)deflate_accepted,
                   first_extension, (unsigned long long)measured_wire,
                   measured_msgs ? (double)measured_wire / (double)measured_msgs : 0.0,
                   (unsigned long long)measured_compressed, (unsigned long long)corrupt,
                   (unsigned long long)zcache_hits);
            printf(", \"v1\": %s, \"v1_gaps\": %llu, \"v1_epochs_changed\": %llu, "
                   "\"v1_unpositioned\": %llu, \"v1_control_frames\": %llu",
                   cfg_v1 ? "true" : "false", (unsigned long long)v1_gaps,
                   (unsigned long long)v1_epochs_changed, (unsigned long long)v1_unpositioned,
                   (unsigned long long)v1_control_frames);
        }
    }
    printf("}\n");
    fflush(stdout);
    return 0;
}
