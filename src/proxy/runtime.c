/* SPDX-License-Identifier: MIT
 * Live settings and reloads (runtime.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "follow.h"
#include "keys.h"
#include "lb.h"
#include "log.h"
#include "runtime.h"
#include "server.h"
#include "util.h"

/* How often worker 0 re-reads the admin token file (the watcher does the same). */
#define TOKEN_REREAD_MS 60000

static struct runtime *rt_new(const struct cfg *c, struct keyring *keys)
{
    struct runtime *rt = xcalloc(1, sizeof(*rt));
    atomic_init(&rt->refs, 1);
    rt->cfg = *c;
    rt->cfg.backends = NULL; /* the registry holds the static backends */
    rt->cfg.nbackends = 0;
    rt->keys = keys;
    return rt;
}

void runtime_unref(struct runtime *rt)
{
    if (rt != NULL && atomic_fetch_sub(&rt->refs, 1) == 1) {
        keyring_unref(rt->keys);
        free(rt);
    }
}

struct runtime *runtime_get(struct server *s)
{
    pthread_mutex_lock(&s->rt_lock);
    struct runtime *rt = s->rt;
    atomic_fetch_add(&rt->refs, 1);
    pthread_mutex_unlock(&s->rt_lock);
    return rt;
}

/* Makes <rt> current and wakes the workers to take it. */
static void publish(struct server *s, struct runtime *rt)
{
    pthread_mutex_lock(&s->rt_lock);
    struct runtime *old = s->rt;
    s->rt = rt;
    pthread_mutex_unlock(&s->rt_lock);
    runtime_unref(old);
    for (unsigned i = 0; i < s->nworkers; i++)
        if (s->workers[i].loop != NULL)
            ev_wake(s->workers[i].loop);
}

void runtime_adopt(struct worker *w)
{
    struct server *s = w->srv;
    struct runtime *old = NULL;
    pthread_mutex_lock(&s->rt_lock);
    if (w->rt != s->rt) {
        old = w->rt;
        w->rt = s->rt;
        atomic_fetch_add(&w->rt->refs, 1);
    }
    pthread_mutex_unlock(&s->rt_lock);
    runtime_unref(old);
}

/* What identifies a file's content without reading it. */
static void stamp(const char *path, struct file_stamp *st)
{
    struct stat sb;
    memset(st, 0, sizeof(*st));
    if (path[0] != '\0' && stat(path, &sb) == 0) {
        st->ino = (uint64_t)sb.st_ino;
        st->size = (uint64_t)sb.st_size;
        st->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    }
}

