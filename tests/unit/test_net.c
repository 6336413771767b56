/* Unit tests for net/: a listener on loopback with a blocking client on a
 * second thread. Echo with connection ids and peers, back-pressure (no
 * reads while the write queue is above high-water), a graceful close that
 * still delivers every queued byte, timers, the connection limit, closing
 * all connections of a listener, and a clean loop close with every
 * allocation returned. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "net/net.h"

#define BIG (4u * 1024 * 1024)

enum mode {
    MODE_ECHO,     /* write back what is read */
    MODE_FLOOD,    /* write BIG bytes on accept, count what is read */
    MODE_CLOSE,    /* write BIG bytes on accept, then close gracefully */
    MODE_TIMEOUT,  /* close 1 s after the last read */
};

struct fx {
    uv_loop_t loop;
    uv_async_t done;
    struct mg_net_listener *l;
    struct mg_net_listener_opts o;
    enum mode mode;
    int port;
    long live0;
    long fail_alloc; /* the nth allocation after the listener opens fails */
    void (*client)(struct fx *);
    /* loop side */
    atomic_long read_bytes;
    atomic_int accepted;
    atomic_int closed;
    int writes_done;
    int listener_closed;
    uint64_t ids[4];
    char peer[64];
    struct mg_net_stats stats;
    /* client side */
    long num[8];
};

static void
on_timeout(struct mg_net_conn *c)
{
    mg_net_conn_close(c);
}

static void
on_write_done(struct mg_net_conn *c, int status, void *arg)
{
    struct fx *fx = arg;

    (void)c;
    if (status == 0)
        fx->writes_done++;
}

static void
srv_read(struct mg_net_conn *c, int status, const char *data, size_t n)
{
    struct fx *fx = mg_net_listener_data(mg_net_conn_listener(c));

    if (status < 0) {
        mg_net_conn_close(c);
        return;
    }
    fx->read_bytes += (long)n;
    if (fx->mode == MODE_ECHO)
        assert_int_equal(mg_net_conn_write(c, data, n, NULL, NULL), MG_OK);
    if (fx->mode == MODE_TIMEOUT)
        mg_net_conn_set_timeout(c, 1000, on_timeout);
}

static int
srv_accept(struct mg_net_conn *c)
{
    struct fx *fx = mg_net_listener_data(mg_net_conn_listener(c));
    int i = fx->accepted++;
    char *big;

    if (i < 4)
        fx->ids[i] = mg_net_conn_id(c);
    strcpy(fx->peer, mg_net_conn_peer(c));
    mg_net_conn_set_data(c, fx);
    if (fx->mode == MODE_FLOOD || fx->mode == MODE_CLOSE) {
        big = mg_malloc(BIG);
        memset(big, 'b', BIG);
        assert_int_equal(mg_net_conn_write_take(c, big, BIG, on_write_done,
                                                fx),
                         MG_OK);
    }
    if (fx->mode == MODE_CLOSE) {
        mg_net_conn_close(c);
        /* Closing refuses more writes. */
        assert_int_equal(mg_net_conn_write(c, "x", 1, NULL, NULL),
                         MG_ECLOSED);
    }
    if (fx->mode == MODE_TIMEOUT)
        mg_net_conn_set_timeout(c, 1000, on_timeout);
    return MG_OK;
}

static void
srv_close(struct mg_net_conn *c)
{
    struct fx *fx = mg_net_conn_data(c);

    fx->closed++;
}

static void
on_listener_closed(struct mg_net_listener *l, void *arg)
{
    struct fx *fx = arg;

    (void)l;
    fx->listener_closed++;
}

static void
on_done(uv_async_t *a)
{
    struct fx *fx = a->data;

    mg_net_listener_stats(fx->l, &fx->stats);
    uv_close((uv_handle_t *)&fx->done, NULL);
    mg_net_listener_close_conns(fx->l, true);
    mg_net_listener_close(fx->l, on_listener_closed, fx);
}

