/* SPDX-License-Identifier: MIT
 * Backend specs: what an operator or the watcher says a backend is. Field
 * validation, the --backend NAME=HOST:PORT[,...] syntax, and the packed
 * model lists a spec and a backend hold (registry.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry_int.h"
#include "util.h"

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > REG_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '/' || c == ':'))
            return false;
    }
    return true;
}

int reg_spec_check(const struct backend_spec *s, struct net_addr *addr, char *err)
{
    char a[NET_ADDRSTR_LEN + 8];
    if (!name_ok(s->name)) {
        snprintf(err, NET_ERR_LEN,
                 "invalid backend name: 1-253 characters of A-Z a-z 0-9 - _ . / :");
        return -EINVAL;
    }
    if (s->port < 1 || s->port > 65535) {
        snprintf(err, NET_ERR_LEN, "invalid port %d: must be 1-65535", s->port);
        return -EINVAL;
    }
    if (s->weight > REG_MAX_WEIGHT) {
        snprintf(err, NET_ERR_LEN, "invalid weight %u: must be 0-%d", s->weight, REG_MAX_WEIGHT);
        return -EINVAL;
    }
    if (strchr(s->host, ':') != NULL)
        snprintf(a, sizeof(a), "[%s]:%d", s->host, s->port);
    else
        snprintf(a, sizeof(a), "%s:%d", s->host, s->port);
    if (net_parse_addr(a, false, false, addr, err) != 0) {
        snprintf(err, NET_ERR_LEN, "invalid ip '%s': must be a numeric IPv4 or IPv6 address",
                 s->host);
        return -EINVAL;
    }
    if (s->nmodels > REG_MAX_MODELS || (s->nmodels > 0 && s->models == NULL)) {
        snprintf(err, NET_ERR_LEN, "at most %d models", REG_MAX_MODELS);
        return -EINVAL;
    }
    const char *m = s->models;
    for (unsigned i = 0; i < s->nmodels; i++, m = reg_model_next(m)) {
        if (m[0] == '\0' || strlen(m) > REG_MODEL_MAX) {
            snprintf(err, NET_ERR_LEN, "model names must be 1-%d bytes", REG_MODEL_MAX);
            return -EINVAL;
        }
    }
    return 0;
}

size_t reg_models_len(const char *m, unsigned n)
{
    const char *p = m;
    for (unsigned i = 0; i < n; i++)
        p = reg_model_next(p);
    return (size_t)(p - m);
}

char *reg_models_dup(const char *m, unsigned n)
{
    if (n == 0)
        return NULL;
    size_t len = reg_models_len(m, n);
    char *d = xmalloc(len);
    memcpy(d, m, len);
    return d;
}

char *reg_models_pack(const char *const *names, unsigned n)
{
    if (n == 0)
        return NULL;
    size_t len = 0;
    for (unsigned i = 0; i < n; i++)
        len += strlen(names[i]) + 1;
    char *d = xmalloc(len), *p = d;
    for (unsigned i = 0; i < n; i++) {
        size_t l = strlen(names[i]) + 1;
        memcpy(p, names[i], l);
        p += l;
    }
    return d;
}

int reg_spec_set_models(struct backend_spec *s, const char *const *names, unsigned n, char *err)
{
    if (n > REG_MAX_MODELS) {
        snprintf(err, NET_ERR_LEN, "at most %d models", REG_MAX_MODELS);
        return -EINVAL;
    }
    for (unsigned i = 0; i < n; i++) {
        if (names[i][0] == '\0' || strlen(names[i]) > REG_MODEL_MAX) {
            snprintf(err, NET_ERR_LEN, "model names must be 1-%d bytes", REG_MODEL_MAX);
            return -EINVAL;
        }
    }
    reg_spec_free(s);
    s->models = reg_models_pack(names, n);
    s->nmodels = n;
    return 0;
}

void reg_spec_free(struct backend_spec *s)
{
    free((void *)s->models);
    s->models = NULL;
    s->nmodels = 0;
}

void reg_specs_free(struct backend_spec *v, unsigned n)
{
    for (unsigned i = 0; v != NULL && i < n; i++)
        reg_spec_free(&v[i]);
    free(v);
}

int reg_spec_parse(const char *arg, struct backend_spec *s, char *err)
{
    memset(s, 0, sizeof(*s));
    s->weight = 1;
    const char *eq = strchr(arg, '=');
    if (eq == NULL || eq == arg || (size_t)(eq - arg) > REG_NAME_MAX) {
        snprintf(err, NET_ERR_LEN, "bad backend '%.64s': expected NAME=HOST:PORT[,weight=N]...", arg);
        return -EINVAL;
    }
    memcpy(s->name, arg, (size_t)(eq - arg));
    char tmp[1024];
    if (strlen(eq + 1) >= sizeof(tmp)) {
        snprintf(err, NET_ERR_LEN, "bad backend '%.64s': too long", s->name);
        return -EINVAL;
    }
    strcpy(tmp, eq + 1);
    char *save = NULL, *part = strtok_r(tmp, ",", &save);
    if (part == NULL) {
        snprintf(err, NET_ERR_LEN, "bad backend '%.64s': missing HOST:PORT", s->name);
        return -EINVAL;
    }
    struct net_addr a;
    const char *names[REG_MAX_MODELS];
    unsigned nnames = 0;
    if (net_parse_addr(part, false, false, &a, err) != 0)
        return -EINVAL;
    net_addr_host(&a, s->host, sizeof(s->host));
    s->port = net_addr_port(&a);
    while ((part = strtok_r(NULL, ",", &save)) != NULL) {
        char *v = strchr(part, '=');
        uint64_t n;
        if (v == NULL)
            goto bad;
        *v++ = '\0';
        if (strcmp(part, "weight") == 0) {
            if (util_parse_u64(v, strlen(v), 0, REG_MAX_WEIGHT, &n) != 0)
                goto bad;
            s->weight = (unsigned)n;
        } else if (strcmp(part, "max-inflight") == 0 || strcmp(part, "max_inflight") == 0) {
            if (util_parse_u64(v, strlen(v), 0, 1000000, &n) != 0)
                goto bad;
            s->max_inflight = (unsigned)n;
            s->max_inflight_set = true;
        } else if (strcmp(part, "models") == 0) {
            char *msave = NULL;
            for (char *m = strtok_r(v, "|", &msave); m != NULL; m = strtok_r(NULL, "|", &msave)) {
                if (nnames == REG_MAX_MODELS || strlen(m) > REG_MODEL_MAX)
                    goto bad;
                names[nnames++] = m;
            }
        } else {
            goto bad;
        }
    }
    if (reg_spec_set_models(s, names, nnames, err) != 0)
        return -EINVAL;
    if (reg_spec_check(s, &a, err) != 0) {
        reg_spec_free(s);
        return -EINVAL;
    }
    return 0;
bad:
    snprintf(err, NET_ERR_LEN,
             "bad backend '%.64s': options are weight=N, models=A|B, max-inflight=N", s->name);
    return -EINVAL;
}

unsigned reg_served(const struct backend *b, const char **list)
{
    *list = b->spec.nmodels ? b->spec.models : b->probed;
    return b->spec.nmodels ? b->spec.nmodels : b->nprobed;
}

bool reg_serves(const struct backend *b, const char *model)
{
    const char *m;
    unsigned n = reg_served(b, &m);
    for (unsigned i = 0; i < n; i++, m = reg_model_next(m))
        if (strcmp(m, model) == 0)
            return true;
    return false;
}