static bool stamp_eq(const struct file_stamp *a, const struct file_stamp *b)
{
    return a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

static struct keyring *load_keys(struct server *s, const struct cfg *c, char *err, size_t errlen)
{
    if (c->api_key_file[0] == '\0')
        return NULL;
    return keyring_load(c->api_key_file, &s->key_use, err, errlen);
}

int runtime_open_access_log(struct server *s, const struct cfg *c)
{
    int fd;
    bool on = strcmp(c->access_log, "off") != 0;
    if (!on)
        fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    else if (strcmp(c->access_log, "stderr") == 0)
        fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    else if (strcmp(c->access_log, "-") == 0)
        fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    else
        fd = open(c->access_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd == -1) {
        log_error("access log %s: %s; keeping the current one", c->access_log, strerror(errno));
        return -1;
    }
    if (s->access_fd < 0) {
        s->access_fd = fd;
    } else {
        /* In place: a worker writing right now writes to the old file or
         * the new one, never to a descriptor number reused meanwhile. */
        dup3(fd, s->access_fd, O_CLOEXEC);
        close(fd);
    }
    atomic_store(&s->access_on, on);
    return 0;
}

int runtime_init(struct server *s, char *err, size_t errlen)
{
    pthread_mutex_init(&s->rt_lock, NULL);
    key_usage_init(&s->key_use);
    struct keyring *keys = load_keys(s, &s->cfg, err, errlen);
    if (keys == NULL && s->cfg.api_key_file[0] != '\0')
        return -1;
    s->rt = rt_new(&s->cfg, keys);
    stamp(s->cfg.api_key_file, &s->key_stamp);
    s->token_read_ms = util_now_ms();
    s->access_fd = -1;
    if (runtime_open_access_log(s, &s->cfg) != 0)
        s->access_fd = -1;
    follow_init(s);
    return 0;
}

void runtime_deinit(struct server *s)
{
    follow_deinit(s);
    runtime_unref(s->rt);
    s->rt = NULL;
    key_usage_deinit(&s->key_use);
    pthread_mutex_destroy(&s->rt_lock);
}

/* Logs the options a reload found changed but cannot apply. */
static void log_restart_only(const struct cfg *run, const struct cfg *n)
{
    if (strcmp(run->listen, n->listen) != 0)
        log_warn("reload: --listen changed (%s -> %s): needs a restart", run->listen, n->listen);
    if (strcmp(run->admin_listen, n->admin_listen) != 0)
        log_warn("reload: --admin-listen changed (%s -> %s): needs a restart", run->admin_listen,
                 n->admin_listen);
    if (run->workers != n->workers)
        log_warn("reload: --workers changed (%u -> %u): needs a restart", run->workers,
                 n->workers);
    if (strcmp(run->drain_hook, n->drain_hook) != 0)
        log_warn("reload: --drain-hook changed: needs a restart");
    if (run->max_conns != n->max_conns)
        log_warn("reload: --max-conns changed (%u -> %u): needs a restart", run->max_conns,
                 n->max_conns);
}

int runtime_reload(struct server *s, int argc, char **argv)
{
    struct cfg n;
    char err[512], rerr[NET_ERR_LEN];
    cfg_defaults(&n);
    if (cfg_parse_args(&n, argc, argv, err, sizeof(err)) != 0 ||
        cfg_load_token(&n, err, sizeof(err)) != 0) {
        log_error("reload failed, keeping the running configuration: %s", err);
        cfg_free(&n);
        return -1;
    }
    struct keyring *keys = load_keys(s, &n, err, sizeof(err));
    if (keys == NULL && n.api_key_file[0] != '\0') {
        log_error("reload failed, keeping the running configuration: %s", err);
        cfg_free(&n);
        return -1;
    }
    if (reg_replace(&s->reg, REG_SOURCE_STATIC, n.backends, n.nbackends, 0, rerr) < 0) {
        log_error("reload failed, keeping the running configuration: %s", rerr);
        keyring_unref(keys);
        cfg_free(&n);
        return -1;
    }
    log_restart_only(&s->cfg, &n);
    log_min_level = n.log_level;
    reg_set_policy(&s->reg, n.policy);
    struct reg_settings rs = {
        .eject_after = n.eject_after,
        .eject_base_ms = n.eject_time,
        .eject_max_ms = n.eject_max_time,
        .default_cap = n.default_max_inflight,
        .queue_max = n.queue_max,
        .slow_start_ms = n.slow_start,
        .reject_unknown_model = n.reject_unknown_model,
    };
    reg_configure(&s->reg, &rs);
    runtime_open_access_log(s, &n);
    follow_reload(s, n.follow);
    stamp(n.api_key_file, &s->key_stamp);
    s->token_read_ms = util_now_ms();
    publish(s, rt_new(&n, keys));
    log_info("reloaded: %u static backends, policy %s, %u aliases, %s", n.nbackends,
             n.policy->name, n.naliases, n.api_key_file[0] ? "API keys on" : "API keys off");
    cfg_free(&n);
    return 0;
}

void runtime_poll(struct server *s, int64_t now_ms)
{
    struct runtime *cur = runtime_get(s);
    char err[512];
    if (cur->cfg.api_key_file[0] != '\0') {
        struct file_stamp st;
        stamp(cur->cfg.api_key_file, &st);
        if (!stamp_eq(&st, &s->key_stamp)) {
            s->key_stamp = st;
            struct keyring *keys = load_keys(s, &cur->cfg, err, sizeof(err));
            if (keys == NULL) {
                log_error("API key file changed but is not valid, keeping the keys in use: %s",
                          err);
            } else {
                unsigned n = keys->n;
                publish(s, rt_new(&cur->cfg, keys));
                log_info("API keys reloaded from %s: %u keys", cur->cfg.api_key_file, n);
            }
        }
    }
    if (cur->cfg.admin_token_file[0] != '\0' && now_ms - s->token_read_ms >= TOKEN_REREAD_MS) {
        s->token_read_ms = now_ms;
        struct cfg t = cur->cfg;
        if (cfg_load_token(&t, err, sizeof(err)) != 0) {
            log_error("admin token file: %s; keeping the token in use", err);
        } else if (strcmp(t.admin_token, cur->cfg.admin_token) != 0) {
            if (cur->keys != NULL)
                keyring_ref(cur->keys);
            publish(s, rt_new(&t, cur->keys));
            log_info("admin token reloaded from %s", t.admin_token_file);
        }
    }
    runtime_unref(cur);
}