static int
setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    fx->live0 = mg_alloc_live();
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    assert_int_equal(uv_async_init(&fx->loop, &fx->done, on_done), 0);
    fx->done.data = fx;
    fx->o.on_accept = srv_accept;
    fx->o.on_read = srv_read;
    fx->o.on_close = srv_close;
    fx->o.data = fx;
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *fx = *state;

    assert_int_equal(fx->listener_closed, 1);
    assert_int_equal(fx->closed, fx->accepted);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    assert_int_equal(mg_alloc_live(), fx->live0);
    free(fx);
    return 0;
}

static void *
client_main(void *arg)
{
    struct fx *fx = arg;

    fx->client(fx);
    uv_async_send(&fx->done);
    return NULL;
}

static void
run(struct fx *fx, void (*client)(struct fx *))
{
    pthread_t t;

    assert_int_equal(mg_net_listener_open(&fx->loop, &fx->o, &fx->l), MG_OK);
    fx->port = mg_net_listener_port(fx->l);
    assert_true(fx->port > 0);
    mg_alloc_fail_after(fx->fail_alloc);
    fx->client = client;
    assert_int_equal(pthread_create(&t, NULL, client_main, fx), 0);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(pthread_join(t, NULL), 0);
}

static int
dial(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 5};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until EOF (or timeout); returns the bytes read. */
static long
drain(int fd)
{
    static char buf[65536];
    long total = 0;
    ssize_t r;

    while ((r = recv(fd, buf, sizeof(buf), 0)) > 0)
        total += r;
    return total;
}

static long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
client_echo(struct fx *fx)
{
    char buf[16] = {0};

    for (int i = 0; i < 2; i++) {
        int fd = dial(fx->port);
        send(fd, "hello", 5, MSG_NOSIGNAL);
        fx->num[i] = recv(fd, buf, 5, MSG_WAITALL) == 5 &&
                     memcmp(buf, "hello", 5) == 0;
        shutdown(fd, SHUT_WR);
        fx->num[2 + i] = drain(fd); /* the server closes on our FIN */
        close(fd);
    }
}

static void
test_net_echo(void **state)
{
    struct fx *fx = *state;

    fx->mode = MODE_ECHO;
    run(fx, client_echo);
    assert_int_equal(fx->num[0], 1);
    assert_int_equal(fx->num[1], 1);
    assert_int_equal(fx->num[2], 0);
    assert_int_equal(fx->accepted, 2);
    assert_true(fx->ids[0] != 0 && fx->ids[1] > fx->ids[0]);
    assert_true(strncmp(fx->peer, "127.0.0.1:", 10) == 0);
    assert_int_equal(fx->read_bytes, 10);
}

static void
client_flood(struct fx *fx)
{
    int fd = dial(fx->port);
    long t0;

    send(fd, "ping", 4, MSG_NOSIGNAL);
    usleep(200 * 1000);
    /* Our bytes wait in the kernel: the server is not reading. */
    fx->num[0] = fx->read_bytes;
    fx->num[1] = 0;
    {
        static char buf[65536];
        while (fx->num[1] < (long)BIG) {
            ssize_t r = recv(fd, buf, sizeof(buf), 0);
            if (r <= 0)
                break;
            fx->num[1] += r;
        }
    }
    t0 = now_ms();
    while (fx->read_bytes < 4 && now_ms() - t0 < 3000)
        usleep(10 * 1000);
    fx->num[2] = fx->read_bytes;
    close(fd);
}

static void
test_net_backpressure(void **state)
{
    struct fx *fx = *state;

    fx->mode = MODE_FLOOD;
    fx->o.write_high_water = 64 * 1024;
    run(fx, client_flood);
    assert_int_equal(fx->num[0], 0);
    assert_int_equal(fx->num[1], BIG);
    assert_int_equal(fx->num[2], 4); /* reading resumed below low-water */
    assert_int_equal(fx->writes_done, 1);
}

static void
client_close(struct fx *fx)
{
    int fd = dial(fx->port);

    usleep(100 * 1000); /* let the queue fill before reading */
    fx->num[0] = drain(fd);
    close(fd);
}

