/* SPDX-License-Identifier: MIT
 * API key limits of src/proxy/keys.c on a clock the test sets: the rpm
 * limit holds across a minute boundary (the sliding window's share of the
 * previous minute rounded up, never down), and frees up as that minute
 * slides out of the window. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/proxy/keys.h"
#include "../tap.h"

#define KEY "sk-unit-rpm3-0123456789abcdef"

int main(void)
{
    char path[] = "/tmp/test_proxy_keys-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || dprintf(fd, "%s name=rpm3 rpm=3\n", KEY) < 0)
        return 1;
    close(fd);
    struct key_usage_table t;
    key_usage_init(&t);
    char err[256];
    struct keyring *k = keyring_load(path, &t, err, sizeof(err));
    unlink(path); /* read once: gone whatever follows */
    ok(k != NULL, "the key file loads (%s)", k ? "ok" : err);
    const struct api_key *key = k ? keyring_find(k, KEY, strlen(KEY)) : NULL;
    ok(key != NULL, "the key is found");
    if (key == NULL) {
        done_testing();
        return 0;
    }
    unsigned retry = 0;
    /* Three requests in the last second of a minute window. */
    int64_t t0 = 600000 - 1000;
    for (int i = 0; i < 3; i++)
        is_int(key_admit(&t, key, t0 + i, &retry), KEY_OK, "request %d at the end of a minute",
               i + 1);
    is_int(key_admit(&t, key, t0 + 10, &retry), KEY_RPM, "the fourth in the same minute: refused");
    is_int(key_admit(&t, key, 600000 + 1, &retry), KEY_RPM,
           "1 ms into the next minute: still refused (all three are within 60 s)");
    is_int(key_admit(&t, key, 600000 + 30000, &retry), KEY_OK,
           "30 s in: half of the last minute's three counts, 1.5 rounded up to 2: admitted");
    is_int(key_admit(&t, key, 600000 + 30001, &retry), KEY_RPM,
           "... and that one brings the window back to 3: the next is refused");
    is_int(key_admit(&t, key, 600000 + 59999, &retry), KEY_OK,
           "once the old minute has slid out of the window: admitted");
    keyring_unref(k);
    key_usage_deinit(&t);
    done_testing();
    return 0;
}
