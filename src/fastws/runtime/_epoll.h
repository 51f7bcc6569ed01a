/* epoll where it exists (Linux). Elsewhere the same names, failing with
   ENOSYS, so that runtime/_owned.pyx compiles on every platform; io_mode()
   never makes a Poller there. */
#ifndef FASTWS_EPOLL_H
#define FASTWS_EPOLL_H
#ifdef __linux__
#include <sys/epoll.h>
#else
#include <errno.h>
#include <stdint.h>
typedef union epoll_data { void *ptr; int fd; uint32_t u32; uint64_t u64; } epoll_data_t;
struct epoll_event { uint32_t events; epoll_data_t data; };
enum { EPOLLIN = 0x001, EPOLLOUT = 0x004, EPOLLERR = 0x008, EPOLLHUP = 0x010 };
enum { EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3, EPOLL_CLOEXEC = 0 };
static int epoll_create1(int flags) { (void)flags; errno = ENOSYS; return -1; }
static int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
{ (void)epfd; (void)op; (void)fd; (void)event; errno = ENOSYS; return -1; }
static int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{ (void)epfd; (void)events; (void)maxevents; (void)timeout; errno = ENOSYS; return -1; }
#endif
#endif
