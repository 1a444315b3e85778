/* SPDX-License-Identifier: MIT
 * Unit tests of routes.c's route table: which path is which route (the
 * /sim/stats counters and the dispatch depend on it). */
#include <string.h>

#include "../tap.h"
#include "../../src/sim/server.h"

int main(void)
{
    static const struct {
        const char *path;
        enum sim_route rt;
    } cases[] = {
        {"/echo", SIM_R_ECHO},
        {"/echo/", SIM_R_ECHO},
        {"/echo/anything/deeper", SIM_R_ECHO},
        {"/echoes", SIM_R_OTHER},
        {"/v1/chat/completions", SIM_R_CHAT},
        {"/v1/chat/completions/", SIM_R_OTHER},
        {"/v1/chat", SIM_R_OTHER},
        {"/v1/completions", SIM_R_COMPLETIONS},
        {"/v1/embeddings", SIM_R_EMBEDDINGS},
        {"/v1/models", SIM_R_MODELS},
        {"/v1/models/x", SIM_R_OTHER},
        {"/v1/info", SIM_R_INFO},
        {"/v1/responses", SIM_R_RESPONSES},
        {"/v1/files", SIM_R_FILES},
        {"/v1/files/file_1/content", SIM_R_FILES},
        {"/v1/files/download/file_1", SIM_R_FILES},
        {"/v1/filesx", SIM_R_OTHER},
        {"/v1/chunks", SIM_R_CHUNKS},
        {"/sim/stats", SIM_R_STATS},
        {"/sim/stats/", SIM_R_OTHER},
        {"/V1/models", SIM_R_OTHER},
        {"/", SIM_R_OTHER},
        {"", SIM_R_OTHER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        is_int(sim_route_of(slice_cstr(cases[i].path)), cases[i].rt, "route of '%s'",
               cases[i].path);

    static const char *const want[SIM_R_COUNT] = {
        "echo", "chat", "completions", "embeddings", "models", "info", "responses",
        "files", "chunks", "stats", "other",
    };
    for (int i = 0; i < SIM_R_COUNT; i++)
        ok(strcmp(sim_route_names[i], want[i]) == 0, "stats name %d is %s", i, want[i]);
    return done_testing();
}
