/* SPDX-License-Identifier: MIT
 * The uploaded-file map (src/proxy/reg_files.c): put and get, an id
 * uploaded again follows its latest copy, ids it cannot hold, lookups
 * before any upload. Eviction at REG_MAX_FILES is tested in
 * test_proxy_registry_bounds.c. */
#include <string.h>

#include "buf.h"
#include "reg_test.h"

int main(void)
{
    struct registry r;
    char name[REG_NAME_MAX + 1];
    reg_init(&r, 1, &lb_random);
    ok(!reg_file_get(&r, "file-1", name, sizeof(name)), "nothing known before any upload");
    reg_file_put(&r, "file-1", "a");
    reg_file_put(&r, "file-2", "b");
    ok(reg_file_get(&r, "file-1", name, sizeof(name)) && strcmp(name, "a") == 0,
       "file-1 lives on a");
    ok(reg_file_get(&r, "file-2", name, sizeof(name)) && strcmp(name, "b") == 0,
       "file-2 lives on b");
    reg_file_put(&r, "file-1", "c");
    ok(reg_file_get(&r, "file-1", name, sizeof(name)) && strcmp(name, "c") == 0,
       "uploaded again: the latest copy");
    ok(!reg_file_get(&r, "file-3", name, sizeof(name)), "an unknown id");
    char long_id[REG_FILE_ID_MAX + 2];
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    reg_file_put(&r, long_id, "a");
    ok(!reg_file_get(&r, long_id, name, sizeof(name)), "an id over REG_FILE_ID_MAX is not kept");
    reg_file_put(&r, "", "a");
    ok(!reg_file_get(&r, "", name, sizeof(name)), "nor an empty one");
    char small[2];
    ok(reg_file_get(&r, "file-2", small, sizeof(small)) && strcmp(small, "b") == 0,
       "the name is copied within the caller's size");
    reg_deinit(&r);
    buf_cache_drain();
    return done_testing();
}