static void
test_net_graceful_close_flushes(void **state)
{
    struct fx *fx = *state;

    fx->mode = MODE_CLOSE;
    run(fx, client_close);
    assert_int_equal(fx->num[0], BIG);
    assert_int_equal(fx->writes_done, 1);
}

static void
client_timeout(struct fx *fx)
{
    int fd = dial(fx->port);
    long t0 = now_ms();

    /* Each read re-arms the 1 s timer: three 50 ms gaps survive, with
     * room for a slow machine (ASan in CI). */
    for (int i = 0; i < 3; i++) {
        usleep(50 * 1000);
        send(fd, "x", 1, MSG_NOSIGNAL);
    }
    fx->num[0] = drain(fd);
    fx->num[1] = now_ms() - t0;
    close(fd);
}

static void
test_net_timeout(void **state)
{
    struct fx *fx = *state;

    fx->mode = MODE_TIMEOUT;
    run(fx, client_timeout);
    assert_int_equal(fx->num[0], 0);
    assert_int_equal(fx->read_bytes, 3);
    assert_true(fx->num[1] >= 1100 && fx->num[1] < 6000);
}

static void
client_limit(struct fx *fx)
{
    char c;
    int a = dial(fx->port), b;
    ssize_t r;

    /* The echo says a is accepted and read (read_bytes counts first). */
    send(a, "1", 1, MSG_NOSIGNAL);
    recv(a, &c, 1, MSG_WAITALL);
    b = dial(fx->port);
    /* b is accepted and closed at once: EOF (or a reset). */
    r = recv(b, &c, 1, 0);
    fx->num[0] = r == 0 || (r < 0 && errno == ECONNRESET);
    close(b);
    /* a is still served until the listener closes all at the end. */
    send(a, "2", 1, MSG_NOSIGNAL);
    recv(a, &c, 1, MSG_WAITALL);
    fx->num[1] = fx->read_bytes;
    close(a);
}

static void
test_net_max_connections(void **state)
{
    struct fx *fx = *state;

    fx->mode = MODE_ECHO;
    fx->o.max_connections = 1;
    run(fx, client_limit);
    assert_int_equal(fx->num[0], 1);
    assert_int_equal(fx->num[1], 2);
    assert_int_equal(fx->stats.rejected, 1);
    assert_int_equal(fx->stats.accepted, 1);
}

static void
client_echo_once(struct fx *fx)
{
    char buf[8] = {0};
    int fd = dial(fx->port);

    send(fd, "again", 5, MSG_NOSIGNAL);
    /* 5 s receive timeout (dial): without a retry nothing ever comes. */
    fx->num[0] = recv(fd, buf, 5, MSG_WAITALL) == 5 &&
                 memcmp(buf, "again", 5) == 0;
    close(fd);
}

/* The first accept cannot allocate its connection: libuv then stops
 * watching the listening socket until the connection is taken, so the
 * listener must try again by itself and serve the client. */
static void
test_net_accept_retried_after_allocation_failure(void **state)
{
    struct fx *fx = *state;

    fx->mode = MODE_ECHO;
    fx->fail_alloc = 1;
    run(fx, client_echo_once);
    assert_int_equal(fx->num[0], 1);
    assert_int_equal(fx->accepted, 1);
}

static void
test_net_bad_address(void **state)
{
    struct fx *fx = *state;

    fx->o.bind = "not-an-address";
    assert_int_equal(mg_net_listener_open(&fx->loop, &fx->o, &fx->l),
                     MG_EINVAL);
    fx->o.on_read = NULL;
    fx->o.bind = NULL;
    assert_int_equal(mg_net_listener_open(&fx->loop, &fx->o, &fx->l),
                     MG_EINVAL);
    uv_close((uv_handle_t *)&fx->done, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    fx->listener_closed = 1; /* nothing was opened */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_net_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_net_backpressure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_net_graceful_close_flushes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_net_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_net_max_connections, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_net_accept_retried_after_allocation_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_net_bad_address, setup,
                                        teardown),
    };

    uv_replace_allocator(mg_malloc, mg_realloc, mg_calloc, mg_free);
    mg_log_set_level("error");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
